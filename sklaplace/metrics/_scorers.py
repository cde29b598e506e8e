"""The scorers: ``scorer(estimator, X, y, sample_weight=None) -> float``, greater is better.

The calibration error of ``predict_proba``, the Gaussian NLL of
``predict(X, return_std=True)`` and the coverage and width of ``predict_interval``, as
scorers for scikit-learn's model selection tools.
"""

from numbers import Real

from ._calibration import _check_n_bins, expected_calibration_error
from ._regression import gaussian_nll, interval_coverage, interval_width
from ._scorer_base import _scorer_function, _UncertaintyScorer
from ._wrappers import _predict_bounds, _predict_mean_std


def _score_calibration_error(estimator, X, y, sample_weight, n_bins, caller):
    if not hasattr(estimator, "predict_proba"):
        raise TypeError(
            f"{caller} needs an estimator with predict_proba, such as a Laplace classifier "
            f"or a Pipeline ending in one; {type(estimator).__name__} has no predict_proba "
            "method."
        )
    y_prob = estimator.predict_proba(X)
    labels = getattr(estimator, "classes_", None)
    return -expected_calibration_error(
        y, y_prob, n_bins=n_bins, labels=labels, sample_weight=sample_weight
    )


@_scorer_function
def neg_expected_calibration_error(estimator, X, y, *, sample_weight=None, n_bins=15):
    """Scorer: minus the top-label ECE of ``estimator.predict_proba(X)``.

    Usable as ``scoring=neg_expected_calibration_error`` in scikit-learn's model selection
    tools (greater is better), with 15 bins; for other bins use
    :func:`make_calibration_error_scorer`. The columns of ``predict_proba`` are matched to
    ``estimator.classes_``, so it also works on cross-validation folds that miss a class,
    and on a :class:`~sklearn.pipeline.Pipeline` ending in a classifier. Prefer
    ``scoring="neg_log_loss"`` to *select* a model; see the module docstring. With metadata
    routing enabled, ``neg_expected_calibration_error.set_score_request(sample_weight=True)``
    returns a copy that receives the ``sample_weight`` passed to a search's ``fit``.

    Parameters
    ----------
    estimator : fitted classifier
        Must have ``predict_proba`` and ``classes_``.
    X : array-like of shape (n_samples, n_features)
        Input data.
    y : array-like of shape (n_samples,)
        True class labels.
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the samples (see :func:`expected_calibration_error`); scikit-learn's
        model selection tools pass on those given to ``fit``.
    n_bins : int, default=15
        Number of equal-width confidence bins. For other values prefer
        ``make_calibration_error_scorer(n_bins=10)`` to
        ``functools.partial(neg_expected_calibration_error, n_bins=10)``: a partial
        object does not take part in metadata routing.

    Returns
    -------
    score : float
        ``-expected_calibration_error(y, estimator.predict_proba(X), labels=classes_)``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklaplace.metrics import neg_expected_calibration_error
    >>> X, y = load_iris(return_X_y=True)
    >>> search = GridSearchCV(LogisticRegression(max_iter=1000), {"C": [0.1, 1.0]},
    ...                       scoring=neg_expected_calibration_error, cv=3).fit(X, y)
    >>> bool(search.best_score_ <= 0.0)
    True
    """
    return _score_calibration_error(
        estimator, X, y, sample_weight, n_bins, "neg_expected_calibration_error"
    )


class _CalibrationErrorScorer(_UncertaintyScorer):
    """Scorer made by :func:`make_calibration_error_scorer` (a class so that it pickles)."""

    def __init__(self, n_bins):
        self.n_bins = n_bins

    def _score(self, estimator, X, y, sample_weight):
        return _score_calibration_error(estimator, X, y, sample_weight, self.n_bins, repr(self))

    def __repr__(self):
        return f"make_calibration_error_scorer(n_bins={self.n_bins!r})"


def make_calibration_error_scorer(n_bins=15):
    """Make a scorer: minus the top-label ECE of ``predict_proba`` with ``n_bins`` bins.

    Parameters
    ----------
    n_bins : int, default=15
        Number of equal-width confidence bins (see :func:`expected_calibration_error`).

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y, sample_weight=None) -> float``, greater is better,
        usable as ``scoring=`` in scikit-learn's model selection tools, like
        :func:`neg_expected_calibration_error` (which has 15 bins), also with metadata
        routing (``scorer.set_score_request(sample_weight=True)``).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklaplace.metrics import make_calibration_error_scorer
    >>> X, y = load_iris(return_X_y=True)
    >>> scorer = make_calibration_error_scorer(n_bins=5)
    >>> scorer
    make_calibration_error_scorer(n_bins=5)
    >>> model = LogisticRegression(max_iter=1000).fit(X, y)
    >>> bool(-0.1 < scorer(model, X, y) <= 0.0)
    True
    """
    return _CalibrationErrorScorer(_check_n_bins(n_bins))


@_scorer_function
def neg_gaussian_nll(estimator, X, y, *, sample_weight=None):
    """Scorer: minus the Gaussian NLL of ``predict(X, return_std=True)``.

    Usable as ``scoring=neg_gaussian_nll`` in scikit-learn's model selection tools
    (greater is better). This is the score to tune a Laplace regressor's prior precision
    (or any other setting of its uncertainty) with; R^2 cannot tell the settings apart.
    The estimator may be a :class:`~sklearn.pipeline.Pipeline` ending in the regressor
    (X goes through the steps before it) or a
    :class:`~sklearn.compose.TransformedTargetRegressor` with an affine target transform
    (``StandardScaler`` and the like: the means and stds are mapped back to the units of
    y; a nonlinear transform raises, since the predictive of y is then not Gaussian).

    Parameters
    ----------
    estimator : fitted regressor
        Its ``predict(X, return_std=True)`` must return ``(mean, std)``, with shapes
        (n_samples,) or (n_samples, n_targets) like
        :class:`~sklearn.gaussian_process.GaussianProcessRegressor`; or a wrapper of such
        a regressor, as above. Anything else raises a ``TypeError``.
    X : array-like of shape (n_samples, n_features)
        Input data.
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
        Observed targets.
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the samples (see :func:`gaussian_nll`); scikit-learn's model
        selection tools pass on those given to ``fit`` (with metadata routing enabled, to
        ``neg_gaussian_nll.set_score_request(sample_weight=True)``, a copy that requests
        them; see the module docstring).

    Returns
    -------
    score : float
        ``-gaussian_nll(y, mean, std, sample_weight=sample_weight)``, averaged over
        targets.

    Examples
    --------
    A regressor with ``predict(X, return_std=True)``, alone or at the end of a Pipeline:

    >>> import numpy as np
    >>> from sklearn.linear_model import BayesianRidge
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklaplace.metrics import neg_gaussian_nll
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2))
    >>> y = X @ [1.0, -2.0] + rng.normal(scale=0.5, size=200)
    >>> model = BayesianRidge().fit(X[:150], y[:150])
    >>> round(neg_gaussian_nll(model, X[150:], y[150:]), 1)
    -0.6
    >>> pipe = make_pipeline(StandardScaler(), BayesianRidge()).fit(X[:150], y[:150])
    >>> round(neg_gaussian_nll(pipe, X[150:], y[150:]), 1)
    -0.6
    """
    y_mean, y_std = _predict_mean_std(estimator, X, "neg_gaussian_nll")
    return -gaussian_nll(y, y_mean, y_std, sample_weight=sample_weight)


_INTERVAL_KINDS = ("coverage", "neg_width", "neg_coverage_error")


class _IntervalScorer(_UncertaintyScorer):
    """Scorer built by :func:`make_interval_scorer` (a class so that it pickles)."""

    def __init__(self, confidence, kind):
        self.confidence = confidence
        self.kind = kind

    def _score(self, estimator, X, y, sample_weight):
        lower, upper = _predict_bounds(estimator, X, self.confidence, repr(self))
        if self.kind == "neg_width":
            return -interval_width(lower, upper, sample_weight=sample_weight)
        coverage = interval_coverage(y, lower, upper, sample_weight=sample_weight)
        if self.kind == "coverage":
            return coverage
        return -abs(coverage - self.confidence)

    def __repr__(self):
        return f"make_interval_scorer(confidence={self.confidence!r}, kind={self.kind!r})"


def make_interval_scorer(confidence=0.9, kind="coverage"):
    """Make a scorer from ``estimator.predict_interval(X, confidence=confidence)``.

    Parameters
    ----------
    confidence : float, default=0.9
        Nominal confidence level of the intervals, in (0, 1).
    kind : {"coverage", "neg_width", "neg_coverage_error"}, default="coverage"
        What the scorer returns:

        - ``"coverage"``: :func:`interval_coverage`. Useful to report; do not maximise
          it, since wider intervals always cover more.
        - ``"neg_width"``: minus :func:`interval_width`. Report it next to the coverage.
        - ``"neg_coverage_error"``: ``-|coverage - confidence|``; 0 is best. A single
          number for how well the nominal level is met.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y, sample_weight=None) -> float``, greater is better,
        usable as ``scoring=`` in scikit-learn's model selection tools, which pass
        ``sample_weight`` on like for :func:`neg_gaussian_nll`. The estimator's
        ``predict_interval(X, confidence=...)`` must return ``(lower, upper)`` arrays;
        the estimator may also be a :class:`~sklearn.pipeline.Pipeline` ending in such a
        regressor, or a :class:`~sklearn.compose.TransformedTargetRegressor` around one
        whose target transform is known to be increasing (the scalers,
        ``PowerTransformer``, ``QuantileTransformer``, or ``inverse_func=np.exp`` and
        similar numpy functions): the bounds are mapped back to the units of y. Anything
        else raises a ``TypeError`` (no ``predict_interval``) or ``ValueError``.

    Examples
    --------
    >>> from sklaplace.metrics import make_interval_scorer
    >>> make_interval_scorer(0.95, kind="neg_width")
    make_interval_scorer(confidence=0.95, kind='neg_width')

    Several interval scores at once, e.g. with
    ``cross_validate(model, X, y, scoring=scoring)``:

    >>> scoring = {kind: make_interval_scorer(0.9, kind=kind)
    ...            for kind in ("coverage", "neg_width")}
    """
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, Real)
        or not 0.0 < confidence < 1.0
    ):
        raise ValueError(
            f"confidence must be a number strictly between 0 and 1, got {confidence!r}. "
            "For 90% intervals pass confidence=0.9 (not 90)."
        )
    if kind not in _INTERVAL_KINDS:
        raise ValueError(f"kind must be one of {_INTERVAL_KINDS}, got {kind!r}.")
    return _IntervalScorer(float(confidence), kind)
