"""The one data loop: rows of X through a private view of a skorch net, batch by batch.

``NetView(net, batch_size)`` is the net as every sklaplace pass runs it:

* **a private view of the module tree**: each module is shallow-copied (same parameter and
  buffer tensors, copies of the dictionaries that hold them and of the hook tables), so
  sklaplace can put the view in evaluation mode, hook it, and run sampled weights through
  it without touching the user's module. Threads sharing one net each run their own view;
  nothing is left on the user's module after a call.
* **the net's own input pipeline**: batches come from the net's ``dataset`` and
  ``iterator_valid`` (with ``shuffle`` and ``drop_last`` off, so every row comes out once,
  in order; the count is checked), and the forward pass is the net's own ``infer`` (an
  override included), run on a shallow copy of the net that holds the view.
* **the net's dtypes**: floating-point batches are cast to the parameters' dtype one batch
  at a time; integer inputs reach the net as integers when it takes them (category codes,
  as skorch passes them) and are cast like floats otherwise (see ``FittedLaplace.fit``).
* **a private copy of each batch**: every forward pass gets its own copy of its batch,
  made by the cast and the move to the net's device (one copy per batch), so that a
  ``forward`` with in-place operations on its input (``x /= 10``) can neither change the
  caller's ``X`` (batches of an array are slices of it, sharing its memory) nor write to
  read-only memory (``np.load(..., mmap_mode="r")``), and a batch run twice (the check of
  the rows' independence, the ``"nn"`` predictive's draws) is the same input both times.

``torch_state`` is torch's thread-local state as every sklaplace call runs in (entered by
the ``torch_context`` decorator on fit and the predictions): outside
``torch.inference_mode``, with gradients enabled (passes turn them off or on themselves)
and without ``torch.autocast``, so that a call made inside any of them computes exactly
what an ordinary call computes (and may share its cache entries). Global settings that
cannot be set per thread (the default dtype and device, deterministic algorithms, the
float32 matmul precision) are part of the cache key instead
(:func:`sklaplace._runtime.fingerprint.torch_settings`).

``torch_state`` is also the scope of the torch threads a call's passes run on
(:mod:`sklaplace._runtime.threads`): a ``NetView`` lowers them for a small net.

``pass_key`` builds the cache key of a pass: the view's fingerprint (its net, see
:mod:`sklaplace._runtime.fingerprint`), the effective batch size, the rows and the pass's own
settings; ``None`` (do not cache) when the cache is off, the pass is too small for caching
to pay for the fingerprints, it is not likely to be reused (below), or anything in it cannot
be fingerprinted.

Whether a pass is worth a key at all (setting ``cache_admission``) is decided by
:func:`sklaplace._runtime.cache.admits`.
"""

from __future__ import annotations

import contextvars
import functools
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager

import numpy as np
import scipy.sparse as sp
import torch
from skorch.dataset import Dataset, unpack_data
from skorch.utils import to_tensor
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from . import skorch as _skorch
from .cache import admits, cache_enabled
from .fingerprint import fingerprint, fingerprint_net, fingerprint_rows, torch_settings
from .threads import limit_threads, thread_scope

__all__ = [
    "NetView",
    "callers_autocast",
    "check_forward_keeps_weights",
    "n_rows_of",
    "pass_key",
    "torch_context",
    "torch_state",
    "view_module",
]

# Passes over fewer rows are not cached: fingerprinting the net would cost more than the
# pass (hashing reads every parameter byte, a forward pass of one row about as much).
MIN_CACHED_ROWS = 256
# iterator_valid__ settings that do not change which rows a batch holds or their values
_PLAIN_LOADER_KWARGS = {"batch_size", "shuffle", "num_workers", "pin_memory", "drop_last"}


# Device types whose autocast state torch keeps (one flag per thread for each).
_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu", "xla", "ipu", "mtia")
# the caller's autocast, as it was when the outermost torch_state was entered
_CALLER_AUTOCAST: contextvars.ContextVar[tuple | None] = contextvars.ContextVar(
    "sklaplace_caller_autocast", default=None
)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4: no per-device query
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return device_type == "cuda" and torch.is_autocast_enabled()
    except RuntimeError:  # a device type this build of torch does not know
        return False


def _autocast_dtype(device_type: str) -> torch.dtype:
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # torch < 2.4
        if device_type == "cpu":
            return torch.get_autocast_cpu_dtype()
        return torch.get_autocast_gpu_dtype()


@contextmanager
def torch_state():
    """torch's thread-local state as sklaplace's calls run (see the module docstring).

    Not in ``torch.inference_mode`` (the all-layer passes need gradients, and a tensor
    made in inference mode cannot be saved for a backward pass or updated in place
    later), gradients enabled (each pass turns them off, or on, for its forward passes)
    and ``torch.autocast`` off on every device type: sklaplace's passes compute in the
    net's dtype, as an ordinary call does, whatever the caller's context. The caller's
    autocast is kept for training an unfitted net (``callers_autocast``): training is
    skorch's, not one of sklaplace's passes.
    """
    with ExitStack() as stack:
        on = [d for d in _AUTOCAST_DEVICES if _autocast_enabled(d)]
        if _CALLER_AUTOCAST.get() is None:  # the outermost
            state = tuple((d, _autocast_dtype(d), torch.is_autocast_cache_enabled()) for d in on)
            token = _CALLER_AUTOCAST.set(state)
            stack.callback(_CALLER_AUTOCAST.reset, token)
            stack.enter_context(thread_scope())
        # (leaving inference mode this way also turns gradients on, as torch.enable_grad)
        stack.enter_context(torch.inference_mode(False))
        for device_type in on:
            stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def torch_context(func):
    """Decorator: ``func`` runs in ``torch_state`` (a wrapper of sklaplace's own, so that
    warnings still point at the caller's line)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with torch_state():
            return func(*args, **kwargs)

    return wrapper


@contextmanager
def callers_autocast():
    """Inside ``torch_state``: the autocast of the caller of the outermost one."""
    with ExitStack() as stack:
        for device_type, dtype, cache in _CALLER_AUTOCAST.get() or ():
            stack.enter_context(torch.autocast(device_type, dtype=dtype, cache_enabled=cache))
        yield


def check_forward_keeps_weights(module: nn.Module) -> None:
    """Raise ``ValueError`` for a module whose forward pass writes into its own weights:
    an ``nn.Embedding`` (or ``EmbeddingBag``) with ``max_norm`` renormalises the rows it
    reads in place, in the tensors a view shares with the user's module (and the all-layer
    passes, under ``torch.func``, cannot run it)."""
    for name, mod in module.named_modules():
        if isinstance(mod, nn.Embedding | nn.EmbeddingBag) and mod.max_norm is not None:
            raise ValueError(
                f"Module {name!r} is an {type(mod).__name__} with max_norm={mod.max_norm}: "
                "its forward pass renormalises the weight rows it reads in place, so every "
                "pass over the net would change the weights the posterior describes. Set "
                "its max_norm to None (after renormalising the weights once, if some rows "
                "exceed it) and wrap the net again."
            )


def view_module(module: nn.Module) -> nn.Module:
    """A private view of a module tree: shallow copies sharing every tensor.

    Each module is a new object of the same class whose ``__dict__`` is a copy of the
    original's, with its own copies of the dictionaries of parameters, buffers, submodules
    (views themselves) and hooks. Setting the mode, registering hooks or replacing a
    parameter entry on the view leaves the user's module as it is; the tensors are the
    same objects, so nothing is copied in memory. A module shared in the tree is one view.
    """
    memo: dict[int, nn.Module] = {}

    def copy(mod: nn.Module) -> nn.Module:
        if id(mod) in memo:
            return memo[id(mod)]
        view = object.__new__(type(mod))
        memo[id(mod)] = view
        state = {}
        for key, value in mod.__dict__.items():
            if key == "_modules":
                value = OrderedDict(
                    (k, None if child is None else copy(child)) for k, child in value.items()
                )
            elif isinstance(value, dict) and key.startswith("_"):
                value = type(value)(value) if type(value) in (dict, OrderedDict) else value
            elif isinstance(value, set) and key.startswith("_"):
                value = set(value)
            state[key] = value
        view.__dict__.update(state)
        return view

    return copy(module)


def n_rows_of(X) -> int:
    """Rows of an input skorch accepts (arrays, frames, sparse matrices, dicts of them)."""
    if isinstance(X, Mapping):
        return n_rows_of(next(iter(X.values())))
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)


class NetView:
    """A skorch net as sklaplace's passes run it (see the module docstring).

    Parameters
    ----------
    net : skorch NeuralNet (fitted)
    batch_size : int or None
        Rows per forward pass; default: the net's ``iterator_valid__batch_size`` or
        ``batch_size``.
    """

    def __init__(self, net, batch_size: int | None = None, int_codes: bool | None = None) -> None:
        self.net = net
        check_forward_keeps_weights(net.module_)  # before any pass writes into them
        self.module = view_module(net.module_)
        self.module.eval()
        self._infer_net = _skorch.infer_view(net, self.module)
        self.dtype = _skorch.net_dtype(net)
        self.device = _skorch.net_device(net)
        # integer inputs: codes given to the net as integers, or numbers cast to its dtype;
        # fit decides (FittedLaplace.fit), else codes for a net with an embedding
        self.takes_codes = _skorch.takes_codes(net) if int_codes is None else int_codes
        kwargs = net.get_params_for("iterator_valid")
        size = batch_size or kwargs.get("batch_size", net.batch_size)
        self.batch_size = size
        self.batch_size_given = batch_size is not None  # else passes may size their own
        self._fingerprint: str | bool | None = False  # False: not computed yet
        # (a probe of a few rows does not decide for the passes: the net's batch does)
        limit_threads(net, -1 if size == -1 else max(size, net.batch_size))

    # ---------------------------------------------------------------- running the net
    def forward(self, Xi):
        """The net's ``infer`` on a private copy of one batch (see the module docstring),
        in the net's dtype and on its device, run on the view."""
        return self._infer_net.infer(self._private(Xi))

    def batches(self, X, y=None, rows=None) -> Iterator[tuple]:
        """``(Xi, yi)`` per batch, in order, every row once.

        ``Xi`` may share memory with ``X`` and is in X's dtype, on its device: give it to
        ``forward``, which copies it into the net's dtype and device (never change it in
        place); ``yi`` is on the net's device. ``rows`` (integer indices) selects rows
        batch by batch, so X is never copied whole. Raises ``ValueError`` if the net's
        iterator does not return every row.
        """
        expected = n_rows_of(X) if rows is None else len(rows)
        seen = 0
        for Xi, yi in self._raw_batches(X, y, rows):
            seen += n_rows_of(Xi)
            if isinstance(yi, Tensor):
                yi = yi.to(self.device)
            yield Xi, yi
        if seen != expected:
            raise ValueError(
                f"The net's iterator_valid returned {seen} rows for the {expected} rows "
                "given; sklaplace needs every row exactly once (a custom sampler or "
                "iterator_valid that drops or repeats rows cannot be used). Use skorch's "
                "default iterator_valid, or one that keeps every row."
            )

    def _private(self, x):
        """A copy of a batch (tensors, arrays, and dicts, lists or tuples of them) that
        shares no memory with it: floating-point (and boolean) tensors in the net's dtype,
        integers too unless the net takes codes (an embedding), on the net's device. One
        copy: the cast and the move are the copy."""
        if isinstance(x, Mapping):
            return {k: self._private(v) for k, v in x.items()}
        if isinstance(x, list | tuple) and not hasattr(x, "_fields"):
            return type(x)(self._private(v) for v in x)
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.array(x))  # (from_numpy refuses read-only memory)
        if not isinstance(x, Tensor):
            return to_tensor(x, device=self.device)
        return x.to(device=self.device, dtype=self._dtype_for(x), copy=True)

    def _dtype_for(self, x: Tensor) -> torch.dtype:
        """Floating-point (and boolean) input in the net's dtype; integers stay integers
        for a net with an embedding (category codes), else become the net's dtype."""
        if x.is_floating_point() or x.dtype == torch.bool:
            return self.dtype
        if not x.is_complex() and not self.takes_codes:
            return self.dtype
        return x.dtype

    def _raw_batches(self, X, y, rows):
        net = self.net
        kwargs = net.get_params_for("iterator_valid")
        plain = (
            net.dataset is Dataset
            and net.iterator_valid is DataLoader
            and not set(kwargs) - _PLAIN_LOADER_KWARGS
        )
        rows_of = (isinstance(X, np.ndarray) and X.ndim == 2) or sp.isspmatrix_csr(X)
        if plain and rows_of and (y is None or isinstance(y, np.ndarray)):
            # skorch's Dataset and torch's DataLoader stack rows one at a time in Python
            # (a sparse row made dense); slicing gives the same tensors, and costs little
            yield from self._array_batches(X, y, rows)
            return
        _check_sampler(kwargs)
        dataset = net.get_dataset(X, y)
        if rows is not None:
            dataset = torch.utils.data.Subset(dataset, np.asarray(rows).tolist())
        kwargs["batch_size"] = len(dataset) if self.batch_size == -1 else self.batch_size
        kwargs["batch_size"] = max(1, kwargs["batch_size"])
        kwargs["shuffle"] = False
        kwargs["drop_last"] = False
        for batch in net.iterator_valid(dataset, **kwargs):
            yield unpack_data(batch)

    def _array_batches(self, X, y, rows):
        n = X.shape[0] if rows is None else len(rows)
        size = max(n, 1) if self.batch_size == -1 else self.batch_size
        for start in range(0, n, size):
            pick = slice(start, start + size) if rows is None else rows[start : start + size]
            Xi = X[pick].toarray() if sp.issparse(X) else X[pick]
            yi = None if y is None else _tensor_of(y[pick])
            yield _tensor_of(Xi), yi

    # ---------------------------------------------------------------- cache keys
    def fingerprint(self) -> str | None:
        """The net's fingerprint, computed once per view (one call of the estimator)."""
        if self._fingerprint is False:
            self._fingerprint = fingerprint_net(self.net)
        return self._fingerprint


def _tensor_of(arr: np.ndarray) -> Tensor:
    """A tensor of a batch of rows, sharing the array's memory where it can (``forward``
    copies it); read-only memory (a memory-mapped file) is copied here, as torch does not
    take it."""
    arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def _check_sampler(kwargs: dict) -> None:
    sampler = kwargs.get("sampler")
    if sampler is not None and not isinstance(sampler, SequentialSampler):
        raise ValueError(
            f"The net's iterator_valid__sampler is a {type(sampler).__name__}; sklaplace "
            "needs every row once, in order (predictions are returned row by row). Remove "
            "it or use a SequentialSampler."
        )
    batch_sampler = kwargs.pop("batch_sampler", None)
    if batch_sampler is not None and not (
        isinstance(batch_sampler, BatchSampler)
        and isinstance(batch_sampler.sampler, SequentialSampler)
    ):
        raise ValueError(
            f"The net's iterator_valid__batch_sampler is a {type(batch_sampler).__name__}; "
            "sklaplace needs every row once, in order. Remove it (sklaplace batches the "
            "rows itself)."
        )


def pass_key(view: NetView, kind: str, X, y=None, rows=None, *settings):
    """The cache key of a pass over ``X`` (see the module docstring), or None."""
    n = n_rows_of(X) if rows is None else len(rows)
    if not cache_enabled() or n < MIN_CACHED_ROWS:
        return None
    if not admits(kind, (id(view.net), view.batch_size), X, y, rows, settings):
        return None
    net_fp = view.fingerprint()
    if net_fp is None:
        return None
    data_fp = fingerprint_rows(X, y, None if rows is None else np.asarray(rows))
    settings_fp = fingerprint(settings)
    if data_fp is None or settings_fp is None:
        return None
    return (
        kind,
        net_fp,
        torch_settings(),
        view.batch_size,
        str(view.device),
        data_fp,
        settings_fp,
    )
