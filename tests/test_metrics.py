import pickle

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import BayesianRidge, LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sklaplace.metrics import (
    expected_calibration_error,
    gaussian_nll,
    interval_coverage,
    interval_width,
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
        (([0.0, np.inf], [0.0, 0.0], [1.0, 1.0]), "y_true contains NaN or infinite"),
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

    def fit(self, X, y):
        self.model_ = BayesianRidge().fit(X, y)
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
