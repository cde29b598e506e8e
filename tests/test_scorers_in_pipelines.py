"""The scorers of sklaplace.metrics on Laplace estimators inside Pipelines (issue 14, item 2).

A Pipeline exposes neither ``predict_interval`` nor, under metadata routing,
``predict(X, return_std=True)``: the scorers must transform X through the steps before the
Laplace estimator and ask it. Every score is compared with the metric computed by hand on
the transformed rows of the same fitted fold. The nets are trained once and frozen, so a
fit only builds the posterior.
"""

import numpy as np
import pytest
import sklearn
import torch
from _nets import classifier_net, regressor_net
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import make_classification, make_regression
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceClassifier, LaplaceRegressor
from sklaplace.metrics import (
    expected_calibration_error,
    gaussian_nll,
    interval_coverage,
    interval_width,
    make_interval_scorer,
    neg_expected_calibration_error,
    neg_gaussian_nll,
)

CV = KFold(3, shuffle=True, random_state=0)
INTERVAL_KINDS = ("coverage", "neg_width", "neg_coverage_error")


@pytest.fixture(scope="module")
def regression():
    """Rows, targets and a net trained on the standardised rows."""
    X, y = make_regression(n_samples=180, n_features=4, noise=8.0, random_state=0)
    y = y / y.std()
    torch.manual_seed(0)
    net = regressor_net(max_epochs=30, lr=0.02, optimizer=torch.optim.Adam)
    net.fit(StandardScaler().fit_transform(X).astype(np.float32), y[:, None].astype(np.float32))
    return X, y, net


@pytest.fixture(scope="module")
def classification():
    X, y = make_classification(
        n_samples=240, n_features=5, n_informative=4, n_redundant=0, n_classes=3, random_state=1
    )
    torch.manual_seed(0)
    net = classifier_net(3, max_epochs=20, lr=0.02, optimizer=torch.optim.Adam)
    net.fit(StandardScaler().fit_transform(X).astype(np.float32), y)
    return X, y, net


def _laplace_regressor(net, **params):
    # sigma about the net's error (~0.09): neither all nor no rows inside the intervals
    params = {"prior_precision": 1.0, "sigma_noise": 0.08, "interval": "gaussian", **params}
    return LaplaceRegressor(FrozenEstimator(net), **params)


def _hand_scores(model, X_model, y, sample_weight=None):
    """Every regression score of ``model`` at its own input rows, from the metrics."""
    mean, std = model.predict(X_model, return_std=True)
    lower, upper = model.predict_interval(X_model, confidence=0.9)
    coverage = interval_coverage(y, lower, upper, sample_weight=sample_weight)
    return {
        "nll": -gaussian_nll(y, mean, std, sample_weight=sample_weight),
        "coverage": coverage,
        "neg_width": -interval_width(lower, upper, sample_weight=sample_weight),
        "neg_coverage_error": -abs(coverage - 0.9),
    }


def _regression_scoring():
    return {"nll": neg_gaussian_nll} | {
        kind: make_interval_scorer(0.9, kind=kind) for kind in INTERVAL_KINDS
    }


@pytest.mark.parametrize("nested", [False, True], ids=["pipeline", "nested"])
def test_regressor_pipeline_scores_are_the_metrics_on_the_transformed_rows(regression, nested):
    X, y, net = regression
    laplace = _laplace_regressor(net)
    pipe = (
        make_pipeline(StandardScaler(), make_pipeline("passthrough", laplace))
        if nested
        else make_pipeline(StandardScaler(), laplace)
    )
    result = cross_validate(
        pipe,
        X,
        y,
        cv=CV,
        scoring=_regression_scoring(),
        return_estimator=True,
        return_indices=True,
        error_score="raise",
    )
    for fold, (fitted, test) in enumerate(
        zip(result["estimator"], result["indices"]["test"], strict=True)
    ):
        X_model = fitted[0].transform(X[test])  # the scaler fitted on this fold
        model = fitted[-1][-1] if nested else fitted[-1]
        assert isinstance(model, LaplaceRegressor)
        for name, expected in _hand_scores(model, X_model, y[test]).items():
            score = result[f"test_{name}"][fold]
            assert np.isfinite(score)
            assert score == pytest.approx(expected, rel=1e-12, abs=1e-12), name
    # The Laplace intervals are not degenerate: some rows are outside, the width is > 0.
    assert 0.5 < result["test_coverage"].mean() < 1.0
    assert (result["test_neg_width"] < 0).all()


def test_grid_search_over_a_laplace_pipeline(regression):
    X, y, net = regression
    pipe = make_pipeline(StandardScaler(), _laplace_regressor(net))
    grid = {"laplaceregressor__prior_precision": [0.01, 1.0, 100.0]}
    search = GridSearchCV(
        pipe, grid, scoring=_regression_scoring(), refit="nll", cv=CV, error_score="raise"
    ).fit(X, y)
    for name in ("nll", *INTERVAL_KINDS):
        assert np.isfinite(search.cv_results_[f"mean_test_{name}"]).all(), name
    # The prior changes the stds, so the NLL tells the candidates apart (R^2 could not).
    assert np.ptp(search.cv_results_["mean_test_nll"]) > 1e-3
    best = search.best_estimator_
    expected = _hand_scores(best[-1], best[0].transform(X), y)
    assert neg_gaussian_nll(search, X, y) == pytest.approx(expected["nll"], rel=1e-12)
    assert make_interval_scorer(0.9)(search, X, y) == expected["coverage"]


def test_target_transformed_laplace_regressor(regression):
    X, y, net = regression
    y_units = 40.0 * y + 7.0  # the net learnt the standardised target
    ttr = TransformedTargetRegressor(
        make_pipeline(StandardScaler(), _laplace_regressor(net)), transformer=StandardScaler()
    ).fit(X, y_units)
    pipe = ttr.regressor_
    mean_t, std_t = pipe[-1].predict(pipe[0].transform(X), return_std=True)
    lower_t, upper_t = pipe[-1].predict_interval(pipe[0].transform(X), confidence=0.9)
    scale, offset = ttr.transformer_.scale_[0], ttr.transformer_.mean_[0]
    nll = gaussian_nll(y_units, scale * mean_t + offset, scale * std_t)
    assert neg_gaussian_nll(ttr, X, y_units) == pytest.approx(-nll, rel=1e-10)
    width = interval_width(scale * lower_t + offset, scale * upper_t + offset)
    assert make_interval_scorer(0.9, kind="neg_width")(ttr, X, y_units) == pytest.approx(
        -width, rel=1e-10
    )
    # In the units of y the NLL grows by log(40): the density is spread over 40 times more.
    nll_t = gaussian_nll(ttr.transformer_.transform(y_units[:, None])[:, 0], mean_t, std_t)
    assert nll == pytest.approx(nll_t + np.log(scale), rel=1e-10)


def test_classifier_pipeline_with_the_calibration_error_scorer(classification):
    X, y, net = classification
    pipe = make_pipeline(
        StandardScaler(), LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0)
    )
    result = cross_validate(
        pipe,
        X,
        y,
        cv=CV,
        scoring={"ece": neg_expected_calibration_error, "log_loss": "neg_log_loss"},
        return_estimator=True,
        return_indices=True,
        error_score="raise",
    )
    for fold, (fitted, test) in enumerate(
        zip(result["estimator"], result["indices"]["test"], strict=True)
    ):
        proba = fitted[-1].predict_proba(fitted[0].transform(X[test]))
        expected = -expected_calibration_error(y[test], proba, labels=fitted[-1].classes_)
        assert result["test_ece"][fold] == pytest.approx(expected, rel=1e-12)
        assert -0.5 < result["test_ece"][fold] < 0


def test_grid_search_raises_for_a_classifier_scored_as_a_regressor(classification):
    X, y, net = classification
    laplace = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0)
    pipe = make_pipeline(StandardScaler(), laplace)
    search = GridSearchCV(
        pipe,
        {"laplaceclassifier__prior_precision": [1.0]},
        scoring=neg_gaussian_nll,
        cv=CV,
        error_score="raise",
    )
    with pytest.raises(TypeError, match=r"LaplaceClassifier\.predict takes no return_std"):
        search.fit(X, y)
    pipe.fit(X, y)
    with pytest.raises(TypeError, match="LaplaceClassifier has no predict_interval"):
        make_interval_scorer()(pipe, X, y)


def test_routed_sample_weight_reaches_fit_and_the_scorers(regression):
    X, y, net = regression
    w = np.random.default_rng(0).integers(1, 4, size=len(y)).astype(float)
    with sklearn.config_context(enable_metadata_routing=True):
        laplace = _laplace_regressor(net).set_fit_request(sample_weight=True)
        pipe = make_pipeline(StandardScaler().set_fit_request(sample_weight=False), laplace)
        scoring = {
            "nll": neg_gaussian_nll.set_score_request(sample_weight=True),
            "coverage": make_interval_scorer(0.9).set_score_request(sample_weight=True),
        }
        result = cross_validate(
            pipe,
            X,
            y,
            cv=CV,
            scoring=scoring,
            params={"sample_weight": w},
            return_estimator=True,
            return_indices=True,
            error_score="raise",
        )
    for fold, (fitted, test) in enumerate(
        zip(result["estimator"], result["indices"]["test"], strict=True)
    ):
        expected = _hand_scores(fitted[-1], fitted[0].transform(X[test]), y[test], w[test])
        assert result["test_nll"][fold] == pytest.approx(expected["nll"], rel=1e-12)
        assert result["test_coverage"][fold] == pytest.approx(expected["coverage"], rel=1e-12)
        unweighted = _hand_scores(fitted[-1], fitted[0].transform(X[test]), y[test])
        assert result["test_nll"][fold] != pytest.approx(unweighted["nll"], rel=1e-9)
