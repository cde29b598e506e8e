"""Metrics and scorers for predictive uncertainty.

scikit-learn already covers the proper scoring rules for classifiers
(:func:`sklearn.metrics.log_loss` and, for several classes too,
:func:`sklearn.metrics.brier_score_loss` with ``scale_by_half=False``). This module adds
what it lacks for judging the *uncertainty* of a model: the top-label calibration error of
a classifier, the Gaussian negative log predictive density of a regressor that reports a
standard deviation, and the coverage and width of prediction intervals. The math is plain
numpy.

Which score to use for what
---------------------------
Regressors
    The predictive mean of a Laplace regressor is the network's own prediction, so the
    regressor's default ``score`` (R^2) and ``neg_mean_squared_error`` do not depend on the
    prior precision or any other setting of the approximation: tuning them with those
    scores selects nothing. Tune with :func:`neg_gaussian_nll`, which rewards standard
    deviations that match the observed errors. Report interval quality with
    :func:`make_interval_scorer` (``kind="coverage"`` next to ``kind="neg_width"``; or
    ``kind="neg_coverage_error"`` for a single number).
Classifiers
    Tune with scikit-learn's ``scoring="neg_log_loss"`` (a proper scoring rule) and report
    :func:`expected_calibration_error` or use :func:`neg_expected_calibration_error`
    for monitoring. ECE is not a proper scoring rule: a model that always predicts the
    class frequencies has ECE near zero, so do not select a model on ECE alone.

The scorers are callables ``scorer(estimator, X, y) -> float`` (greater is better) and can
be passed as ``scoring=`` to :class:`~sklearn.model_selection.GridSearchCV`,
:func:`~sklearn.model_selection.cross_validate` and friends, also inside a dict of several
scorers. :func:`sklearn.metrics.make_scorer` is not used for them because it can neither
pass ``return_std=True`` or ``confidence=`` to the prediction method nor hand the
estimator's ``classes_`` to the metric.
"""

from numbers import Integral, Real

import numpy as np

__all__ = [
    "expected_calibration_error",
    "gaussian_nll",
    "interval_coverage",
    "interval_width",
    "make_interval_scorer",
    "neg_expected_calibration_error",
    "neg_gaussian_nll",
    "reliability_curve",
]

_MULTIOUTPUT_OPTIONS = ("uniform_average", "raw_values")


# --------------------------------------------------------------------------------------
# Classification: top-label calibration
# --------------------------------------------------------------------------------------


def _as_float(name, values):
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got an array of dtype {array.dtype}.")
    return array.astype(np.float64, copy=False)


def _check_n_bins(n_bins):
    if isinstance(n_bins, bool) or not isinstance(n_bins, Integral) or n_bins < 1:
        raise ValueError(
            f"n_bins must be an integer >= 1, got {n_bins!r}. "
            "Pass e.g. n_bins=15 (the usual choice) or fewer bins for small samples."
        )
    return int(n_bins)


def _top_label_confidence_and_correct(y_true, y_prob, labels):
    """Validate the inputs and return (confidence, correct) arrays of shape (n_samples,)."""
    y_true = np.asarray(y_true)
    if y_true.ndim != 1:
        raise ValueError(
            f"y_true must be a 1-D array of class labels, got an array of shape "
            f"{y_true.shape}. If you have one-hot targets, pass their argmax mapped "
            "to class labels instead."
        )
    y_prob = _as_float("y_prob", y_prob)
    if y_prob.ndim == 2 and y_prob.shape[1] == 1:
        y_prob = y_prob[:, 0]
    if y_prob.ndim not in (1, 2):
        raise ValueError(
            f"y_prob must have shape (n_samples, n_classes), or (n_samples,) with the "
            f"probability of the positive class for a binary problem; got shape "
            f"{y_prob.shape}."
        )
    if y_prob.shape[0] != y_true.shape[0]:
        raise ValueError(
            f"y_true and y_prob must have the same number of samples, got "
            f"{y_true.shape[0]} labels and {y_prob.shape[0]} rows of probabilities."
        )
    if y_true.shape[0] == 0:
        raise ValueError("y_true and y_prob are empty; at least one sample is needed.")
    if not np.all(np.isfinite(y_prob)):
        raise ValueError("y_prob contains NaN or infinite values.")
    if y_prob.min() < 0.0 or y_prob.max() > 1.0:
        raise ValueError(
            f"y_prob must hold probabilities in [0, 1], got values in "
            f"[{y_prob.min():.4g}, {y_prob.max():.4g}]. If these are logits or decision "
            "function values, pass the output of predict_proba (or apply a softmax) instead."
        )

    binary_1d = y_prob.ndim == 1
    n_columns = 2 if binary_1d else y_prob.shape[1]
    if labels is None:
        labels = np.unique(y_true)
        if labels.shape[0] < n_columns:
            if binary_1d:
                raise ValueError(
                    f"y_true contains only the class {labels.tolist()} but y_prob is a "
                    "1-D array of positive-class probabilities, so it is unknown which "
                    "label is the positive class. Pass labels=[negative, positive]."
                )
            raise ValueError(
                f"y_prob has {n_columns} columns but y_true contains only "
                f"{labels.shape[0]} distinct labels ({labels.tolist()}), so the columns "
                "cannot be matched to classes. Pass labels= with one label per column, "
                "in column order (for a fitted classifier, labels=estimator.classes_)."
            )
    else:
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got an array of shape {labels.shape}.")
        if np.unique(labels).shape[0] != labels.shape[0]:
            raise ValueError(f"labels must not contain duplicates, got {labels.tolist()}.")
    if labels.shape[0] != n_columns:
        if binary_1d:
            raise ValueError(
                f"y_prob is a 1-D array of positive-class probabilities (a binary "
                f"problem), but {labels.shape[0]} labels were given or found in y_true "
                f"({labels.tolist()}). Pass y_prob with one column per class for more "
                "than two classes, or labels=[negative, positive] for a binary problem."
            )
        raise ValueError(
            f"y_prob has {n_columns} columns but there are {labels.shape[0]} labels "
            f"({labels.tolist()}). Pass one label per column of y_prob, in column order."
        )
    unknown = np.setdiff1d(y_true, labels)
    if unknown.size:
        raise ValueError(
            f"y_true contains labels that are not among labels={labels.tolist()}: "
            f"{unknown.tolist()}. Pass labels that cover every class in y_true."
        )

    if binary_1d:
        confidence = np.maximum(y_prob, 1.0 - y_prob)
        predicted = np.where(y_prob >= 0.5, labels[1], labels[0])
    else:
        confidence = y_prob.max(axis=1)
        predicted = labels[np.argmax(y_prob, axis=1)]
    return confidence, predicted == y_true


def reliability_curve(y_true, y_prob, *, n_bins=15, labels=None):
    """Top-label reliability curve: confidence and accuracy per confidence bin.

    Each sample's confidence is its largest predicted probability and it counts as correct
    when the class with that probability is the true class. Samples are grouped into
    ``n_bins`` bins of equal width on [0, 1] (each bin includes its lower edge, the last
    one also 1.0); only non-empty bins are returned. A calibrated model has accuracy equal
    to confidence in every bin. This is the data behind
    :func:`expected_calibration_error` and :class:`sklaplace.plotting.ReliabilityDisplay`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels, of any type (integers, strings, ...).
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted class probabilities, e.g. from ``predict_proba``. A 1-D array is read as
        the probabilities of the positive class of a binary problem (then the
        confidence is ``max(p, 1 - p)``).
    n_bins : int, default=15
        Number of equal-width confidence bins.
    labels : array-like of shape (n_classes,), default=None
        The class of each column of ``y_prob``, in column order; for a fitted classifier
        this is ``estimator.classes_``. By default the sorted unique values of ``y_true``,
        which is only possible when every class occurs in ``y_true``: if ``y_prob`` has
        more columns than ``y_true`` has distinct labels, ``labels`` is required. Unlike
        :func:`sklearn.metrics.log_loss`, the labels are not re-sorted. For a 1-D
        ``y_prob``, ``labels=[negative, positive]``.

    Returns
    -------
    confidence : ndarray of shape (n_nonempty_bins,)
        Mean top-label confidence of the samples in each bin.
    accuracy : ndarray of shape (n_nonempty_bins,)
        Fraction of correctly classified samples in each bin.
    counts : ndarray of shape (n_nonempty_bins,)
        Number of samples in each bin.

    See Also
    --------
    expected_calibration_error : The count-weighted gap between the two curves.
    sklearn.calibration.calibration_curve : The binary (positive-class) counterpart.

    Examples
    --------
    >>> from sklaplace.metrics import reliability_curve
    >>> y_true = [0, 1, 1, 2]
    >>> y_prob = [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.55, 0.35, 0.1], [0.1, 0.05, 0.85]]
    >>> confidence, accuracy, counts = reliability_curve(y_true, y_prob, n_bins=5)
    >>> confidence.round(3).tolist()
    [0.55, 0.7, 0.875]
    >>> accuracy.tolist()
    [0.0, 1.0, 1.0]
    >>> counts.tolist()
    [1, 1, 2]
    """
    n_bins = _check_n_bins(n_bins)
    confidence, correct = _top_label_confidence_and_correct(y_true, y_prob, labels)
    # Inner edges only: bin k holds edges[k] <= c < edges[k + 1]; 1.0 lands in the last bin.
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    bin_index = np.searchsorted(inner_edges, confidence, side="right")
    counts = np.bincount(bin_index, minlength=n_bins)
    confidence_sum = np.bincount(bin_index, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bin_index, weights=correct, minlength=n_bins)
    nonempty = counts > 0
    counts = counts[nonempty]
    return (
        confidence_sum[nonempty] / counts,
        correct_sum[nonempty] / counts,
        counts,
    )


def expected_calibration_error(y_true, y_prob, *, n_bins=15, labels=None):
    """Top-label expected calibration error (ECE).

    The count-weighted mean absolute gap between accuracy and mean confidence over
    ``n_bins`` equal-width confidence bins:
    ``sum_b (n_b / n) * |accuracy_b - confidence_b|``, where the confidence of a sample is
    its largest predicted probability. 0 means calibrated; lower is better. With few
    samples per bin the estimate is biased upwards by sampling noise (roughly
    ``0.5 * sqrt(n_bins / n_samples)`` at most for a calibrated model), so compare models
    on the same data and number of bins.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels, of any type (integers, strings, ...).
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted class probabilities, e.g. from ``predict_proba``. A 1-D array is read as
        the probabilities of the positive class of a binary problem.
    n_bins : int, default=15
        Number of equal-width confidence bins on [0, 1].
    labels : array-like of shape (n_classes,), default=None
        The class of each column of ``y_prob``, in column order (for a fitted classifier,
        ``estimator.classes_``). Defaults to the sorted unique values of ``y_true``; required
        when some class of ``y_prob`` does not occur in ``y_true``. See
        :func:`reliability_curve`.

    Returns
    -------
    ece : float
        The expected calibration error, in [0, 1].

    See Also
    --------
    reliability_curve : The per-bin confidence, accuracy and counts.
    neg_expected_calibration_error : The same as a scorer for model selection tools.
    sklaplace.plotting.ReliabilityDisplay : Plot of the reliability curve with the ECE.

    Examples
    --------
    >>> from sklaplace.metrics import expected_calibration_error
    >>> y_true = ["cat", "dog", "dog", "emu"]
    >>> y_prob = [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.55, 0.35, 0.1], [0.1, 0.05, 0.85]]
    >>> round(expected_calibration_error(y_true, y_prob, n_bins=5), 3)
    0.275

    A 1-D array holds the probabilities of the positive (second) class:

    >>> round(expected_calibration_error([0, 1, 1], [0.25, 0.9, 0.35], n_bins=5), 3)
    0.167
    """
    return _ece_from_curve(*reliability_curve(y_true, y_prob, n_bins=n_bins, labels=labels))


def _ece_from_curve(confidence, accuracy, counts):
    """The ECE from the output of :func:`reliability_curve` (also used by the plot)."""
    counts = np.asarray(counts, dtype=np.float64)
    gaps = np.abs(np.asarray(accuracy, dtype=np.float64) - np.asarray(confidence))
    return float(np.sum(counts * gaps) / np.sum(counts))


# --------------------------------------------------------------------------------------
# Regression: predictive densities and intervals
# --------------------------------------------------------------------------------------


def _as_float_2d(name, values):
    array = _as_float(name, values)
    if array.ndim == 1:
        array = array[:, np.newaxis]
    if array.ndim != 2:
        raise ValueError(
            f"{name} must have shape (n_samples,) or (n_samples, n_targets), got shape "
            f"{array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array


def _check_regression_arrays(**arrays):
    """Return the arrays as 2-D float arrays of one common shape (n_samples, n_targets).

    (n,) and (n, 1) are treated as the same shape.
    """
    checked = {name: _as_float_2d(name, values) for name, values in arrays.items()}
    shapes = {name: array.shape for name, array in checked.items()}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(
            f"The arrays must have the same shape (n_samples,) or (n_samples, n_targets), "
            f"got {described} (1-D arrays shown as one column)."
        )
    if next(iter(shapes.values()))[0] == 0:
        raise ValueError("The arrays are empty; at least one sample is needed.")
    return list(checked.values())


def _reduce(per_target, multioutput):
    if isinstance(multioutput, str) and multioutput == "raw_values":
        return per_target
    if isinstance(multioutput, str) and multioutput == "uniform_average":
        return float(np.mean(per_target))
    raise ValueError(f"multioutput must be one of {_MULTIOUTPUT_OPTIONS}, got {multioutput!r}.")


def gaussian_nll(y_true, y_mean, y_std, *, multioutput="uniform_average"):
    """Mean Gaussian negative log predictive density.

    The average over samples of ``-log N(y_true | y_mean, y_std**2)``, i.e.
    ``0.5 * log(2 * pi * y_std**2) + (y_true - y_mean)**2 / (2 * y_std**2)``. It rewards
    accurate means *and* standard deviations that match the size of the errors, so it is
    the score to tune a probabilistic regressor with; lower is better. It can be negative
    (densities can exceed 1) and depends on the units of ``y``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_targets)
        Observed targets.
    y_mean : array-like of the same shape as ``y_true``
        Predictive means, e.g. the first output of ``predict(X, return_std=True)``.
    y_std : array-like of the same shape as ``y_true``
        Predictive standard deviations, all strictly positive.
    multioutput : {"uniform_average", "raw_values"}, default="uniform_average"
        With several targets, return the mean over targets (a float) or one value per
        target (an array of shape (n_targets,)).

    Returns
    -------
    nll : float or ndarray of shape (n_targets,)
        The mean negative log density, in nats.

    See Also
    --------
    neg_gaussian_nll : The same as a scorer for model selection tools.

    Examples
    --------
    >>> from sklaplace.metrics import gaussian_nll
    >>> round(gaussian_nll([0.0, 1.0], [0.0, 0.0], [1.0, 1.0]), 4)
    1.1689
    >>> gaussian_nll([[0, 0], [1, 2]], [[0, 0], [0, 0]], [[1, 2], [1, 2]],
    ...              multioutput="raw_values").round(4).tolist()
    [1.1689, 1.8621]
    """
    y_true, y_mean, y_std = _check_regression_arrays(y_true=y_true, y_mean=y_mean, y_std=y_std)
    if np.any(y_std <= 0.0):
        raise ValueError(
            f"y_std must be strictly positive, got a minimum of {y_std.min():.4g}. Pass "
            "standard deviations, not variances or log-scales; if some are 0, clip them "
            "to a small positive value."
        )
    z = (y_true - y_mean) / y_std
    per_sample = 0.5 * np.log(2.0 * np.pi) + np.log(y_std) + 0.5 * z**2
    return _reduce(per_sample.mean(axis=0), multioutput)


def _check_bounds(y_true, lower, upper):
    arrays = {"lower": lower, "upper": upper}
    if y_true is not None:
        arrays = {"y_true": y_true, **arrays}
    checked = _check_regression_arrays(**arrays)
    lower, upper = checked[-2:]
    if np.any(lower > upper):
        raise ValueError(
            "lower must not exceed upper, but lower > upper for "
            f"{int(np.sum(lower > upper))} entries. Check that the bounds are not swapped."
        )
    return checked


def interval_coverage(y_true, lower, upper, *, multioutput="uniform_average"):
    """Fraction of targets inside their prediction interval ``[lower, upper]``.

    For intervals at confidence level ``c`` the coverage should be close to ``c``: much
    lower means overconfident, much higher underconfident. Report it together with
    :func:`interval_width`, since very wide intervals trivially cover everything.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_targets)
        Observed targets.
    lower, upper : array-like of the same shape as ``y_true``
        Interval bounds (inclusive), e.g. from ``predict_interval``; ``lower <= upper``.
    multioutput : {"uniform_average", "raw_values"}, default="uniform_average"
        With several targets, return the mean over targets or one value per target.

    Returns
    -------
    coverage : float or ndarray of shape (n_targets,)
        Empirical coverage, in [0, 1].

    See Also
    --------
    make_interval_scorer : Coverage, width or coverage error as a scorer.

    Examples
    --------
    >>> from sklaplace.metrics import interval_coverage
    >>> interval_coverage([1.0, 2.0, 5.0, 3.0], [0, 0, 0, 3], [2, 2, 2, 4])
    0.75
    """
    y_true, lower, upper = _check_bounds(y_true, lower, upper)
    inside = (lower <= y_true) & (y_true <= upper)
    return _reduce(inside.mean(axis=0), multioutput)


def interval_width(lower, upper, *, multioutput="uniform_average"):
    """Mean width ``upper - lower`` of prediction intervals.

    Narrower is better at equal coverage (see :func:`interval_coverage`).

    Parameters
    ----------
    lower, upper : array-like of shape (n_samples,) or (n_samples, n_targets)
        Interval bounds, with ``lower <= upper``.
    multioutput : {"uniform_average", "raw_values"}, default="uniform_average"
        With several targets, return the mean over targets or one value per target.

    Returns
    -------
    width : float or ndarray of shape (n_targets,)
        Mean interval width, in the units of the target.

    Examples
    --------
    >>> from sklaplace.metrics import interval_width
    >>> interval_width([0, 0, 0, 3], [2, 2, 2, 4])
    1.75
    """
    lower, upper = _check_bounds(None, lower, upper)
    return _reduce((upper - lower).mean(axis=0), multioutput)


# --------------------------------------------------------------------------------------
# Scorers: callables scorer(estimator, X, y) -> float, greater is better
# --------------------------------------------------------------------------------------


def neg_expected_calibration_error(estimator, X, y, *, n_bins=15):
    """Scorer: minus the top-label ECE of ``estimator.predict_proba(X)``.

    Usable as ``scoring=neg_expected_calibration_error`` in scikit-learn's model selection
    tools (greater is better). The columns of ``predict_proba`` are matched to
    ``estimator.classes_``, so it also works on cross-validation folds that miss a
    class. For other ``n_bins``, wrap it, e.g. with
    ``functools.partial(neg_expected_calibration_error, n_bins=10)``. Prefer
    ``scoring="neg_log_loss"`` to *select* a model; see the module docstring.

    Parameters
    ----------
    estimator : fitted classifier
        Must have ``predict_proba`` and ``classes_``.
    X : array-like of shape (n_samples, n_features)
        Input data.
    y : array-like of shape (n_samples,)
        True class labels.
    n_bins : int, default=15
        Number of equal-width confidence bins.

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
    y_prob = estimator.predict_proba(X)
    labels = getattr(estimator, "classes_", None)
    return -expected_calibration_error(y, y_prob, n_bins=n_bins, labels=labels)


def neg_gaussian_nll(estimator, X, y):
    """Scorer: minus the Gaussian NLL of ``estimator.predict(X, return_std=True)``.

    Usable as ``scoring=neg_gaussian_nll`` in scikit-learn's model selection tools
    (greater is better). This is the score to tune a Laplace regressor's prior precision
    (or any other setting of its uncertainty) with; R^2 cannot tell the settings apart.

    Parameters
    ----------
    estimator : fitted regressor
        Its ``predict(X, return_std=True)`` must return ``(mean, std)``, with shapes
        (n_samples,) or (n_samples, n_targets) like
        :class:`~sklearn.gaussian_process.GaussianProcessRegressor`.
    X : array-like of shape (n_samples, n_features)
        Input data.
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
        Observed targets.

    Returns
    -------
    score : float
        ``-gaussian_nll(y, mean, std)``, averaged over targets.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import BayesianRidge
    >>> from sklaplace.metrics import neg_gaussian_nll
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2))
    >>> y = X @ [1.0, -2.0] + rng.normal(scale=0.5, size=200)
    >>> model = BayesianRidge().fit(X[:150], y[:150])
    >>> round(neg_gaussian_nll(model, X[150:], y[150:]), 1)
    -0.6
    """
    prediction = estimator.predict(X, return_std=True)
    if not isinstance(prediction, tuple) or len(prediction) != 2:
        raise ValueError(
            "neg_gaussian_nll needs estimator.predict(X, return_std=True) to return a "
            f"(mean, std) tuple; {type(estimator).__name__} returned "
            f"{type(prediction).__name__}."
        )
    y_mean, y_std = prediction
    return -gaussian_nll(y, y_mean, y_std)


_INTERVAL_KINDS = ("coverage", "neg_width", "neg_coverage_error")


class _IntervalScorer:
    """Scorer built by :func:`make_interval_scorer` (a class so that it pickles)."""

    def __init__(self, confidence, kind):
        self.confidence = confidence
        self.kind = kind

    def __call__(self, estimator, X, y):
        bounds = estimator.predict_interval(X, confidence=self.confidence)
        if not isinstance(bounds, tuple) or len(bounds) != 2:
            raise ValueError(
                "make_interval_scorer needs estimator.predict_interval(X, confidence=...) "
                f"to return a (lower, upper) tuple; {type(estimator).__name__} returned "
                f"{type(bounds).__name__}."
            )
        lower, upper = bounds
        if self.kind == "neg_width":
            return -interval_width(lower, upper)
        coverage = interval_coverage(y, lower, upper)
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
        ``scorer(estimator, X, y) -> float``, greater is better, usable as ``scoring=``
        in scikit-learn's model selection tools. The estimator's
        ``predict_interval(X, confidence=...)`` must return ``(lower, upper)`` arrays.

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
