"""Hyper-parameters: from the estimator's parameters to the numbers the posterior uses.

Pure functions of two objectives that the fitted state provides (:mod:`sklaplace.fitting.state`):
the Laplace evidence through the stored eigenvalues, and the log-likelihood of held-out
rows under the GLM predictive (rows the net never trained on). Nothing here passes over
the training data, and everything here runs in ``fit``: predictions only read the result.

Modes:

* ``prior_precision``: a number (one, per layer, or a dict by layer name), ``"marglik"``
  (evidence), ``"holdout"`` (held-out likelihood), ``"weight_decay"`` (the prior the
  training's L2 term implies);
* ``sigma_noise`` (regression): a number, ``"marglik"`` or ``"holdout"``;
* ``temperature`` (the posterior temperature, which scales the curvature): a number or
  ``"holdout"``;
* ``calibration`` (classification): the recalibration head ``f -> a f + b`` applied to the
  Gaussian over the logits before the link (:mod:`sklaplace.tuning.recalibration`): None,
  ``"temperature"``, ``"bias_temperature"`` or ``"auto"`` (chosen by cross-fitting), tuned
  jointly with the prior on the held-out rows; ``head`` a fixed head (the deprecated
  ``logit_temperature`` as a number).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from . import recalibration as _recalibration
from .heldout import PRIOR_GRID, _tune_on_heldout
from .optimize import maximize_evidence
from .recalibration import Head

__all__ = [
    "LOGIT_TEMPERATURE_RANGE",
    "PRIOR_MODES",
    "HeldOutRows",
    "Hyper",
    "Objectives",
    "check_numerics",
    "prior_array",
    "resolve",
]

# Ways to choose the prior precision in fit instead of giving a number.
PRIOR_MODES = ("marglik", "holdout", "weight_decay")
CALIBRATION_MODES = (*_recalibration.KINDS, "auto")
# The logit temperatures accepted: far beyond any useful value (temperature scaling finds
# values near 1), and far inside float64's range for mean / T and var / T^2.
LOGIT_TEMPERATURE_RANGE = (1e-6, 1e6)


@dataclass
class Hyper:
    """The numbers predictions use."""

    prior_precision: np.ndarray  # one per posterior block
    sigma_noise: float
    temperature: float
    head: Head | None = None  # the recalibration head (None: the identity)


@dataclass
class HeldOutRows:
    """A classifier's held-out rows, for the recalibration head.

    ``moments(tau, T)`` gives the GLM means and variances (m, c) of every held-out row
    (float64 tensors); ``row_log_likelihood(mean, var, head, rows)`` the (weighted)
    log-likelihood of each of ``rows`` (indices; None: all) under the head ``(a, b)`` (or
    None), differentiable in ``a`` and ``b``; ``labels`` the rows' labels (for stratified
    folds); ``n_outputs`` the number of logits; ``cache`` the moments computed so far
    (:mod:`sklaplace.tuning.recalibration` keeps them there); ``moments_grid(taus, T)`` the
    variances (T, m, c) at many prior precisions at once (None: one ``moments`` each).
    """

    moments: Callable
    row_log_likelihood: Callable
    labels: np.ndarray
    n_outputs: int
    cache: dict = field(default_factory=dict)  # moments by temperature and prior
    moments_grid: Callable | None = None  # (taus, T) -> variances (T, m, c) at once


@dataclass
class Objectives:
    """What the fitted state offers to tune against.

    ``evidence(tau, sigma, T)`` takes float64 tensors (differentiable);
    ``heldout(tau, sigma, T, head)`` returns the summed held-out log-likelihood, and is
    None without held-out rows; ``heldout_grid(taus, sigma, T, head)`` the same at every
    prior precision of ``taus`` at once; ``head_rows`` what the recalibration head is tuned on
    (classifiers with held-out rows); ``heldout_rms`` is the root mean square of the held-out
    residuals (regression); ``sigma_mle`` the training residuals' maximum-likelihood noise
    std; ``weight_decay`` the per-block coefficients of the L2 prior (or None).
    """

    names: list[str]
    evidence: Callable
    heldout: Callable | None
    heldout_rms: Callable | None
    sigma_mle: float
    weight_decay: np.ndarray | None
    noise: Callable[[float], float]  # sigma -> sigma^2 for regression, 1 otherwise
    loo_sigma: Callable | None = None  # (tau, T, sigma0) -> leave-one-out noise std
    heldout_grid: Callable | None = None  # (taus, sigma, T, head) -> heldout at each tau
    heldout_rows: float = 0.0  # the held-out rows (the sum of their weights, if weighted)
    head_rows: HeldOutRows | None = None


def prior_array(value, names: list[str]) -> np.ndarray:
    """A positive float, per-layer array or {layer name: value} -> (n_blocks,) array."""
    n_blocks = len(names)
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        missing = [n for n in names if n not in value]
        if unknown or missing:
            raise ValueError(
                f"prior_precision as a dict needs one value for each layer of the "
                f"posterior, {names}; unknown: {unknown}, missing: {missing}."
            )
        value = [value[n] for n in names]
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"prior_precision must be a positive float, one per layer, or one of "
            f"{PRIOR_MODES}; got {value!r}."
        ) from exc
    if arr.size == 1:
        arr = np.full(n_blocks, arr.item())
    if arr.size != n_blocks:
        raise ValueError(
            f"prior_precision has {arr.size} values but the posterior has {n_blocks} "
            f"layer(s) ({names}); give one value per layer or a float."
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"prior_precision must be positive and finite, got {value!r}. It is the "
            "precision (1 / variance) of the Gaussian prior on the weights; try 1.0."
        )
    return arr


def curvature_scale(noise_variance: float, temperature: float) -> float:
    """``1 / (sigma^2 T)``, the factor on the curvature; inf or 0 out of float64's range."""
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        return float(1.0 / (np.float64(noise_variance) * np.float64(temperature)))


def check_numerics(posterior, hyper: Hyper, noise_variance: float) -> None:
    """Refuse hyper-parameters whose posterior is not numerically positive definite.

    O(1) per block (from the stored eigenvalues): the largest eigenvalue of the precision,
    ``scale * lam_max + tau``, must be finite and the smallest, ``scale * lam_min + tau``,
    positive, else variances ``1 / L`` are infinite or negative and predictions NaN.
    """
    sigma, temperature = hyper.sigma_noise, hyper.temperature
    if not np.isfinite(noise_variance):
        raise ValueError(
            f"sigma_noise={sigma:.3g} is too large to compute with: sigma_noise^2 overflows "
            "float64. Scale the targets, or choose a smaller value."
        )
    scale = curvature_scale(noise_variance, temperature)
    if not np.isfinite(scale):
        raise ValueError(
            f"sigma_noise={sigma:.3g} and temperature={temperature:.3g} are too small to "
            "compute with: the curvature's factor 1 / (sigma_noise^2 * temperature) overflows "
            "float64. Choose larger values (the targets' scale is a guide)."
        )
    for block, tau, name in zip(
        posterior.blocks, hyper.prior_precision, posterior.names, strict=True
    ):
        with np.errstate(over="ignore", divide="ignore"):
            prior_variance = 1.0 / np.float64(tau)
        if not np.isfinite(prior_variance):
            raise ValueError(
                f"prior_precision={tau:.3g} for layer {name!r} is too small to compute with: "
                "the prior variance 1 / prior_precision overflows float64. Choose values "
                "between about 1e-8 and 1e8."
            )
        with np.errstate(over="ignore", invalid="ignore"):
            top = np.float64(scale) * np.float64(block.lam_max) + np.float64(tau)
        if not np.isfinite(top):
            raise ValueError(
                f"prior_precision={tau:.3g} (sigma_noise={sigma:.3g}, temperature="
                f"{temperature:.3g}) makes the posterior precision of layer {name!r} "
                f"numerically infinite (largest eigenvalue {top:.3g}). Choose values "
                "between about 1e-8 and 1e8."
            )
        bottom = np.float64(scale) * np.float64(block.lam_min) + np.float64(tau)
        if not bottom > 0:
            raise ValueError(
                f"prior_precision={tau:.3g} (sigma_noise={sigma:.3g}, temperature="
                f"{temperature:.3g}) leaves the posterior precision of layer {name!r} with "
                f"a smallest eigenvalue of {bottom:.3g}: the curvature has an eigenvalue of "
                f"{block.lam_min:.3g}, below zero, that the prior does not outweigh, so "
                "variances would be negative and predictions NaN. Choose a larger "
                "prior_precision (between about 1e-8 and 1e8)."
            )
    if hyper.head is not None:
        t = np.float64(1.0 / hyper.head.scale)
        low, high = LOGIT_TEMPERATURE_RANGE
        if not (low <= t <= high):
            raise ValueError(
                f"logit_temperature={t:.3g} is out of the range that can be computed with; "
                f"choose a value in [{low:g}, {high:g}] (values near 1 are the useful ones)."
            )


# ---------------------------------------------------------------------------- resolve
def resolve(params: dict, obj: Objectives) -> Hyper:
    """Turn the parameters into numbers, tuning where a mode asks for it.

    ``params`` holds ``prior_precision``, ``sigma_noise`` (a number for classifiers),
    ``temperature``, ``calibration`` (None or one of ``CALIBRATION_MODES``) and ``head``
    (a fixed head, or None). ``random_state`` draws the folds of ``calibration="auto"``.
    """
    mode = _mode(params["prior_precision"])
    sigma_mode = _mode(params["sigma_noise"])
    tune_t = _mode(params["temperature"]) == "holdout"
    calibration = params.get("calibration")
    head = params.get("head")
    if sigma_mode == "holdout" and mode in ("marglik", "weight_decay"):
        raise ValueError(
            f"sigma_noise='holdout' cannot be combined with prior_precision={mode!r}; "
            "use prior_precision='holdout' (both tuned on the held-out rows) or a float."
        )
    if tune_t and (mode in ("marglik", "weight_decay") or sigma_mode == "marglik"):
        other = f"prior_precision={mode!r}" if mode in PRIOR_MODES else "sigma_noise='marglik'"
        raise ValueError(
            f"temperature='holdout' cannot be combined with {other}: the evidence depends "
            "on the temperature it would be tuned against. Use 'holdout' (all tuned on the "
            "held-out rows) or a float for the other hyper-parameters."
        )
    n_blocks = len(obj.names)
    temperature = 1.0 if tune_t else float(params["temperature"])
    sigma = obj.sigma_mle if sigma_mode else float(params["sigma_noise"])

    def evidence(prior, s):
        return obj.evidence(prior, s, temperature)

    needs_rows = "holdout" in (mode, sigma_mode) or tune_t or calibration is not None
    if needs_rows and obj.heldout is None:
        return _without_heldout(params, obj, mode, sigma_mode, temperature, head, sigma)
    if needs_rows:
        if sigma_mode == "marglik":
            # sigma from the evidence alone (jointly with the prior, as with "marglik"),
            # then the rest on the held-out rows at that sigma. Alternating the two criteria
            # need not converge (the held-out optimum can jump between two values that
            # each move the evidence's sigma back).
            _, sigma = maximize_evidence(
                evidence, np.ones(n_blocks), sigma, tune_prior=True, tune_sigma=True
            )
        fixed = None if mode == "holdout" else _fixed_prior(params, mode, obj, sigma, temperature)
        kind = calibration
        if kind == "auto":
            kind = _recalibration.choose(
                obj.head_rows,
                temperature,
                fixed,
                n_blocks,
                PRIOR_GRID,
                params.get("random_state"),
            )
        prior, sigma, temperature, head = _tune_on_heldout(
            obj, fixed, sigma, sigma_mode == "holdout", temperature, tune_t, head, kind
        )
    elif mode == "weight_decay":
        sigma = _evidence_sigma(obj, sigma, sigma_mode is not None, temperature, prior=None)
        prior = _tied_prior(obj, sigma, temperature)
    elif mode == "marglik":
        prior, sigma = maximize_evidence(
            evidence, np.ones(n_blocks), sigma, tune_prior=True, tune_sigma=sigma_mode is not None
        )
    else:
        prior = prior_array(params["prior_precision"], obj.names)
        sigma = _evidence_sigma(obj, sigma, sigma_mode is not None, temperature, prior)
    return Hyper(np.asarray(prior, dtype=np.float64), float(sigma), float(temperature), head)


def _without_heldout(params, obj, mode, sigma_mode, temperature, head, sigma) -> Hyper:
    """The values used when a mode asks for held-out rows and there are none.

    The estimator has warned (it knows why there are none). Classifiers: the prior
    precision goes to the top of its range, where the predictions are the net's own (the
    training rows of an over-fitted net are fitted almost exactly: they show none of its
    over-confidence, and every criterion computed on them, leave-one-out included, asks
    for no uncertainty); the recalibration head is the identity (or the fixed ``head``).
    Regressors (with a noise to
    estimate): the prior precision and sigma from the evidence, then sigma from the
    linearised leave-one-out residuals at that prior (``Objectives.loo_sigma``), which
    training residuals underestimate.
    """
    n_blocks = len(obj.names)
    loo = obj.loo_sigma if sigma_mode == "holdout" else None

    def evidence(p, s):
        return obj.evidence(p, s, temperature)

    if loo is not None:
        prior, sigma = maximize_evidence(
            evidence, np.ones(n_blocks), sigma, tune_prior=True, tune_sigma=True
        )
        if mode != "holdout":
            prior = _fixed_prior(params, mode, obj, sigma, temperature)
        sigma = loo(prior, temperature, sigma)
        return Hyper(np.asarray(prior, dtype=np.float64), float(sigma), float(temperature), head)
    if mode == "holdout":
        prior = np.full(n_blocks, PRIOR_GRID[-1])
    else:
        prior = _fixed_prior(params, mode, obj, sigma, temperature)
    if sigma_mode == "marglik":
        _, sigma = maximize_evidence(
            evidence, np.ones(n_blocks), sigma, tune_prior=True, tune_sigma=True
        )
    return Hyper(np.asarray(prior, dtype=np.float64), float(sigma), float(temperature), head)


def _mode(value) -> str | None:
    return value if isinstance(value, str) else None


def _fixed_prior(params, mode, obj, sigma, temperature) -> np.ndarray:
    if mode == "weight_decay":
        return _tied_prior(obj, sigma, temperature)
    if mode == "marglik":
        prior, _ = maximize_evidence(
            lambda p, s: obj.evidence(p, s, temperature),
            np.ones(len(obj.names)),
            sigma,
            tune_prior=True,
            tune_sigma=False,
        )
        return prior
    return prior_array(params["prior_precision"], obj.names)


def _tied_prior(obj: Objectives, sigma, temperature: float):
    """'weight_decay': the prior whose posterior mode is the trained weights.

    ``tau = c / (sigma^2 T)``; ``sigma`` may be a tensor (the evidence stays
    differentiable in it).
    """
    scale = 1.0 / (obj.noise(sigma) * temperature)
    if isinstance(sigma, torch.Tensor):
        return torch.as_tensor(obj.weight_decay, device=sigma.device) * scale
    return obj.weight_decay * scale


def _evidence_sigma(obj, sigma, tune: bool, temperature, prior) -> float:
    """Maximise the evidence over sigma, the prior fixed or (``None``) tied to sigma."""
    if not tune:
        return sigma

    def evidence(_, s):
        tau = _tied_prior(obj, s, temperature) if prior is None else torch.as_tensor(prior)
        return obj.evidence(tau, s, temperature)

    _, sigma = maximize_evidence(
        evidence, np.ones(len(obj.names)), sigma, tune_prior=False, tune_sigma=True
    )
    return sigma
