"""Fit's steps, in order, in one function: :func:`fit`.

The estimators validate their inputs (labels, the scaling of targets) and hand :func:`fit`
two plain records: the :class:`FitPlan`, what their parameters ask for (what differs
between the classifier and the regressor is data there: the likelihood, the number of
outputs, the recalibration head, whether intervals are calibrated), and the
:class:`FitData`, the validated rows. :func:`fit` runs the steps and returns a
:class:`Fit`, from which the estimator sets its fitted attributes; no step sets an
estimator's attribute. See "The path of fit" in ``docs/contributing.rst``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state

from .. import approximations, prediction
from .._runtime import skorch as _skorch
from .._runtime.passes import NetView, torch_context
from .._runtime.stamp import Stamp
from .._runtime.warnings import warn
from ..likelihoods import Likelihood
from ..tuning.conformal import ConformalScores
from ..tuning.objectives import objectives as tuning_objectives
from ..tuning.recalibration import Head
from ..tuning.resolve import Hyper, check_numerics, resolve
from . import holdout, inputs, unseen
from .state import FittedLaplace

__all__ = ["HYPER_PARAMS", "Fit", "FitData", "FitPlan", "fit", "seed"]

# Hyper-parameters: numbers read at prediction time, or modes resolved in fit.
HYPER_PARAMS = ("prior_precision", "sigma_noise", "temperature", "logit_temperature")


@dataclass(frozen=True, eq=False)
class FitPlan:
    """What an estimator's parameters ask of fit, read once before any step."""

    estimator_name: str  # the messages name the estimator
    model: inputs.Model  # the wrapped model's parts
    likelihood: Likelihood
    n_outputs: int
    subset_of_weights: object
    hessian_structure: str
    hyper: dict  # HYPER_PARAMS as given (numbers or modes; 1.0 where the estimator has none)
    validation_fraction: float
    batch_size: int | None
    random_state: object
    head_mode: str | None = None  # the classifier's calibration mode
    fixed_head: Head | None = None  # a fixed head (the deprecated logit_temperature)
    interval: str | None = None  # the regressor's interval mode; None: nothing calibrated
    predictive: str = "glm"  # (the predictive and its draws give the calibrated stds)
    n_samples: int = 100
    classes: np.ndarray | None = None  # the classifier's labels, for messages
    net_seed: int | None = None  # an unfitted net's torch seed (None: from random_state)

    @property
    def holdout_params(self) -> list[str]:
        """The hyper-parameters tuned on held-out rows."""
        return [p for p, v in self.hyper.items() if isinstance(v, str) and v == "holdout"]

    @property
    def tunes(self) -> bool:
        """Whether something is tuned on unseen rows (where there are some)."""
        return bool(self.holdout_params) or self.head_mode is not None

    @property
    def calibrates(self) -> bool:
        """Whether intervals are calibrated on unseen rows (where there are some)."""
        return self.interval is not None and self.interval != "gaussian"

    @property
    def auto_head_only(self) -> bool:
        """Whether the only thing to tune on unseen rows is ``calibration="auto"``."""
        return self.head_mode == "auto" and not self.holdout_params and not self.calibrates


@dataclass(frozen=True, eq=False)
class FitData:
    """The validated rows: X as the net takes it (after ``prep``), the net's targets, the
    sample weights (or None), and the fitted steps of a Pipeline before the net."""

    X: object
    y: np.ndarray
    X_val: object = None
    y_val: np.ndarray | None = None
    w: np.ndarray | None = None
    w_val: np.ndarray | None = None
    prep: object = None


@dataclass(frozen=True, eq=False)
class Fit:
    """What fit produced: the fitted state, and what the fitted attributes tell."""

    fitted: FittedLaplace
    subset_of_weights: object  # "auto" resolved
    validation_indices: np.ndarray | None
    validation_source: str | None
    interval: str | None  # "conformal" or "gaussian"; None: nothing calibrated
    # (X_cal, y_cal), the rows that calibrated the interval (net-ready, the net's targets)
    calibration_rows: tuple | None = None
    # (X, y, w), the unseen rows that tuned the hyper-parameters (an ensemble's mixture
    # step tunes on them again: sklaplace.tuning.mixture)
    tuning_rows: tuple | None = None
    # (hyper, mean, var): the calibration rows' predictive moments and the hyper-parameters
    # they were computed at (an ensemble's calibration reuses them while they hold)
    calibration_moments: tuple | None = None


@torch_context
def fit(plan: FitPlan, data: FitData) -> Fit:
    """Fit's steps, in order, once the estimator has validated X and y (the numbers are the
    sections of this module)."""
    # 1. the parameters and the inputs
    approximations.make(plan.subset_of_weights, plan.hessian_structure)  # checked first
    _warn_about_inputs(plan, data)
    # 2. the trained net, and the rows it never trained on
    net, unseen_rows = unseen.net_and_unseen_rows(plan, data)
    # 3. the approximation ("auto" resolved), in the fitted state
    subset, fitted = _approximate(plan, data, net, unseen_rows.curvature_rows)
    # 4. the hyper-parameters, tuned on the unseen rows that calibrate nothing
    tune_rows, calibration = _split_unseen_rows(plan, unseen_rows)
    fitted.hyper = _tune(plan, data, fitted, tune_rows, unseen_rows.curvature_rows)
    # 5. the intervals, calibrated at those hyper-parameters
    interval, fitted.conformal, moments = _calibrate_intervals(plan, fitted, calibration)
    fitted.set_prep(data.prep)  # the fitted state stamped with the steps before the net
    tuned_on = None if tune_rows.X is None else (tune_rows.X, tune_rows.y, tune_rows.w)
    return Fit(
        fitted,
        subset,
        unseen_rows.indices,
        unseen_rows.source,
        interval,
        calibration.rows,
        tuned_on,
        moments,
    )


def seed(random_state) -> int:
    """One seed drawn from ``random_state``: every batch of a call shares its Monte Carlo
    draws."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


# ---------------------------------------------------------------- 1. the inputs
# (2. the net and the unseen rows: sklaplace.fitting.unseen)
def _warn_about_inputs(plan: FitPlan, data: FitData) -> None:
    """Say what fit will not use, or uses in a way one may not expect."""
    if data.X_val is not None and not (plan.tunes or plan.calibrates):
        warn(
            "X_val and y_val were given, but no hyper-parameter is tuned on held-out "
            "rows ('holdout'), so they are not used."
        )
    if data.w is not None and not plan.model.frozen:
        warn(
            "sample_weight weighs the posterior's curvature and the tuning, but the net "
            "is trained without it (skorch's training does not weigh rows). Train the "
            "net with the weights yourself and wrap it: FrozenEstimator(net)."
        )
    if data.w is not None:
        inputs.warn_weight_scale(data.w)
    changes = _skorch.criterion_changes(plan.model.net, plan.likelihood)
    if data.w is not None:  # class weights given back as row weights: the same loss
        changes = [c for c in changes if c[len("criterion__") :] not in _skorch.CLASS_WEIGHTS]
    if changes:
        warn(
            f"The net was trained with {' and '.join(changes)}, which makes its loss "
            f"another than the {type(plan.likelihood).__name__} likelihood that the "
            "Laplace approximation assumes (its curvature, its tuning and its held-out "
            "log-likelihood): the posterior describes the net as if it had been trained "
            "without it. Class weights (criterion__weight, criterion__pos_weight) weigh "
            "each row by its class: pass them per row instead, fit(X, y, "
            "sample_weight=class_weight[y]), and the curvature and the tuning weigh the "
            "rows as the training did. Label smoothing and other losses have no "
            "counterpart here."
        )


# ---------------------------------------------------------------- 3. the approximation
def _approximate(plan: FitPlan, data: FitData, net, rows) -> tuple[object, FittedLaplace]:
    """``(subset of weights resolved, fitted state without hyper-parameters)``: the head
    found and checked, the approximation fitted on ``rows`` of X (see
    :func:`sklaplace.approximations.fit_resolved`)."""
    view, head = _view_and_head(net, plan.likelihood, data.X, plan.batch_size, plan.n_outputs)
    subset, approximation = approximations.fit_resolved(
        plan.subset_of_weights,
        plan.hessian_structure,
        view,
        head,
        plan.likelihood,
        data.X,
        data.y,
        rows,
        data.w,
    )
    fitted = FittedLaplace(net, plan.likelihood, approximation, plan.batch_size)
    fitted.stamp = Stamp(net.module_)
    fitted.int_codes = view.takes_codes
    return subset, fitted


def _has_integers(X) -> bool:
    """Whether X (an array, a sparse matrix or a dict of them) holds integers."""
    arrays = X.values() if isinstance(X, dict) else [X]
    return any(np.dtype(getattr(a, "dtype", np.float64)).kind in "iu" for a in arrays)


def _view_and_head(net, likelihood, X, batch_size, n_outputs) -> tuple[NetView, str]:
    """The view fit runs the net through, and the name of its output layer (checked to
    have ``n_outputs`` units).

    Integer X reaches the net as integers, as skorch passes it (codes for an embedding,
    ``F.one_hot`` or a lookup table), unless the net fails on integers and runs on X cast
    to its floating dtype (a net of ``nn.Linear`` layers given integer features); the
    choice is kept for predictions.
    """
    view = NetView(net, batch_size, int_codes=_has_integers(X) or None)
    try:
        head = approximations.find_head(view, X, likelihood)
    except ValueError as exc:
        if not _has_integers(X):
            raise
        view = NetView(net, batch_size, int_codes=False)
        try:
            head = approximations.find_head(view, X, likelihood)
        except ValueError:
            raise exc from None
    n_out = view.module.get_submodule(head).out_features
    if n_out != n_outputs:
        raise ValueError(
            f"The net's last layer {head!r} has {n_out} output(s), but "
            f"{likelihood.outputs_needed(n_outputs)}. Give the output layer that many "
            "units (for example through a module__ parameter of the net)."
        )
    return view, head


# ---------------------------------------------------------------- 4. the hyper-parameters
@dataclass(frozen=True)
class _Calibration:
    """The rows that calibrate intervals, ``(X_cal, y_cal)``, or None: ``reason`` says
    why; ``too_few``: there were unseen rows, too few to calibrate on."""

    rows: tuple | None
    reason: str | None = None
    too_few: bool = False


def _split_unseen_rows(plan: FitPlan, rows: holdout.TuningRows):
    """``(rows that tune, calibration)``: calibration rows tune nothing (see
    :func:`sklaplace.fitting.holdout.split_calibration`)."""
    if not (plan.calibrates and rows.X is not None):
        return rows, _Calibration(None, rows.reason)
    tune, calibration = holdout.split_calibration(rows, plan.tunes, plan.random_state)
    if calibration is None:
        return tune, _Calibration(None, holdout.too_few_to_calibrate(rows), too_few=True)
    return tune, _Calibration(calibration, rows.reason)


def _tune(plan: FitPlan, data: FitData, fitted, rows, curvature_rows) -> Hyper:
    """The hyper-parameters as numbers: modes resolved on ``rows`` (see
    :mod:`sklaplace.tuning.resolve`), then checked."""
    params = dict(plan.hyper)
    params.update(calibration=plan.head_mode, head=plan.fixed_head)
    params["random_state"] = plan.random_state
    if not plan.likelihood.has_noise:  # the net predicts the noise (or there is none)
        params["sigma_noise"] = 1.0
    weight_decay = None
    if isinstance(params["prior_precision"], str) and params["prior_precision"] == "weight_decay":
        weight_decay = _weight_decay(fitted)
    train = None
    if rows.X is None and plan.tunes:  # no unseen rows: the leave-one-out estimate
        train = holdout.curvature_part(data.X, data.y, data.w, curvature_rows)
    objectives = tuning_objectives(fitted, rows.X, rows.y, weight_decay, train, rows.w)
    hyper = resolve(params, objectives)
    noise = plan.likelihood.noise_variance(hyper.sigma_noise)
    check_numerics(fitted.posterior, hyper, noise)
    return hyper


def _weight_decay(fitted: FittedLaplace) -> np.ndarray:
    """Per block, the coefficient of the prior implied by the training's weight decay."""
    module = fitted.net.module_
    out = []
    for name in fitted.posterior.names:
        params = [
            p for p in module.get_submodule(name).parameters(recurse=False) if p.requires_grad
        ]
        out.append(
            _skorch.weight_decay_coefficient(
                fitted.net, params, name, fitted.likelihood, fitted.n_outputs()
            )
        )
    return np.array(out)


# ---------------------------------------------------------------- 5. the intervals
def _calibrate_intervals(plan: FitPlan, fitted, calibration: _Calibration):
    """``(interval, conformal scores or None, (hyper, mean, var) or None)``: the
    regressor's conformal calibration at the tuned hyper-parameters (and the moments it
    used), or the Gaussian interval and why; ``(None, None, None)`` for an estimator that
    calibrates no interval."""
    if plan.interval is None:
        return None, None, None
    reason = calibration.reason
    if calibration.rows is None:
        if plan.interval == "conformal" and calibration.too_few:
            raise ValueError(f"interval='conformal': {reason}.")
        if plan.interval == "conformal":
            raise ValueError(
                "interval='conformal' needs rows the net was not trained on, and there "
                f"are none: {reason or 'no hyper-parameter asked for them'}. Pass them "
                "with fit(X, y, X_val=..., y_val=...), or use interval='gaussian'."
            )
        if calibration.too_few:
            warn(f"{reason}. predict_interval uses the Gaussian interval (interval_='gaussian').")
        return "gaussian", None, None
    X_cal, y_cal = calibration.rows
    mean, var = prediction.y_moments(
        fitted,
        X_cal,
        fitted.hyper,
        predictive=plan.predictive,
        n_samples=plan.n_samples,
        seed=seed(plan.random_state),
    )
    y_cal = np.asarray(y_cal, dtype=np.float64).reshape(mean.shape)
    scores = ConformalScores(y_cal, mean, np.sqrt(var))
    return "conformal", scores, (fitted.hyper, mean, var)
