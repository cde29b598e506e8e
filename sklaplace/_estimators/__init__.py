"""The scikit-learn face: the two estimators' parameters, validation and docstrings.

``base.py`` holds what they share (the plan handed to fit's steps in
:mod:`sklaplace.fitting.steps`, hyper-parameters at prediction time, the fitted
attributes); ``docstrings.py`` the parameter documentation they share.
"""

from .classifier import LaplaceClassifier
from .ensemble_classifier import LaplaceEnsembleClassifier
from .ensemble_regressor import LaplaceEnsembleRegressor
from .regressor import LaplaceRegressor

__all__ = [
    "LaplaceClassifier",
    "LaplaceEnsembleClassifier",
    "LaplaceEnsembleRegressor",
    "LaplaceRegressor",
]
