"""Links of the Gaussian over the net's outputs: the probit approximation and Monte Carlo.

Linearised around the trained weights, the net's outputs for a row are Gaussian,
``f ~ N(mean, cov)``. A likelihood's link (softmax, sigmoid) turns ``f`` into
probabilities; these functions average the link over that Gaussian, in log space so that
tiny probabilities keep their logarithm instead of underflowing to ``log 0 = -inf``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["OutputRoot", "affine", "mc_log_link", "probit_logits"]

# Elements (draws x rows x outputs) of link values formed at once by ``mc_log_link``.
_MC_ELEMENTS = 2**22
# Draws generated together; fixed, so the draws do not depend on the rows predicted.
_DRAW_CHUNK = 64


class OutputRoot(NamedTuple):
    """A factor of the outputs' covariances: ``cov_n = basis diag(scale_n^2) basis^T``.

    ``scale`` (m, r) per row; ``basis`` (c, r) shared by every row (None: the identity).
    What a block gives when its covariance is one shared eigenbasis times per-row
    variances (a Kronecker or diagonal last layer), so that ``mc_log_link`` draws
    ``f = mean + basis (scale * z)`` at O(c r) per draw and row, with no decomposition.
    Dividing it by a number divides the covariance (as a logit temperature does).
    """

    scale: Tensor
    basis: Tensor | None

    def __truediv__(self, value: float) -> OutputRoot:
        return OutputRoot(self.scale / math.sqrt(value), self.basis)


def affine(mean: Tensor, second: Tensor, scale=1.0, bias=None) -> tuple[Tensor, Tensor]:
    """The Gaussian of ``scale * f + bias`` for ``f ~ N(mean, second)``, exactly.

    ``second`` holds variances (m, c), covariances (m, c, c) or an :class:`OutputRoot`
    of them; an affine map of a Gaussian
    is Gaussian with mean ``scale * mean + bias`` and (co)variance ``scale^2 * second``.
    This is the recalibration head (:ref:`calibration-head`), applied before the link so
    that the link averages over the posterior of the recalibrated logits. ``scale`` is a
    float or a 0-d tensor (differentiable), ``bias`` None or a tensor of shape (c,).

    Examples
    --------
    >>> import torch
    >>> affine(torch.tensor([[1.0, -1.0]]), torch.tensor([[4.0, 1.0]]), 0.5,
    ...        torch.tensor([0.0, 2.0]))
    (tensor([[0.5000, 1.5000]]), tensor([[1.0000, 0.2500]]))
    """
    if bias is None and not isinstance(scale, Tensor) and scale == 1.0:
        return mean, second
    mean = mean * scale
    if bias is not None:
        mean = mean + bias
    if isinstance(second, OutputRoot):  # a > 0: the root's scale times a
        return mean, OutputRoot(second.scale * scale, second.basis)
    return mean, second * scale**2


def probit_logits(mean: Tensor, var: Tensor) -> Tensor:
    """``kappa * mean`` with ``kappa = (1 + pi/8 * var)^(-1/2)`` (MacKay 1992).

    ``softmax`` (or ``sigmoid``) of the result approximates the expected link under
    ``N(mean, var)`` per output; it is exact as the variance goes to zero.

    Examples
    --------
    >>> import torch
    >>> probit_logits(torch.tensor([2.0]), torch.tensor([0.0]))
    tensor([2.])
    """
    return mean * torch.rsqrt(1.0 + math.pi / 8.0 * var)


def mc_log_link(
    log_link: Callable[[Tensor], Tensor],
    mean: Tensor,
    cov: Tensor | OutputRoot,
    n_samples: int,
    generator: torch.Generator,
) -> Tensor:
    """``log E[link(f)]`` with ``f ~ N(mean, cov)`` per row, from ``n_samples`` draws.

    With an :class:`OutputRoot`, the draws are ``mean + basis (scale * z)``: O(c r) per
    draw and row, nothing decomposed. With covariances (m, c, c), they use the symmetric
    square root of each row's ``cov`` (eigenvalues clamped at zero, so a singular
    covariance is fine; O(c^3) per row). The same standard normal vectors serve every
    row, drawn in chunks of a fixed size: a row's estimate depends only on the row and the
    generator's seed, not on the other rows. Memory stays within ``_MC_ELEMENTS`` link
    values whatever ``n_samples`` is; the average is taken in log space
    (``logsumexp``).

    Parameters
    ----------
    log_link : callable
        ``(..., c) -> (..., k)``: log-probabilities from outputs.
    mean : Tensor of shape (m, c)
    cov : Tensor of shape (m, c, c) or OutputRoot
    n_samples : int
    generator : torch.Generator (CPU)

    Returns
    -------
    Tensor of shape (m, k)
    """
    m, c = mean.shape
    if isinstance(cov, OutputRoot):
        scale, basis = cov
    else:
        lam, basis = torch.linalg.eigh(cov)
        scale = lam.clamp_min(0.0).sqrt()
    r = scale.shape[1]
    total = None
    done = 0
    rows = max(1, _MC_ELEMENTS // max(1, _DRAW_CHUNK * max(c, r)))
    while done < n_samples:
        k = min(_DRAW_CHUNK, n_samples - done)
        z = torch.randn((k, r), generator=generator, dtype=mean.dtype).to(mean.device)
        parts = []
        for s in range(0, m, rows):
            f = mean[s : s + rows] + _deviations(scale[s : s + rows], basis, s, rows, z)
            parts.append(torch.logsumexp(log_link(f), dim=0))
        chunk = torch.cat(parts)
        total = chunk if total is None else torch.logaddexp(total, chunk)
        done += k
    return total - math.log(n_samples)


def _deviations(scale: Tensor, basis, start: int, rows: int, z: Tensor) -> Tensor:
    """``basis (scale * z)`` for draws ``z`` (k, r) and rows' ``scale`` (b, r): (k, b, c).

    ``basis`` is shared (c, r), per row (m, c, r: sliced here from ``start``) or None."""
    scaled = z[:, None, :] * scale[None]  # (k, b, r)
    if basis is None:
        return scaled
    if basis.dim() == 2:
        return scaled @ basis.T
    return torch.einsum("mkr,smr->smk", basis[start : start + rows], scaled)
