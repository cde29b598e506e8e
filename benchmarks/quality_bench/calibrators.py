"""Post-hoc calibrators of a trained net, fitted on the rows the net never saw.

* :func:`fit_bcts`: bias-corrected temperature scaling (BCTS; Alexandari et al., ICML
  2020) on float64 logits, ``softmax(z / T + b)`` with a bias per class (the first class's
  fixed at 0: adding a constant to every class changes nothing), fitted by minimising the
  mean negative log-likelihood with L-BFGS on ``(log T, b_1, ..., b_{K-1})``. For two
  classes it is Platt scaling of the logit difference: ``sigmoid((z_1 - z_0) / T + b_1)``.
* :func:`paired_bootstrap`: a percentile interval on the mean of paired per-row
  differences (the test rows resampled together for both methods), so that a difference
  of two log losses that the test rows cannot resolve reads as a tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax


@dataclass(frozen=True)
class BCTS:
    """A fitted bias-corrected temperature: ``log_softmax(z / T + b)``."""

    T: float
    b: np.ndarray  # (K,), b[0] == 0

    def log_proba(self, z: np.ndarray) -> np.ndarray:
        return log_softmax(np.asarray(z, np.float64) / self.T + self.b, axis=1)


def _bcts_nll(theta, z, y):
    """Mean NLL of ``softmax(z exp(-theta_0) + [0, theta_1:])`` and its gradient."""
    n = z.shape[0]
    inv_t = np.exp(-theta[0])
    b = np.r_[0.0, theta[1:]]
    lp = log_softmax(z * inv_t + b, axis=1)
    rows = np.arange(n)
    r = np.exp(lp)
    r[rows, y] -= 1.0  # d NLL / d logits, per row (times n)
    grad_t = -inv_t * np.sum(r * z) / n  # d/d log T of (z / T)
    return -lp[rows, y].mean(), np.r_[grad_t, r.sum(0)[1:] / n]


def fit_bcts(z: np.ndarray, y: np.ndarray) -> BCTS:
    """Bias-corrected temperature scaling of logits ``z`` (n, K) to labels ``y`` in [0, K).

    Starts from the identity map (T = 1, b = 0); ``log T`` is bounded to [-7, 7] so that a
    separable validation set (no errors) cannot run T to 0.
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if z.ndim != 2 or z.shape[0] != y.shape[0]:
        raise ValueError(f"z must be (n, K) with n = len(y); got {z.shape} and {y.shape}")
    k = z.shape[1]
    bounds = [(-7.0, 7.0)] + [(None, None)] * (k - 1)
    res = minimize(
        _bcts_nll,
        np.zeros(k),
        args=(z, y),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-15},
    )
    return BCTS(float(np.exp(res.x[0])), np.r_[0.0, res.x[1:]])


def paired_bootstrap(loss_a, loss_b, n_boot=2000, level=0.95, seed=0):
    """Mean of ``loss_a - loss_b`` and a percentile bootstrap interval on it.

    The rows are resampled with replacement, the same rows for both losses (a paired
    bootstrap). Returns ``(mean, low, high)``; an interval that contains 0 is a tie.
    """
    d = np.asarray(loss_a, np.float64) - np.asarray(loss_b, np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"expected two equal, non-empty 1-D loss vectors; got {d.shape}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # bounded memory: 256 resamples at a time
        stop = min(start + 256, n_boot)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(d.mean()), float(low), float(high)
