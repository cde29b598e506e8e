"""The two objectives tuning maximises, read off a fitted state.

:func:`objectives` gathers, for :func:`sklaplace.tuning.resolve.resolve`, the Laplace log
evidence (through the posterior's stored eigenvalues, differentiable in the prior precision
and the noise), the held-out log-likelihood (through projections of the held-out rows
computed once, :class:`~sklaplace.tuning.kept.Kept`), the held-out rows' moments for the
recalibration head, and the noise estimates (maximum likelihood, leave-one-out).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .kept import Kept
from .resolve import HeldOutRows, Hyper, Objectives

__all__ = ["GRID_ELEMENTS", "evidence", "objectives", "sigma_mle"]

# Elements of the largest product formed at once when a grid of prior precisions is
# evaluated together (rows x grid points x the widest block side).
GRID_ELEMENTS = 2**22


def _heldout_rows(y_val, w_val) -> float:
    """The held-out rows' count (the sum of their weights, if weighted); 0 without any."""
    if y_val is None:
        return 0.0
    return float(len(y_val) if w_val is None else np.sum(w_val))


def evidence(fitted, tau, sigma, temperature: float) -> torch.Tensor:
    """The Laplace log evidence, differentiable in ``tau`` and ``sigma`` (tensors)."""
    post = fitted.posterior
    device = post.means[0].device
    tau = torch.as_tensor(tau, dtype=torch.float64, device=device)
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=device)
    loss = torch.tensor(fitted.approximation.loss, dtype=torch.float64, device=device)
    data = fitted.likelihood.data_log_likelihood(
        loss, fitted.approximation.weight_sum, fitted.n_outputs(), sigma, float(temperature)
    )
    scale = 1.0 / (fitted.likelihood.noise_variance(sigma) * float(temperature))
    return post.log_evidence(data, tau, torch.as_tensor(scale, dtype=torch.float64))


def sigma_mle(fitted) -> float:
    """The maximum-likelihood noise std of the training residuals, ``sqrt(SSE / (N K))``
    (1.0 for a likelihood without a noise scale: there the summed loss is not a sum of
    squares, and a heteroscedastic net's Gaussian NLL can be negative)."""
    if not fitted.likelihood.has_noise:
        return 1.0
    n, k = fitted.approximation.weight_sum, fitted.n_outputs()
    return max(math.sqrt(2 * fitted.approximation.loss / (n * k)), 1e-6)


def objectives(fitted, X_val, y_val, weight_decay, train=None, w_val=None) -> Objectives:
    """What tuning needs; ``heldout`` is None when there are no held-out rows.

    ``train``: ``(X, y, w)`` rows the curvature came from, for the leave-one-out noise
    estimate used when there are no held-out rows; ``w_val`` the held-out rows' weights.
    """
    heldout, grid, rms, rows = (
        (None, None, None, None) if X_val is None else _heldout(fitted, X_val, y_val, w_val)
    )
    loo = None
    if train is not None and fitted.likelihood.has_noise:
        loo = _leave_one_out_sigma(fitted, *train)
    return Objectives(
        names=list(fitted.posterior.names),
        evidence=functools.partial(evidence, fitted),
        heldout=heldout,
        heldout_grid=grid,
        heldout_rms=rms,
        head_rows=rows,
        sigma_mle=sigma_mle(fitted),
        weight_decay=weight_decay,
        noise=fitted.likelihood.noise_variance,
        loo_sigma=loo,
        heldout_rows=_heldout_rows(y_val, w_val),
    )


def _leave_one_out_sigma(fitted, X, y, w=None):
    """``f(tau, T, sigma0)``: the noise std from linearised leave-one-out residuals.

    For the linearised model with Gaussian noise, leaving row ``i`` out moves its
    residual from ``r_i`` to ``r_i / (1 - h_i)``, with the leverage ``h_i = J_i Sigma
    J_i^T / sigma^2`` (the hat matrix's diagonal; ``J_i Sigma J_i^T`` is the GLM output
    variance). Training residuals of a flexible net are too small to estimate the noise;
    the leave-one-out ones are not. ``sigma`` solves ``sigma^2 = mean((r / (1 - h))^2)``
    by fixed-point iteration (``h`` depends on ``sigma`` through the posterior).
    The rows are projected once (the caller caps their number:
    :func:`sklaplace.fitting.holdout.curvature_part`).
    """
    projections = Kept(fitted, X)  # once; kept, or in a file beyond TUNING_BYTES
    device = fitted.posterior.means[0].device
    mean = torch.cat([p.mean for p in projections])
    resid = torch.as_tensor(np.asarray(y)).to(device).reshape(mean.shape).double() - mean
    weights = None if w is None else torch.as_tensor(w, dtype=torch.float64, device=device)
    n_blocks = fitted.posterior.n_blocks

    def solve(tau, temperature, sigma) -> float:
        tau = np.broadcast_to(np.asarray(tau, dtype=np.float64), (n_blocks,))
        for _ in range(50):
            tau_t, scale = fitted.tensors(Hyper(tau, sigma, temperature))
            var = torch.cat(
                [fitted.approximation.moments(p, tau_t, scale, cov=False) for p in projections]
            )
            h = (var / sigma**2).clamp(0.0, 1.0 - 1e-6)
            sq = (resid / (1 - h)) ** 2
            mean_sq = (
                sq.mean()
                if weights is None
                else (weights[:, None] * sq).sum() / (weights.sum() * sq.shape[1])
            )
            new = max(float(mean_sq.sqrt()), 1e-6)
            if abs(new - sigma) <= 1e-6 * sigma:
                return new
            sigma = new
        return sigma

    return solve


def _heldout(fitted, X_val, y_val, w_val=None):
    """``f(tau, sigma, T, head)``, the held-out log-likelihood; the same on a grid of
    prior precisions at once; the residuals' RMS; and,
    for a classifier's recalibration head, the held-out rows' moments and per-row
    log-likelihood under a head (:class:`~sklaplace.tuning.resolve.HeldOutRows`).

    The held-out rows are projected once (the projection does not depend on the
    hyper-parameters) and kept while they fit in ``TUNING_BYTES``, beyond in a
    temporary file (many held-out rows through many wide layers): every evaluation
    then costs no pass over them.
    """
    projections = Kept(fitted, X_val)
    device = fitted.posterior.means[0].device
    y_val = torch.as_tensor(np.asarray(y_val)).to(device)
    w = None if w_val is None else torch.as_tensor(w_val, dtype=torch.float64, device=device)
    bounds = projections.bounds
    lik, approx = fitted.likelihood, fitted.approximation
    n_blocks = fitted.posterior.n_blocks

    def evaluate(tau, sigma, temperature, head=None) -> float:
        tau = np.broadcast_to(np.asarray(tau, dtype=np.float64), (n_blocks,))
        tau_t, scale = fitted.tensors(Hyper(tau, float(sigma), float(temperature)))
        head_t = None if head is None else head.tensors(device)
        total = 0.0
        for proj, lo, hi in zip(projections, bounds[:-1], bounds[1:], strict=True):
            var = approx.moments(proj, tau_t, scale, cov=False)
            total += float(
                lik.heldout_log_likelihood(
                    proj.mean,
                    var,
                    y_val[lo:hi],
                    sigma,
                    head_t,
                    None if w is None else w[lo:hi],
                )
            )
        return total

    width = max(max(block.shape) for block in fitted.posterior.blocks)

    def variances_grid(proj, taus, scale):
        """``(T, m, c)`` variances of ``proj``'s rows at the rows of ``taus`` (T, n_blocks),
        a few prior precisions at a time so that the products stay within
        ``GRID_ELEMENTS``. In float64: where the held-out likelihood is flat in the prior
        (a regressor's many rows), grid points decades apart differ by less than float32's
        round-off of the sums, which would then pick the tuned prior."""
        per = max(1, GRID_ELEMENTS // max(1, len(proj.mean) * width))
        parts = [
            approx.moments_grid(proj, taus[s : s + per], scale, torch.float64)
            for s in range(0, len(taus), per)
        ]
        return torch.cat(parts)

    def grid_taus(taus):
        taus = np.asarray(taus, dtype=np.float64)
        taus = np.broadcast_to(taus.reshape(len(taus), -1), (len(taus), n_blocks))
        return torch.tensor(np.ascontiguousarray(taus), device=device)

    def evaluate_grid(taus, sigma, temperature, head=None) -> np.ndarray:
        """``evaluate`` at every prior precision of ``taus`` ((T,), or (T, n_blocks)) at
        once: the variances of all of them in one product per block, the log-likelihood of
        all of them in one call."""
        taus = grid_taus(taus)
        _, scale = fitted.tensors(Hyper(np.ones(n_blocks), float(sigma), float(temperature)))
        head_t = None if head is None else head.tensors(device)
        totals = torch.zeros(len(taus), dtype=torch.float64, device=device)
        for proj, lo, hi in zip(projections, bounds[:-1], bounds[1:], strict=True):
            var = variances_grid(proj, taus, scale)
            k, m, c = var.shape
            target = y_val[lo:hi]
            ll = lik.heldout_row_log_likelihood(
                proj.mean.repeat(k, 1),
                var.reshape(k * m, c),
                target.repeat(k, *([1] * (target.dim() - 1))),
                sigma,
                head_t,
            ).reshape(k, m)
            totals += ll.sum(1) if w is None else ll @ w[lo:hi]
        return totals.cpu().numpy()

    def rms() -> float:
        mean = torch.cat([p.mean for p in projections])
        sq = ((y_val.reshape(mean.shape) - mean) ** 2).mean(1)
        avg = sq.mean() if w is None else (w * sq).sum() / w.sum()
        return max(float(avg) ** 0.5, 1e-6)

    if not lik.is_classifier:
        return evaluate, evaluate_grid, rms, None

    def moments(tau, temperature) -> tuple[torch.Tensor, torch.Tensor]:
        tau = np.broadcast_to(np.asarray(tau, dtype=np.float64), (n_blocks,))
        tau_t, scale = fitted.tensors(Hyper(tau, 1.0, float(temperature)))
        means, variances = [], []
        for proj in projections:
            means.append(proj.mean)
            variances.append(approx.moments(proj, tau_t, scale, cov=False))
        return torch.cat(means), torch.cat(variances)

    def moments_grid(taus, temperature) -> torch.Tensor:
        """The variances (T, m, c) of every held-out row at each prior precision of
        ``taus``, all at once (:func:`variances_grid`)."""
        taus = grid_taus(taus)
        _, scale = fitted.tensors(Hyper(np.ones(n_blocks), 1.0, float(temperature)))
        return torch.cat([variances_grid(proj, taus, scale) for proj in projections], dim=1)

    def row_log_likelihood(mean, var, head, rows=None) -> torch.Tensor:
        target = y_val if rows is None else y_val[rows]
        ll = lik.heldout_row_log_likelihood(mean, var, target, None, head)
        if w is not None:
            ll = ll * (w if rows is None else w[rows])
        return ll

    def link_derivatives(rows=None):
        target = y_val if rows is None else y_val[rows]
        if w is None:
            return lambda z: lik.link_derivatives(z, target)
        wr = (w if rows is None else w[rows])[:, None]
        root = wr.sqrt()

        def weighted(z):
            ll, g, d, r = lik.link_derivatives(z, target)
            return ll * wr[:, 0], g * wr, d * wr, None if r is None else r * root

        return weighted

    rows = HeldOutRows(
        moments=moments,
        row_log_likelihood=row_log_likelihood,
        labels=y_val.long().cpu().numpy().reshape(-1),
        n_outputs=fitted.n_outputs(),
        link_derivatives=link_derivatives,
        moments_grid=moments_grid,
    )
    return evaluate, evaluate_grid, rms, rows
