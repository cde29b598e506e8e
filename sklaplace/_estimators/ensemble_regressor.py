"""LaplaceEnsembleRegressor: a uniform mixture of Laplace regressors (MoLA)."""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from scipy.stats import norm
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils import check_random_state

from .. import mixture
from . import ensemble_conformal
from .ensemble import BaseLaplaceEnsemble
from .ensemble_docs import ENSEMBLE_ATTRIBUTES, ENSEMBLE_FIT_DOC, ENSEMBLE_PARAMS, member_params
from .regressor import LaplaceRegressor, _std_setting

__all__ = ["LaplaceEnsembleRegressor"]

_PARAMS = ENSEMBLE_PARAMS.format(
    single="LaplaceRegressor",
    single_params=member_params(LaplaceRegressor),
)
_ATTRIBUTES = ENSEMBLE_ATTRIBUTES.format(single="LaplaceRegressor")


class LaplaceEnsembleRegressor(RegressorMixin, BaseLaplaceEnsemble):
    __doc__ = f"""A mixture of Laplace approximations over several nets (regression).

    Each member is a :class:`LaplaceRegressor` around its own net, with its own posterior
    and noise; the predictive is the uniform mixture of theirs (Eschenhagen et al.,
    "Mixtures of Laplace Approximations for Improved Post-Hoc Uncertainty in Deep
    Learning", 2021): its mean is the members' average, its variance each member's
    variance (observation noise included) averaged plus the spread of their means.

    Parameters
    ----------{_PARAMS}
    Attributes
    ----------{_ATTRIBUTES}    sigma_noise_ : ndarray of shape (n_members,)
        Each member's observation noise std.
    noise_shift_ : float
        The factor the mixture step put on every member's tuned noise std (1.0: none).
    interval_ : {{"conformal", "gaussian"}}
        What ``predict_interval`` uses: "conformal" when the members shared their
        calibration rows (see ``interval``).

    Notes
    -----
    ``interval`` means what it means for ``LaplaceRegressor``, for the mixture: with
    "conformal" (or "auto" where there are unseen rows) ``predict_interval`` is
    calibrated by split conformal on the rows no member trained or tuned on, with the
    mixture's mean and std; the members must share those rows (``X_val``, the rows
    ``validation_fraction`` holds out, or one ``train_split`` for all nets).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skorch import NeuralNetRegressor
    >>> from sklaplace import LaplaceEnsembleRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(200, 1)).astype("float32")
    >>> y = (np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=200)).astype("float32")
    >>> module = torch.nn.Sequential(
    ...     torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    >>> net = NeuralNetRegressor(module, max_epochs=30, lr=0.05, verbose=0)
    >>> ens = LaplaceEnsembleRegressor.from_net(net, n_members=3, random_state=0).fit(X, y)
    >>> mean, std = ens.predict(X[:3], return_std=True)
    >>> mean.shape, std.shape
    ((3,), (3,))
    """

    _single = LaplaceRegressor
    _keeps_calibration = True
    _parameter_constraints: ClassVar[dict] = {
        **{k: v for k, v in LaplaceRegressor._parameter_constraints.items() if k != "estimator"},
        **BaseLaplaceEnsemble._ensemble_constraints,
    }

    def __init__(
        self,
        estimators,
        *,
        n_members=None,
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
        n_jobs=None,
    ):
        self.estimators = estimators
        self.n_members = n_members
        self.subset_of_weights = subset_of_weights
        self.hessian_structure = hessian_structure
        self.prior_precision = prior_precision
        self.sigma_noise = sigma_noise
        self.temperature = temperature
        self.interval = interval
        self.normalize_y = normalize_y
        self.predictive = predictive
        self.n_samples = n_samples
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.random_state = random_state
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        self._fit_members(
            X, y, sample_weight, X_val=X_val, y_val=y_val, sample_weight_val=sample_weight_val
        )
        self.interval_, self._conformal = ensemble_conformal.calibrate(
            self.estimators_, self.interval, self.predictive, self.n_samples
        )
        self._std_setting_at_fit = _std_setting(self.predictive, self.n_samples)
        return self

    fit.__doc__ = ENSEMBLE_FIT_DOC.format(
        single="LaplaceRegressor",
        y="y : array-like of shape (n_samples,) or (n_samples, n_targets)",
    )

    @property
    def sigma_noise_(self) -> np.ndarray:
        """Each member's observation noise std, shape (n_members,)."""
        return np.array([m.sigma_noise_ for m in self._members()])

    def predict(self, X, return_std=False, return_cov=False):
        """The mixture's mean, optionally with its std or its covariance across rows.

        ``std**2`` is the members' variances (observation noise included) averaged plus
        the variance of their means.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False
        return_cov : bool, default=False
            As for ``LaplaceRegressor.predict``; at most one of the two may be True.

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
        with self._predicting(X) as members:
            if return_cov:
                pairs = [m.predict(X, return_cov=True) for m in members]
                return mixture.joint_moments([p[0] for p in pairs], [p[1] for p in pairs])
            if not return_std:
                return np.mean([np.asarray(m.predict(X), dtype=np.float64) for m in members], 0)
            pairs = [m.predict(X, return_std=True) for m in members]
        mean, var = mixture.moments([p[0] for p in pairs], [p[1] ** 2 for p in pairs])
        return mean, np.sqrt(var)

    def predict_interval(self, X, confidence=0.9):
        """Predictive interval of a new observation at each row, from the mixture.

        With ``interval_ == "conformal"`` it is ``mean +- q * std`` with the mixture's
        mean and std and ``q`` calibrated by split conformal on the rows no member trained
        or tuned on (it covers at least ``confidence`` of new exchangeable rows); with
        "gaussian", the Gaussian interval of the mixture's mean and std.

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
        scores = self._conformal
        if scores is None and self.interval == "conformal":
            raise ValueError(
                "interval='conformal' was set after a fit that calibrated nothing: call fit again."
            )
        if scores is None or self.interval == "gaussian":
            z = norm.ppf(0.5 + confidence / 2)
            return mean - z * std, mean + z * std
        if any(m._hyper() is not m._fitted.hyper for m in self.estimators_):
            raise ValueError(
                "The conformal calibration was computed with the hyper-parameters of fit; a "
                "hyper-parameter set since then changes the stds it normalises. Call fit "
                "again, or set interval='gaussian'."
            )
        if _std_setting(self.predictive, self.n_samples) != self._std_setting_at_fit:
            raise ValueError(
                "The conformal calibration was computed with the stds of fit's predictive; "
                f"predictive={self.predictive!r}, n_samples={self.n_samples!r} gives other "
                "stds. Call fit again, or set interval='gaussian'."
            )
        lower, upper = scores.interval(
            mean.reshape(len(mean), -1), std.reshape(len(std), -1), confidence
        )
        return lower.reshape(mean.shape), upper.reshape(mean.shape)

    def sample_y(self, X, n_samples=1, random_state=0):
        """Joint draws of new observations from the mixture: each draw picks a member
        uniformly, then draws from that member's joint Gaussian (``sample_y`` of
        ``LaplaceRegressor``).

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
        out = None
        with self._predicting(X) as members:
            for member, where in zip(
                members, mixture.draw_members(rng, len(members), n_samples), strict=True
            ):
                draws = member.sample_y(X, len(where), random_state=rng)
                if out is None:
                    out = np.empty((*draws.shape[:-1], n_samples))
                out[..., where] = draws
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
