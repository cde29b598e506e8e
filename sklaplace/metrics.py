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

Scorers
-------
:func:`neg_gaussian_nll`, :func:`neg_expected_calibration_error` and the objects made by
:func:`make_interval_scorer` and :func:`make_calibration_error_scorer` are called as
``scorer(estimator, X, y, sample_weight=None)`` (greater is better) and can be passed as
``scoring=`` to :class:`~sklearn.model_selection.GridSearchCV`,
:func:`~sklearn.model_selection.cross_validate` and friends, also inside a dict of several
scorers. :func:`sklearn.metrics.make_scorer` is not used for them because it can neither
pass ``return_std=True`` or ``confidence=`` to the prediction method nor hand the
estimator's ``classes_`` to the metric.

The estimator may be a Laplace estimator or a :class:`~sklearn.pipeline.Pipeline` (also
nested) whose last step is one: a :class:`~sklearn.pipeline.Pipeline` exposes neither
``predict_interval`` nor, with metadata routing enabled, ``predict(X, return_std=True)``,
so the scorers transform ``X`` through the steps before the last one and ask the last
step. They also look through a fitted search's ``best_estimator_``, a
:class:`~sklearn.frozen.FrozenEstimator` and a
:class:`~sklearn.compose.TransformedTargetRegressor`: they ask its ``regressor_`` and map
the outputs back to the units of y when that is exact (an affine target transform for
the Gaussian NLL, an increasing one for interval bounds) and raise otherwise. An estimator
that cannot produce what a scorer needs makes it raise a ``TypeError`` that says what is
needed (pass ``error_score="raise"`` to a search to see it: with the default
``error_score=np.nan`` scikit-learn turns it into a warning and NaN scores).

Sample weights
--------------
Every metric takes ``sample_weight`` (one non-negative weight per row, validated like
scikit-learn does) and then computes weighted means; for the calibration error the bin
weights, accuracies and confidences are weighted, so integer weights equal repeating
rows. The scorers pass ``sample_weight`` on when scikit-learn hands it to them: without
metadata routing, :class:`~sklearn.model_selection.GridSearchCV` does so whenever
``fit`` gets ``sample_weight``; with routing enabled
(``sklearn.set_config(enable_metadata_routing=True)``), request it with
``scoring=neg_gaussian_nll.set_score_request(sample_weight=True)``. Unlike
scikit-learn's scorers, ``set_score_request`` returns a new scorer and leaves the one it
is called on unchanged (so the shared :func:`neg_gaussian_nll` is never modified): use
its return value.

Precision
---------
Every metric casts probabilities, means, standard deviations and bounds to float64 before
computing, and computes in float64. skorch nets predict in float32, where a probability
of 1e-46 underflows to 0 and a probability within ~6e-8 of 1 rounds to 1. Log-loss style
metrics must then clip, and :func:`sklearn.metrics.log_loss` clips at the resolution of
its input's dtype: on float32 probabilities at ~1.2e-7, which caps the loss of a
confidently wrong prediction at about 16 nats (36 in float64). That flatters exactly the
over-confident nets a Laplace approximation is meant to fix, so cast before calling
scikit-learn's metrics too: ``log_loss(y, np.asarray(proba, dtype=np.float64))``.
"""

import copy
import inspect
from numbers import Integral, Real

import numpy as np
from sklearn import get_config
from sklearn.compose import TransformedTargetRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)
from sklearn.utils.metadata_routing import UNCHANGED, MetadataRequest
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

__all__ = [
    "expected_calibration_error",
    "gaussian_nll",
    "interval_coverage",
    "interval_width",
    "make_calibration_error_scorer",
    "make_interval_scorer",
    "neg_expected_calibration_error",
    "neg_gaussian_nll",
    "reliability_curve",
]

_MULTIOUTPUT_OPTIONS = ("uniform_average", "raw_values")


def _as_float(name, values):
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got an array of dtype {array.dtype}.")
    return array.astype(np.float64, copy=False)


def _check_weights(sample_weight, n_samples_like):
    """None, or float64 non-negative weights of shape (n_samples,) that do not all vanish."""
    if sample_weight is None:
        return None
    weights = _check_sample_weight(
        sample_weight, n_samples_like, dtype=np.float64, ensure_non_negative=True
    )
    if not weights.any():  # scikit-learn raises this itself from version 1.8 on
        raise ValueError("sample_weight must contain at least one non-zero weight.")
    return weights


# --------------------------------------------------------------------------------------
# Classification: top-label calibration
# --------------------------------------------------------------------------------------


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


def reliability_curve(
    y_true, y_prob, *, n_bins=15, labels=None, sample_weight=None, return_bin_edges=False
):
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
        confidence is ``max(p, 1 - p)``). Cast to float64 before use.
    n_bins : int, default=15
        Number of equal-width confidence bins.
    labels : array-like of shape (n_classes,), default=None
        The class of each column of ``y_prob``, in column order; for a fitted classifier
        this is ``estimator.classes_``. By default the sorted unique values of ``y_true``,
        which is only possible when every class occurs in ``y_true``: if ``y_prob`` has
        more columns than ``y_true`` has distinct labels, ``labels`` is required. Unlike
        :func:`sklearn.metrics.log_loss`, the labels are not re-sorted. For a 1-D
        ``y_prob``, ``labels=[negative, positive]``.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weight of each sample. The confidence and accuracy of a bin are then
        weighted means and ``counts`` holds the total weight of each bin; a bin whose
        samples all have weight 0 counts as empty. Integer weights give the same curve
        as repeating each sample that many times.
    return_bin_edges : bool, default=False
        Whether to also return the edges of each returned bin (for drawing a histogram
        of the counts).

    Returns
    -------
    confidence : ndarray of shape (n_nonempty_bins,)
        Mean top-label confidence of the samples in each bin.
    accuracy : ndarray of shape (n_nonempty_bins,)
        Fraction of correctly classified samples in each bin.
    counts : ndarray of shape (n_nonempty_bins,)
        Number of samples in each bin (integers), or their total weight (floats) when
        ``sample_weight`` is given.
    bin_edges : ndarray of shape (n_nonempty_bins, 2)
        Lower and upper edge of each returned bin; only if ``return_bin_edges``.

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

    A weight of 3 on the last sample counts it three times:

    >>> confidence, accuracy, counts, edges = reliability_curve(
    ...     y_true, y_prob, n_bins=5, sample_weight=[1, 1, 1, 3], return_bin_edges=True)
    >>> confidence.round(3).tolist()
    [0.55, 0.7, 0.862]
    >>> counts.tolist()
    [1.0, 1.0, 4.0]
    >>> edges.round(1).tolist()
    [[0.4, 0.6], [0.6, 0.8], [0.8, 1.0]]
    """
    n_bins = _check_n_bins(n_bins)
    confidence, correct = _top_label_confidence_and_correct(y_true, y_prob, labels)
    weights = _check_weights(sample_weight, confidence)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Inner edges only: bin k holds edges[k] <= c < edges[k + 1]; 1.0 lands in the last bin.
    bin_index = np.searchsorted(edges[1:-1], confidence, side="right")
    if weights is None:
        counts = np.bincount(bin_index, minlength=n_bins)
        confidence_sum = np.bincount(bin_index, weights=confidence, minlength=n_bins)
        correct_sum = np.bincount(bin_index, weights=correct, minlength=n_bins)
    else:
        counts = np.bincount(bin_index, weights=weights, minlength=n_bins)
        confidence_sum = np.bincount(bin_index, weights=weights * confidence, minlength=n_bins)
        correct_sum = np.bincount(bin_index, weights=weights * correct, minlength=n_bins)
    nonempty = counts > 0
    counts = counts[nonempty]
    curve = (confidence_sum[nonempty] / counts, correct_sum[nonempty] / counts, counts)
    if return_bin_edges:
        return (*curve, np.column_stack([edges[:-1], edges[1:]])[nonempty])
    return curve


def expected_calibration_error(y_true, y_prob, *, n_bins=15, labels=None, sample_weight=None):
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
        the probabilities of the positive class of a binary problem. Cast to float64
        before use.
    n_bins : int, default=15
        Number of equal-width confidence bins on [0, 1].
    labels : array-like of shape (n_classes,), default=None
        The class of each column of ``y_prob``, in column order (for a fitted classifier,
        ``estimator.classes_``). Defaults to the sorted unique values of ``y_true``; required
        when some class of ``y_prob`` does not occur in ``y_true``. See
        :func:`reliability_curve`.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weight of each sample. Then ``n_b / n`` is the bin's share of the
        total weight and its accuracy and confidence are weighted means:
        ``sum_b |sum_{i in b} w_i (correct_i - confidence_i)| / sum_i w_i``.

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

    Weights count samples several times (0 drops them):

    >>> round(expected_calibration_error(y_true, y_prob, n_bins=5,
    ...                                  sample_weight=[1, 1, 0, 2]), 3)
    0.175
    """
    curve = reliability_curve(
        y_true, y_prob, n_bins=n_bins, labels=labels, sample_weight=sample_weight
    )
    return _ece_from_curve(*curve)


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
    """Return the arrays as 2-D float64 arrays of one shape (n_samples, n_targets).

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


def _mean_over_samples(values, weights):
    """Per-target (weighted) mean over the rows of a 2-D array."""
    if weights is None:
        return values.mean(axis=0)
    return weights @ values / weights.sum()


def _reduce(per_target, multioutput):
    if isinstance(multioutput, str) and multioutput == "raw_values":
        return per_target
    if isinstance(multioutput, str) and multioutput == "uniform_average":
        return float(np.mean(per_target))
    raise ValueError(f"multioutput must be one of {_MULTIOUTPUT_OPTIONS}, got {multioutput!r}.")


def gaussian_nll(y_true, y_mean, y_std, *, sample_weight=None, multioutput="uniform_average"):
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
        Predictive standard deviations, all strictly positive. All three arrays are cast
        to float64 (in float32 the squared error of a tiny ``y_std`` overflows).
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weight of each sample (row): the mean over samples is then the
        weighted mean.
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

    With weights, the second sample counts three times:

    >>> round(gaussian_nll([0.0, 1.0], [0.0, 0.0], [1.0, 1.0], sample_weight=[1, 3]), 4)
    1.2939
    """
    y_true, y_mean, y_std = _check_regression_arrays(y_true=y_true, y_mean=y_mean, y_std=y_std)
    weights = _check_weights(sample_weight, y_true)
    if np.any(y_std <= 0.0):
        raise ValueError(
            f"y_std must be strictly positive, got a minimum of {y_std.min():.4g}. Pass "
            "standard deviations, not variances or log-scales; if some are 0, clip them "
            "to a small positive value."
        )
    z = (y_true - y_mean) / y_std
    per_sample = 0.5 * np.log(2.0 * np.pi) + np.log(y_std) + 0.5 * z**2
    return _reduce(_mean_over_samples(per_sample, weights), multioutput)


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


def interval_coverage(y_true, lower, upper, *, sample_weight=None, multioutput="uniform_average"):
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
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weight of each sample (row): the coverage is then the weighted
        fraction of covered targets.
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
    >>> interval_coverage([1.0, 2.0, 5.0, 3.0], [0, 0, 0, 3], [2, 2, 2, 4],
    ...                   sample_weight=[1, 1, 2, 0])
    0.5
    """
    y_true, lower, upper = _check_bounds(y_true, lower, upper)
    weights = _check_weights(sample_weight, y_true)
    inside = (lower <= y_true) & (y_true <= upper)
    return _reduce(_mean_over_samples(inside.astype(np.float64), weights), multioutput)


def interval_width(lower, upper, *, sample_weight=None, multioutput="uniform_average"):
    """Mean width ``upper - lower`` of prediction intervals.

    Narrower is better at equal coverage (see :func:`interval_coverage`).

    Parameters
    ----------
    lower, upper : array-like of shape (n_samples,) or (n_samples, n_targets)
        Interval bounds, with ``lower <= upper``.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weight of each sample (row): the width is then a weighted mean.
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
    >>> interval_width([0, 0, 0, 3], [2, 2, 2, 4], sample_weight=[1, 0, 0, 3])
    1.25
    """
    lower, upper = _check_bounds(None, lower, upper)
    weights = _check_weights(sample_weight, lower)
    return _reduce(_mean_over_samples(upper - lower, weights), multioutput)


# --------------------------------------------------------------------------------------
# Predictions of the estimator inside Pipelines and target transforms
# --------------------------------------------------------------------------------------

# Target transformers whose inverse is affine and increasing: a Gaussian predictive of the
# transformed target stays Gaussian in the units of y (mean and std map linearly).
_AFFINE_TRANSFORMERS = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)
# Target transformers whose inverse is non-decreasing: it maps interval bounds to bounds.
_INCREASING_TRANSFORMERS = (*_AFFINE_TRANSFORMERS, PowerTransformer, QuantileTransformer)
# Increasing numpy functions accepted as the ``inverse_func`` of a FunctionTransformer
# (``TransformedTargetRegressor(func=np.log, inverse_func=np.exp)``).
_INCREASING_UFUNCS = (
    np.exp,
    np.exp2,
    np.expm1,
    np.log,
    np.log2,
    np.log10,
    np.log1p,
    np.sqrt,
    np.cbrt,
    np.sinh,
    np.arcsinh,
    np.tanh,
    np.arctanh,
    np.arctan,
)
_AFFINE_NAMES = "StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler"


def _target_transform_kind(transformer):
    """Return "affine" or "increasing" if the inverse transform is known to be so, else None.

    Only exact classes are trusted (a subclass may change ``inverse_transform``).
    """
    if type(transformer) is Pipeline:
        kinds = {
            "affine" if step is None or step == "passthrough" else _target_transform_kind(step)
            for _, step in transformer.steps
        }
        if None in kinds:
            return None
        return "increasing" if "increasing" in kinds else "affine"
    if type(transformer) is FunctionTransformer:
        if transformer.func is None and transformer.inverse_func is None:
            return "affine"  # the identity: TransformedTargetRegressor without a transform
        if (
            any(transformer.inverse_func is ufunc for ufunc in _INCREASING_UFUNCS)
            and not transformer.inv_kw_args
        ):
            return "increasing"
        return None
    if type(transformer) in _AFFINE_TRANSFORMERS:
        return "affine"
    if type(transformer) in _INCREASING_TRANSFORMERS:
        return "increasing"
    return None


def _inverse_target(ttr, values):
    """``ttr.transformer_.inverse_transform`` of predictions, shaped like ``ttr.predict``."""
    values = np.asarray(values, dtype=np.float64)
    out = ttr.transformer_.inverse_transform(values.reshape(len(values), -1))
    out = np.asarray(out, dtype=np.float64)
    return out[:, 0] if values.ndim == 1 and out.ndim == 2 and out.shape[1] == 1 else out


def _check_target_transform(ttr, need, caller):
    """Raise unless the inverse target transform of ``ttr`` is of the kind ``need``."""
    kind = _target_transform_kind(ttr.transformer_)
    if kind == "affine" or (kind == "increasing" and need == "increasing"):
        return
    transform = (
        f"func={ttr.func!r}, inverse_func={ttr.inverse_func!r}"
        if ttr.transformer is None
        else f"transformer={ttr.transformer!r}"
    )
    if need == "affine":
        raise ValueError(
            f"{caller} cannot score this TransformedTargetRegressor ({transform}): the "
            "Gaussian NLL needs a Gaussian predictive in the units of y, and after a target "
            "transform that is not affine the predictive of y is not Gaussian. Use an affine "
            f"transformer ({_AFFINE_NAMES}) or none; or judge the intervals with "
            "make_interval_scorer, which only needs an increasing transform."
        )
    raise ValueError(
        f"{caller} cannot score this TransformedTargetRegressor ({transform}): its inverse "
        "target transform is not known to be increasing, so the inverse transforms of the "
        "interval bounds need not bound the interval of y. Use a transformer known to be "
        f"increasing ({_AFFINE_NAMES}, PowerTransformer, QuantileTransformer) or an increasing "
        "numpy function as inverse_func (e.g. func=np.log, inverse_func=np.exp; a lambda "
        "cannot be checked)."
    )


def _predict_through(estimator, X, leaf, from_target, caller):
    """``leaf(model, X_model)`` for the model inside Pipelines and other wrappers.

    Pipelines transform X with their steps before the last one; a fitted search gives its
    ``best_estimator_``, a FrozenEstimator its ``estimator``; a TransformedTargetRegressor
    gives its ``regressor_`` and maps the outputs with ``from_target(ttr, outputs)``.
    """
    if isinstance(estimator, Pipeline):
        last = estimator.steps[-1][1]
        if last is None or (isinstance(last, str) and last == "passthrough"):
            raise TypeError(
                f"{caller} got a Pipeline whose last step is {last!r}; it needs a model "
                "as the last step."
            )
        if len(estimator.steps) > 1:
            X = estimator[:-1].transform(X)
        return _predict_through(last, X, leaf, from_target, caller)
    if isinstance(estimator, FrozenEstimator):
        return _predict_through(estimator.estimator, X, leaf, from_target, caller)
    if isinstance(estimator, TransformedTargetRegressor):
        check_is_fitted(estimator, "regressor_")
        outputs = _predict_through(estimator.regressor_, X, leaf, from_target, caller)
        return from_target(estimator, outputs)
    if hasattr(estimator, "cv_results_") and hasattr(estimator, "best_estimator_"):
        return _predict_through(estimator.best_estimator_, X, leaf, from_target, caller)
    return leaf(estimator, X)


def _accepts_keyword(method, name):
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


_WHERE = (
    "a Laplace regressor, or a Pipeline, TransformedTargetRegressor, FrozenEstimator or "
    "fitted search whose model is one"
)


def _predict_mean_std(estimator, X, caller):
    """Predictive means and stds of ``estimator`` at X, in the units of y."""

    def leaf(model, X):
        predict = getattr(model, "predict", None)
        if predict is None or not _accepts_keyword(predict, "return_std"):
            raise TypeError(
                f"{caller} needs an estimator whose predict(X, return_std=True) returns "
                f"(mean, std), such as {_WHERE}; {type(model).__name__}.predict takes no "
                "return_std. Score it with a point metric (e.g. "
                'scoring="neg_mean_squared_error") instead.'
            )
        prediction = predict(X, return_std=True)
        if not isinstance(prediction, tuple) or len(prediction) != 2:
            raise ValueError(
                f"{caller} needs estimator.predict(X, return_std=True) to return a "
                f"(mean, std) tuple; {type(model).__name__} returned "
                f"{type(prediction).__name__}."
            )
        return prediction

    def from_target(ttr, moments):
        _check_target_transform(ttr, "affine", caller)
        mean, std = (np.asarray(a, dtype=np.float64) for a in moments)
        # The inverse transform is a * t + b with a > 0: N(m, s^2) -> N(a m + b, (a s)^2).
        # a = (inverse(1) - inverse(-1)) / 2 per target; its rounding error, eps * |b / a|
        # relative, is below that of (y - mean) / std itself.
        n_targets = 1 if mean.ndim == 1 else mean.shape[1]
        ends = ttr.transformer_.inverse_transform(np.array([[-1.0], [1.0]]).repeat(n_targets, 1))
        ends = np.asarray(ends, dtype=np.float64)
        slope = (ends[1] - ends[0]) / 2.0
        if mean.ndim == 1:
            slope = slope[0]
        return _inverse_target(ttr, mean), std * slope

    return _predict_through(estimator, X, leaf, from_target, caller)


def _predict_bounds(estimator, X, confidence, caller):
    """Prediction interval bounds of ``estimator`` at X, in the units of y."""

    def leaf(model, X):
        predict_interval = getattr(model, "predict_interval", None)
        if predict_interval is None:
            raise TypeError(
                f"{caller} needs an estimator with predict_interval(X, confidence=...) "
                f"returning (lower, upper), such as {_WHERE}; {type(model).__name__} has no "
                "predict_interval method."
            )
        bounds = predict_interval(X, confidence=confidence)
        if not isinstance(bounds, tuple) or len(bounds) != 2:
            raise ValueError(
                f"{caller} needs estimator.predict_interval(X, confidence=...) to return a "
                f"(lower, upper) tuple; {type(model).__name__} returned "
                f"{type(bounds).__name__}."
            )
        return bounds

    def from_target(ttr, bounds):
        _check_target_transform(ttr, "increasing", caller)
        lower, upper = (_inverse_target(ttr, bound) for bound in bounds)
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise ValueError(
                f"{caller}: the inverse target transform of {ttr.transformer_!r} gives NaN or "
                "infinite interval bounds (bounds outside the range it can invert, e.g. "
                "below the Box-Cox limit). Use a lower confidence or another transformer."
            )
        return lower, upper

    return _predict_through(estimator, X, leaf, from_target, caller)


# --------------------------------------------------------------------------------------
# Scorers: scorer(estimator, X, y, sample_weight=None) -> float, greater is better
# --------------------------------------------------------------------------------------


class _UncertaintyScorer:
    """What the scorers share: scikit-learn's scorer protocol for ``sample_weight``.

    scikit-learn passes ``sample_weight`` to a scorer when its ``_accept_sample_weight()``
    says so (no metadata routing) or when its ``get_metadata_routing()`` requests it
    (routing enabled).
    """

    _sample_weight_request = None  # unset: routing raises if sample_weight is passed

    def __call__(self, estimator, X, y, *, sample_weight=None):
        return self._score(estimator, X, y, sample_weight)

    def set_score_request(self, *, sample_weight=UNCHANGED):
        """A copy of this scorer that requests ``sample_weight`` (metadata routing).

        Only available when metadata routing is enabled, with
        ``sklearn.set_config(enable_metadata_routing=True)``. Unlike the method of
        scikit-learn's scorers, this one returns a new scorer and leaves this one
        unchanged, so that the module's shared scorers are never modified: pass its
        return value as ``scoring=``.

        Parameters
        ----------
        sample_weight : bool, None or str, default=sklearn.utils.metadata_routing.UNCHANGED
            True: the scorer receives ``sample_weight`` when it is passed (e.g. to
            ``GridSearchCV.fit``); False: it does not; None: passing it raises; a
            string: the scorer receives the metadata of that name as ``sample_weight``.

        Returns
        -------
        scorer : object
            The new scorer.

        Examples
        --------
        >>> import sklearn
        >>> from sklaplace.metrics import neg_gaussian_nll
        >>> with sklearn.config_context(enable_metadata_routing=True):
        ...     weighted = neg_gaussian_nll.set_score_request(sample_weight=True)
        ...     weighted.get_metadata_routing().score.requests
        {'sample_weight': True}
        """
        if not get_config()["enable_metadata_routing"]:
            raise RuntimeError(
                "set_score_request is only available when metadata routing is enabled: "
                "call sklearn.set_config(enable_metadata_routing=True) first. Without "
                "routing, GridSearchCV already passes the sample_weight of fit to these "
                "scorers."
            )
        scorer = copy.copy(self)
        if sample_weight is not UNCHANGED:
            scorer._sample_weight_request = sample_weight
            scorer.get_metadata_routing()  # validates the alias
        return scorer

    def get_metadata_routing(self):
        """The metadata this scorer requests: ``sample_weight`` for its ``score``.

        Returns
        -------
        routing : sklearn.utils.metadata_routing.MetadataRequest
            With the request set by :meth:`set_score_request` (None, i.e. unset, by
            default).
        """
        request = MetadataRequest(owner=self)
        request.score.add_request(param="sample_weight", alias=self._sample_weight_request)
        return request

    def _accept_sample_weight(self):
        # Read by scikit-learn (without metadata routing) to decide whether to pass it.
        return True

    def _routing_repr(self):
        return repr(self)


class _FunctionScorer(_UncertaintyScorer):
    """A scorer function as a scorer object (what its ``set_score_request`` returns)."""

    def __init__(self, function):
        self._function = function

    def _score(self, estimator, X, y, sample_weight):
        return self._function(estimator, X, y, sample_weight=sample_weight)

    def __repr__(self):
        return self._function.__name__


def _scorer_function(function):
    """Give a scorer function the scorer protocol of :class:`_UncertaintyScorer`.

    The public scorers stay functions (documented and pickled as such); the methods
    scikit-learn looks for are attributes of the function.
    """
    as_object = _FunctionScorer(function)
    function.set_score_request = as_object.set_score_request
    function.get_metadata_routing = as_object.get_metadata_routing
    function._accept_sample_weight = as_object._accept_sample_weight
    function._routing_repr = as_object._routing_repr
    return function


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
