"""The data passes of fit and predict, looked up in the cache before they are run.

A pass over rows ``X`` through a net yields, per batch, the features entering the last
layer and its outputs. The same pass serves the curvature (fit), the held-out tuning and the
predictive (predict). Both the pass and the curvature computed from it are stored in
``sklaplace._cache`` under fingerprints of the net's weights, the rows, the targets and the
settings, so that ``GridSearchCV`` over hyper-parameters with a frozen net does each once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch import Tensor

from . import _skorch
from ._cache import fingerprint_arrays, fingerprint_module, get_cache
from .curvature import CurvatureAccumulator

__all__ = ["head_batches", "last_layer_curvature", "net_fingerprint"]


def net_fingerprint(net) -> str:
    """Fingerprint of everything in the net that determines its outputs (its state_dict)."""
    return fingerprint_module(net.module_)


def head_batches(
    net, head: _skorch.Head, X_net: np.ndarray, y=None, batch_size=None, fingerprint=None
) -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
    """``(a, z, y)`` per batch for the rows ``X_net``: from the cache, or streamed and stored.

    Streaming keeps at most one batch in memory unless the pass fits in the cache, in which
    case the batches are kept there for the next call with the same net and rows.
    """
    cache = get_cache()
    key = None
    if fingerprint is not None and cache.max_bytes > 0:
        key = ("head", fingerprint, head.name, fingerprint_arrays(X_net, y))
        hit = cache.get(key)
        if hit is not None:
            yield from hit
            return
    stored, size = [], 0
    for a, z, yi in _skorch.iter_head(net, head, X_net, y, batch_size):
        if key is not None and stored is not None:
            size += a.numel() * a.element_size() + z.numel() * z.element_size()
            if size <= cache.max_bytes:
                stored.append((a, z, yi))
            else:
                stored = None  # too large to keep: stream only
        yield a, z, yi
    if key is not None and stored is not None:
        cache.put(key, stored)


def last_layer_curvature(
    net,
    head: _skorch.Head,
    X_net: np.ndarray,
    y: np.ndarray,
    likelihood: str,
    structure: str,
    batch_size=None,
    fingerprint=None,
) -> tuple:
    """``(block, summed_loss, n_rows)``: the last layer's eigendecomposed curvature.

    Looked up in the cache under (net, rows, targets, structure, likelihood) first.
    """
    cache = get_cache()
    key = None
    if fingerprint is not None:
        key = ("curvature", fingerprint, head.name, fingerprint_arrays(X_net, y))
        key = (*key, structure, likelihood)
        hit = cache.get(key)
        if hit is not None:
            return hit
    acc = CurvatureAccumulator(
        structure, likelihood, head.n_in, head.n_out, device=head.module.weight.device
    )
    for a, z, yi in head_batches(net, head, X_net, y, batch_size, fingerprint):
        acc.update(a, z, yi)
    result = (acc.block(), acc.loss, acc.n_rows)
    if key is not None:
        cache.put(key, result)
    return result
