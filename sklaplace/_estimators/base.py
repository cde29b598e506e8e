"""The scikit-learn plumbing both Laplace estimators share (no math here).

``fit`` validates (in each estimator: its targets differ) and hands the rest to
:func:`sklaplace.fitting.steps.fit` with a plan of what its parameters ask for; it sets the
fitted attributes from what that returns. Predictions read the fitted state
(:class:`sklaplace.fitting.state.FittedLaplace`) and the hyper-parameters it holds; a
numeric hyper-parameter changed with ``set_params`` after ``fit`` is read at prediction
time, and the fitted attributes (``prior_precision_``, ``temperature_``, ...) always show
the values predictions use.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted

from .._runtime import skorch as _skorch
from .._runtime.passes import torch_context
from .._runtime.warnings import InconsistentVersionWarning, warn
from ..fitting import inputs, steps
from ..fitting.state import FittedLaplace
from ..fitting.steps import HYPER_PARAMS
from ..tuning.objectives import evidence
from ..tuning.recalibration import Head
from ..tuning.resolve import PRIOR_MODES, Hyper, check_numerics, prior_array

__all__ = ["BaseLaplace", "docs_url"]

# The published documentation (Read the Docs builds docs/ with docs/conf.py, which takes
# its canonical URL from here): "latest" follows the main branch, a release has its own.
DOCS_ROOT = "https://sklaplace.readthedocs.io/en/{version}/"

# Parameters that define the curvature: changing them after fit needs a new fit.
_STRUCTURE_PARAMS = ("subset_of_weights", "hessian_structure")
# Parameters that predictions read, kept as fit saw them (what fit calibrated with them
# must be computed again when they change: the regressor's conformal scores).
_PREDICT_SETTINGS = ("predictive", "n_samples")


class BaseLaplace(BaseEstimator):
    """Shared plumbing of ``LaplaceClassifier`` and ``LaplaceRegressor``."""

    _parameter_constraints: ClassVar[dict] = {
        "estimator": [object],
        "subset_of_weights": [StrOptions({"auto", "last_layer", "all"}), list, tuple],
        "hessian_structure": [StrOptions({"diag", "kron", "full"})],
        "prior_precision": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions(set(PRIOR_MODES)),
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
        return inputs.split_model(self.estimator).net

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

    def _validate_X(self, X):
        """X at prediction time, through the fitted steps before the net."""
        return inputs.check_X(self, X, reset=False, prep=self._fitted_state().prep)

    # ---------------------------------------------------------------- fit
    def _fit_plan(self, likelihood, n_outputs: int, **differs) -> steps.FitPlan:
        """What the parameters ask of fit; ``differs``: what only one estimator has (the
        classifier's head and classes, the regressor's interval)."""
        return steps.FitPlan(
            estimator_name=type(self).__name__,
            model=inputs.split_model(self.estimator),
            likelihood=likelihood,
            n_outputs=n_outputs,
            subset_of_weights=self.subset_of_weights,
            hessian_structure=self.hessian_structure,
            hyper={p: getattr(self, p, 1.0) for p in HYPER_PARAMS},
            validation_fraction=self.validation_fraction,
            batch_size=self.batch_size,
            random_state=self.random_state,
            predictive=self.predictive,
            n_samples=self.n_samples,
            net_seed=getattr(self, "_net_seed", None),  # set by an ensemble on its members
            **differs,
        )

    def _fit_steps(self, plan: steps.FitPlan, data: steps.FitData):
        """Run fit's steps (:func:`sklaplace.fitting.steps.fit`) and set the fitted
        attributes from what they produced."""
        result = steps.fit(plan, data)
        net = result.fitted.net
        self._fitted = result.fitted
        self._fit_params = {
            p: getattr(self, p)
            for p in (*HYPER_PARAMS, *self._fit_defined, *_PREDICT_SETTINGS)
            if hasattr(self, p)
        }
        self.subset_of_weights_ = result.subset_of_weights
        if result.interval is not None:
            self.interval_ = result.interval
        prep = data.prep
        self.estimator_ = net if prep is None else Pipeline([*prep.steps, (self._net_step(), net)])
        self.validation_indices_ = result.validation_indices
        self.validation_source_ = result.validation_source
        if getattr(self, "_keep_calibration_rows", False):  # an ensemble's member
            self._calibration_rows = result.calibration_rows
            self._calibration_moments = result.calibration_moments
        if getattr(self, "_keep_tuning_rows", False):  # an ensemble's member
            self._tuning_rows = result.tuning_rows
        return self

    def _net_step(self) -> str:
        inner = inputs.split_model(self.estimator)
        est = self.estimator.estimator if inner.frozen else self.estimator
        return est.steps[-1][0]

    # ---------------------------------------------------------------- prediction time
    def _hyper(self) -> Hyper:
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
        for p in HYPER_PARAMS:
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
        hyper = Hyper(
            prior_array(values["prior_precision"], names)
            if "prior_precision" in values
            else fit_hyper.prior_precision,
            _positive(values, "sigma_noise", fit_hyper.sigma_noise),
            _positive(values, "temperature", fit_hyper.temperature),
            head,
        )
        noise = fitted.likelihood.noise_variance(hyper.sigma_noise)
        check_numerics(fitted.posterior, hyper, noise)
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
        return steps.seed(self.random_state)

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
            prior = prior_array(prior_precision, list(fitted.posterior.names))
        sigma = hyper.sigma_noise
        if sigma_noise is not None:
            if (
                not isinstance(sigma_noise, Real)
                or not np.isfinite(sigma_noise)
                or sigma_noise <= 0
            ):
                raise ValueError(f"sigma_noise must be a positive float, got {sigma_noise!r}.")
            sigma = float(sigma_noise)
        check = Hyper(prior, sigma, hyper.temperature, hyper.head)
        check_numerics(fitted.posterior, check, fitted.likelihood.noise_variance(sigma))
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
