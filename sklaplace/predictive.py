"""Predictive distributions of the linearised (GLM) model.

Linearised around the MAP weights, the model's outputs for a row are Gaussian,
``f ~ N(f_map, Cov_f)`` with ``Cov_f = J Sigma J^T``; the posterior blocks compute
``Cov_f``. These functions turn that Gaussian into class probabilities (probit or Monte
Carlo link) or a regression predictive.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["mc_probabilities", "probit_probabilities", "sample_probabilities"]


def probit_probabilities(likelihood: str, f_mean: Tensor, f_var: Tensor) -> Tensor:
    """Probit approximation of ``E[softmax(f)]`` (or ``E[sigmoid(f)]``).

    ``kappa_k = (1 + pi/8 * Var[f_k])^(-1/2)`` and ``p = softmax(kappa * f_mean)``
    (MacKay 1992; exact in the limit of zero variance). For ``likelihood="binary"`` the
    single logit gives ``p1 = sigmoid(kappa * f)`` and the result has two columns.

    Parameters
    ----------
    likelihood : {"classification", "binary"}
    f_mean, f_var : Tensor of shape (m, c)

    Returns
    -------
    Tensor of shape (m, n_classes)
    """
    kappa = torch.rsqrt(1.0 + math.pi / 8.0 * f_var)
    return _link(likelihood, kappa * f_mean)


def mc_probabilities(
    likelihood: str,
    f_mean: Tensor,
    f_cov: Tensor,
    n_samples: int,
    generator: torch.Generator,
) -> Tensor:
    """Monte Carlo estimate of ``E[softmax(f)]`` with ``f ~ N(f_mean, f_cov)`` per row.

    The draws use the symmetric square root of each row's ``f_cov`` (from its
    eigendecomposition, eigenvalues clamped at zero), so a singular covariance is fine.
    The same ``n_samples`` standard normal vectors serve every row, so a row's result does
    not depend on which other rows are predicted with it.

    Parameters
    ----------
    likelihood : {"classification", "binary"}
    f_mean : Tensor of shape (m, c)
    f_cov : Tensor of shape (m, c, c)
    n_samples : int
    generator : torch.Generator
    """
    lam, vec = torch.linalg.eigh(f_cov)
    root = vec * lam.clamp_min(0.0).sqrt()[:, None, :]
    # One set of standard normal draws shared by every row (common random numbers): a row's
    # estimate then depends only on the row and the seed, not on its position in X.
    z = torch.randn((n_samples, f_mean.shape[1]), generator=generator, dtype=f_mean.dtype).to(
        f_mean.device
    )
    f = f_mean + torch.einsum("mkr,sr->smk", root, z)
    return _link(likelihood, f).mean(0)


def sample_probabilities(likelihood: str, f: Tensor) -> Tensor:
    """Average of the link over sampled outputs ``f`` of shape (n_samples, m, c)."""
    return _link(likelihood, f).mean(0)


def _link(likelihood: str, f: Tensor) -> Tensor:
    if likelihood == "classification":
        return torch.softmax(f, dim=-1)
    if likelihood == "binary":
        p1 = torch.sigmoid(f[..., 0])
        return torch.stack([1.0 - p1, p1], dim=-1)
    raise ValueError(f"No link for likelihood {likelihood!r}.")
