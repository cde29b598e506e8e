"""Content fingerprints of what a pass depends on, or ``None`` when that cannot be known.

A cache entry may be served only for exactly the net and rows it was computed from. A net's
outputs depend on more than its ``state_dict``: buffers registered with
``persistent=False``, ``requires_grad`` flags (which weights get a posterior), plain
attributes that ``forward`` reads (``self.scale``, an activation chosen by a string), the
code of every module class and of the hooks on its modules, globals that code reads, and
the skorch net's input pipeline (``dataset``, ``iterator_valid`` and its ``collate_fn``, an
overridden ``infer``). ``fingerprint_net`` hashes all of it:

* tensors and arrays by dtype, shape, layout, device, ``requires_grad`` and every byte
  (sparse tensors through their indices and values);
* containers, and objects of user classes, through their contents (``vars``, slots);
* user functions and classes through their compiled code (``marshal``), default
  arguments, closure cells and the globals their code names (for a module object among
  them, the attributes the code names: ``config.gain``); code from the libraries
  sklaplace builds on (torch, numpy, scikit-learn, skorch, the standard library) through
  its compiled code too, without following its globals, memoised on the identity of the
  function objects (the memo keeps them alive, so a patched method is a new object and a
  new digest);
* torch's global module hooks (``register_module_forward_hook`` and the like).

Anything else (an object implemented in C with hidden state, such as a ``torch.Generator``
or a lock) cannot be fingerprinted: the fingerprint is then ``None`` and the caller does not
cache. A fingerprint is computed afresh at each call, never memoised on tensor version
counters: writes through ``.data`` or a numpy view do not bump them.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import marshal
import sys
import threading
import types
from collections.abc import Mapping
from pathlib import PurePath

import numpy as np
import torch

__all__ = ["fingerprint", "fingerprint_net", "fingerprint_rows"]

# Top-level packages whose code is trusted to stay as imported: identified by name.
_LIBRARIES = frozenset(
    {
        "torch",
        "numpy",
        "scipy",
        "sklearn",
        "skorch",
        "sklaplace",
        "pandas",
        "builtins",
        "math",
        "cmath",
        "functools",
        "operator",
        "_operator",
        "_functools",
        "collections",
        "typing",
        "abc",
        "enum",
        "itertools",
        "copy",
        "numbers",
        "warnings",
        "contextlib",
        "dataclasses",
        "re",
        "types",
        "inspect",
        "torchvision",
    }
)
# Values identified by their repr.
_ATOMS = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    torch.dtype,
    torch.device,
    torch.layout,
    torch.memory_format,
    slice,
    range,
    type(Ellipsis),
    type(NotImplemented),
    enum.Enum,
    PurePath,
)
_BUILTIN_CALLABLES = (
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)
# Module attributes that cannot change a forward pass (state-dict and load hooks).
_IGNORED_MODULE_ATTRS = frozenset(
    {
        "_state_dict_hooks",
        "_state_dict_pre_hooks",
        "_load_state_dict_pre_hooks",
        "_load_state_dict_post_hooks",
    }
)
# Attributes of a skorch net subclass that its inference cannot depend on (training state).
_TRAINING_NET_ATTRS = frozenset(
    {"history_", "history", "optimizer_", "callbacks_", "callbacks", "train_split"}
)
_MAX_OBJECTS = 200_000
# Entries of a class's __dict__ that say nothing about what its instances compute.
_SKIPPED_CLASS_ATTRS = frozenset(
    {"__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "_abc_impl"}
)


class Unfingerprintable(Exception):
    """Raised inside the hasher for an object whose content cannot be read."""


def _top_package(obj) -> str:
    name = getattr(obj, "__module__", None) or ""
    return name.partition(".")[0]


def _is_library(obj) -> bool:
    return _top_package(obj) in _LIBRARIES


def _versions() -> str:
    import skorch

    versions = (sys.version_info[:3], torch.__version__, np.__version__, skorch.__version__)
    return repr(versions)


class _Hasher:
    """SHA-256 over a canonical walk of Python objects (see the module docstring)."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._memo: dict[int, tuple[int, object]] = {}

    def digest(self) -> str:
        return self._h.hexdigest()

    def _tag(self, *parts) -> None:
        self._h.update(repr(parts).encode())
        self._h.update(b"\x00")

    def _seen(self, obj) -> bool:
        """Record ``obj``; if it was walked before, write a back-reference instead."""
        entry = self._memo.get(id(obj))
        if entry is not None:
            self._tag("ref", entry[0])
            return True
        if len(self._memo) >= _MAX_OBJECTS:
            raise Unfingerprintable(f"more than {_MAX_OBJECTS} objects")
        self._memo[id(obj)] = (len(self._memo), obj)  # the object is kept: its id stays unique
        return False

    # ------------------------------------------------------------------ dispatch
    def update(self, obj) -> None:
        if isinstance(obj, _ATOMS):
            self._tag(type(obj).__qualname__, repr(obj))
            return
        if isinstance(obj, type):
            self._class(obj)
            return
        if isinstance(obj, types.ModuleType):
            self._tag("module", obj.__name__, getattr(obj, "__version__", None))
            return
        if self._seen(obj):
            return
        if isinstance(obj, torch.Tensor):
            self._tensor(obj)
        elif isinstance(obj, np.ndarray):
            self._array(obj)
        elif isinstance(obj, np.generic):
            self._tag("np.generic", obj.dtype.str)
            self._h.update(np.asarray(obj).tobytes())
        elif isinstance(obj, torch.nn.Module):
            self._module(obj)
        elif isinstance(obj, tuple | list):
            self._tag(type(obj).__qualname__, len(obj))
            if type(obj) not in (tuple, list):
                self._class(type(obj))
            for item in obj:
                self.update(item)
        elif isinstance(obj, Mapping):
            self._mapping(obj)
        elif isinstance(obj, set | frozenset):
            digests = sorted(fingerprint_or_raise(item) for item in obj)
            self._tag(type(obj).__qualname__, digests)
        elif isinstance(obj, types.FunctionType):
            self._function(obj)
        elif isinstance(obj, types.MethodType):
            self._tag("method")
            self.update(obj.__func__)
            self.update(obj.__self__)
        elif isinstance(obj, _BUILTIN_CALLABLES):
            self._tag("builtin", getattr(obj, "__module__", None), obj.__qualname__)
            owner = getattr(obj, "__self__", None)
            if owner is not None and not isinstance(owner, types.ModuleType | type):
                self.update(owner)
        elif isinstance(obj, functools.partial):
            self._tag("partial")
            self.update(obj.func)
            self.update(obj.args)
            self.update(dict(obj.keywords))
        elif isinstance(obj, types.CodeType):
            self._tag("code")
            self._h.update(marshal.dumps(obj))
        elif isinstance(obj, property):
            self._tag("property")
            self.update((obj.fget, obj.fset, obj.fdel))
        elif isinstance(obj, staticmethod | classmethod):
            self._tag(type(obj).__qualname__)
            self.update(obj.__func__)
        elif isinstance(obj, types.CellType):
            try:
                contents = obj.cell_contents
            except ValueError:
                self._tag("empty cell")
            else:
                self.update(contents)
        else:
            self._object(obj)

    # ------------------------------------------------------------------ kinds
    def _tensor(self, t: torch.Tensor) -> None:
        if isinstance(t, torch.nn.parameter.UninitializedTensorMixin):
            raise Unfingerprintable("an uninitialized (lazy) parameter")
        if type(t) not in (torch.Tensor, torch.nn.Parameter):
            raise Unfingerprintable(f"a tensor subclass {type(t).__qualname__}")
        if t.device.type == "meta" or t.is_quantized:
            raise Unfingerprintable("a meta or quantized tensor")
        self._tag(
            "tensor",
            type(t).__qualname__,
            t.dtype,
            tuple(t.shape),
            t.layout,
            t.device.type,
            t.requires_grad,
        )
        t = t.detach()
        if t.layout == torch.strided:
            self._bytes_of(t.resolve_conj().resolve_neg())
        elif t.layout == torch.sparse_coo:
            t = t.coalesce()
            self._bytes_of(t.indices())
            self._bytes_of(t.values())
        elif t.layout in (torch.sparse_csr, torch.sparse_bsr):
            self._bytes_of(t.crow_indices())
            self._bytes_of(t.col_indices())
            self._bytes_of(t.values())
        elif t.layout in (torch.sparse_csc, torch.sparse_bsc):
            self._bytes_of(t.ccol_indices())
            self._bytes_of(t.row_indices())
            self._bytes_of(t.values())
        else:
            raise Unfingerprintable(f"a tensor with layout {t.layout}")

    def _bytes_of(self, t: torch.Tensor) -> None:
        flat = t.detach().cpu().contiguous().reshape(-1)
        self._tag(flat.dtype, flat.numel())
        if flat.numel():
            self._h.update(flat.view(torch.uint8).numpy())

    def _array(self, a: np.ndarray) -> None:
        self._tag("ndarray", a.dtype.str, a.shape)
        if a.dtype.hasobject:
            for item in a.reshape(-1):
                self.update(item)
            return
        self._h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))

    def _mapping(self, m: Mapping) -> None:
        self._tag("mapping", type(m).__qualname__, len(m))
        if type(m) not in (dict,) and not _is_library(type(m)):
            self._class(type(m))
        for key, value in m.items():
            self.update(key)
            self.update(value)

    def _module(self, m: torch.nn.Module) -> None:
        self._class(type(m))
        for name, value in vars(m).items():
            if name in _IGNORED_MODULE_ATTRS:
                continue
            self._tag("attr", name)
            if name == "_non_persistent_buffers_set":
                self._tag(sorted(value))
            else:
                self.update(value)

    def _function(self, f: types.FunctionType) -> None:
        if _is_library(f):
            self._tag("function", f.__module__, f.__qualname__, _library_digest(f))
            return
        self._tag("function", f.__module__, f.__qualname__)
        self._h.update(marshal.dumps(f.__code__))
        self.update(f.__defaults__)
        self.update(f.__kwdefaults__)
        self.update(f.__closure__)
        if f.__dict__:
            self.update(f.__dict__)
        # the globals its code names (and the code nested in it): constants, helpers
        names = sorted(_global_names(f.__code__))
        glob = f.__globals__
        for name in names:
            if name in glob:
                self._tag("global", name)
                value = glob[name]
                if isinstance(value, types.ModuleType):
                    self._module_object(value, names, depth=2)
                else:
                    self.update(value)

    def _module_object(self, mod: types.ModuleType, names, depth: int) -> None:
        """A module a function's code uses: its name and the attributes the code names."""
        self._tag("module", mod.__name__, getattr(mod, "__version__", None))
        for name in names:
            value = getattr(mod, name, _MISSING)
            if value is _MISSING:
                continue
            self._tag("module attr", name)
            if isinstance(value, types.ModuleType):
                if depth > 0:
                    self._module_object(value, names, depth - 1)
                else:
                    self._tag("module", value.__name__)
            else:
                self.update(value)

    def _class(self, cls: type) -> None:
        if cls is object or self._seen(cls):
            return
        self._tag("class", cls.__module__, cls.__qualname__)
        for klass in cls.__mro__:
            if klass is object:
                continue
            if _is_library(klass):
                self._tag("library class", klass.__qualname__, _library_class_digest(klass))
                continue
            for name, attr in sorted(klass.__dict__.items()):
                if name in _SKIPPED_CLASS_ATTRS:
                    continue
                self._tag("class attr", klass.__qualname__, name)
                self.update(attr)

    def _object(self, obj) -> None:
        cls = type(obj)
        state = getattr(obj, "__dict__", None)
        slots = [s for k in cls.__mro__ for s in getattr(k, "__slots__", ())]
        if state is None and not slots:
            raise Unfingerprintable(f"an object of type {cls.__module__}.{cls.__qualname__}")
        self._class(cls)
        if state is not None:
            self.update(dict(state))
        for s in slots:
            self._tag("slot", s)
            self.update(getattr(obj, s, None))


_MISSING = object()
# id -> (the object, what identified it, its digest): the objects stay alive, so an id is
# never reused for another object while its entry exists.
_LIBRARY_MEMO: dict = {}
_MEMO_LOCK = threading.Lock()


def _library_digest(f) -> str:
    """Digest of a library function's compiled code (not following its globals)."""
    with _MEMO_LOCK:
        entry = _LIBRARY_MEMO.get(("f", id(f)))
        if entry is not None and entry[0] is f:
            return entry[2]
    code = getattr(f, "__code__", None)
    digest = hashlib.sha256(marshal.dumps(code) if code is not None else b"").hexdigest()
    with _MEMO_LOCK:
        _LIBRARY_MEMO[("f", id(f))] = (f, None, digest)
    return digest


def _library_class_digest(klass: type) -> str:
    """Digest of what a library class defines: its methods' compiled code, the names and
    types of its other attributes. Recomputed when any entry of its ``__dict__`` is another
    object than before (a patched method)."""
    values = tuple(vars(klass).values())
    ids = tuple(map(id, values))
    with _MEMO_LOCK:
        entry = _LIBRARY_MEMO.get(("c", id(klass)))
        if entry is not None and entry[0] is klass and entry[1][0] == ids:
            return entry[2]
    h = hashlib.sha256()
    for name, value in vars(klass).items():
        func = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        if isinstance(func, property):
            func = func.fget
        code = getattr(func, "__code__", None)
        h.update(repr((name, type(value).__qualname__)).encode())
        if isinstance(code, types.CodeType):
            h.update(marshal.dumps(code))
    digest = h.hexdigest()
    with _MEMO_LOCK:
        _LIBRARY_MEMO[("c", id(klass))] = (klass, (ids, values), digest)
    return digest


def _global_hooks() -> dict:
    """torch's process-wide module hooks (they run on every module's forward)."""
    from torch.nn.modules import module

    return {
        name: getattr(module, name)
        for name in dir(module)
        if name.startswith("_global_") and isinstance(getattr(module, name), dict)
    }


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def fingerprint_or_raise(*objs) -> str:
    h = _Hasher()
    for obj in objs:
        h.update(obj)
    return h.digest()


def fingerprint(*objs) -> str | None:
    """SHA-256 of the contents of ``objs``, or None when one of them cannot be read.

    Examples
    --------
    >>> import numpy as np, threading
    >>> fingerprint(np.zeros(3)) == fingerprint(np.zeros(3))
    True
    >>> fingerprint(np.zeros(3)) == fingerprint(np.zeros(3, dtype=np.float32))
    False
    >>> fingerprint(threading.Lock()) is None
    True
    """
    try:
        return fingerprint_or_raise(*objs)
    except (Unfingerprintable, RecursionError, TypeError, RuntimeError, ValueError):
        return None


def fingerprint_net(net) -> str | None:
    """Fingerprint of everything in a skorch net that its inference passes depend on.

    The module tree (see the module docstring), the net's class, and the settings its
    prediction pipeline reads: ``dataset`` and ``iterator_valid`` with their parameters
    (``collate_fn`` included), ``batch_size`` and ``device``. A user subclass of a skorch
    net (an overridden ``infer``, say) also contributes its code and its attributes, less
    the training state (history, optimizer, callbacks). ``None`` when any of it cannot be
    fingerprinted.
    """
    parts = [
        "sklaplace-net-1",
        _versions(),
        _global_hooks(),
        type(net),
        net.dataset,
        net.get_params_for("dataset"),
        net.iterator_valid,
        net.get_params_for("iterator_valid"),
        net.batch_size,
        str(net.device),
    ]
    if not _is_library(type(net)):
        extra = {
            k: v for k, v in vars(net).items() if k not in _TRAINING_NET_ATTRS and k != "module_"
        }
        parts.append(extra)
    parts.append(net.module_)
    return fingerprint(*parts)


def fingerprint_rows(*arrays) -> str | None:
    """Fingerprint of input rows or targets (arrays, frames, sparse matrices, dicts, None).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(6.0).reshape(3, 2)
    >>> fingerprint_rows(X) == fingerprint_rows(X.copy())
    True
    >>> fingerprint_rows(X) == fingerprint_rows(X[::-1])
    False
    """
    parts = []
    for arr in arrays:
        parts.append(_canonical_rows(arr))
    return fingerprint(*parts)


def _canonical_rows(arr):
    """Turn frames and sparse matrices into plain containers of arrays for hashing."""
    import scipy.sparse as sp

    if sp.issparse(arr):
        csr = sp.csr_array(arr, copy=True)  # canonicalised here, never in the caller's X
        csr.sum_duplicates()
        csr.sort_indices()
        return ("sparse", csr.shape, csr.data, csr.indices, csr.indptr)
    if hasattr(arr, "columns") and hasattr(arr, "dtypes") and hasattr(arr, "iloc"):
        cols = [np.asarray(arr.iloc[:, i].to_numpy()) for i in range(arr.shape[1])]
        return ("frame", list(map(str, arr.columns)), list(map(str, arr.dtypes)), cols)
    if hasattr(arr, "to_numpy") and hasattr(arr, "dtype") and hasattr(arr, "name"):
        return ("series", str(arr.dtype), np.asarray(arr.to_numpy()))
    return arr
