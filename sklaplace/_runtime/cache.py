"""A bounded, thread-safe, content-addressed cache of the passes a grid search repeats.

``GridSearchCV(LaplaceClassifier(FrozenEstimator(net)), {"prior_precision": [...]})`` fits
and scores the same frozen net on the same folds once per candidate. The curvature and the
projected predictive passes do not depend on the candidate, so they are computed once and
looked up afterwards.

A key is built from fingerprints of everything that determines the entry
(:mod:`sklaplace._runtime.fingerprint`: the net's tensors, flags, code and inference settings, the
rows, the targets, the settings of the pass). Where something cannot be fingerprinted
there is no key and the pass is neither looked up nor stored, so an entry is never served
for a net or rows it was not computed from. The cache lives at module level: it survives
``clone`` (which ``GridSearchCV`` applies to every candidate) and is per process.

Its bound is the setting ``cache_bytes`` (:func:`sklaplace.set_config`, 1 GiB by default;
0 turns it off). Least recently used entries are evicted. An entry larger than a quarter
of the bound is not stored: a grid search visits its folds in turn, so an LRU cache that
admitted entries it can hold only one or two of would evict each fold's entries (the
small curvatures included) just before they are needed again, and hit nothing. Every
operation holds one lock, so threads can share it.

**Admission** (setting ``cache_admission``, :doc:`/scaling`; :func:`admits`). Storing a
projected pass costs its fingerprints and a copy of its batches into a few large tensors;
on a small net that is a third of a prediction, and a prediction on new rows never gets it
back. Under "reuse" (the default), a projected pass is keyed and stored only when it is
likely to be asked for again: inside scikit-learn's model selection (``GridSearchCV``,
``cross_val_score``: every candidate scores the same folds), or when the same request (net
object, rows, settings, told by :func:`~sklaplace._runtime.fingerprint.request_digest`, a
sampled digest that costs microseconds) comes a second time. The second request computes
the full key and stores the pass; the third is served. The digest only admits: whether an
entry is served is decided by the full key alone, so a digest that mistakes two requests
for one costs a fingerprint, never a stale answer. A curvature is always keyed and stored
(it is kept by reference, with no copy, and its key names the posterior that the
projections' keys refer to).
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from .config import add_listener, get_config
from .fingerprint import request_digest

# An entry may take at most this fraction of the bound (1 / ADMIT_FRACTION).
ADMIT_FRACTION = 4
# How many requests ``PassCache.seen`` remembers (small tuples: no tensor is kept).
SEEN_REQUESTS = 1024

# Passes stored at their first request under cache_admission="reuse" (module docstring).
EAGER_KINDS = frozenset({"curvature"})
# Where scikit-learn's model selection runs: every candidate of a search fits and scores
# the same folds, so a pass run from inside it is admitted at once.
_MODEL_SELECTION = "sklearn.model_selection"

__all__ = ["PassCache", "admits", "cache_enabled", "get_cache", "in_model_selection", "nbytes"]


def nbytes(obj: Any) -> int:
    """Size of the tensors and arrays reachable from ``obj`` (lists, tuples, dicts, attrs)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, str | bytes):
        return len(obj)
    if isinstance(obj, list | tuple):
        return sum(nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(nbytes(o) for o in obj.values())
    if hasattr(obj, "__dict__"):
        return sum(nbytes(o) for o in vars(obj).values())
    return 0


def cache_enabled() -> bool:
    """Whether the calling thread's ``cache_bytes`` setting allows caching at all."""
    return get_config()["cache_bytes"] > 0


class PassCache:
    """Least-recently-used mapping bounded by the bytes of the tensors it holds.

    The bound is read from ``sklaplace.get_config()["cache_bytes"]`` at every operation.

    Examples
    --------
    >>> import numpy as np
    >>> import sklaplace
    >>> cache = PassCache()
    >>> with sklaplace.config_context(cache_bytes=160):
    ...     for key in "abcd":
    ...         cache.put(key, np.zeros(5))   # 40 bytes each: 160 in all
    ...     first = cache.get("a").shape
    ...     cache.put("e", np.zeros(5))       # evicts "b", the least recently used
    ...     gone = cache.get("b") is None
    ...     cache.put("f", np.zeros(10))      # 80 bytes: over a quarter, not stored
    ...     large = cache.get("f") is None
    >>> first, gone, large, cache.hits, cache.misses
    ((5,), True, True, 1, 2)
    """

    def __init__(self) -> None:
        self._data: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()
        self._seen: OrderedDict[Any, None] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """The summed size of the stored values."""
        return self._bytes

    def evict_to(self, bound: int) -> None:
        """Evict least recently used entries until at most ``bound`` bytes are held."""
        with self._lock:
            while self._data and self._bytes > bound:
                _, (_, old) = self._data.popitem(last=False)
                self._bytes -= old
            if not self._data:
                self._bytes = 0

    def get(self, key: Any) -> Any:
        """The value stored under ``key``, or None (also when ``key`` is None)."""
        if key is None or not cache_enabled():
            return None
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Any, value: Any) -> None:
        """Store ``value`` under ``key`` (nothing when ``key`` is None or it is too large)."""
        bound = get_config()["cache_bytes"]
        if key is None or bound <= 0:
            return
        size = nbytes(value)
        if not self.fits(size):
            return
        with self._lock:
            if key in self._data:
                self._bytes -= self._data.pop(key)[1]
            self._data[key] = (value, size)
            self._bytes += size
            self.evict_to(bound)

    def fits(self, size: int) -> bool:
        """Whether an entry of ``size`` bytes would be stored: at most a quarter of the
        bound (see the module docstring)."""
        return 0 < size <= get_config()["cache_bytes"] // ADMIT_FRACTION

    def seen(self, request: Any) -> bool:
        """Note a request (a cheap digest of a pass, see
        :func:`sklaplace._runtime.passes.pass_key`); True when it was noted before, among
        the last ``SEEN_REQUESTS`` noted. Only admission depends on it: a pass asked for a
        second time is worth its fingerprint and its place in the cache."""
        with self._lock:
            if request in self._seen:
                self._seen.move_to_end(request)
                return True
            self._seen[request] = None
            while len(self._seen) > SEEN_REQUESTS:
                self._seen.popitem(last=False)
            return False

    def clear(self) -> None:
        """Drop every entry, forget the requests seen and reset the hit and miss counts."""
        with self._lock:
            self._seen.clear()
            self._data.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)


_CACHE = PassCache()
add_listener(lambda settings: _CACHE.evict_to(settings["cache_bytes"]))


def get_cache() -> PassCache:
    """The process-wide cache the estimators use (statistics and ``clear()``)."""
    return _CACHE


def admits(kind: str, source: tuple, X, y=None, rows=None, settings=()) -> bool:
    """Whether a pass of ``kind`` over rows ``rows`` of ``(X, y)`` is worth keying and
    storing (see "Admission" in the module docstring); ``source`` names what runs it (the
    net object and the batch size)."""
    if kind in EAGER_KINDS or get_config()["cache_admission"] == "always":
        return True
    if in_model_selection():
        return True
    request = (
        kind,
        source,
        request_digest(X),
        request_digest(y),
        request_digest(rows),
        request_digest(settings),
    )
    return _CACHE.seen(request)


def in_model_selection() -> bool:
    """Whether the call runs inside scikit-learn's model selection (a search or a
    cross-validation: ``GridSearchCV``, ``cross_val_score``, ``learning_curve`` ...),
    told by the modules of the calling frames."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(_MODEL_SELECTION):
            return True
        frame = frame.f_back
    return False
