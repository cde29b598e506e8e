"""A bounded, content-addressed cache for work done on frozen nets.

``GridSearchCV(LaplaceClassifier(FrozenEstimator(net)), {"prior_precision": [...]})`` fits
and scores the same frozen net on the same folds once per candidate. The forward pass
(features entering the last layer, and its outputs) and the curvature computed from it do
not depend on the candidate, so they are computed once and looked up afterwards.

Keys are fingerprints of the *contents* that determine the result: every tensor of the net's
``state_dict`` (weights and buffers), the module's ``repr`` (its layers: the same weights
behind another activation are another net), the input rows, the targets and the curvature
settings. A retrained net, other rows or other settings give another key, so a stale entry is never
served. The cache lives at module level: it survives ``clone`` (which GridSearchCV applies
to every candidate) and is per process (each joblib worker has its own).

The cache is bounded by an estimate of the bytes it holds (``max_bytes``, default 256 MiB);
an entry larger than the bound is not stored, and least recently used entries are evicted.
Whatever is stored stays resident until evicted, in every process (``benchmarks/
RESULTS_memory.md``); set ``get_cache().max_bytes = 0`` to stream only.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

__all__ = ["LRUCache", "fingerprint_arrays", "fingerprint_module", "get_cache"]

# Fingerprints are SHA-256 digests: collisions are out of reach, and with the CPU's SHA
# instructions (most x86 since 2017-2019, ARMv8) hashlib runs it at about 1.8 GB/s here,
# twice blake2b, which matters because X is hashed at every fit and prediction.


def _nbytes(obj: Any) -> int:
    """Rough size of tensors and arrays reachable from ``obj`` (lists, tuples, dicts, attrs)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, str | bytes):
        return len(obj)
    if isinstance(obj, list | tuple):
        return sum(_nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(o) for o in obj.values())
    if hasattr(obj, "__dict__"):
        return sum(_nbytes(o) for o in vars(obj).values())
    return 0


class LRUCache:
    """Least-recently-used mapping bounded by the bytes of the tensors it holds.

    Parameters
    ----------
    max_bytes : int
        Upper bound on the summed size of the stored values. 0 disables the cache.

    Examples
    --------
    >>> import numpy as np
    >>> cache = LRUCache(max_bytes=100)
    >>> cache.put("a", np.zeros(10))       # 80 bytes
    >>> cache.get("a").shape
    (10,)
    >>> cache.put("b", np.zeros(10))       # evicts "a" to stay within 100 bytes
    >>> cache.get("a") is None, cache.hits, cache.misses
    (True, 1, 1)
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self._data: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.max_bytes = max_bytes

    @property
    def max_bytes(self) -> int:
        """The bound; lowering it evicts least recently used entries at once."""
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        self._max_bytes = int(value)
        self._evict()

    def _evict(self) -> None:
        while self._data and self._bytes > self._max_bytes:
            _, (_, old) = self._data.popitem(last=False)
            self._bytes -= old
        if not self._data:
            self._bytes = 0

    def get(self, key: Any) -> Any:
        item = self._data.get(key)
        if item is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return item[0]

    def put(self, key: Any, value: Any) -> None:
        size = _nbytes(value)
        if self._max_bytes <= 0 or size > self._max_bytes:
            return
        if key in self._data:
            self._bytes -= self._data.pop(key)[1]
        self._data[key] = (value, size)
        self._bytes += size
        self._evict()

    def clear(self) -> None:
        self._data.clear()
        self._bytes = 0
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)


_CACHE = LRUCache()


def get_cache() -> LRUCache:
    """The process-wide cache used by the estimators (``.clear()``, ``.max_bytes``)."""
    return _CACHE


def fingerprint_module(module: torch.nn.Module) -> str:
    """Hash of the module's class, its ``repr`` and every tensor in its ``state_dict``."""
    h = hashlib.sha256()
    h.update(type(module).__qualname__.encode())
    # the architecture: the same weights in another module (nn.Tanh for nn.ReLU) differ
    h.update(repr(module).encode())
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fingerprint_arrays(*arrays) -> str:
    """Hash of the dtype, shape and bytes of numpy arrays (``None`` allowed)."""
    h = hashlib.sha256()
    for arr in arrays:
        if arr is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(arr)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.view(np.uint8).reshape(-1).data)
    return h.hexdigest()
