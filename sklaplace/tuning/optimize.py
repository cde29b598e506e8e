"""The two optimisers that tuning uses: a refined 1-D grid search and L-BFGS on the evidence.

Both maximise; both work in log space of positive hyper-parameters.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize, minimize_scalar

from .._runtime.warnings import ignoring

__all__ = ["maximize_evidence", "maximize_on_grid"]

# Search range of the evidence's hyper-parameters, in natural-log units.
_LOG_BOUNDS = (math.log(1e-8), math.log(1e8))


def maximize_on_grid(
    objective, grid: np.ndarray, refine: bool = True, on_grid=None
) -> tuple[float, np.ndarray]:
    """Maximise a scalar function of one positive hyper-parameter: grid, then refine.

    The grid (log-spaced) brackets the optimum; a bounded scalar search in log space between
    the best point's neighbours refines it (unless ``refine`` is False). Non-finite values
    count as -inf. ``on_grid(grid)``, if given, evaluates the whole grid at once (to the
    precision needed to pick the best point: the best point's value, against which the
    refinement is compared, is then ``objective``'s own).
    """
    grid = np.asarray(grid, dtype=np.float64)
    if on_grid is None:
        values = np.array([float(objective(g)) for g in grid])
    else:
        values = np.asarray(on_grid(grid), dtype=np.float64).copy()
    values[~np.isfinite(values)] = -np.inf
    if on_grid is not None and np.isfinite(values).any():
        best = int(np.argmax(values))
        values[best] = float(objective(grid[best]))
        if not np.isfinite(values[best]):
            values[best] = -np.inf
    if not np.isfinite(values).any():
        raise FloatingPointError(
            f"The held-out log-likelihood is not finite for any of the {len(grid)} candidate "
            f"values from {grid.min():.3g} to {grid.max():.3g}; check the net's outputs for "
            "NaN or inf."
        )
    i = int(np.argmax(values))
    lo, hi = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
    if hi <= lo or not refine:
        return float(grid[i]), values
    res = minimize_scalar(
        lambda t: -float(objective(math.exp(t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-3},
    )
    best = math.exp(res.x) if np.isfinite(res.fun) and -res.fun >= values[i] else grid[i]
    return float(best), values


def maximize_evidence(
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
    """
    n_prior = len(prior_precision) if tune_prior else 0
    x0 = []
    if tune_prior:
        x0.extend(np.log(prior_precision))
    if tune_sigma:
        x0.append(math.log(sigma_noise))
    x0 = np.clip(np.asarray(x0, dtype=np.float64), *_LOG_BOUNDS)

    def unpack(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tau = x[:n_prior].exp() if tune_prior else torch.as_tensor(prior_precision)
        sigma = x[n_prior].exp() if tune_sigma else torch.as_tensor(sigma_noise)
        return tau.to(torch.float64), sigma.to(torch.float64)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        value = -evidence(*unpack(xt))
        (grad,) = torch.autograd.grad(value, xt)
        return float(value.detach()), grad.numpy().astype(np.float64)

    with ignoring(RuntimeWarning):
        result = minimize(
            objective, x0, jac=True, method="L-BFGS-B", bounds=[_LOG_BOUNDS] * len(x0)
        )
    tau, sigma = unpack(torch.as_tensor(result.x))
    if not np.isfinite(result.fun):
        raise FloatingPointError(
            "The log marginal likelihood is not finite at any hyper-parameter tried; the "
            "curvature may contain NaN or inf (check the net's outputs on the training data)."
        )
    return tau.detach().numpy().copy(), float(sigma)
