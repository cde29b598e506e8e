import functools
import pickle
import warnings

import numpy as np
import pytest
import sklearn
from scipy.stats import norm
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_iris, make_classification
from sklearn.decomposition import PCA
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.frozen import FrozenEstimator
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, WhiteKernel
from sklearn.linear_model import BayesianRidge, LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)

from sklaplace.metrics import (
    expected_calibration_error,
    gaussian_nll,
    interval_coverage,
    interval_width,
    make_calibration_error_scorer,
    make_interval_scorer,
    neg_expected_calibration_error,
    neg_gaussian_nll,
    reliability_curve,
)

# Five samples, three classes, five bins of width 0.2 (no confidence on a bin edge):
# bin [0.4, 0.6): confidences 0.5 (right), 0.45 (wrong)  -> conf 0.475, acc 0.5
# bin [0.6, 0.8): confidence 0.7 (right)                 -> conf 0.7,   acc 1.0
# bin [0.8, 1.0]: confidences 0.9 (right), 0.85 (wrong)  -> conf 0.875, acc 0.5
# ECE = 2/5 * 0.025 + 1/5 * 0.3 + 2/5 * 0.375 = 0.22
HAND_Y = np.array([0, 2, 1, 1, 2])
HAND_PROB = np.array(
    [
        [0.9, 0.05, 0.05],
        [0.1, 0.85, 0.05],
        [0.3, 0.5, 0.2],
        [0.45, 0.35, 0.2],
        [0.2, 0.1, 0.7],
    ]
)


def _calibrated_sample(rng, n_samples, n_classes):
    """Probabilities from a Dirichlet and labels drawn from exactly those probabilities."""
    y_prob = rng.dirichlet(np.ones(n_classes), size=n_samples)
    u = rng.random(n_samples)[:, np.newaxis]
    y_true = np.minimum((u > np.cumsum(y_prob, axis=1)).sum(axis=1), n_classes - 1)
    return y_true, y_prob


# --------------------------------------------------------------------------------------
# ECE and reliability curve
# --------------------------------------------------------------------------------------


def test_reliability_curve_hand_example():
    confidence, accuracy, counts = reliability_curve(HAND_Y, HAND_PROB, n_bins=5)
    np.testing.assert_allclose(confidence, [0.475, 0.7, 0.875])
    np.testing.assert_allclose(accuracy, [0.5, 1.0, 0.5])
    np.testing.assert_array_equal(counts, [2, 1, 2])


def test_ece_hand_example():
    assert expected_calibration_error(HAND_Y, HAND_PROB, n_bins=5) == pytest.approx(0.22)
    assert isinstance(expected_calibration_error(HAND_Y, HAND_PROB), float)


def test_ece_single_bin_is_gap_of_means():
    ece = expected_calibration_error(HAND_Y, HAND_PROB, n_bins=1)
    accuracy = np.mean(HAND_PROB.argmax(axis=1) == HAND_Y)
    assert ece == pytest.approx(abs(accuracy - HAND_PROB.max(axis=1).mean()))


def test_bins_include_lower_edge_and_last_bin_includes_one():
    # n_bins=2: 0.5 belongs to [0.5, 1], and 1.0 too.
    y_prob = np.array([[0.5, 0.5], [1.0, 0.0], [0.3, 0.7]])
    _, _, counts = reliability_curve([0, 0, 1], y_prob, n_bins=2)
    np.testing.assert_array_equal(counts, [3])
    _, _, counts = reliability_curve([0, 0, 1], y_prob, n_bins=4)
    np.testing.assert_array_equal(counts, [2, 1])  # [0.5, 0.75): 0.5, 0.7; [0.75, 1]: 1.0


def test_ece_perfectly_calibrated_is_near_zero():
    n_samples, n_bins = 20_000, 15
    y_true, y_prob = _calibrated_sample(np.random.default_rng(0), n_samples, n_classes=4)
    # Within a bin, accuracy is a mean of n_b Bernoulli draws whose expectation is the
    # bin's mean confidence, so E|gap_b| <= 0.5 / sqrt(n_b); with sum_b sqrt(n_b) <=
    # sqrt(n_bins * n) (Cauchy-Schwarz), E[ECE] <= 0.5 * sqrt(n_bins / n) (~0.014 here).
    tolerance = 0.5 * np.sqrt(n_bins / n_samples)
    ece = expected_calibration_error(y_true, y_prob, n_bins=n_bins)
    assert ece < tolerance

    # The same labels with overconfident (sharpened) probabilities are clearly detected.
    sharpened = y_prob**3 / np.sum(y_prob**3, axis=1, keepdims=True)
    assert expected_calibration_error(y_true, sharpened, n_bins=n_bins) > 5 * tolerance


def test_binary_1d_equals_two_columns():
    rng = np.random.default_rng(1)
    p = rng.random(300)
    y = (rng.random(300) < p).astype(int)
    two_columns = np.column_stack([1 - p, p])
    expected = expected_calibration_error(y, two_columns, n_bins=10)
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(expected)
    assert expected_calibration_error(y, p[:, np.newaxis], n_bins=10) == pytest.approx(expected)
    curve_1d = reliability_curve(y, p, n_bins=10)
    curve_2d = reliability_curve(y, two_columns, n_bins=10)
    for a, b in zip(curve_1d, curve_2d, strict=True):
        np.testing.assert_allclose(a, b)

    # Positive class is the second label, also for string labels.
    y_str = np.where(y == 1, "yes", "no")
    assert expected_calibration_error(y_str, p, n_bins=10) == pytest.approx(expected)
    flipped = expected_calibration_error(y_str, p, n_bins=10, labels=["yes", "no"])
    assert flipped == pytest.approx(expected_calibration_error(1 - y, p, n_bins=10))


def test_string_labels_match_integer_labels():
    names = np.array(["cat", "dog", "emu"])
    ece_int = expected_calibration_error(HAND_Y, HAND_PROB, n_bins=5)
    assert expected_calibration_error(names[HAND_Y], HAND_PROB, n_bins=5) == pytest.approx(ece_int)


def test_labels_give_column_order():
    # Reordering the columns together with the labels changes nothing.
    names = np.array(["cat", "dog", "emu"])
    order = [2, 0, 1]
    ece = expected_calibration_error(
        names[HAND_Y], HAND_PROB[:, order], n_bins=5, labels=names[order]
    )
    assert ece == pytest.approx(0.22)


def test_labels_needed_when_a_class_is_missing_from_y_true():
    names = np.array(["cat", "dog", "emu"])
    keep = HAND_Y != 1  # "dog" never occurs
    with pytest.raises(ValueError, match="Pass labels= with one label per column"):
        expected_calibration_error(names[HAND_Y][keep], HAND_PROB[keep], n_bins=5)
    ece = expected_calibration_error(names[HAND_Y][keep], HAND_PROB[keep], n_bins=5, labels=names)
    assert ece == pytest.approx(
        expected_calibration_error(HAND_Y[keep], HAND_PROB[keep], n_bins=5, labels=[0, 1, 2])
    )


@pytest.mark.parametrize(
    ("y_true", "y_prob", "kwargs", "match"),
    [
        ([0, 1], [[0.2, 0.8], [0.4, 0.6]], {"n_bins": 0}, "n_bins must be an integer >= 1"),
        ([0, 1], [[0.2, 0.8], [0.4, 0.6]], {"n_bins": 2.5}, "n_bins must be an integer >= 1"),
        ([0, 1], [[0.2, 0.8]], {}, "same number of samples"),
        ([0, 1], [[1.5, -0.5], [0.4, 0.6]], {}, r"probabilities in \[0, 1\].*logits"),
        ([0, 1], [[np.nan, 0.5], [0.4, 0.6]], {}, "NaN or infinite"),
        ([0, 1], [["a", "b"], ["c", "d"]], {}, "must hold real numbers"),
        ([0, 1], np.ones((2, 2, 2)) / 2, {}, r"must have shape \(n_samples, n_classes\)"),
        ([[0], [1]], [[0.2, 0.8], [0.4, 0.6]], {}, "y_true must be a 1-D array"),
        ([], np.empty((0, 2)), {}, "empty"),
        ([1, 1], [0.2, 0.8], {}, r"Pass labels=\[negative, positive\]"),
        ([0, 1, 2], [0.2, 0.8, 0.5], {}, "1-D array of positive-class probabilities"),
        ([0, 1, 2], [[0.2, 0.8], [0.4, 0.6], [0.5, 0.5]], {}, "2 columns but there are 3"),
        ([0, 1], [[0.2, 0.8], [0.4, 0.6]], {"labels": [0, 1, 2]}, "2 columns but there are 3"),
        ([0, 1], [[0.2, 0.8], [0.4, 0.6]], {"labels": [0, 0]}, "must not contain duplicates"),
        ([0, 1], [[0.2, 0.8], [0.4, 0.6]], {"labels": [[0, 1]]}, "labels must be 1-D"),
        ([0, 5], [[0.2, 0.8], [0.4, 0.6]], {"labels": [0, 1]}, r"not among labels.*\[5\]"),
    ],
)
def test_ece_errors(y_true, y_prob, kwargs, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(y_true, y_prob, **kwargs)
    with pytest.raises(ValueError, match=match):
        reliability_curve(y_true, y_prob, **kwargs)


# --------------------------------------------------------------------------------------
# Regression metrics
# --------------------------------------------------------------------------------------


def test_gaussian_nll_matches_scipy_1d():
    rng = np.random.default_rng(2)
    y, mean = rng.normal(size=50), rng.normal(size=50)
    std = rng.uniform(0.1, 3.0, size=50)
    expected = -norm.logpdf(y, loc=mean, scale=std).mean()
    assert gaussian_nll(y, mean, std) == pytest.approx(expected)
    assert isinstance(gaussian_nll(y, mean, std), float)
    # (n,) and (n, 1) are interchangeable.
    assert gaussian_nll(y[:, None], mean, std[:, None]) == pytest.approx(expected)


def test_gaussian_nll_matches_scipy_2d():
    rng = np.random.default_rng(3)
    y, mean = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    std = rng.uniform(0.1, 3.0, size=(40, 3))
    per_target = -norm.logpdf(y, loc=mean, scale=std).mean(axis=0)
    raw = gaussian_nll(y, mean, std, multioutput="raw_values")
    assert raw.shape == (3,)
    np.testing.assert_allclose(raw, per_target)
    assert gaussian_nll(y, mean, std) == pytest.approx(per_target.mean())


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0.0, 1.0], [0.0, 0.0], [1.0, 0.0]), "y_std must be strictly positive"),
        (([0.0, 1.0], [0.0, 0.0], [1.0, -1.0]), "y_std must be strictly positive"),
        (([0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0]), "must have the same shape"),
        (([0.0, 1.0], [[0.0, 0.0], [0.0, 0.0]], [1.0, 1.0]), "must have the same shape"),
        (([0.0, np.inf], [0.0, 0.0], [1.0, 1.0]), "y_true contains infinite values"),
        ((np.zeros((2, 2, 2)), [0.0], [1.0]), r"shape \(n_samples,\) or"),
        (([], [], []), "empty"),
    ],
)
def test_gaussian_nll_errors(args, match):
    with pytest.raises(ValueError, match=match):
        gaussian_nll(*args)


def test_multioutput_option_error():
    with pytest.raises(ValueError, match="multioutput must be one of"):
        gaussian_nll([0.0], [0.0], [1.0], multioutput="variance_weighted")


def test_interval_coverage_and_width_hand_examples():
    y = [1.0, 2.0, 5.0, 3.0, -1.0]
    lower = [0.0, 2.0, 0.0, 3.0, 0.0]
    upper = [2.0, 4.0, 4.0, 3.0, 1.0]
    # Bounds are inclusive: 2 in [2, 4] and 3 in [3, 3]; 5 and -1 are outside.
    assert interval_coverage(y, lower, upper) == pytest.approx(3 / 5)
    assert interval_width(lower, upper) == pytest.approx((2 + 2 + 4 + 0 + 1) / 5)


def test_interval_metrics_multioutput():
    y = np.array([[0.5, 10.0], [3.0, 20.0]])
    lower = np.array([[0.0, 0.0], [0.0, 0.0]])
    upper = np.array([[1.0, 30.0], [2.0, 10.0]])
    coverage = interval_coverage(y, lower, upper, multioutput="raw_values")
    np.testing.assert_allclose(coverage, [0.5, 0.5])
    np.testing.assert_allclose(interval_width(lower, upper, multioutput="raw_values"), [1.5, 20])
    assert interval_width(lower, upper) == pytest.approx(10.75)


def test_interval_errors():
    with pytest.raises(ValueError, match=r"lower must not exceed upper.*swapped"):
        interval_coverage([1.0, 2.0], [0.0, 3.0], [2.0, 1.0])
    with pytest.raises(ValueError, match="lower must not exceed upper"):
        interval_width([1.0], [0.0])
    with pytest.raises(ValueError, match="must have the same shape"):
        interval_coverage([1.0, 2.0, 3.0], [0.0, 0.0], [1.0, 1.0])


def test_reliability_curve_bin_edges():
    *curve, edges = reliability_curve(HAND_Y, HAND_PROB, n_bins=5, return_bin_edges=True)
    np.testing.assert_allclose(edges, [[0.4, 0.6], [0.6, 0.8], [0.8, 1.0]])
    for a, b in zip(curve, reliability_curve(HAND_Y, HAND_PROB, n_bins=5), strict=True):
        np.testing.assert_array_equal(a, b)
    # Every returned bin holds its mean confidence.
    assert np.all((edges[:, 0] <= curve[0]) & (curve[0] <= edges[:, 1]))


# --------------------------------------------------------------------------------------
# Sample weights
# --------------------------------------------------------------------------------------

# HAND_Y / HAND_PROB with weights 2, 1, 3, 1, 0.5:
# bin [0.4, 0.6): 0.5 right (w 3), 0.45 wrong (w 1)  -> weight 4, conf 1.95 / 4, acc 3 / 4
# bin [0.6, 0.8): 0.7 right (w 0.5)                  -> weight 0.5, conf 0.7, acc 1
# bin [0.8, 1.0]: 0.9 right (w 2), 0.85 wrong (w 1)  -> weight 3, conf 2.65 / 3, acc 2 / 3
# ECE = (4 * 0.2625 + 0.5 * 0.3 + 3 * (2.65 / 3 - 2 / 3)) / 7.5 = 1.85 / 7.5
HAND_WEIGHTS = np.array([2.0, 1.0, 3.0, 1.0, 0.5])


def test_weighted_reliability_curve_and_ece_hand_example():
    confidence, accuracy, counts = reliability_curve(
        HAND_Y, HAND_PROB, n_bins=5, sample_weight=HAND_WEIGHTS
    )
    np.testing.assert_allclose(confidence, [1.95 / 4, 0.7, 2.65 / 3])
    np.testing.assert_allclose(accuracy, [3 / 4, 1.0, 2 / 3])
    np.testing.assert_allclose(counts, [4.0, 0.5, 3.0])
    ece = expected_calibration_error(HAND_Y, HAND_PROB, n_bins=5, sample_weight=HAND_WEIGHTS)
    assert ece == pytest.approx(1.85 / 7.5)
    # Unit weights change nothing, and the unweighted counts stay integers.
    assert expected_calibration_error(
        HAND_Y, HAND_PROB, n_bins=5, sample_weight=np.ones(5)
    ) == pytest.approx(0.22)
    assert reliability_curve(HAND_Y, HAND_PROB, n_bins=5)[2].dtype.kind == "i"


def test_weighted_regression_metrics_hand_examples():
    y = [1.0, 2.0, 5.0, 3.0, -1.0]
    lower = [0.0, 2.0, 0.0, 3.0, 0.0]
    upper = [2.0, 4.0, 4.0, 3.0, 1.0]
    w = [1.0, 2.0, 3.0, 0.0, 4.0]
    # Inside: rows 0, 1 and 3 (weights 1, 2, 0) out of a total weight of 10.
    assert interval_coverage(y, lower, upper, sample_weight=w) == pytest.approx(0.3)
    # Widths 2, 2, 4, 0, 1.
    assert interval_width(lower, upper, sample_weight=w) == pytest.approx(22 / 10)

    rng = np.random.default_rng(4)
    y, mean = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    std = rng.uniform(0.2, 2.0, size=(30, 2))
    w = rng.uniform(0, 3, size=30)
    expected = np.average(-norm.logpdf(y, loc=mean, scale=std), axis=0, weights=w)
    raw = gaussian_nll(y, mean, std, sample_weight=w, multioutput="raw_values")
    np.testing.assert_allclose(raw, expected)
    assert gaussian_nll(y, mean, std, sample_weight=w) == pytest.approx(expected.mean())


def _regression_sample(rng, n=40):
    y, mean = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    std = rng.uniform(0.3, 2.0, size=(n, 2))
    return y, mean, std, mean - 1.2 * std, mean + 0.8 * std


METRICS_ON_ROWS = {
    "reliability_curve": lambda d, **kw: reliability_curve(d["y"], d["p"], n_bins=10, **kw),
    "ece": lambda d, **kw: expected_calibration_error(d["y"], d["p"], n_bins=10, **kw),
    "ece_binary_1d": lambda d, **kw: expected_calibration_error(
        d["y"] % 2, d["p"][:, 0], n_bins=10, labels=[0, 1], **kw
    ),
    "gaussian_nll": lambda d, **kw: gaussian_nll(
        d["t"], d["mean"], d["std"], multioutput="raw_values", **kw
    ),
    "interval_coverage": lambda d, **kw: interval_coverage(
        d["t"], d["lower"], d["upper"], multioutput="raw_values", **kw
    ),
    "interval_width": lambda d, **kw: interval_width(d["lower"], d["upper"], **kw),
}


def _rows(seed=5, n=40):
    rng = np.random.default_rng(seed)
    y, p = _calibrated_sample(rng, n, n_classes=3)
    t, mean, std, lower, upper = _regression_sample(rng, n)
    return {"y": y, "p": p, "t": t, "mean": mean, "std": std, "lower": lower, "upper": upper}


def _flat(result):
    """A metric's output(s) as one 1-D array."""
    parts = result if isinstance(result, tuple) else (result,)
    return np.concatenate([np.ravel(part) for part in parts]).astype(np.float64)


def _take(data, index):
    return {key: value[index] for key, value in data.items()}


@pytest.mark.parametrize("metric", list(METRICS_ON_ROWS), ids=list(METRICS_ON_ROWS))
def test_integer_weights_equal_repeated_rows(metric):
    compute = METRICS_ON_ROWS[metric]
    data = _rows()
    weights = np.random.default_rng(6).integers(0, 4, size=40)
    assert (weights == 0).any() and (weights > 1).any()
    weighted = _flat(compute(data, sample_weight=weights))
    repeated = _flat(compute(_take(data, np.repeat(np.arange(40), weights))))
    np.testing.assert_allclose(weighted, repeated, rtol=1e-12, atol=1e-15)
    # The weights matter here: ignoring them gives something else.
    unweighted = _flat(compute(data))
    assert unweighted.shape != weighted.shape or not np.allclose(unweighted, weighted)


@pytest.mark.parametrize("metric", list(METRICS_ON_ROWS), ids=list(METRICS_ON_ROWS))
def test_scaling_the_weights_changes_nothing(metric):
    compute = METRICS_ON_ROWS[metric]
    data = _rows()
    weights = np.random.default_rng(7).uniform(0.1, 2.0, size=40)
    once, scaled = compute(data, sample_weight=weights), compute(data, sample_weight=7 * weights)
    if metric == "reliability_curve":  # the counts are total weights: they scale
        np.testing.assert_allclose(scaled[2], 7 * once[2], rtol=1e-12)
        once, scaled = once[:2], scaled[:2]
    np.testing.assert_allclose(_flat(once), _flat(scaled), rtol=1e-12)


@pytest.mark.parametrize("metric", list(METRICS_ON_ROWS), ids=list(METRICS_ON_ROWS))
@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (-np.ones(40), "Negative values in data passed to `sample_weight`"),
        (np.ones(39), r"sample_weight.shape == \(39,\), expected \(40,\)"),
        (np.zeros(40), "at least one non-zero"),
        (np.r_[np.nan, np.ones(39)], "NaN"),
        (np.ones((40, 2)), "1D array or scalar"),
    ],
    ids=["negative", "length", "all-zero", "nan", "2-d"],
)
def test_sample_weight_errors(metric, weights, match):
    with pytest.raises(ValueError, match=match):
        METRICS_ON_ROWS[metric](_rows(), sample_weight=weights)


# --------------------------------------------------------------------------------------
# float64
# --------------------------------------------------------------------------------------


def test_regression_metrics_compute_in_float64():
    # In float32, (y - mean) / std = 1e40 overflows (float32 stops at 3.4e38).
    y, mean = np.array([1e20, 0.0], np.float32), np.zeros(2, np.float32)
    std = np.array([1e-20, 1.0], np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(((y - mean) / std) ** 2).all()
    expected = gaussian_nll(y.astype(np.float64), mean, std.astype(np.float64))
    assert np.isfinite(expected)
    assert gaussian_nll(y, mean, std) == expected
    assert isinstance(gaussian_nll(y, mean, std), float)


def test_float32_probabilities_are_cast_before_use():
    rng = np.random.default_rng(8)
    y, p = _calibrated_sample(rng, 500, n_classes=4)
    p32 = p.astype(np.float32)
    for a, b in zip(
        reliability_curve(y, p32), reliability_curve(y, p32.astype(np.float64)), strict=True
    ):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert reliability_curve(y, p32)[0].dtype == np.float64


def test_log_loss_clips_at_the_input_precision():
    """What the module docstring says about scikit-learn's log loss on float32."""
    from sklearn.metrics import log_loss

    confidently_wrong = np.array([[1.0, 0.0], [0.0, 1.0]])
    as_float32 = log_loss([1, 0], confidently_wrong.astype(np.float32))
    as_float64 = log_loss([1, 0], confidently_wrong)
    assert as_float32 == pytest.approx(-np.log(np.finfo(np.float32).eps), rel=1e-6)  # ~16
    assert as_float64 == pytest.approx(-np.log(np.finfo(np.float64).eps), rel=1e-6)  # ~36


# --------------------------------------------------------------------------------------
# Scorers
# --------------------------------------------------------------------------------------


class GaussianRegressor(RegressorMixin, BaseEstimator):
    """Stand-in for a Laplace regressor: BayesianRidge with its std scaled by `scale`.

    `scale` does not change the predictive mean, like the prior precision of a Laplace
    regressor.
    """

    def __init__(self, scale=1.0):
        self.scale = scale

    def fit(self, X, y, sample_weight=None):
        self.model_ = BayesianRidge().fit(X, y, sample_weight=sample_weight)
        return self

    def predict(self, X, return_std=False):
        mean, std = self.model_.predict(X, return_std=True)
        return (mean, self.scale * std) if return_std else mean

    def predict_interval(self, X, confidence=0.9):
        mean, std = self.predict(X, return_std=True)
        half_width = norm.ppf(0.5 + confidence / 2) * std
        return mean - half_width, mean + half_width


def _linear_data(n_samples=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.7, size=n_samples)
    return X, y


def test_neg_expected_calibration_error_in_grid_search():
    X, y = load_iris(return_X_y=True)
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    grid = {"C": [0.01, 1.0]}
    search = GridSearchCV(
        LogisticRegression(max_iter=1000), grid, scoring=neg_expected_calibration_error, cv=cv
    ).fit(X, y)
    for i, C in enumerate(grid["C"]):
        manual = []
        for train, test in cv.split(X, y):
            model = LogisticRegression(C=C, max_iter=1000).fit(X[train], y[train])
            manual.append(-expected_calibration_error(y[test], model.predict_proba(X[test])))
        assert search.cv_results_["mean_test_score"][i] == pytest.approx(np.mean(manual))
    # Strong regularisation makes the probabilities far too flat: clearly miscalibrated.
    assert search.best_params_ == {"C": 1.0}


def test_neg_expected_calibration_error_uses_classes_():
    X, y = make_classification(n_samples=300, n_classes=3, n_informative=4, random_state=0)
    names = np.array(["a", "b", "c"])[y]
    model = LogisticRegression(max_iter=1000).fit(X, names)
    test = names != "b"  # a test set without one of the classes
    with pytest.raises(ValueError, match="Pass labels="):
        expected_calibration_error(names[test], model.predict_proba(X[test]))
    score = neg_expected_calibration_error(model, X[test], names[test], n_bins=10)
    expected = expected_calibration_error(
        names[test], model.predict_proba(X[test]), n_bins=10, labels=model.classes_
    )
    assert score == pytest.approx(-expected)


def test_neg_gaussian_nll_tunes_what_r2_cannot():
    X, y = _linear_data()
    grid = {"scale": [0.25, 1.0, 4.0]}
    nll_search = GridSearchCV(GaussianRegressor(), grid, scoring=neg_gaussian_nll, cv=3).fit(X, y)
    assert nll_search.best_params_ == {"scale": 1.0}
    manual = -gaussian_nll(
        y[:200], *GaussianRegressor().fit(X[200:], y[200:]).predict(X[:200], return_std=True)
    )
    assert neg_gaussian_nll(GaussianRegressor().fit(X[200:], y[200:]), X[:200], y[:200]) == (
        pytest.approx(manual)
    )
    # R^2 is identical for every scale: it cannot select the uncertainty.
    r2 = GridSearchCV(GaussianRegressor(), grid, cv=3).fit(X, y).cv_results_["mean_test_score"]
    np.testing.assert_allclose(r2, r2[0])


def test_neg_gaussian_nll_requires_mean_std_tuple():
    class PointRegressor(RegressorMixin, BaseEstimator):
        def fit(self, X, y):
            return self

        def predict(self, X, return_std=False):
            return np.zeros(len(X))

    X, y = _linear_data(20)
    with pytest.raises(ValueError, match=r"return a \(mean, std\) tuple"):
        neg_gaussian_nll(PointRegressor().fit(X, y), X, y)


@pytest.mark.parametrize(
    ("kind", "best_scale"),
    [("coverage", 4.0), ("neg_width", 0.25), ("neg_coverage_error", 1.0)],
)
def test_interval_scorers_in_grid_search(kind, best_scale):
    X, y = _linear_data()
    scorer = make_interval_scorer(confidence=0.8, kind=kind)
    search = GridSearchCV(
        GaussianRegressor(), {"scale": [0.25, 1.0, 4.0]}, scoring=scorer, cv=3
    ).fit(X, y)
    assert search.best_params_ == {"scale": best_scale}


def test_interval_scorer_values():
    X, y = _linear_data()
    model = GaussianRegressor().fit(X[200:], y[200:])
    lower, upper = model.predict_interval(X[:200], confidence=0.8)
    coverage = interval_coverage(y[:200], lower, upper)
    scores = {
        kind: make_interval_scorer(0.8, kind=kind)(model, X[:200], y[:200])
        for kind in ("coverage", "neg_width", "neg_coverage_error")
    }
    assert scores["coverage"] == pytest.approx(coverage)
    assert scores["neg_width"] == pytest.approx(-interval_width(lower, upper))
    assert scores["neg_coverage_error"] == pytest.approx(-abs(coverage - 0.8))
    # Calibrated Gaussian intervals cover about 80% (binomial sd ~0.03 for 200 points).
    assert abs(coverage - 0.8) < 0.1


def test_make_interval_scorer_is_picklable_and_has_repr():
    scorer = make_interval_scorer(0.95, kind="neg_coverage_error")
    assert repr(scorer) == "make_interval_scorer(confidence=0.95, kind='neg_coverage_error')"
    restored = pickle.loads(pickle.dumps(scorer))
    X, y = _linear_data(100)
    model = GaussianRegressor().fit(X, y)
    assert restored(model, X, y) == scorer(model, X, y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"confidence": 90}, r"strictly between 0 and 1.*confidence=0.9"),
        ({"confidence": 0.0}, "strictly between 0 and 1"),
        ({"confidence": 1.0}, "strictly between 0 and 1"),
        ({"confidence": "0.9"}, "strictly between 0 and 1"),
        ({"kind": "width"}, "kind must be one of"),
    ],
)
def test_make_interval_scorer_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_interval_scorer(**kwargs)


def test_interval_scorer_requires_tuple():
    class BadIntervals(ClassifierMixin, BaseEstimator):
        def predict_interval(self, X, confidence=0.9):
            return np.zeros((len(X), 2))

    with pytest.raises(ValueError, match=r"return a \(lower, upper\) tuple"):
        make_interval_scorer()(BadIntervals(), np.zeros((3, 1)), np.zeros(3))


def test_make_calibration_error_scorer():
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    scorer = make_calibration_error_scorer(n_bins=4)
    expected = -expected_calibration_error(y, model.predict_proba(X), n_bins=4)
    assert scorer(model, X, y) == pytest.approx(expected)
    assert scorer(model, X, y) != pytest.approx(neg_expected_calibration_error(model, X, y))
    # The partial of the function, as documented before, gives the same.
    partial = functools.partial(neg_expected_calibration_error, n_bins=4)
    assert partial(model, X, y) == pytest.approx(expected)
    assert pickle.loads(pickle.dumps(scorer))(model, X, y) == scorer(model, X, y)
    with pytest.raises(ValueError, match="n_bins must be an integer >= 1"):
        make_calibration_error_scorer(n_bins=0)


def test_scorers_pass_sample_weight_to_the_metric():
    X, y = _linear_data()
    w = np.random.default_rng(9).uniform(0, 3, size=len(y))
    model = GaussianRegressor().fit(X[200:], y[200:])
    mean, std = model.predict(X[:200], return_std=True)
    lower, upper = model.predict_interval(X[:200], confidence=0.8)
    Xt, yt, wt = X[:200], y[:200], w[:200]
    assert neg_gaussian_nll(model, Xt, yt, sample_weight=wt) == pytest.approx(
        -gaussian_nll(yt, mean, std, sample_weight=wt)
    )
    coverage = interval_coverage(yt, lower, upper, sample_weight=wt)
    scores = {
        "coverage": coverage,
        "neg_width": -interval_width(lower, upper, sample_weight=wt),
        "neg_coverage_error": -abs(coverage - 0.8),
    }
    for kind, expected in scores.items():
        scorer = make_interval_scorer(0.8, kind=kind)
        assert scorer(model, Xt, yt, sample_weight=wt) == pytest.approx(expected)
        assert scorer(model, Xt, yt) != pytest.approx(expected)  # the weights matter
    Xc, yc = load_iris(return_X_y=True)
    clf = LogisticRegression(C=0.05, max_iter=1000).fit(Xc, yc)
    wc = np.where(yc == 2, 3.0, 1.0)
    expected = -expected_calibration_error(yc, clf.predict_proba(Xc), sample_weight=wc)
    assert neg_expected_calibration_error(clf, Xc, yc, sample_weight=wc) == pytest.approx(expected)
    assert make_calibration_error_scorer()(clf, Xc, yc, sample_weight=wc) == pytest.approx(
        expected
    )


def _weighted_fold_scores(X, y, w, cv, scale, score):
    """Scores of GaussianRegressor(scale) fitted with weights on each fold's training rows."""
    scores = []
    for train, test in cv.split(X, y):
        model = GaussianRegressor(scale).fit(X[train], y[train], sample_weight=w[train])
        scores.append(score(model, X[test], y[test], w[test]))
    return np.array(scores)


@pytest.mark.skipif(
    not hasattr(GridSearchCV, "_check_scorers_accept_sample_weight"),
    reason="GridSearchCV passes fit's sample_weight to the scorers from scikit-learn 1.7",
)
def test_grid_search_passes_sample_weight_to_the_scorers_without_routing():
    X, y = _linear_data(300)
    w = np.random.default_rng(10).integers(1, 5, size=len(y)).astype(float)
    cv = KFold(3, shuffle=True, random_state=0)
    scoring = {"nll": neg_gaussian_nll, "coverage": make_interval_scorer(0.8)}
    search = GridSearchCV(
        GaussianRegressor(), {"scale": [0.5, 2.0]}, scoring=scoring, refit="nll", cv=cv
    ).fit(X, y, sample_weight=w)
    single = GridSearchCV(
        GaussianRegressor(), {"scale": [0.5, 2.0]}, scoring=neg_gaussian_nll, cv=cv
    ).fit(X, y, sample_weight=w)
    for i, scale in enumerate([0.5, 2.0]):
        nll = _weighted_fold_scores(
            X, y, w, cv, scale, lambda m, X_, y_, w_: neg_gaussian_nll(m, X_, y_, sample_weight=w_)
        )
        unweighted = _weighted_fold_scores(
            X, y, w, cv, scale, lambda m, X_, y_, w_: neg_gaussian_nll(m, X_, y_)
        )
        assert search.cv_results_["mean_test_nll"][i] == pytest.approx(nll.mean())
        assert single.cv_results_["mean_test_score"][i] == pytest.approx(nll.mean())
        assert nll.mean() != pytest.approx(unweighted.mean())
        coverage = _weighted_fold_scores(
            X,
            y,
            w,
            cv,
            scale,
            lambda m, X_, y_, w_: make_interval_scorer(0.8)(m, X_, y_, sample_weight=w_),
        )
        assert search.cv_results_["mean_test_coverage"][i] == pytest.approx(coverage.mean())


def test_set_score_request_returns_a_new_scorer():
    with pytest.raises(RuntimeError, match="enable_metadata_routing=True"):
        neg_gaussian_nll.set_score_request(sample_weight=True)
    interval = make_interval_scorer(0.8)
    with sklearn.config_context(enable_metadata_routing=True):
        names = {
            neg_gaussian_nll: "neg_gaussian_nll",
            neg_expected_calibration_error: "neg_expected_calibration_error",
            interval: "make_interval_scorer(confidence=0.8, kind='coverage')",
        }
        for scorer, name in names.items():
            requested = scorer.set_score_request(sample_weight=True)
            assert requested is not scorer
            assert repr(requested) == name  # as routing's messages show it
            assert requested.get_metadata_routing().score.requests == {"sample_weight": True}
            # The shared scorer is untouched.
            assert scorer.get_metadata_routing().score.requests == {"sample_weight": None}
            renamed = requested.set_score_request(sample_weight="weights")
            assert renamed.get_metadata_routing().score.requests == {"sample_weight": "weights"}
            assert requested.get_metadata_routing().score.requests == {"sample_weight": True}
        with pytest.raises(ValueError, match="alias"):
            neg_gaussian_nll.set_score_request(sample_weight="not an identifier")
        # What it returns pickles and scores like the function.
        requested = neg_gaussian_nll.set_score_request(sample_weight=True)
        X, y = _linear_data(100)
        model = GaussianRegressor().fit(X, y)
        restored = pickle.loads(pickle.dumps(requested))
        assert restored(model, X, y) == neg_gaussian_nll(model, X, y)
    assert pickle.loads(pickle.dumps(neg_gaussian_nll)) is neg_gaussian_nll


def test_grid_search_routes_sample_weight_to_requesting_scorers():
    X, y = _linear_data(300)
    w = np.random.default_rng(11).integers(1, 5, size=len(y)).astype(float)
    cv = KFold(3, shuffle=True, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        estimator = GaussianRegressor().set_fit_request(sample_weight=True)
        scoring = {
            "nll": neg_gaussian_nll.set_score_request(sample_weight=True),
            "coverage": make_interval_scorer(0.8).set_score_request(sample_weight=False),
        }
        search = GridSearchCV(
            estimator, {"scale": [0.5, 2.0]}, scoring=scoring, refit="nll", cv=cv
        ).fit(X, y, sample_weight=w)
        # A scorer that was not told whether to take the weights makes the search raise.
        with pytest.raises(UnsetMetadataPassedError, match=r"neg_gaussian_nll\.score"):
            GridSearchCV(estimator, {"scale": [1.0]}, scoring=neg_gaussian_nll, cv=cv).fit(
                X, y, sample_weight=w
            )
    for i, scale in enumerate([0.5, 2.0]):
        nll = _weighted_fold_scores(
            X, y, w, cv, scale, lambda m, X_, y_, w_: neg_gaussian_nll(m, X_, y_, sample_weight=w_)
        )
        coverage = _weighted_fold_scores(
            X, y, w, cv, scale, lambda m, X_, y_, w_: make_interval_scorer(0.8)(m, X_, y_)
        )
        assert search.cv_results_["mean_test_nll"][i] == pytest.approx(nll.mean())
        assert search.cv_results_["mean_test_coverage"][i] == pytest.approx(coverage.mean())


# --------------------------------------------------------------------------------------
# Scorers on Pipelines and other wrappers
# --------------------------------------------------------------------------------------


def _wrapped(kind):
    """A fitted wrapper of GaussianRegressor and the function giving its (model, X_model)."""
    X, y = _linear_data(300)
    if kind == "pipeline":
        est = make_pipeline(StandardScaler(), GaussianRegressor(scale=1.5)).fit(X, y)
        return est, lambda X_: (est[-1], est[0].transform(X_))
    if kind == "passthrough":
        est = Pipeline(
            [("scale", StandardScaler()), ("skip", "passthrough"), ("model", GaussianRegressor())]
        ).fit(X, y)
        return est, lambda X_: (est[-1], est[0].transform(X_))
    if kind == "nested":
        inner = make_pipeline(PCA(n_components=2), GaussianRegressor(scale=0.7))
        est = make_pipeline(StandardScaler(), inner).fit(X, y)
        return est, lambda X_: (inner[-1], inner[0].transform(est[0].transform(X_)))
    if kind == "frozen":
        pipe = make_pipeline(StandardScaler(), GaussianRegressor()).fit(X, y)
        return FrozenEstimator(pipe), lambda X_: (pipe[-1], pipe[0].transform(X_))
    if kind == "search":
        grid = {"gaussianregressor__scale": [0.5, 1.0]}
        est = GridSearchCV(
            make_pipeline(StandardScaler(), GaussianRegressor()), grid, scoring=neg_gaussian_nll
        ).fit(X, y)
        best = est.best_estimator_
        return est, lambda X_: (best[-1], best[0].transform(X_))
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["pipeline", "passthrough", "nested", "frozen", "search"])
def test_scorers_reach_the_model_inside_wrappers(kind):
    estimator, model_and_rows = _wrapped(kind)
    X, y = _linear_data(100, seed=1)
    w = np.random.default_rng(12).uniform(0.5, 2, size=100)
    model, Xm = model_and_rows(X)
    mean, std = model.predict(Xm, return_std=True)
    lower, upper = model.predict_interval(Xm, confidence=0.8)
    assert neg_gaussian_nll(estimator, X, y, sample_weight=w) == pytest.approx(
        -gaussian_nll(y, mean, std, sample_weight=w), rel=1e-12
    )
    assert make_interval_scorer(0.8)(estimator, X, y) == interval_coverage(y, lower, upper)
    assert make_interval_scorer(0.8, kind="neg_width")(estimator, X, y) == pytest.approx(
        -interval_width(lower, upper), rel=1e-12
    )
    if kind == "pipeline":
        # The Pipeline's own predict gives the same mean, so X took the same path.
        np.testing.assert_allclose(estimator.predict(X), mean)


def test_pipeline_scored_with_metadata_routing_enabled():
    X, y = _linear_data(200)
    pipe = make_pipeline(StandardScaler(), GaussianRegressor()).fit(X, y)
    expected = neg_gaussian_nll(pipe, X, y)
    with sklearn.config_context(enable_metadata_routing=True):
        # The Pipeline itself cannot pass return_std on under routing...
        with pytest.raises(UnsetMetadataPassedError, match="return_std"):
            pipe.predict(X, return_std=True)
        # ...the scorer does not ask it to.
        assert neg_gaussian_nll(pipe, X, y) == expected


def _ttr(transformer=None, **kwargs):
    X, y = _linear_data(300)
    y = 3.0 * y + 10.0  # positive enough for log and Box-Cox
    y = np.exp(y / 10.0) if kwargs.get("inverse_func") is np.exp else y
    est = TransformedTargetRegressor(GaussianRegressor(), transformer=transformer, **kwargs)
    return est.fit(X, y), X, y


AFFINE = {
    "none": {},
    "standard": {"transformer": StandardScaler()},
    "minmax": {"transformer": MinMaxScaler(feature_range=(-1, 2))},
    "robust": {"transformer": RobustScaler()},
    "maxabs": {"transformer": MaxAbsScaler()},
    "scalers": {"transformer": make_pipeline(StandardScaler(), MinMaxScaler())},
}


@pytest.mark.parametrize("transform", list(AFFINE), ids=list(AFFINE))
def test_gaussian_nll_of_an_affine_target_transform(transform):
    est, X, y = _ttr(**AFFINE[transform])
    t = est.transformer_.transform(y[:, None])[:, 0]
    mean_t, std_t = est.regressor_.predict(X, return_std=True)
    # Change of variables: the density of y is that of t = g(y) times g'(y).
    h = 1e-3 * y.std()
    slope = (
        est.transformer_.transform((y + h)[:, None]) - est.transformer_.transform((y - h)[:, None])
    )[:, 0] / (2 * h)
    expected = gaussian_nll(t, mean_t, std_t) - np.mean(np.log(slope))
    assert neg_gaussian_nll(est, X, y) == pytest.approx(-expected, rel=1e-6)
    # The means are TransformedTargetRegressor.predict's.
    mean, _ = _ttr_moments(est, X)
    np.testing.assert_allclose(mean, est.predict(X), rtol=1e-12)


def _ttr_moments(est, X):
    from sklaplace.metrics import _predict_mean_std

    return _predict_mean_std(est, X, "test")


def test_gaussian_nll_of_a_two_target_affine_transform():
    X, y = _linear_data(120)
    Y = np.column_stack([y, 100.0 * y + 5.0])  # targets of very different scales
    gpr = GaussianProcessRegressor(kernel=RBF(2.0) + WhiteKernel(0.5), optimizer=None)
    est = TransformedTargetRegressor(gpr, transformer=StandardScaler()).fit(X, Y)
    mean_t, std_t = est.regressor_.predict(X, return_std=True)
    scale, offset = est.transformer_.scale_, est.transformer_.mean_
    expected = gaussian_nll(Y, mean_t * scale + offset, std_t * scale, multioutput="raw_values")
    assert neg_gaussian_nll(est, X, Y) == pytest.approx(-expected.mean(), rel=1e-10)


INCREASING = {
    "log_exp": {"func": np.log, "inverse_func": np.exp},
    "power": {"transformer": PowerTransformer()},
    "quantile": {"transformer": QuantileTransformer(n_quantiles=50)},
    "standard": {"transformer": StandardScaler()},
}


@pytest.mark.parametrize("transform", list(INCREASING), ids=list(INCREASING))
def test_intervals_of_an_increasing_target_transform(transform):
    est, X, y = _ttr(**INCREASING[transform])
    lower_t, upper_t = est.regressor_.predict_interval(X, confidence=0.8)
    inverse = est.transformer_.inverse_transform
    lower, upper = inverse(lower_t[:, None])[:, 0], inverse(upper_t[:, None])[:, 0]
    assert make_interval_scorer(0.8, kind="neg_width")(est, X, y) == pytest.approx(
        -interval_width(lower, upper), rel=1e-12
    )
    # An increasing transform keeps y inside its interval exactly when t is inside its own.
    t = est.transformer_.transform(y[:, None])[:, 0]
    coverage = make_interval_scorer(0.8)(est, X, y)
    assert coverage == pytest.approx(interval_coverage(t, lower_t, upper_t), abs=1 / len(y))
    if transform != "standard":
        with pytest.raises(ValueError, match="predictive of y is not Gaussian"):
            neg_gaussian_nll(est, X, y)


def test_unknown_target_transforms_raise():
    est, X, y = _ttr(func=lambda v: v / 2, inverse_func=lambda v: 2 * v, check_inverse=False)
    with pytest.raises(ValueError, match=r"not known to be increasing.*a lambda"):
        make_interval_scorer()(est, X, y)
    with pytest.raises(ValueError, match="Use an affine transformer"):
        neg_gaussian_nll(est, X, y)

    class MyScaler(StandardScaler):
        """A subclass may change inverse_transform: not trusted."""

    est, X, y = _ttr(transformer=MyScaler())
    with pytest.raises(ValueError, match="not known to be increasing"):
        make_interval_scorer()(est, X, y)


def test_bounds_outside_the_invertible_range_raise():
    X, y = _linear_data(300)
    # Box-Cox with lambda ~ 0.02 cannot invert t < -1 / lambda: wide intervals reach there.
    est = TransformedTargetRegressor(
        GaussianRegressor(scale=30.0), transformer=PowerTransformer(method="box-cox")
    )
    est.set_params(transformer__standardize=False).fit(X, np.exp(y))
    assert 0 < est.transformer_.lambdas_[0] < 0.1
    with pytest.raises(ValueError, match="gives NaN or infinite interval bounds"):
        make_interval_scorer(0.99)(est, X, np.exp(y))


def test_scorers_raise_for_estimators_that_cannot_serve_them():
    X, y = _linear_data(150)
    linear = make_pipeline(StandardScaler(), LinearRegression()).fit(X, y)
    with pytest.raises(TypeError, match=r"neg_gaussian_nll needs .*predict\(X, return_std=True\)"):
        neg_gaussian_nll(linear, X, y)
    with pytest.raises(TypeError, match=r"LinearRegression\.predict takes no return_std"):
        neg_gaussian_nll(LinearRegression().fit(X, y), X, y)
    ridge = BayesianRidge().fit(X, y)  # a std, but no intervals
    with pytest.raises(TypeError, match=r"predict_interval\(X, confidence=...\).*BayesianRidge"):
        make_interval_scorer(0.8)(ridge, X, y)
    with pytest.raises(TypeError, match="BayesianRidge has no predict_proba"):
        neg_expected_calibration_error(ridge, X, y)
    with pytest.raises(TypeError, match=r"make_calibration_error_scorer.*no predict_proba"):
        make_calibration_error_scorer()(ridge, X, y)
    ending = Pipeline([("scale", StandardScaler()), ("model", "passthrough")]).fit(X, y)
    with pytest.raises(TypeError, match="last step is 'passthrough'"):
        neg_gaussian_nll(ending, X, y)


def test_grid_search_raises_the_scorers_message_with_error_score_raise():
    X, y = _linear_data(150)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LinearRegression()),
        {"linearregression__fit_intercept": [True, False]},
        scoring={"nll": neg_gaussian_nll, "coverage": make_interval_scorer()},
        refit="nll",
        error_score="raise",
    )
    with pytest.raises(TypeError, match=r"neg_gaussian_nll needs an estimator whose predict"):
        search.fit(X, y)
    # With the default error_score=np.nan the same failure is only a warning and NaNs.
    search.set_params(error_score=np.nan)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(X, y)
    assert any("neg_gaussian_nll needs an estimator" in str(w.message) for w in caught)
    assert np.isnan(search.cv_results_["mean_test_nll"]).all()


def test_probabilities_rounded_just_above_one_are_accepted():
    """A softmax rounds a certain class to a few ulps above 1: accepted (and clipped) within
    8 ulps of the input's dtype, refused beyond, with the range and the dtype's slack."""
    y = [0, 1]
    exact = np.array([[1.0, 0.0], [0.3, 0.7]])
    for dtype in (np.float64, np.float32):
        eps = float(np.finfo(dtype).eps)
        rounded = exact.astype(dtype)
        rounded[0] = [1 + 2 * eps, -eps]
        assert expected_calibration_error(y, rounded) == pytest.approx(
            expected_calibration_error(y, exact.astype(dtype)), abs=4 * eps
        )
        assert np.isfinite(reliability_curve(y, rounded)[0]).all()
        beyond = exact.astype(dtype)
        beyond[0, 0] = 1 + 16 * eps
        with pytest.raises(ValueError, match=rf"rounding in {np.dtype(dtype).name}"):
            expected_calibration_error(y, beyond)


def test_unbounded_intervals_cover_and_have_infinite_width():
    """A conformal interval calibrated on too few rows is (-inf, inf): it covers, its
    width is infinite (except where its row weighs nothing), and NaN is still refused."""
    y = np.array([0.0, 1.0, 2.0])
    lower, upper = np.array([-np.inf, 0.5, 2.5]), np.array([np.inf, 2.0, 3.0])
    assert interval_coverage(y, lower, upper) == pytest.approx(2 / 3)
    assert interval_width(lower, upper) == np.inf
    assert interval_width(lower, upper, sample_weight=[0, 1, 1]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="upper -inf"):
        interval_coverage(y, lower, -upper[::-1])
    with pytest.raises(ValueError, match="NaN"):
        interval_coverage(y, np.array([np.nan, 0.5, 2.5]), upper)
    with pytest.raises(ValueError, match="infinite"):
        gaussian_nll(y, [0.0, np.inf, 1.0], [1.0, 1.0, 1.0])
