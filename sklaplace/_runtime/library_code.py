"""What the hasher of :mod:`sklaplace._runtime.hasher` takes as given rather than walks.

Library code (torch, numpy, scikit-learn, skorch, the standard library, ...) is trusted to
stay as imported: a function or class of a library is identified by its name and a digest
of its compiled code, memoised on the object (and recomputed for a class when an entry of
its ``__dict__`` is replaced, i.e. a method was patched). Also here: the library versions
and torch's process-wide module hooks, which every fingerprint of a pass includes.
"""

from __future__ import annotations

import hashlib
import marshal
import sys
import threading
import types

import numpy as np
import torch

__all__ = ["global_hooks", "is_library", "library_class_digest", "library_digest", "versions"]

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


def _top_package(obj) -> str:
    name = getattr(obj, "__module__", None) or ""
    return name.partition(".")[0]


def is_library(obj) -> bool:
    """Whether ``obj`` (a function or class) comes from a package in ``_LIBRARIES``."""
    return _top_package(obj) in _LIBRARIES


def versions() -> str:
    """The versions of Python, torch, numpy and skorch, as one string."""
    import skorch

    versions = (sys.version_info[:3], torch.__version__, np.__version__, skorch.__version__)
    return repr(versions)


# id -> (the object, what identified it, its digest): the objects stay alive, so an id is
# never reused for another object while its entry exists.
_LIBRARY_MEMO: dict = {}
_MEMO_LOCK = threading.Lock()


def library_digest(f) -> str:
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


def library_class_digest(klass: type) -> str:
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


def global_hooks() -> dict:
    """torch's process-wide module hooks (they run on every module's forward)."""
    from torch.nn.modules import module

    return {
        name: getattr(module, name)
        for name in dir(module)
        if name.startswith("_global_") and isinstance(getattr(module, name), dict)
    }
