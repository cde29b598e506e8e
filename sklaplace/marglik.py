"""Log marginal likelihood (evidence) of the Laplace approximation, and its maximisation.

With the loss summed over ``N`` rows and ``K`` outputs, prior ``N(0, diag(tau)^-1)``,
curvature scale ``s = 1 / (sigma^2 T)`` and posterior precision ``P = s H + diag(tau)``::

    log p(D) ~= log p(D | theta*) - 0.5 * (logdet P - logdet P0 + theta*^T P0 theta*)
    log p(D | theta*) = -loss / T                                          (classification)
                      = -loss / (sigma^2 T) - N K log(sigma sqrt(2 pi))      (regression)

Everything is a torch expression of ``tau`` and ``sigma`` through the posterior's stored
eigenvalues, so it is differentiable and cheap: no data pass.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from .posterior import Posterior

__all__ = [
    "heldout_log_likelihood",
    "log_marginal_likelihood",
    "maximize_marginal_likelihood",
    "maximize_on_grid",
]

# Search range of the hyper-parameters, in natural-log units.
_LOG_BOUNDS = (math.log(1e-8), math.log(1e8))


def log_marginal_likelihood(
    posterior: Posterior,
    loss: Tensor,
    n_data: int,
    n_outputs: int,
    likelihood: str,
    prior_precision: Tensor,
    sigma_noise: Tensor,
    temperature: float,
) -> Tensor:
    """The Laplace log evidence (see module docstring). Differentiable in the hyper-parameters.

    Parameters
    ----------
    posterior : Posterior
    loss : Tensor
        Summed training loss at the MAP weights (0.5 * SSE for regression).
    n_data, n_outputs : int
    likelihood : {"classification", "binary", "regression"}
    prior_precision : Tensor of shape (n_blocks,)
    sigma_noise : Tensor (scalar); ignored unless ``likelihood="regression"``
    temperature : float
    """
    if likelihood == "regression":
        scale = 1.0 / (sigma_noise**2 * temperature)
        log_lik = -loss * scale - n_data * n_outputs * torch.log(
            sigma_noise * math.sqrt(2 * math.pi)
        )
    else:
        scale = torch.as_tensor(1.0 / temperature, dtype=loss.dtype, device=loss.device)
        log_lik = -loss / temperature
    log_det = posterior.log_det_ratio(prior_precision, scale)
    return log_lik - 0.5 * (log_det + posterior.prior_quadratic(prior_precision))


def maximize_marginal_likelihood(
    evidence,
    prior_precision: np.ndarray,
    sigma_noise: float,
    *,
    tune_prior: bool,
    tune_sigma: bool,
) -> tuple[np.ndarray, float]:
    """Maximise ``evidence(prior_precision, sigma_noise)`` over the requested arguments.

    Works in log space with L-BFGS-B and exact gradients from autograd, within
    ``[1e-8, 1e8]`` for every hyper-parameter.

    Parameters
    ----------
    evidence : callable (Tensor of shape (n_blocks,), Tensor scalar) -> Tensor scalar
    prior_precision : ndarray of shape (n_blocks,)
        Starting point, and the value kept when ``tune_prior`` is False.
    sigma_noise : float
        Starting point, and the value kept when ``tune_sigma`` is False.
    tune_prior, tune_sigma : bool

    Returns
    -------
    prior_precision : ndarray of shape (n_blocks,)
    sigma_noise : float
    """
    n_prior = len(prior_precision) if tune_prior else 0
    x0 = []
    if tune_prior:
        x0.extend(np.log(prior_precision))
    if tune_sigma:
        x0.append(math.log(sigma_noise))
    x0 = np.clip(np.asarray(x0, dtype=np.float64), *_LOG_BOUNDS)

    def unpack(x: Tensor) -> tuple[Tensor, Tensor]:
        tau = x[:n_prior].exp() if tune_prior else torch.as_tensor(prior_precision)
        sigma = x[n_prior].exp() if tune_sigma else torch.as_tensor(sigma_noise)
        return tau.to(torch.float64), sigma.to(torch.float64)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        value = -evidence(*unpack(xt))
        (grad,) = torch.autograd.grad(value, xt)
        return float(value.detach()), grad.numpy().astype(np.float64)

    result = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=[_LOG_BOUNDS] * len(x0))
    tau, sigma = unpack(torch.as_tensor(result.x))
    if not np.isfinite(result.fun):
        raise FloatingPointError(
            "The log marginal likelihood is not finite at any hyper-parameter tried; "
            "the curvature may contain NaN or inf (check the net's outputs on the training data)."
        )
    return tau.detach().numpy().copy(), float(sigma)


def heldout_log_likelihood(
    likelihood: str, f_mean: Tensor, f_var: Tensor, y: Tensor, sigma_noise: float
) -> Tensor:
    """Summed log predictive density of held-out rows under the GLM predictive.

    Classification uses the probit approximation (see ``predictive.probit_probabilities``);
    regression the Gaussian ``N(y | f_mean, f_var + sigma_noise^2)``.

    Parameters
    ----------
    likelihood : {"classification", "binary", "regression"}
    f_mean, f_var : Tensor of shape (m, c)
    y : Tensor
        Class indices (m,) for classification and binary, targets (m, c) for regression.
    sigma_noise : float
    """
    if likelihood == "regression":
        var = f_var + sigma_noise**2
        resid = y.reshape(f_mean.shape).to(f_mean.dtype) - f_mean
        return -0.5 * (resid**2 / var + torch.log(2 * math.pi * var)).sum()
    kappa = torch.rsqrt(1.0 + math.pi / 8.0 * f_var)
    logits = kappa * f_mean
    if likelihood == "binary":
        target = y.reshape(-1).to(logits.dtype)
        return -torch.nn.functional.binary_cross_entropy_with_logits(
            logits[:, 0], target, reduction="sum"
        )
    return -torch.nn.functional.cross_entropy(logits, y.long(), reduction="sum")


def maximize_on_grid(objective, grid: np.ndarray) -> tuple[float, np.ndarray]:
    """Maximise a scalar function of one positive hyper-parameter: grid, then refine.

    The grid (log-spaced) brackets the optimum; a bounded scalar search in log space between
    the best point's neighbours refines it. Non-finite values count as -inf.

    Returns
    -------
    best : float
    values : ndarray, the objective on the grid
    """
    from scipy.optimize import minimize_scalar

    grid = np.asarray(grid, dtype=np.float64)
    values = np.array([float(objective(g)) for g in grid])
    values[~np.isfinite(values)] = -np.inf
    if not np.isfinite(values).any():
        raise FloatingPointError(
            f"The held-out log-likelihood is not finite for any of the {len(grid)} candidate "
            f"values from {grid.min():.3g} to {grid.max():.3g}; check the net's outputs for "
            "NaN or inf."
        )
    i = int(np.argmax(values))
    lo, hi = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
    if hi <= lo:
        return float(grid[i]), values
    res = minimize_scalar(
        lambda t: -float(objective(math.exp(t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-3},
    )
    best = math.exp(res.x) if np.isfinite(res.fun) and -res.fun >= values[i] else grid[i]
    return float(best), values
