"""Regression: the Gaussian predictive density and the coverage and width of intervals.

Every metric here takes arrays of shape (n_samples,) or (n_samples, n_targets), weighs
the rows by ``sample_weight`` and reduces over targets as ``multioutput`` says.
"""

import numpy as np

from ._validation import _as_float, _check_weights

_MULTIOUTPUT_OPTIONS = ("uniform_average", "raw_values")


def _as_float_2d(name, values, infinite_ok=False):
    array = _as_float(name, values)
    if array.ndim == 1:
        array = array[:, np.newaxis]
    if array.ndim != 2:
        raise ValueError(
            f"{name} must have shape (n_samples,) or (n_samples, n_targets), got shape "
            f"{array.shape}."
        )
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN values.")
    if not infinite_ok and not np.isfinite(array).all():
        raise ValueError(f"{name} contains infinite values.")
    return array


def _check_regression_arrays(infinite_ok=(), **arrays):
    """Return the arrays as 2-D float64 arrays of one shape (n_samples, n_targets).

    (n,) and (n, 1) are treated as the same shape. The arrays named in ``infinite_ok``
    may hold infinities (an interval's bounds), none may hold NaN.
    """
    checked = {
        name: _as_float_2d(name, values, name in infinite_ok) for name, values in arrays.items()
    }
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
    kept = weights > 0  # a row of weight 0 counts for nothing, even with an infinite value
    return weights[kept] @ values[kept] / weights.sum()


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
    # infinite bounds are an interval's way to say "anything": a conformal interval
    # calibrated on too few rows (predict_interval then warns) is (-inf, inf)
    checked = _check_regression_arrays(infinite_ok=("lower", "upper"), **arrays)
    lower, upper = checked[-2:]
    if np.isposinf(lower).any() or np.isneginf(upper).any():
        raise ValueError(
            "lower must not be +inf nor upper -inf: such an interval is empty. Check that "
            "the bounds are not swapped."
        )
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
        ``lower`` may be ``-inf`` and ``upper`` ``+inf`` (an unbounded interval covers).
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
        Interval bounds, with ``lower <= upper``; infinite bounds give an infinite width.
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
