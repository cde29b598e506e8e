"""Settings that predictions read but fit calibrated with: applied exactly, or refused.

``predictive`` and ``n_samples`` are read at prediction time and applied exactly (the
tuning does not depend on them, so the predictions equal a fresh fit's); the conformal
quantile was calibrated on the stds of fit's predictive, so ``predict_interval`` refuses
other stds. ``normalize_y`` sets the units fit worked in: changing it after fit is refused.
``sample_weight_val`` without ``X_val`` weighs nothing: refused.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _nets import classifier_net
from numpy.testing import assert_array_equal
from sklearn.datasets import make_regression
from skorch import NeuralNetRegressor
from torch import nn

from sklaplace import LaplaceClassifier, LaplaceRegressor

PARAMS = {"random_state": 0, "subset_of_weights": "last_layer"}


@pytest.fixture(scope="module")
def data():
    X, y = make_regression(n_samples=300, n_features=4, noise=10.0, random_state=0)
    return X.astype(np.float32), (y / y.std() * 3 + 50).astype(np.float32)


def net():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    return NeuralNetRegressor(module, max_epochs=10, lr=0.05, verbose=0)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    est = LaplaceRegressor(net(), **PARAMS).fit(X, y)
    assert est.interval_ == "conformal"
    return est


@pytest.mark.parametrize(
    "change", [{"predictive": "nn"}, {"predictive": "nn", "n_samples": 2}], ids=["nn", "nn_2"]
)
def test_a_conformal_interval_refuses_another_predictive(fitted, data, change):
    X, _ = data
    est = LaplaceRegressor(net(), **PARAMS).fit(*data)
    est.set_params(**change)
    with pytest.raises(ValueError, match="Call fit again") as info:
        est.predict_interval(X)
    assert "predictive" in str(info.value) and "interval='gaussian'" in str(info.value)
    # the settings themselves are applied exactly: predictions are a fresh fit's
    fresh = LaplaceRegressor(net(), **PARAMS, **change).fit(*data)
    for a, b in zip(
        est.predict(X, return_std=True), fresh.predict(X, return_std=True), strict=True
    ):
        assert_array_equal(a, b)
    assert fresh.predict_interval(X)[0].shape == (len(X),)
    est.set_params(interval="gaussian")
    assert est.predict_interval(X)[0].shape == (len(X),)  # the way out the message names


def test_n_samples_does_not_change_the_glm_stds(fitted, data):
    """With the GLM predictive the regressor's stds use no draws: n_samples is not
    refused there, and the intervals are exactly those of fit."""
    X, _ = data
    before = fitted.predict_interval(X)
    fitted.set_params(n_samples=3)
    try:
        after = fitted.predict_interval(X)
    finally:
        fitted.set_params(n_samples=100)
    for a, b in zip(before, after, strict=True):
        assert_array_equal(a, b)


@pytest.mark.parametrize("at_fit", [False, True])
def test_normalize_y_changed_after_fit_is_refused(data, at_fit):
    X, y = data
    est = LaplaceRegressor(net(), normalize_y=at_fit, **PARAMS).fit(X, y)
    est.set_params(normalize_y=not at_fit)
    fresh = LaplaceRegressor(net(), normalize_y=not at_fit, **PARAMS).fit(X, y)
    est.set_params(normalize_y=at_fit)
    assert np.abs(fresh.predict(X) - est.predict(X)).max() > 1e-3  # the setting matters
    est.set_params(normalize_y=not at_fit)
    for call in (est.predict, est.predict_interval, est.sample_y):
        with pytest.raises(ValueError, match=r"normalize_y was changed .* call fit again"):
            call(X)


@pytest.mark.parametrize("classifier", [False, True])
def test_sample_weight_val_without_x_val_is_refused(data, classifier):
    X, y = data
    est = LaplaceRegressor(net(), **PARAMS)
    if classifier:
        y = (y > np.median(y)).astype(np.int64)
        est = LaplaceClassifier(classifier_net(2, max_epochs=2), **PARAMS)
    with pytest.raises(ValueError, match=r"sample_weight_val .* no X_val was given"):
        est.fit(X, y, sample_weight_val=np.ones(10))


def test_n_samples_of_the_nn_predictive_is_refused_by_a_conformal_interval(data):
    """With predictive="nn" the stds are Monte Carlo estimates over n_samples draws: the
    calibration holds for that number only."""
    X, y = data
    est = LaplaceRegressor(net(), predictive="nn", n_samples=20, **PARAMS).fit(X, y)
    assert est.predict_interval(X)[0].shape == (len(X),)
    est.set_params(n_samples=2)
    with pytest.raises(ValueError, match="n_samples=20"):
        est.predict_interval(X)
