"""sklaplace: Laplace approximations for skorch nets, as scikit-learn meta-estimators.

``LaplaceClassifier`` and ``LaplaceRegressor`` wrap a skorch net (unfitted, or fitted and
wrapped in ``sklearn.frozen.FrozenEstimator``), place a Gaussian posterior over its weights
in ``fit`` and expose calibrated ``predict_proba`` and ``predict(X, return_std=True)``.
``LaplaceEnsembleClassifier`` and ``LaplaceEnsembleRegressor`` mix one such posterior per
net of an ensemble. ``set_config``, ``get_config`` and ``config_context`` hold the package's
settings.
"""

from ._estimators import (
    LaplaceClassifier,
    LaplaceEnsembleClassifier,
    LaplaceEnsembleRegressor,
    LaplaceRegressor,
)
from ._runtime.config import config_context, get_config, set_config
from ._runtime.warnings import InconsistentVersionWarning
from .likelihoods import HeteroscedasticGaussianNLL

__all__ = [
    "HeteroscedasticGaussianNLL",
    "InconsistentVersionWarning",
    "LaplaceClassifier",
    "LaplaceEnsembleClassifier",
    "LaplaceEnsembleRegressor",
    "LaplaceRegressor",
    "config_context",
    "get_config",
    "set_config",
]
__version__ = "0.2.0.dev0"
