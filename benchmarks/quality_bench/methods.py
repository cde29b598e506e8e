"""The methods compared, each built on one trained net (or five) and rows it never saw.

Every method becomes a *predictor*: classification predictors have ``log_proba(X)``
(float64), regression predictors ``mean_std(X)`` and ``interval(X, confidence)`` (in the
standardised units of the training targets). ``info`` holds what the report shows of
their tuned values.

* MAP: the net itself (regression: with a constant std, the root mean square of its
  residuals on the unseen rows).
* TS: ``CalibratedClassifierCV(FrozenEstimator(net), method="temperature")`` fitted on the
  unseen rows (scikit-learn turns skorch's float32 probabilities into logits with
  ``log(p + eps)``); TS-logits: the same temperature fitted on the float64 logits.
* ensemble: a deep ensemble of independently initialised nets (Lakshminarayanan et al.
  2017): the mean of the members' probabilities; for regression the mixture's mean and
  variance, the members' spread plus a noise variance fitted on the unseen rows.
* Laplace candidates (``CLF_LAPLACE``, ``REG_LAPLACE``): a variant is one line there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from sklaplace import LaplaceClassifier, LaplaceRegressor

from .nets import log_softmax, make_classifier, make_regressor, outputs64

# Settings every Laplace candidate states explicitly (so a change of the package's
# defaults cannot change what a row measures), then the candidates: name -> parameters.
CLF_BASE = dict(
    hessian_structure="kron",
    prior_precision="holdout",
    link_approx="probit",
)
CLF_LAPLACE = {
    "LA-LL": dict(subset_of_weights="last_layer", calibration=None),  # the default up to 0.1
    "LA-LL+T": dict(subset_of_weights="last_layer", calibration="temperature"),
    "LA-all": dict(subset_of_weights="all", calibration=None),  # the defaults of 0.2
    "LA-all+T": dict(subset_of_weights="all", calibration="temperature"),
    # the defaults since 0.3 ("auto" subset on these nets, the head chosen by cross-fitting)
    "LA-all+auto": dict(subset_of_weights="all", calibration="auto"),
}
REG_BASE = dict(
    hessian_structure="kron", prior_precision="holdout", sigma_noise="holdout", interval="gaussian"
)
REG_LAPLACE = {
    "LA-LL": dict(subset_of_weights="last_layer"),
    "LA-all": dict(subset_of_weights="all"),
    "LA-LL-conformal": dict(subset_of_weights="last_layer", interval="conformal"),
    "LA-all-conformal": dict(subset_of_weights="all", interval="conformal"),
}
# The regressor's defaults since 0.2 are LA-all-conformal where the workflow has unseen
# rows (interval="auto") and LA-all where it has none (workflow d).
# The single-net default MoLA (package defaults) is compared with, per kind and workflow
SMOKE_DEFAULTS = {
    "classification": dict.fromkeys("abcd", "LA-all+auto"),
    "regression": {"a": "LA-all-conformal", "b": "LA-all-conformal", "c": "LA-all-conformal",
                   "d": "LA-all"},
}  # fmt: skip
Z90 = norm.ppf(0.95)


# ---------------------------------------------------------------- classification
class MAPClassifier:
    def __init__(self, net):
        self.net, self.info = net, {}

    def log_proba(self, X):
        return log_softmax(outputs64(self.net, X))


class SklearnTemperature:
    """Temperature scaling as scikit-learn users run it, on the unseen rows."""

    def __init__(self, net, X_u, y_u):
        # a frozen estimator is not refitted per fold: the folds only partition the rows
        self.model = CalibratedClassifierCV(FrozenEstimator(net), method="temperature", cv=2)
        self.model.fit(X_u, y_u)
        self.info = {
            "logit_T": 1.0 / float(self.model.calibrated_classifiers_[0].calibrators[0].beta_)
        }

    def log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(np.asarray(self.model.predict_proba(X), dtype=np.float64))


class LogitTemperature:
    """Temperature scaling on the float64 logits: ``softmax(z / T)``, T by held-out NLL."""

    def __init__(self, net, X_u, y_u):
        self.net = net
        z, rows = outputs64(net, X_u), np.arange(len(y_u))

        def nll(log_t):
            return -log_softmax(z / np.exp(log_t))[rows, y_u].mean()

        self.T = float(np.exp(minimize_scalar(nll, bounds=(-5, 5), method="bounded").x))
        self.info = {"logit_T": self.T}

    def log_proba(self, X):
        return log_softmax(outputs64(self.net, X) / self.T)


class EnsembleClassifier:
    def __init__(self, members):
        self.members, self.info = members, {}

    def log_proba(self, X):
        lp = np.stack([log_softmax(outputs64(m, X)) for m in self.members])
        return logsumexp(lp, axis=0) - np.log(len(self.members))


# ---------------------------------------------------------------- regression
def _gaussian_interval(mean, std, confidence):
    z = norm.ppf(0.5 + confidence / 2)
    return mean - z * std, mean + z * std


class MAPRegressor:
    """The net's prediction with a constant std: the RMS of its residuals on (X_s, y_s)."""

    def __init__(self, net, X_s, y_s):
        self.net = net
        self.sigma = float(np.sqrt(np.mean((outputs64(net, X_s)[:, 0] - y_s) ** 2)))
        self.info = {"sigma": self.sigma}

    def mean_std(self, X):
        mean = outputs64(self.net, X)[:, 0]
        return mean, np.full_like(mean, self.sigma)

    def interval(self, X, confidence):
        return _gaussian_interval(*self.mean_std(X), confidence)


class SplitConformalRegressor:
    """Plain split conformal prediction on the net (constant width): the interval is
    ``mean +- q`` with ``q`` the ``ceil((n + 1) c) / n`` empirical quantile of ``|y - mean|``
    on the n unseen rows (infinite when n is too small for ``c``). It gives intervals, not a
    density: its std (for the NLL) is MAP's, the RMS of the residuals on the same rows."""

    def __init__(self, net, X_u, y_u):
        self.net = net
        self.scores = np.sort(np.abs(outputs64(net, X_u)[:, 0] - y_u))
        self.sigma = float(np.sqrt(np.mean(self.scores**2)))
        self.info = {"sigma": self.sigma}

    def _q(self, confidence):
        n = len(self.scores)
        k = int(np.ceil((n + 1) * confidence))
        return float(self.scores[k - 1]) if k <= n else np.inf

    def mean_std(self, X):
        mean = outputs64(self.net, X)[:, 0]
        return mean, np.full_like(mean, self.sigma)

    def interval(self, X, confidence):
        mean = outputs64(self.net, X)[:, 0]
        q = self._q(confidence)
        return mean - q, mean + q


class EnsembleRegressor:
    """Mixture mean and variance: the members' spread plus sigma^2 fitted on (X_u, y_u)."""

    def __init__(self, members, X_u, y_u):
        self.members = members
        mean, spread = self._moments(X_u)

        def nll(log_s):
            var = spread + np.exp(2 * log_s)
            return np.mean(0.5 * np.log(var) + 0.5 * (y_u - mean) ** 2 / var)

        rms = float(np.sqrt(np.mean((mean - y_u) ** 2)))
        bounds = (np.log(rms) - 7, np.log(rms) + 2)
        self.sigma = float(np.exp(minimize_scalar(nll, bounds=bounds, method="bounded").x))
        self.info = {"sigma": self.sigma}

    def _moments(self, X):
        f = np.stack([outputs64(m, X)[:, 0] for m in self.members])
        return f.mean(0), f.var(0)

    def mean_std(self, X):
        mean, spread = self._moments(X)
        return mean, np.sqrt(spread + self.sigma**2)

    def interval(self, X, confidence):
        return _gaussian_interval(*self.mean_std(X), confidence)


# ---------------------------------------------------------------- Laplace
class LaplacePredictor:
    """A fitted ``LaplaceClassifier`` or ``LaplaceRegressor`` through the public API."""

    def __init__(self, model):
        self.model = model
        self.info = {
            "prior": float(np.ravel(model.prior_precision_)[0]),
            "source": model.validation_source_,
        }
        if hasattr(model, "calibration_scale_"):
            self.info["head"] = str(model.calibration_)
            self.info["logit_T"] = 1.0 / float(model.calibration_scale_)
        if hasattr(model, "sigma_noise_"):
            self.info["sigma"] = float(model.sigma_noise_)

    def log_proba(self, X):
        return self.model.predict_log_proba(X)

    def mean_std(self, X):
        mean, std = self.model.predict(X, return_std=True)
        return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)

    def interval(self, X, confidence):
        return self.model.predict_interval(X, confidence)


# ---------------------------------------------------------------- the two kinds
# the rows of quality_bench.mola (issue 21) in the tables: MoLA, and in (a) the deep
# ensemble of the nets its fit trained
MOLA_METHODS = ("MoLA", "ensemble (MoLA's nets)")


@dataclass
class Kind:
    """What differs between classification and regression, for the workflows."""

    name: str
    make_net: object  # (task, epochs, own_split) -> unfitted skorch net
    laplace_cls: type
    base: dict
    candidates: dict
    no_rows_candidates: tuple  # the candidates of workflow (d)
    baselines: object  # (net, members, X_u, y_u) -> {name: () -> predictor}
    no_rows_baselines: object  # (net, task) -> {name: () -> predictor}
    methods: list = field(default_factory=list)

    def laplace(self, estimator, name: str, seed: int):
        params = {**self.base, **self.candidates[name]}
        return self.laplace_cls(estimator, **params, random_state=seed)


def _clf_baselines(net, members, X_u, y_u):
    return {
        "MAP": lambda: MAPClassifier(net),
        "TS": lambda: SklearnTemperature(net, X_u, y_u),
        "TS-logits": lambda: LogitTemperature(net, X_u, y_u),
        "ensemble": lambda: EnsembleClassifier(members),
    }


def _reg_baselines(net, members, X_u, y_u):
    return {
        "MAP": lambda: MAPRegressor(net, X_u, y_u),
        "split-conformal": lambda: SplitConformalRegressor(net, X_u, y_u),
        "ensemble": lambda: EnsembleRegressor(members, X_u, y_u),
    }


CLASSIFICATION = Kind(
    "classification",
    make_classifier,
    LaplaceClassifier,
    CLF_BASE,
    CLF_LAPLACE,
    tuple(CLF_LAPLACE),
    _clf_baselines,
    lambda net, task: {"MAP": lambda: MAPClassifier(net)},
    ["MAP", "TS", "TS-logits", "ensemble", *CLF_LAPLACE, *MOLA_METHODS],
)
REGRESSION = Kind(
    "regression",
    make_regressor,
    LaplaceRegressor,
    REG_BASE,
    REG_LAPLACE,
    ("LA-LL", "LA-all"),  # no unseen rows: nothing to calibrate a conformal interval on
    _reg_baselines,
    # without unseen rows, MAP's std can only come from the training residuals
    lambda net, task: {"MAP": lambda: MAPRegressor(net, task.X_train, task.y_train)},
    ["MAP", "split-conformal", "ensemble", *REG_LAPLACE, *MOLA_METHODS],
)
