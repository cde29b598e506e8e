"""The object-graph hasher behind :mod:`sklaplace._runtime.fingerprint`.

``_Hasher`` walks an object and everything it reaches: tensors and arrays by dtype, shape,
layout, device, ``requires_grad`` and every byte; containers and objects of user classes
through their contents; user code through its compiled code, defaults, closures and the
globals it names; library code (torch, numpy, scikit-learn, skorch, the standard library)
through its compiled code only, memoised on the function objects (in
:mod:`sklaplace._runtime.library_code`, whose ``global_hooks``, ``is_library`` and
``versions`` this module passes on to the fingerprints). It raises ``Unfingerprintable``
for what it cannot read (an object in C with hidden state).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import marshal
import types
from collections.abc import Mapping
from pathlib import PurePath

import numpy as np
import torch

from .library_code import (
    global_hooks,
    is_library,
    library_class_digest,
    library_digest,
    versions,
)

__all__ = [
    "TRAINING_NET_ATTRS",
    "Unfingerprintable",
    "fingerprint_or_raise",
    "global_hooks",
    "is_library",
    "versions",
]

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
TRAINING_NET_ATTRS = frozenset(
    {"history_", "history", "optimizer_", "callbacks_", "callbacks", "train_split"}
)
_MAX_OBJECTS = 200_000
# Entries of a class's __dict__ that say nothing about what its instances compute.
_SKIPPED_CLASS_ATTRS = frozenset(
    {"__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "_abc_impl"}
)


class Unfingerprintable(Exception):
    """Raised inside the hasher for an object whose content cannot be read."""


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
        if type(m) not in (dict,) and not is_library(type(m)):
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
        if is_library(f):
            self._tag("function", f.__module__, f.__qualname__, library_digest(f))
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
            if is_library(klass):
                self._tag("library class", klass.__qualname__, library_class_digest(klass))
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
