"""LaplaceEnsembleClassifier: a uniform mixture of Laplace classifiers (MoLA)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context

from .. import mixture
from .classifier import LaplaceClassifier
from .ensemble import BaseLaplaceEnsemble
from .ensemble_docs import ENSEMBLE_ATTRIBUTES, ENSEMBLE_FIT_DOC, ENSEMBLE_PARAMS, member_params

__all__ = ["LaplaceEnsembleClassifier"]

_PARAMS = ENSEMBLE_PARAMS.format(
    single="LaplaceClassifier",
    single_params=member_params(LaplaceClassifier),
)
_ATTRIBUTES = ENSEMBLE_ATTRIBUTES.format(single="LaplaceClassifier")


class LaplaceEnsembleClassifier(ClassifierMixin, BaseLaplaceEnsemble):
    __doc__ = f"""A mixture of Laplace approximations over several nets (classification).

    Each member is a :class:`LaplaceClassifier` around its own net, with its own posterior;
    ``predict_proba`` is the uniform mixture of their predictives, the average of the
    members' probabilities (Eschenhagen et al., "Mixtures of Laplace Approximations for
    Improved Post-Hoc Uncertainty in Deep Learning", 2021).

    Parameters
    ----------{_PARAMS}
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,){_ATTRIBUTES}
    Examples
    --------
    Three members from one net, each trained from its own initialisation
    (``n_members`` a parameter, ``estimators__lr`` the net's learning rate for all):

    >>> import torch
    >>> from skorch import NeuralNetClassifier
    >>> from sklearn.datasets import load_iris
    >>> from sklaplace import LaplaceEnsembleClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> X = X.astype("float32")
    >>> module = torch.nn.Sequential(
    ...     torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> net = NeuralNetClassifier(module, criterion=torch.nn.CrossEntropyLoss,
    ...                           max_epochs=20, lr=0.1, verbose=0)
    >>> ens = LaplaceEnsembleClassifier(
    ...     net, n_members=3, prior_precision=1.0, random_state=0).fit(X, y)
    >>> ens.predict_proba(X[:2]).shape
    (2, 3)
    >>> list(ens.named_estimators_)
    ['member0', 'member1', 'member2']
    """

    _single = LaplaceClassifier
    _parameter_constraints: ClassVar[dict] = {
        **{k: v for k, v in LaplaceClassifier._parameter_constraints.items() if k != "estimator"},
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
        temperature=1.0,
        calibration="auto",
        logit_temperature="deprecated",
        link_approx="probit",
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
        self.temperature = temperature
        self.calibration = calibration
        self.logit_temperature = logit_temperature
        self.link_approx = link_approx
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
        classes = [m.classes_ for m in self.estimators_]
        if any(not np.array_equal(c, classes[0]) for c in classes[1:]):
            raise ValueError(
                "the members' classes differ "
                f"({[c.tolist()[:10] for c in classes]}); their nets must predict the "
                "same classes."
            )
        self.classes_ = classes[0]
        return self

    fit.__doc__ = ENSEMBLE_FIT_DOC.format(
        single="LaplaceClassifier",
        y="y : array-like of shape (n_samples,)\n            Class labels.",
    )

    def predict_log_proba(self, X):
        """Logarithm of the mixture's class probabilities, computed in log space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        with self._predicting(X) as members:
            return mixture.log_proba([m.predict_log_proba(X) for m in members])

    def predict_proba(self, X):
        """The mixture's class probabilities: the average of the members' predictive
        probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        return np.exp(self.predict_log_proba(X))

    def predict(self, X):
        """The class the mixture picks (argmax, or the binary net's threshold).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        log_proba = self.predict_log_proba(X)
        decide = self.estimators_[0]._fitted.likelihood.decide
        return self.classes_[decide(log_proba)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            tags.classifier_tags.multi_class = all(
                _multi_class(est) for _, est in self._check_estimators()
            )
        except (TypeError, ValueError):
            pass
        return tags


def _multi_class(est) -> bool:
    return LaplaceClassifier(est)._likelihood().multi_class
