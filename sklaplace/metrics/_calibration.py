"""Classification: the top-label reliability curve and expected calibration error.

A sample's confidence is its largest predicted probability, and it is correct when the
class of that probability is the true class; :func:`reliability_curve` bins the samples by
confidence and :func:`expected_calibration_error` weighs the gap between accuracy and
confidence over the bins. :class:`sklaplace.plotting.ReliabilityDisplay` draws both.
"""

from numbers import Integral

import numpy as np

from ._validation import _as_float, _check_weights


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
    given = np.asarray(y_prob)
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
    # a softmax rounds a probability of 1 to a few ulps above it (1.0000000000000002 in
    # float64, 1.0000001 in float32): accepted within 8 ulps of the input's dtype, clipped
    dtype = given.dtype if np.issubdtype(given.dtype, np.floating) else np.float64
    slack = 8 * float(np.finfo(dtype).eps)
    if y_prob.min() < -slack or y_prob.max() > 1.0 + slack:
        raise ValueError(
            f"y_prob must hold probabilities in [0, 1], got values in "
            f"[{y_prob.min():.17g}, {y_prob.max():.17g}] (beyond the {slack:.2g} that "
            f"rounding in {np.dtype(dtype).name} explains). If these are logits or decision "
            "function values, pass the output of predict_proba (or apply a softmax) instead."
        )
    y_prob = np.clip(y_prob, 0.0, 1.0)

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
