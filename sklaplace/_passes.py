"""The data passes of fit and predict, looked up in the cache before they are run.

A pass over rows ``X`` through a net yields, per batch, the features entering the last
layer and its outputs. The same pass serves the curvature (fit), the held-out tuning and the
predictive (predict). The curvature, the passes over rows that are predicted on (or held
out), with the features already projected onto the posterior's eigenbasis, and the head
found in the net are stored in ``sklaplace._cache`` under fingerprints of the net's weights,
the rows, the targets and the settings, so that ``GridSearchCV`` over hyper-parameters with
a frozen net does each once per fold. The training pass behind a curvature is not kept:
only its result is reused.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from skorch.utils import to_tensor
from torch import Tensor

from . import _skorch
from ._all_layers import fit_all_layers, glm_output_cov, sample_predictions
from ._blas import blas_threads_like_torch
from ._cache import fingerprint_arrays, fingerprint_module, get_cache
from .curvature import CurvatureAccumulator
from .posterior import Posterior

__all__ = [
    "find_head",
    "fit_posterior",
    "glm_batches",
    "last_layer_curvature",
    "net_batches",
    "net_fingerprint",
    "projected_batches",
    "sampled_batches",
]


def net_fingerprint(net) -> str:
    """Fingerprint of everything in the net that determines its outputs (its state_dict)."""
    return fingerprint_module(net.module_)


def find_head(net, X_net: np.ndarray, output_kind: str, fingerprint=None) -> _skorch.Head:
    """``_skorch.find_head``, looked up in the cache under (net, first rows of X) first.

    Finding the head runs the first rows through the net; without the cache every fit of a
    grid search over a frozen net would repeat that forward pass. Only the head's name is
    stored: the ``Head`` is rebuilt on this net's own module.
    """
    cache = get_cache()
    key = None
    if fingerprint is not None:
        probe = X_net[: _skorch.HEAD_PROBE_ROWS]
        key = ("find_head", fingerprint, output_kind, fingerprint_arrays(probe))
        name = cache.get(key)
        if name is not None:
            return _skorch.Head(name, dict(net.module_.named_modules())[name])
    head = _skorch.find_head(net, X_net, output_kind)
    if key is not None:
        cache.put(key, head.name)
    return head


def last_layer_curvature(
    net,
    head: _skorch.Head,
    X_net: np.ndarray,
    y: np.ndarray,
    likelihood: str,
    structure: str,
    batch_size=None,
    rows=None,
    key=None,
) -> tuple:
    """``(block, summed_loss, n_rows)``: the last layer's eigendecomposed curvature.

    Looked up in the cache under ``key`` (see ``fit_posterior``) first.
    """
    cache = get_cache()
    if key is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    acc = CurvatureAccumulator(
        structure, likelihood, head.n_in, head.n_out, device=head.module.weight.device
    )
    # the pass itself is neither looked up nor kept, only its result: a training pass (with
    # targets) is never predicted on (predictions look rows up without targets), and keeping
    # it, the largest entry, would evict the small entries a grid search reuses; skipping
    # the look-up also spares hashing X a second time
    with blas_threads_like_torch():
        for a, z, yi in _skorch.iter_head(net, head, X_net, y, batch_size, rows):
            acc.update(a, z, yi)
    result = (acc.block(), acc.loss, acc.n_rows)
    if key is not None:
        cache.put(key, result)
    return result


def net_batches(net, X_net, y=None, batch_size=None, rows=None) -> Iterator[tuple]:
    """``(Xi, yi)`` per batch as tensors on the net's device (what the all-layer passes run)."""
    device = _skorch.net_device(net)
    for Xi, yi in _skorch.iter_batches(net, X_net, y, batch_size, rows):
        yield to_tensor(Xi, device=device), (None if yi is None else to_tensor(yi, device=device))


def fit_posterior(
    net,
    head: _skorch.Head,
    X_net: np.ndarray,
    y: np.ndarray,
    likelihood: str,
    structure: str,
    subset,
    batch_size=None,
    fingerprint=None,
    rows=None,
) -> tuple[Posterior, Tensor, int]:
    """``(posterior, summed_loss, n_rows)`` for the selected weights: the one fit pass.

    ``subset="last_layer"`` computes the head's curvature in closed form from its input
    features (``last_layer_curvature``); ``"all"`` or a list of module names runs
    ``_all_layers.fit_all_layers``. Both are looked up in the cache first. ``rows``
    (integer indices, or None for all) selects the rows without copying X.
    """
    key = None
    if fingerprint is not None:
        names = subset if isinstance(subset, str) else tuple(subset)
        key = ("curvature", fingerprint, head.name, fingerprint_arrays(X_net, y, rows))
        key = (*key, structure, likelihood, names)
    if subset == "last_layer":
        block, loss, n_rows = last_layer_curvature(
            net, head, X_net, y, likelihood, structure, batch_size, rows, key
        )
        return Posterior([block], [head.weight_matrix()], [head.name], key), loss, n_rows
    cache = get_cache()
    if key is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    result = fit_all_layers(
        net.module_,
        head.module,
        net_batches(net, X_net, y, batch_size, rows),
        likelihood,
        structure,
        "all" if subset == "all" else list(subset),
    )
    result[0].key = key
    if key is not None:
        cache.put(key, result)
    return result


def glm_batches(
    net,
    head: _skorch.Head,
    posterior: Posterior,
    X_net: np.ndarray,
    tau: Tensor,
    scale: Tensor,
    subset,
    batch_size=None,
    fingerprint=None,
    features=False,
) -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
    """``(f_mean, f_cov, a)`` per batch: the linearised predictive of the head outputs.

    ``a`` is the head's input (float64) if ``features`` (last layer only: for covariances
    across rows), else None. ``tau`` has one entry per posterior block.
    """
    if subset == "last_layer":
        block = posterior.blocks[0]
        batches = projected_batches(net, head, posterior, X_net, batch_size, fingerprint, features)
        for z, p, a in batches:
            yield z, block.projected_output_cov(p, tau[0], scale), a
        return
    for Xi, _ in net_batches(net, X_net, None, batch_size):
        mean, cov = glm_output_cov(net.module_, head.module, posterior, Xi, tau, scale)
        yield mean, cov, None


def projected_batches(
    net,
    head: _skorch.Head,
    posterior: Posterior,
    X_net: np.ndarray,
    batch_size=None,
    fingerprint=None,
    features=False,
) -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
    """``(z, p, a)`` per batch, float64: the head's output ``z`` for the rows ``X_net`` and
    ``p = block.project(a)``, the part of the last-layer GLM covariance that no
    hyper-parameter changes (for a Kronecker block also its largest cost); the head's
    input ``a`` if ``features``, else None.

    ``(z, p)`` are cached under the posterior's key (what its curvature came from) and the
    rows, so a grid over the prior precision runs and projects each scored fold once; they
    are stored in chunks of up to ``_MERGED_ELEMENTS / c^2`` rows (a hit then costs a few
    large operations instead of one per batch, and a chunk's (rows, c, c) covariance stays
    within 32 MiB). A pass is kept only if it fits in the cache, known before it starts;
    otherwise, and for passes that need ``a`` (covariances across rows, on a few hundred
    rows) or posteriors without a key (not made by ``fit_posterior``), it is streamed.
    """
    cache = get_cache()
    block = posterior.blocks[0]
    key = None
    if not features and fingerprint is not None and posterior.key is not None:
        itemsize = head.module.weight.element_size()
        size = len(X_net) * (head.n_out * itemsize + head.n_in * 8)  # z and float64 p
        if 0 < size <= cache.max_bytes:
            device = str(posterior.means[0].device)
            key = ("projected", posterior.key, fingerprint, head.name, fingerprint_arrays(X_net))
            key = (*key, device)
            hit = cache.get(key)
            if hit is not None:
                for z, p in hit:
                    yield z.to(torch.float64), p, None
                return
    stored, pending = [], []
    merge_rows = max(1, _MERGED_ELEMENTS // head.n_out**2)
    for a, z, _ in _skorch.iter_head(net, head, X_net, None, batch_size):
        a = a.to(torch.float64)
        p = block.project(a)
        if key is not None:
            pending.append((z, p))  # z in the net's dtype; p float64
            if sum(len(zi) for zi, _ in pending) >= merge_rows:
                stored.append(tuple(torch.cat(parts) for parts in zip(*pending, strict=True)))
                pending = []
        yield z.to(torch.float64), p, (a if features else None)
    if key is not None:
        if pending:
            stored.append(tuple(torch.cat(parts) for parts in zip(*pending, strict=True)))
        cache.put(key, stored)


# Rows x outputs^2 of a stored chunk of a projected pass (its covariance is built at once).
_MERGED_ELEMENTS = 2**22


def sampled_batches(
    net,
    head: _skorch.Head,
    posterior: Posterior,
    X_net: np.ndarray,
    n_samples: int,
    tau: Tensor,
    scale: Tensor,
    seed: int,
    batch_size=None,
) -> Iterator[Tensor]:
    """Head outputs ``(n_samples, b, c)`` per batch under weights drawn from the posterior.

    The generator is re-seeded for every batch, so every batch (and every row) sees the
    same weight draws; the net runs through ``torch.func.functional_call`` and its weights
    are never written.
    """
    for Xi, _ in net_batches(net, X_net, None, batch_size):
        generator = torch.Generator(device="cpu").manual_seed(seed)
        yield sample_predictions(
            net.module_, head.module, posterior, Xi, n_samples, tau, scale, generator
        ).to(torch.float64)
