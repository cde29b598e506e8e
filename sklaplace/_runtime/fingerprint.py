"""Content fingerprints of what a pass depends on, or ``None`` when that cannot be known.

A cache entry may be served only for exactly the net and rows it was computed from. A net's
outputs depend on more than its ``state_dict``: buffers registered with
``persistent=False``, ``requires_grad`` flags (which weights get a posterior), plain
attributes that ``forward`` reads (``self.scale``, an activation chosen by a string), the
code of every module class and of the hooks on its modules, globals that code reads, and
the skorch net's input pipeline (``dataset``, ``iterator_valid`` and its ``collate_fn``, an
overridden ``infer``). ``fingerprint_net`` hashes all of it (with the walker in
:mod:`sklaplace._runtime.hasher`):

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

import hashlib

import numpy as np
import torch

from .hasher import (
    TRAINING_NET_ATTRS,
    Unfingerprintable,
    fingerprint_or_raise,
    global_hooks,
    is_library,
    versions,
)

__all__ = [
    "fingerprint",
    "fingerprint_net",
    "fingerprint_rows",
    "request_digest",
    "torch_settings",
]

# rows of an array that ``request_digest`` reads (evenly spaced, the first and last included)
SAMPLED_ROWS = 64


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
        versions(),
        global_hooks(),
        type(net),
        net.dataset,
        net.get_params_for("dataset"),
        net.iterator_valid,
        net.get_params_for("iterator_valid"),
        net.batch_size,
        str(net.device),
    ]
    if not is_library(type(net)):
        extra = {
            k: v for k, v in vars(net).items() if k not in TRAINING_NET_ATTRS and k != "module_"
        }
        parts.append(extra)
    parts.append(net.module_)
    return fingerprint(*parts)


# torch's process-wide settings that change what a pass computes, read at every key: a
# function of torch (called) or a flag (read); one this version of torch lacks is skipped
_TORCH_SETTINGS = (
    "get_default_dtype",
    "get_default_device",
    "are_deterministic_algorithms_enabled",
    "is_deterministic_algorithms_warn_only_enabled",
    "utils.deterministic.fill_uninitialized_memory",
    "get_float32_matmul_precision",
    "backends.fp32_precision",
    "backends.mkldnn.enabled",
    "backends.mkldnn.matmul.fp32_precision",
    "backends.mkldnn.conv.fp32_precision",
    "backends.cuda.matmul.allow_tf32",
    "backends.cuda.matmul.allow_fp16_reduced_precision_reduction",
    "backends.cuda.matmul.allow_bf16_reduced_precision_reduction",
    "backends.cudnn.enabled",
    "backends.cudnn.allow_tf32",
    "backends.cudnn.deterministic",
    "backends.cudnn.benchmark",
    "backends.opt_einsum.enabled",
    "backends.opt_einsum.strategy",
)


def torch_settings() -> tuple:
    """torch's process-wide settings that change what a pass computes, as a key part.

    The default dtype and device (tensors a ``forward`` creates without naming them),
    deterministic algorithms (other kernels; uninitialised memory filled), and the
    precision of float32 matrix products and convolutions (TF32, bfloat16 or reduced
    precision reductions, the oneDNN and cuDNN switches, einsum's contraction order).
    These are global to the process, so sklaplace cannot set them for its own passes
    without changing them for every other thread: they key the cache instead. torch's
    per-thread modes (inference mode, gradients, autocast) are neutralised by
    :func:`sklaplace._runtime.passes.torch_state`. The number of threads is not part of the key:
    it changes results by round-off only, as any two runs of the same call may differ.

    Examples
    --------
    >>> import torch
    >>> before = torch_settings()
    >>> torch.set_default_dtype(torch.float64)
    >>> changed = torch_settings() != before
    >>> torch.set_default_dtype(torch.float32)
    >>> changed, torch_settings() == before
    (True, True)
    """
    out = []
    for name in _TORCH_SETTINGS:
        value = torch
        try:
            for attr in name.split("."):
                value = getattr(value, attr)
        except AttributeError:
            continue
        out.append((name, str(value() if callable(value) else value)))
    return tuple(out)


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


def request_digest(obj) -> tuple:
    """A cheap digest of ``obj`` (rows, targets, a setting) that tells a repeated request.

    Arrays and CPU tensors: their shape, dtype and the bytes of at most ``SAMPLED_ROWS``
    evenly spaced rows; sparse matrices: shape, number of stored values and a sample of
    them; dicts, lists and tuples through their items; other hashable objects through
    their type and ``hash``; anything else through its identity. Equal contents give equal
    digests (but for objects digested by identity), while different contents may share one:
    the digest decides only whether a pass is worth its full fingerprint and a place in the
    cache (:func:`sklaplace._runtime.passes.pass_key`), never whether an entry is served.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(6.0).reshape(3, 2)
    >>> request_digest(X) == request_digest(X.copy())
    True
    >>> request_digest(X) == request_digest(X[::-1])
    False
    """
    import scipy.sparse as sp

    if isinstance(obj, torch.Tensor):
        if obj.device.type != "cpu" or obj.is_sparse or obj.layout != torch.strided:
            return ("tensor", tuple(obj.shape), str(obj.dtype), id(obj))
        return ("tensor", *_sampled(obj.detach().numpy()))
    if isinstance(obj, np.ndarray):
        return ("array", *_sampled(obj))
    if sp.issparse(obj):
        data = np.asarray(obj.data) if hasattr(obj, "data") else np.zeros(0)
        return ("sparse", obj.shape, obj.nnz, str(obj.dtype), *_sampled(data))
    if isinstance(obj, dict):
        return ("dict", *tuple((repr(k), request_digest(v)) for k, v in obj.items()))
    if isinstance(obj, list | tuple) and not hasattr(obj, "_fields"):
        return (type(obj).__name__, *tuple(request_digest(v) for v in obj))
    try:
        return (type(obj).__qualname__, hash(obj))
    except TypeError:
        return (type(obj).__qualname__, id(obj))


def _sampled(arr: np.ndarray) -> tuple:
    """Shape, dtype and a hash of at most ``SAMPLED_ROWS`` evenly spaced rows of ``arr``."""
    if arr.dtype.hasobject:
        return (arr.shape, str(arr.dtype), id(arr))
    if arr.ndim == 0 or len(arr) <= SAMPLED_ROWS:
        sample = arr
    else:
        sample = arr[np.linspace(0, len(arr) - 1, SAMPLED_ROWS).astype(np.intp)]
    digest = hashlib.blake2b(np.ascontiguousarray(sample).tobytes(), digest_size=16)
    return (arr.shape, str(arr.dtype), digest.hexdigest())
