"""LaplaceClassifier: its parameters, validation and docstring over the shared plumbing."""

from __future__ import annotations

from numbers import Real
from typing import ClassVar

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets

from .. import prediction
from .._runtime.warnings import warn
from ..fitting import inputs, steps
from ..tuning.recalibration import Head
from ..tuning.resolve import LOGIT_TEMPERATURE_RANGE
from .base import BaseLaplace
from .docstrings import COMMON_PARAMS, FIT_DOC, HYPER_NOTE

__all__ = ["LaplaceClassifier"]


class LaplaceClassifier(ClassifierMixin, BaseLaplace):
    __doc__ = f"""Laplace-approximated Bayesian classifier around a skorch net.

    ``fit`` computes a Gaussian posterior over the net's weights, centred on the trained
    weights, and ``predict_proba`` averages the softmax over it with the linearised (GLM)
    predictive: less over-confident probabilities, most of all away from the training
    data.

    Parameters
    ----------{COMMON_PARAMS}    calibration : {{"auto", "temperature", "bias_temperature"}} \
or None, default="auto"
        A recalibration head inside the posterior: an affine map of the logits applied to
        their Gaussian exactly, before the link, ``a f + b ~ N(a mean + b, a^2 cov)``
        (a different quantity from ``temperature``, which scales the posterior's
        curvature). "temperature": ``a = 1 / T`` (temperature scaling); "bias_temperature":
        ``a`` and a bias per logit ``b`` (bias-corrected temperature scaling; on a
        ``NeuralNetBinaryClassifier``'s one logit, Platt scaling). Both are tuned jointly
        with the prior precision on the rows the net never trained on (the rows
        ``prior_precision="holdout"`` uses), with a weak Gaussian prior on ``log a`` and
        ``b`` that keeps a few rows, or rows the net gets all right, from driving the head
        to extreme values. "auto": no head, "temperature" or "bias_temperature", whichever
        fits the unseen rows best when cross-fitted on them (tuned on 4 of 5 folds, scored
        on the fifth; the simplest within one standard error of the best), then refitted on
        all of them; ``calibration_`` tells which. Without unseen rows the head is the
        identity (the predictions are then the net's own). See the user guide.
    logit_temperature : float in [1e-6, 1e6] or "holdout"
        Deprecated (a :class:`FutureWarning` is raised when it is set): use ``calibration``.
        A number ``T`` is a fixed temperature head, ``a = 1 / T``, and takes the place of
        ``calibration``; "holdout" is ``calibration="temperature"``.
    link_approx : {{"probit", "mc"}}, default="probit"
        How the Gaussian over logits becomes probabilities: the probit approximation
        (deterministic) or an average over ``n_samples`` draws.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    estimator_ : skorch net
        The trained net used (the frozen one itself when given FrozenEstimator).
    posterior_ : sklaplace.posterior.Posterior
    subset_of_weights_ : str or list of str
        The weights that carry the posterior ("auto" resolved: "all" or "last_layer").
    prior_precision_ : ndarray of shape (n_layers,)
        The prior precision predictions use (tuned in fit, or the number given).
    temperature_ : float
        The posterior temperature predictions use.
    calibration_ : {"temperature", "bias_temperature"} or None
        The recalibration head predictions use (what "auto" chose; None: the identity).
    calibration_scale_ : float
        Its scale ``a`` (``1 / T``; 1.0 without a head).
    calibration_bias_ : ndarray of shape (n_logits,)
        Its bias per logit (one per class; one value, on the logit of class 1, for a
        ``NeuralNetBinaryClassifier``); zeros without biases.
    log_marginal_likelihood_value_ : float
        The log evidence at those values.
    validation_indices_ : ndarray or None
        The rows of X that tuned the "holdout" hyper-parameters (None when ``X_val`` was
        given, or when no hyper-parameter is tuned on held-out rows).
    validation_source_ : str or None
        Where the tuning rows came from: "X_val", "train_split" (the net's own validation
        rows), "validation_fraction" (held out of the net's training by ``fit``) or None.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Only when X has feature names (pandas input).

    Notes
    -----
    Supported nets: ``NeuralNetClassifier`` with ``CrossEntropyLoss`` on logits, or with
    skorch's default ``NLLLoss`` and a module ending in ``nn.Softmax``: then the logits
    are the last Linear layer's outputs (the softmax's input), which is what the posterior
    is placed on. ``NeuralNetBinaryClassifier`` with ``BCEWithLogitsLoss``; ``predict``
    then uses the net's ``threshold``.
    {HYPER_NOTE}
    Examples
    --------
    >>> import torch
    >>> from skorch import NeuralNetClassifier
    >>> from sklearn.datasets import load_iris
    >>> from sklaplace import LaplaceClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> module = torch.nn.Sequential(
    ...     torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> net = NeuralNetClassifier(module, criterion=torch.nn.CrossEntropyLoss,
    ...                           max_epochs=30, lr=0.1, verbose=0)
    >>> clf = LaplaceClassifier(net, prior_precision=1.0, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    _is_classifier = True
    _parameter_constraints: ClassVar[dict] = {
        **BaseLaplace._parameter_constraints,
        "calibration": [StrOptions({"auto", "temperature", "bias_temperature"}), None],
        "logit_temperature": [
            Interval(Real, *LOGIT_TEMPERATURE_RANGE, closed="both"),
            StrOptions({"holdout", "deprecated"}),
        ],
        "link_approx": [StrOptions({"probit", "mc"})],
    }
    _fit_defined: ClassVar[dict] = {
        **BaseLaplace._fit_defined,
        "calibration": "it is a tuning mode, resolved in fit (the head is tuned there)",
    }
    _predict_params: ClassVar[tuple] = (*BaseLaplace._predict_params, "link_approx")

    def __init__(
        self,
        estimator,
        *,
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
    ):
        self.estimator = estimator
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

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        likelihood = self._likelihood()
        inputs.check_pair(X_val, y_val, sample_weight_val)
        self._warn_deprecated()
        model = inputs.split_model(self.estimator)
        prep, X, y = inputs.check_fit_X(self, X, y, model)
        w = inputs.check_weights(sample_weight, X)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        classes = encoder.classes_
        if len(classes) < 2:
            raise ValueError(
                f"y contains only one class ({classes.tolist()[0]!r}); a classifier needs "
                "samples of at least 2 classes."
            )
        classes = likelihood.align_classes(self._net(), classes)
        self.classes_ = classes
        dtype = self._target_dtype()
        y_net = likelihood.net_targets(np.searchsorted(classes, y), dtype)
        if X_val is not None:
            X_val = inputs.check_X(self, X_val, reset=False, prep=prep, input_name="X_val")
            y_val = np.asarray(y_val).reshape(-1)
            unknown = np.setdiff1d(y_val, classes)
            if len(unknown):
                raise ValueError(
                    f"y_val has labels that y does not have: {unknown.tolist()[:10]}; the "
                    f"classes (from y) are {classes.tolist()[:10]}."
                )
            if len(y_val) != inputs.n_rows(X_val):
                raise ValueError(
                    f"X_val has {inputs.n_rows(X_val)} rows but y_val has {len(y_val)}; they "
                    "must match."
                )
            y_val = likelihood.net_targets(np.searchsorted(classes, y_val), dtype)
        w_val = inputs.check_weights(sample_weight_val, X_val)
        head_mode, fixed_head = self._head()
        plan = self._fit_plan(
            likelihood,
            likelihood.n_outputs(len(classes)),
            head_mode=head_mode,
            fixed_head=fixed_head,
            classes=classes,
        )
        return self._fit_steps(plan, steps.FitData(X, y_net, X_val, y_val, w, w_val, prep))

    fit.__doc__ = FIT_DOC.format(
        y="y : array-like of shape (n_samples,)\n            Class labels."
    )

    def _head(self) -> tuple[str | None, Head | None]:
        """``(calibration mode, fixed head)`` of the recalibration head, the deprecated
        ``logit_temperature`` in ``calibration``'s terms."""
        t = self.logit_temperature
        if isinstance(t, str) and t == "deprecated":
            return self.calibration, None
        if isinstance(t, str):  # "holdout"
            return "temperature", None
        return None, Head(1.0 / float(t), None, "temperature")

    def _warn_deprecated(self) -> None:
        t = self.logit_temperature
        if isinstance(t, str) and t == "deprecated":
            return
        instead = (
            "calibration='temperature'"
            if isinstance(t, str)
            else "calibration='temperature' (tuned on the unseen rows)"
        )
        warn(
            f"logit_temperature={t!r} is deprecated and will be removed in the next release: "
            f"use {instead}. For this release it still works, and takes the place of "
            f"calibration={self.calibration!r}.",
            FutureWarning,
        )

    @property
    def calibration_(self) -> str | None:
        """The recalibration head predictions use (None: the identity)."""
        head = self._hyper().head
        return None if head is None else head.kind

    @property
    def calibration_scale_(self) -> float:
        """The head's scale ``a`` (``1 / T``)."""
        head = self._hyper().head
        return 1.0 if head is None else head.scale

    @property
    def calibration_bias_(self) -> np.ndarray:
        """The head's bias per logit (zeros without biases)."""
        head = self._hyper().head
        if head is None or head.bias is None:
            return np.zeros(self._fitted.n_outputs())
        return head.bias.copy()

    @property
    def logit_temperature_(self) -> float:
        """Deprecated: ``1 / calibration_scale_``."""
        warn(
            "logit_temperature_ is deprecated and will be removed in the next release: use "
            "1 / calibration_scale_.",
            FutureWarning,
        )
        return 1.0 / self.calibration_scale_

    def predict_log_proba(self, X):
        """Logarithm of the posterior predictive class probabilities, computed in log space
        (a probability too small for float64 keeps its finite logarithm).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        hyper = self._hyper()
        X = self._validate_X(X)
        return prediction.log_proba(
            self._predictor(),
            X,
            hyper,
            predictive=self.predictive,
            link_approx=self.link_approx,
            n_samples=self.n_samples,
            seed=self._seed(),
        )

    def predict_proba(self, X):
        """Posterior predictive class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        return np.exp(self.predict_log_proba(X))

    def predict(self, X):
        """The class the posterior predictive picks (argmax, or the binary net's threshold).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        log_proba = self.predict_log_proba(X)
        return self.classes_[self._fitted.likelihood.decide(log_proba)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # a NeuralNetBinaryClassifier has a single logit: two classes only
        try:
            tags.classifier_tags.multi_class = self._likelihood().multi_class
        except TypeError:
            pass
        return tags
