"""sklaplace: Laplace approximations for skorch nets, as scikit-learn meta-estimators.

``LaplaceClassifier`` and ``LaplaceRegressor`` wrap a skorch net (unfitted, or fitted and
wrapped in ``sklearn.frozen.FrozenEstimator``), place a Gaussian posterior over its weights
in ``fit`` and expose calibrated ``predict_proba`` and ``predict(X, return_std=True)``.
"""

from ._estimators import LaplaceClassifier, LaplaceRegressor

__all__ = ["LaplaceClassifier", "LaplaceRegressor"]
__version__ = "0.1.0"
