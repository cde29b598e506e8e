"""The scikit-learn plumbing both Laplace estimators share (no math here).

``fit`` validates, decides which rows tune (:mod:`sklaplace.fitting.holdout`), builds the fitted
state (:class:`sklaplace.fitting.state.FittedLaplace`) and resolves the hyper-parameters in it
(:mod:`sklaplace.tuning.resolve`). Predictions read the fitted state and the hyper-parameters it
holds; a numeric hyper-parameter changed with ``set_params`` after ``fit`` is read at
prediction time, and the fitted attributes (``prior_precision_``, ``temperature_``, ...)
always show the values predictions use.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted

from .. import approximations
from .._runtime import skorch as _skorch
from .._runtime.passes import torch_context
from .._runtime.warnings import InconsistentVersionWarning, warn
from ..fitting import holdout as _holdout
from ..fitting import inputs as _inputs
from ..fitting.state import FittedLaplace
from ..tuning import resolve as _hyper
from ..tuning.objectives import evidence
from ..tuning.objectives import objectives as tuning_objectives
from ..tuning.recalibration import Head

__all__ = ["BaseLaplace", "docs_url"]

# The published documentation (Read the Docs builds docs/ with docs/conf.py, which takes
# its canonical URL from here): "latest" follows the main branch, a release has its own.
DOCS_ROOT = "https://sklaplace.readthedocs.io/en/{version}/"

# Parameters that define the curvature: changing them after fit needs a new fit.
_STRUCTURE_PARAMS = ("subset_of_weights", "hessian_structure")
# Parameters that predictions read, kept as fit saw them (what fit calibrated with them
# must be computed again when they change: the regressor's conformal scores).
_PREDICT_SETTINGS = ("predictive", "n_samples")
# Hyper-parameters: numbers read at prediction time, or modes resolved in fit.
_HYPER_PARAMS = ("prior_precision", "sigma_noise", "temperature", "logit_temperature")


class BaseLaplace(BaseEstimator):
    """Shared plumbing of ``LaplaceClassifier`` and ``LaplaceRegressor``."""

    _parameter_constraints: ClassVar[dict] = {
        "estimator": [object],
        "subset_of_weights": [StrOptions({"auto", "last_layer", "all"}), list, tuple],
        "hessian_structure": [StrOptions({"diag", "kron", "full"})],
        "prior_precision": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions(set(_hyper.PRIOR_MODES)),
            "array-like",
            dict,
        ],
        "temperature": [Interval(Real, 0, None, closed="neither"), StrOptions({"holdout"})],
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "predictive": [StrOptions({"glm", "nn"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    }
    # the parameters predictions read (validated again at each prediction)
    _predict_params: ClassVar[tuple] = ("temperature", "n_samples", "predictive", "batch_size")
    # the link of the HTML repr: the estimator's entry on the API page (docs/api.rst)
    _doc_link_module = "sklaplace"

    @property
    def _doc_link_template(self) -> str:
        from .. import __version__

        return docs_url(__version__) + "api.html#{estimator_module}.{estimator_name}"

    # parameters that define what fit computed, and why (changing them needs a new fit)
    _fit_defined: ClassVar[dict] = dict.fromkeys(_STRUCTURE_PARAMS, "it defines the curvature")

    # ---------------------------------------------------------------- the net
    def _net(self):
        """The skorch net inside the wrapped model (FrozenEstimator, Pipeline's last step)."""
        return _inputs.split_model(self.estimator).net

    def _likelihood(self):
        """The net's likelihood; a TypeError naming the right estimator if it is not ours."""
        likelihood = _skorch.likelihood_of(self._net())
        if likelihood.is_classifier != self._is_classifier:
            right = "LaplaceClassifier" if likelihood.is_classifier else "LaplaceRegressor"
            raise TypeError(
                f"{type(self).__name__} needs a net for "
                f"{'classification' if self._is_classifier else 'regression'}, got a "
                f"{type(self._net()).__name__}; use {right}."
            )
        return likelihood

    def _target_dtype(self):
        """The numpy dtype of the net's parameters (float32 for a net not yet built)."""
        net = self._net()
        if not getattr(net, "initialized_", False):
            return np.float32
        return _skorch.numpy_dtype(_skorch.net_dtype(net))

    def _validate_X(self, X, reset: bool = False, input_name: str = "X"):
        """X at prediction time (or X_val at fit), through the fitted steps before the net."""
        prep = self._fitted.prep if "_fitted" in self.__dict__ else self._fit_prep
        return _inputs.check_X(self, X, reset=reset, prep=prep, input_name=input_name)

    # ---------------------------------------------------------------- fit
    def _calibrates(self) -> bool:
        """Whether fit calibrates something on unseen rows besides the hyper-parameters."""
        return False

    def _calibration_scores(self, fitted, calibration, reason, too_few=False):
        """What fit calibrates on ``(X_cal, y_cal)`` (None: no rows, ``reason`` says why;
        ``too_few``: there were unseen rows, too few to calibrate) once the
        hyper-parameters are set; kept in the fitted state."""
        return None

    def _holdout_params(self) -> list[str]:
        """The hyper-parameters tuned on held-out rows."""
        return [p for p in _HYPER_PARAMS if _mode(getattr(self, p, None)) == "holdout"]

    def _auto_head_only(self) -> bool:
        """Whether the only thing to tune on unseen rows is ``calibration="auto"``."""
        return (
            self._head_params()[0] == "auto"
            and not self._holdout_params()
            and not self._calibrates()
        )

    def _head_params(self) -> tuple[str | None, object]:
        """``(calibration mode, fixed head)`` of the recalibration head (classifiers)."""
        return None, None

    @torch_context
    def _fit(self, X, y, n_outputs, likelihood, X_val, y_val, prep=None, w=None, w_val=None):
        """Everything after validating X and y (X as the net takes it, after ``prep``);
        ``w`` and ``w_val`` are the sample weights of X and X_val (or None)."""
        approximations.make(self.subset_of_weights, self.hessian_structure)  # checked first
        head_mode, fixed_head = self._head_params()
        tunes = bool(self._holdout_params()) or head_mode is not None
        calibrates = self._calibrates()
        needs = tunes or calibrates
        if X_val is not None and not needs:
            warn(
                "X_val and y_val were given, but no hyper-parameter is tuned on held-out "
                "rows ('holdout'), so they are not used."
            )
        if w is not None and not _inputs.split_model(self.estimator).frozen:
            warn(
                "sample_weight weighs the posterior's curvature and the tuning, but the net "
                "is trained without it (skorch's training does not weigh rows). Train the "
                "net with the weights yourself and wrap it: FrozenEstimator(net)."
            )
        if w is not None:
            _warn_weight_scale(w)
        net, tuning = self._net_and_tuning_rows(
            X, y, X_val, y_val, needs, likelihood, n_outputs, w, w_val
        )
        args = (X, y, tuning.curvature_rows, self.batch_size, n_outputs)
        self.subset_of_weights_, fitted = approximations.fit_resolved(
            self.subset_of_weights,
            self.hessian_structure,
            net.module_,
            n_outputs,
            lambda approx: FittedLaplace.fit(net, likelihood, approx, *args, sample_weight=w),
        )
        tune, calibration, reason, too_few = tuning, None, tuning.reason, False
        if calibrates and tuning.X is not None:
            tune, calibration = _holdout.split_calibration(tuning, tunes, self.random_state)
            if calibration is None:
                reason, too_few = _holdout.too_few_to_calibrate(tuning), True
        params = {p: getattr(self, p, 1.0) for p in _HYPER_PARAMS}
        params.update(calibration=head_mode, head=fixed_head, random_state=self.random_state)
        if not likelihood.has_noise:  # the net predicts the noise (or there is none)
            params["sigma_noise"] = 1.0
        weight_decay = None
        if _mode(params["prior_precision"]) == "weight_decay":
            weight_decay = self._weight_decay(fitted)
        train = None
        if tuning.X is None and tunes:  # no unseen rows: the leave-one-out estimate
            train = _holdout.curvature_part(X, y, w, tuning.curvature_rows)
        objectives = tuning_objectives(fitted, tune.X, tune.y, weight_decay, train, tune.w)
        fitted.hyper = _hyper.resolve(params, objectives)
        _hyper.check_numerics(
            fitted.posterior, fitted.hyper, likelihood.noise_variance(fitted.hyper.sigma_noise)
        )
        fitted.conformal = self._calibration_scores(fitted, calibration, reason, too_few=too_few)
        fitted.set_prep(prep)
        self._fitted = fitted
        self._fit_params = {
            p: getattr(self, p)
            for p in (*_HYPER_PARAMS, *self._fit_defined, *_PREDICT_SETTINGS)
            if hasattr(self, p)
        }
        self.estimator_ = net if prep is None else Pipeline([*prep.steps, (self._net_step(), net)])
        self.validation_indices_ = tuning.indices
        self.validation_source_ = tuning.source
        return self

    def _net_step(self) -> str:
        inner = _inputs.split_model(self.estimator)
        est = self.estimator.estimator if inner.frozen else self.estimator
        return est.steps[-1][0]

    def _net_and_tuning_rows(
        self, X, y, X_val, y_val, needs, likelihood, n_outputs, w=None, w_val=None
    ):
        """The trained net and the rows that tune (see :mod:`sklaplace.fitting.holdout`)."""
        model = _inputs.split_model(self.estimator)
        est = model.net
        given = X_val is not None
        if model.frozen:
            net = est
            _skorch.check_fitted_net(net)
            if given or not needs:
                source = "X_val" if given else None
                return net, _holdout.TuningRows(X=X_val, y=y_val, w=w_val, source=source)
            try:
                valid, reason = _holdout.recover_split(net, X, y)
            except IndexError as exc:  # torch's "Target 2 is out of bounds." from the loss
                if "out of bounds" not in str(exc):
                    raise
                raise ValueError(self._missing_outputs(net, X, y, exc)) from exc
            if valid is not None:
                return net, _holdout.from_indices(X, y, valid, "train_split", self.random_state, w)
            if self._holdout_params() or self._head_params()[0] in _hyper.CALIBRATION_MODES[:-1]:
                # (a calibration alone, or calibration="auto", falls back without a word)
                self._warn_no_rows(reason, likelihood)
            return net, _holdout.TuningRows(reason=reason)
        if getattr(est, "initialized_", False) and len(getattr(est, "history_", [])):
            warn(
                f"The {type(est).__name__} given to {type(self).__name__} is already fitted; "
                "fit clones it and trains the clone from scratch. To keep the trained net, "
                f"wrap the fitted model: {type(self).__name__}(FrozenEstimator(model)) (the "
                "net, or the Pipeline that ends in it)."
            )
        hold_out = needs and not given
        if hold_out and not est.train_split and self._auto_head_only():
            # calibration="auto" uses unseen rows where there are some; it does not take
            # rows out of the net's training for itself (the net's own split holds them out)
            hold_out = False
        net, valid, source = _holdout.train_net(
            est,
            X,
            y,
            hold_out=hold_out,
            fraction=self.validation_fraction,
            stratify=likelihood.is_classifier,
            random_state=self.random_state,
            n_outputs=n_outputs,
        )
        if given:
            return net, _holdout.TuningRows(X=X_val, y=y_val, w=w_val, source="X_val")
        if valid is None:
            return net, _holdout.TuningRows()
        return net, _holdout.from_indices(X, y, valid, source, self.random_state, w)

    def _missing_outputs(self, net, X, y, exc) -> str:
        """The message for targets the frozen net has no output for (classes)."""
        n_out = _holdout.n_net_outputs(net, X)
        codes = np.unique(np.asarray(y))
        missing = codes[codes >= n_out].astype(np.int64)
        classes = getattr(self, "classes_", None)
        labels = (classes[missing] if classes is not None else missing).tolist()
        n = len(classes) if classes is not None else int(codes.max()) + 1
        return (
            f"y has labels the net has no output for: {labels[:10]} ({exc}). The net was "
            f"trained with fewer classes: it has {n_out} output(s), and y has {n} classes. "
            "Fit on rows whose labels the net was trained with, or train the net with one "
            "output per class (for example through a module__ parameter of the net)."
        )

    def _warn_no_rows(self, reason: str, likelihood) -> None:
        tuned = [p for p in self._holdout_params() if p != "sigma_noise" or likelihood.has_noise]
        modes = [f"{p}='holdout'" for p in tuned if p != "logit_temperature"]
        head = self._head_params()[0]
        if head in _hyper.CALIBRATION_MODES[:-1]:
            modes.append(f"calibration={head!r}")
        if not modes:  # sigma_noise alone, for a net that predicts its noise: nothing to tune
            return
        modes = ", ".join(modes)
        warn(
            f"No rows the net has not seen, so {modes} cannot be tuned: {reason}. "
            f"{likelihood.without_heldout} Pass rows the net was not trained on with "
            "fit(X, y, X_val=..., y_val=...), or train the net with a train_split (skorch's "
            "default ValidSplit) and fit on the rows it was trained on.",
        )

    def _weight_decay(self, fitted: FittedLaplace) -> np.ndarray:
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

    # ---------------------------------------------------------------- prediction time
    def _hyper(self) -> _hyper.Hyper:
        """The hyper-parameters predictions use: fit's, or numbers set after fit."""
        check_is_fitted(self)
        fitted = self._fitted
        for p, why in self._fit_defined.items():
            at_fit = self._fit_params.get(p, getattr(self, p))
            if not _same(getattr(self, p), at_fit):
                raise ValueError(
                    f"{p} was changed from {at_fit!r} to {getattr(self, p)!r} after fit; "
                    f"{why}, so call fit again."
                )
        constraints = {p: self._parameter_constraints[p] for p in self._predict_params}
        validate_parameter_constraints(
            constraints, {p: getattr(self, p) for p in constraints}, type(self).__name__
        )
        names = list(fitted.posterior.names)
        fit_hyper = fitted.hyper
        values = {}
        for p in _HYPER_PARAMS:
            if not hasattr(self, p):
                continue
            value, at_fit = getattr(self, p), self._fit_params[p]
            if _same(value, at_fit):
                continue
            if isinstance(value, str):
                raise ValueError(
                    f"{p}={value!r} is a tuning mode, and modes are resolved in fit (fit used "
                    f"{p}={at_fit!r}): call fit again. A number can be set after fit."
                )
            values[p] = value
        if not values:
            return fit_hyper
        head = fit_hyper.head
        if "logit_temperature" in values:  # deprecated: a fixed temperature head
            head = Head(1.0 / _positive(values, "logit_temperature", 1.0), None, "temperature")
        hyper = _hyper.Hyper(
            _hyper.prior_array(values["prior_precision"], names)
            if "prior_precision" in values
            else fit_hyper.prior_precision,
            _positive(values, "sigma_noise", fit_hyper.sigma_noise),
            _positive(values, "temperature", fit_hyper.temperature),
            head,
        )
        noise = fitted.likelihood.noise_variance(hyper.sigma_noise)
        _hyper.check_numerics(fitted.posterior, hyper, noise)
        return hyper

    def _predictor(self) -> FittedLaplace:
        """The fitted state, running batches of the current ``batch_size`` (a parameter
        predictions read)."""
        fitted = self._fitted_state()
        if fitted.batch_size == self.batch_size:
            return fitted
        return fitted.with_batch_size(self.batch_size)

    def _seed(self) -> int:
        """One seed per prediction call: every batch shares the same Monte Carlo draws."""
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    # ---------------------------------------------------------------- fitted attributes
    @property
    def posterior_(self):
        """The Laplace posterior (``sklaplace.posterior.Posterior``)."""
        return self._fitted_state().posterior

    @property
    def prior_precision_(self) -> np.ndarray:
        """The prior precision predictions use, one per layer of ``posterior_.names``."""
        return self._hyper().prior_precision

    @property
    def temperature_(self) -> float:
        """The posterior temperature predictions use (given, or tuned in fit)."""
        return self._hyper().temperature

    @property
    def n_train_(self) -> int:
        """The number of rows the curvature was computed from."""
        return self._fitted_state().approximation.n_rows

    @property
    def train_loss_(self) -> float:
        """The summed training loss at the trained weights, over those rows."""
        return self._fitted_state().approximation.loss

    @property
    def log_marginal_likelihood_value_(self) -> float:
        """The log evidence at the hyper-parameters predictions use."""
        return self.log_marginal_likelihood()

    def _fitted_state(self) -> FittedLaplace:
        fitted = self.__dict__.get("_fitted")
        if fitted is None:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )
        return fitted

    @torch_context
    def log_marginal_likelihood(self, prior_precision=None, sigma_noise=None):
        """Laplace approximation of the log evidence ``log p(D | prior_precision, sigma)``.

        Computed from the stored eigendecomposition: no pass over the data.

        Parameters
        ----------
        prior_precision : float, array-like of shape (n_layers,) or dict, default=None
            Defaults to ``prior_precision_``.
        sigma_noise : float, default=None
            Observation noise std (regression only). Defaults to ``sigma_noise_``.

        Returns
        -------
        float
        """
        hyper = self._hyper()
        fitted = self._fitted
        prior = hyper.prior_precision
        if prior_precision is not None:
            prior = _hyper.prior_array(prior_precision, list(fitted.posterior.names))
        sigma = hyper.sigma_noise
        if sigma_noise is not None:
            if (
                not isinstance(sigma_noise, Real)
                or not np.isfinite(sigma_noise)
                or sigma_noise <= 0
            ):
                raise ValueError(f"sigma_noise must be a positive float, got {sigma_noise!r}.")
            sigma = float(sigma_noise)
        check = _hyper.Hyper(prior, sigma, hyper.temperature, hyper.head)
        _hyper.check_numerics(fitted.posterior, check, fitted.likelihood.noise_variance(sigma))
        with torch.no_grad():
            return float(evidence(fitted, prior, sigma, hyper.temperature))

    # ---------------------------------------------------------------- pickling
    def __getstate__(self):
        """The state to pickle, with the version of sklaplace that wrote it."""
        from .. import __version__

        return dict(super().__getstate__(), _sklaplace_version=__version__)

    def __setstate__(self, state):
        """Warns (``InconsistentVersionWarning``) when another version wrote the pickle."""
        from .. import __version__

        state = dict(state)
        version = state.pop("_sklaplace_version", "pre-0.2")
        if version != __version__:
            warn(
                InconsistentVersionWarning(
                    estimator_name=type(self).__name__,
                    current_version=__version__,
                    original_version=version,
                )
            )
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True  # scipy sparse X reaches the net as skorch takes it
        tags.non_deterministic = self.random_state is None
        return tags


def docs_url(version: str) -> str:
    """The root of the published documentation of ``version`` ("latest" for a development
    version).

    Examples
    --------
    >>> docs_url("0.2.0")
    'https://sklaplace.readthedocs.io/en/0.2.0/'
    >>> docs_url("0.3.0.dev0")
    'https://sklaplace.readthedocs.io/en/latest/'
    """
    dev = "dev" in version or "+" in version
    return DOCS_ROOT.format(version="latest" if dev else version)


# The mean sample weight beyond which (or below its inverse) fit says what the weights do
# to the posterior: its variances scale as 1 / mean weight, so its stds by more than 2.
WEIGHT_SCALE = 4.0


def _warn_weight_scale(w: np.ndarray) -> None:
    """Say what weights far from mean 1 do: the curvature is their weighted sum, so the
    posterior is that of ``sum(w)`` rows."""
    n, total = len(w), float(np.sum(w))
    mean = total / n
    if 1 / WEIGHT_SCALE <= mean <= WEIGHT_SCALE or total == 0:
        return
    factor, way = (mean, "narrower") if mean > 1 else (1 / mean, "wider")
    warn(
        f"sample_weight sums to {total:.3g} over {n} rows (mean {mean:.3g}): the posterior "
        "counts a row of weight w as w rows, so its curvature (the data's weight against "
        f"the prior) scales with the sum of the weights, as if there were {total:.3g} rows "
        f"instead of {n}; its variances are then about {factor:.3g} times {way} than with "
        "weights of mean 1 (at the prior precision divided by the mean weight), which a "
        "prior precision alone cannot undo. If the weights "
        "only balance classes or rows, normalise them to mean 1: sample_weight / "
        "sample_weight.mean()."
    )


def _mode(value) -> str | None:
    return value if isinstance(value, str) else None


def _same(value, at_fit) -> bool:
    """Whether a parameter still holds what fit saw (numbers, strings, arrays, dicts)."""
    if value is at_fit:
        return True
    if isinstance(value, str) or isinstance(at_fit, str):
        return isinstance(value, str) and isinstance(at_fit, str) and value == at_fit
    try:
        return bool(
            np.array_equal(np.asarray(value, dtype=object), np.asarray(at_fit, dtype=object))
        )
    except (TypeError, ValueError):
        return value == at_fit


def _positive(values: dict, name: str, default: float) -> float:
    if name not in values:
        return default
    value = values[name]
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not (value > 0 and np.isfinite(value))
    ):
        raise ValueError(f"{name} must be a positive float or 'holdout', got {value!r}.")
    return float(value)
