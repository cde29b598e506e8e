"""LaplaceRegressor: its parameters, validation and docstring over the shared plumbing."""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import scipy.linalg
from scipy.stats import norm
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .. import prediction
from .._runtime.warnings import warn
from ..fitting import inputs, steps
from .base import BaseLaplace
from .docstrings import COMMON_PARAMS, FIT_DOC, HYPER_NOTE

__all__ = ["LaplaceRegressor"]


class LaplaceRegressor(RegressorMixin, BaseLaplace):
    __doc__ = f"""Laplace-approximated Bayesian regressor around a skorch net.

    The predictive mean is the trained net's prediction (the linearised model is exact at
    the trained weights); the predictive standard deviation combines the weight
    uncertainty of the Laplace posterior with the observation noise ``sigma_noise``.

    Parameters
    ----------{COMMON_PARAMS}    sigma_noise : float, "holdout" or "marglik", \
default="holdout"
        Standard deviation of the Gaussian observation noise (same for every output).
        "holdout" maximises the held-out log-likelihood (jointly with the prior precision
        when that is "holdout" too; see ``prior_precision``); "marglik" maximises the
        evidence in ``fit`` (jointly with the prior precision when that is "marglik" too).
        The evidence's sigma follows the training residuals, so it is too small for an
        over-fitted net; the held-out one is not.
        ``sigma_noise="marglik"`` with ``prior_precision="holdout"`` takes sigma from the
        evidence (maximised jointly with the prior) and then tunes the prior on the held-out
        rows at that sigma. Not used for a net trained with
        ``sklaplace.HeteroscedasticGaussianNLL``, which predicts its own noise per row
        (``sigma_noise_`` is then 1.0 and the predictive variance is ``Var[mean] +
        exp(eta + Var[eta] / 2)``, ``eta`` the net's log variance).
    interval : {"auto", "conformal", "gaussian"}, default="auto"
        How ``predict_interval`` builds intervals. "conformal": normalised split conformal
        prediction on rows the net never trained on (the rows "holdout" uses; ``fit`` keeps
        half of them for calibration only): ``mean +- q * std`` with ``q`` the
        finite-sample quantile of ``|y - mean| / std`` on those rows, so that the interval
        covers at least ``confidence`` of new exchangeable rows, keeping Laplace's per-row
        widths; ``fit`` raises if there are no such rows. "gaussian": the Gaussian
        predictive's central interval, ``mean +- z * std`` (no guarantee). "auto":
        conformal when ``fit`` finds unseen rows, else Gaussian (``interval_`` tells).
    normalize_y : bool, default=False
        As in ``GaussianProcessRegressor``: the targets are centred and scaled to unit
        variance (per target, from the y given to ``fit``) for everything ``fit`` does —
        training an unfitted net, the posterior, the tuning — and predictions, stds,
        covariances, intervals and samples are returned in y's units. With
        ``FrozenEstimator(net)`` the net must have been trained on the targets standardised
        the same way. ``sigma_noise_`` and the evidence refer to the standardised targets.
        For other target transforms, see the user guide (a monotone transform maps the
        interval's ends; ``TransformedTargetRegressor`` does not pass ``return_std``).

    Attributes
    ----------
    estimator_ : skorch net
    posterior_ : sklaplace.posterior.Posterior
    subset_of_weights_ : str or list of str
        The weights that carry the posterior ("auto" resolved: "all" or "last_layer").
    prior_precision_ : ndarray of shape (n_layers,)
        The prior precision predictions use (tuned in fit, or the number given).
    sigma_noise_ : float
        The observation noise std predictions use.
    temperature_ : float
        The posterior temperature predictions use.
    log_marginal_likelihood_value_ : float
    validation_indices_ : ndarray or None
        The rows of X, never trained on, that tuned the "holdout" hyper-parameters or
        calibrated the conformal interval (``interval_ == "conformal"``, which with fixed
        hyper-parameters uses them alone); None when ``X_val`` was given or no such rows
        were used.
    validation_source_ : str or None
    interval_ : {"conformal", "gaussian"}
        What ``predict_interval`` uses.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Only when X has feature names (pandas input).

    Notes
    -----
    Shapes follow ``GaussianProcessRegressor`` and the shape of ``y`` at fit: a 1-D ``y``
    gives 1-D means and stds, a 2-D ``y`` of shape (n, K) gives (m, K).
    {HYPER_NOTE}
    Examples
    --------
    >>> import numpy as np, torch
    >>> from skorch import NeuralNetRegressor
    >>> from sklaplace import LaplaceRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(200, 1))
    >>> y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=200)
    >>> module = torch.nn.Sequential(
    ...     torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    >>> net = NeuralNetRegressor(module, max_epochs=50, lr=0.05, verbose=0)
    >>> reg = LaplaceRegressor(net, sigma_noise="marglik", random_state=0).fit(X, y)
    >>> mean, std = reg.predict(X[:3], return_std=True)
    >>> mean.shape, std.shape
    ((3,), (3,))
    """

    _is_classifier = False
    _parameter_constraints: ClassVar[dict] = {
        **BaseLaplace._parameter_constraints,
        "sigma_noise": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"marglik", "holdout"}),
        ],
        "interval": [StrOptions({"auto", "conformal", "gaussian"})],
        "normalize_y": ["boolean"],
    }
    _fit_defined: ClassVar[dict] = {
        **BaseLaplace._fit_defined,
        "normalize_y": "it sets the units of the targets the net and the posterior were fitted in",
    }

    def __init__(
        self,
        estimator,
        *,
        subset_of_weights="auto",
        hessian_structure="kron",
        prior_precision="holdout",
        sigma_noise="holdout",
        temperature=1.0,
        interval="auto",
        normalize_y=False,
        predictive="glm",
        n_samples=100,
        validation_fraction=0.2,
        batch_size=None,
        random_state=None,
    ):
        self.estimator = estimator
        self.subset_of_weights = subset_of_weights
        self.hessian_structure = hessian_structure
        self.prior_precision = prior_precision
        self.sigma_noise = sigma_noise
        self.interval = interval
        self.normalize_y = normalize_y
        self.temperature = temperature
        self.predictive = predictive
        self.n_samples = n_samples
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        likelihood = self._likelihood()
        inputs.check_pair(X_val, y_val, sample_weight_val)
        model = inputs.split_model(self.estimator)
        prep, X, y = inputs.check_fit_X(self, X, y, model, multi_output=True, y_numeric=True)
        w = inputs.check_weights(sample_weight, X)
        self._y_ndim = y.ndim
        y2 = y.reshape(len(y), -1).astype(np.float64)
        shift, scale = np.zeros(y2.shape[1]), np.ones(y2.shape[1])
        if self.normalize_y:  # as GaussianProcessRegressor: zero mean, unit variance
            shift, scale = y2.mean(0), y2.std(0)
            scale[scale == 0] = 1.0
        self._y_shift, self._y_scale = shift, scale
        dtype = self._target_dtype()
        y_net = likelihood.net_targets((y2 - shift) / scale, dtype)
        if X_val is not None:
            X_val = inputs.check_X(self, X_val, reset=False, prep=prep, input_name="X_val")
            y_val = np.asarray(y_val, dtype=np.float64).reshape(inputs.n_rows(X_val), -1)
            if y_val.shape[1] != y2.shape[1]:
                raise ValueError(
                    f"y_val has {y_val.shape[1]} target(s) per row but y has {y2.shape[1]}."
                )
            y_val = likelihood.net_targets((y_val - shift) / scale, dtype)
        w_val = inputs.check_weights(sample_weight_val, X_val)
        plan = self._fit_plan(
            likelihood, likelihood.n_outputs(y2.shape[1]), interval=self.interval
        )
        return self._fit_steps(plan, steps.FitData(X, y_net, X_val, y_val, w, w_val, prep))

    fit.__doc__ = FIT_DOC.format(
        y="y : array-like of shape (n_samples,) or (n_samples, n_targets)"
    )

    @property
    def sigma_noise_(self) -> float:
        """The observation noise std predictions use (given, or tuned in fit)."""
        return self._hyper().sigma_noise

    def _shape(self, arr):
        return arr[:, 0] if self._y_ndim == 1 else arr

    def predict(self, X, return_std=False, return_cov=False):
        """Predictive mean, optionally with its standard deviation or covariance.

        The std and covariance are those of a new observation ``y``: they include the
        observation noise ``sigma_noise`` (``var = Var[f] + sigma_noise^2``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False
        return_cov : bool, default=False
            Covariance across the rows of X (per target). At most one of ``return_std``
            and ``return_cov`` may be True. It holds ``n_samples^2 * n_targets`` float64
            numbers, which bounds the rows: beyond the memory available (or the setting
            ``max_result_bytes`` of :func:`sklaplace.set_config`) it raises
            ``MemoryError`` before any pass over X, with the size it would need.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_targets)
        y_std : ndarray of the same shape, if ``return_std``
        y_cov : ndarray of shape (n_samples, n_samples) or (n_samples, n_samples, n_targets),
            if ``return_cov``
        """
        if return_std and return_cov:
            raise RuntimeError(
                "At most one of return_std or return_cov can be requested, not both."
            )
        if return_cov:
            return self._predict_cov(X)
        hyper = self._hyper()
        X = self._validate_X(X)
        fitted = self._predictor()
        shift, scale = self._y_shift, self._y_scale  # (normalize_y) back to y's units
        mean, var = prediction.y_moments(
            fitted,
            X,
            hyper,
            predictive=self.predictive,
            n_samples=self.n_samples,
            seed=self._seed(),
        )
        mean = mean * scale + shift
        if return_std:
            std = np.sqrt(var) * scale
            if not np.isfinite(std).all():
                warn(
                    f"The predictive std is infinite on {int((~np.isfinite(std)).sum())} "
                    "row(s): the net's predicted noise, exp(eta + Var[eta] / 2) for a net "
                    "trained with HeteroscedasticGaussianNLL, overflows because the posterior "
                    "of its log variance is very wide there (prior precision "
                    f"{float(np.min(self.prior_precision_)):.3g}). Pass a larger "
                    "prior_precision, or check those rows: they may be far from the data."
                )
            return self._shape(mean), self._shape(std)
        return self._shape(mean)

    def _predict_cov(self, X, draws=False):
        """``predict(X, return_cov=True)``; ``draws``: for ``sample_y`` (the size check
        counts its eigenvectors too)."""
        hyper = self._hyper()
        X = self._validate_X(X)
        mean, cov = prediction.y_joint_moments(
            self._predictor(),
            X,
            hyper,
            predictive=self.predictive,
            n_samples=self.n_samples,
            seed=self._seed(),
            draws=draws,
        )
        shift, scale = self._y_shift, self._y_scale  # (normalize_y) back to y's units
        mean = mean * scale + shift
        if np.any(scale != 1.0):
            cov *= np.asarray(scale, dtype=np.float64) ** 2  # in place: cov is ours
        return self._shape(mean), (cov[:, :, 0] if self._y_ndim == 1 else cov)

    def predict_interval(self, X, confidence=0.9):
        """Predictive interval of a new observation at each row.

        With ``interval_ == "conformal"`` it covers at least ``confidence`` of new rows
        exchangeable with the calibration rows (see ``interval``); with "gaussian" it is the
        Gaussian predictive's central interval.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        confidence : float in (0, 1), default=0.9

        Returns
        -------
        lower, upper : ndarrays shaped like ``predict(X)``
        """
        if not (isinstance(confidence, Real) and 0 < confidence < 1):
            raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
        mean, std = self.predict(X, return_std=True)
        scores = self._fitted.conformal
        if scores is None and self.interval == "conformal":
            raise ValueError(
                "interval='conformal' was set after a fit that calibrated nothing (no unseen "
                "rows, or interval='gaussian' at fit): call fit again."
            )
        if scores is None or self.interval == "gaussian":
            z = norm.ppf(0.5 + confidence / 2)
            return mean - z * std, mean + z * std
        if self._hyper() is not self._fitted.hyper:
            raise ValueError(
                "The conformal calibration was computed with the hyper-parameters of fit; a "
                "hyper-parameter set since then changes the stds it normalises. Call fit "
                "again, or set interval='gaussian'."
            )
        at_fit = {p: self._fit_params.get(p, getattr(self, p)) for p in _STD_SETTINGS}
        if _std_setting(self.predictive, self.n_samples) != _std_setting(**at_fit):
            raise ValueError(
                f"The conformal calibration was computed with the stds of fit's predictive "
                f"(predictive={at_fit['predictive']!r}, n_samples={at_fit['n_samples']!r}); "
                f"predictive={self.predictive!r}, n_samples={self.n_samples!r} gives other "
                "stds, and the calibrated quantile would not hold for them. Call fit again, "
                "or set interval='gaussian'."
            )
        lower, upper = scores.interval(
            mean.reshape(len(mean), -1), std.reshape(len(std), -1), confidence
        )
        return self._shape(lower), self._shape(upper)

    def sample_y(self, X, n_samples=1, random_state=0):
        """Draw joint samples of new observations at the rows of X.

        Samples come from ``N(mean, cov)`` with ``mean, cov = predict(X, return_cov=True)``
        (observation noise included), as in ``GaussianProcessRegressor.sample_y``. Memory:
        that covariance and one ``(n_samples_X, n_samples_X)`` matrix, refused with
        ``MemoryError`` (before any pass over X) when they cannot fit.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        n_samples : int, default=1
        random_state : int, RandomState instance or None, default=0

        Returns
        -------
        ndarray of shape (n_samples_X, n_samples) or (n_samples_X, n_targets, n_samples)
        """
        if not isinstance(n_samples, Integral) or n_samples < 0:
            raise ValueError(f"n_samples must be a non-negative int, got {n_samples!r}.")
        rng = check_random_state(random_state)
        mean, cov = self._predict_cov(X, draws=True)
        if self._y_ndim == 1:
            return _gaussian_draws(rng, mean, cov, n_samples)
        draws = [
            _gaussian_draws(rng, mean[:, k], cov[:, :, k], n_samples) for k in range(mean.shape[1])
        ]
        return np.stack(draws, axis=1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


_STD_SETTINGS = ("predictive", "n_samples")


def _std_setting(predictive, n_samples):
    """What the regressor's predictive stds depend on besides the hyper-parameters (the
    number of draws only for the "nn" predictive)."""
    return (predictive, n_samples) if predictive == "nn" else (predictive,)


def _gaussian_draws(rng, mean, cov, n_samples):
    """(m, n_samples) draws of N(mean, cov) through the symmetric root of cov.

    ``cov`` is overwritten (it is ours): the eigendecomposition works in place of its
    (symmetric, so transposed: Fortran-ordered) storage and the eigenvectors are scaled in
    place, so memory is ``cov`` and one (m, m) matrix.
    """
    lam, vec = scipy.linalg.eigh(cov.T, overwrite_a=True, check_finite=False)
    vec *= np.sqrt(np.clip(lam, 0.0, None))
    return mean[:, None] + vec @ rng.standard_normal((len(mean), n_samples))
