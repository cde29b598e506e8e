"""Fit as its steps in one place (``sklaplace.fitting.steps``): what the estimators pass it
is data, and what it returns sets their fitted attributes."""

import numpy as np
import pytest
import torch
from _nets import regressor_net
from sklearn.datasets import make_regression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceRegressor
from sklaplace.fitting import steps


@pytest.fixture(scope="module")
def rows():
    X, y = make_regression(n_samples=120, n_features=3, noise=5.0, random_state=0)
    return X, y / y.std()


def test_a_refit_takes_x_val_through_the_steps_it_fits(rows):
    """A wrapped Pipeline's steps are fitted again at each fit, and X_val goes through the
    steps fitted on that fit's X: a refit of an estimator fitted before on other data
    tunes as a fresh one does (X_val went through the first fit's steps)."""
    X, y = rows

    def laplace():
        pipe = Pipeline(
            [
                ("scale", StandardScaler()),
                ("net", regressor_net(max_epochs=40, lr=0.02, optimizer=torch.optim.Adam)),
            ]
        )
        return LaplaceRegressor(pipe, random_state=0)

    X_fit, y_fit, X_val, y_val = X[:90], y[:90], X[90:], y[90:]
    fresh = laplace().fit(X_fit, y_fit, X_val=X_val, y_val=y_val)
    refit = laplace().fit(100.0 * X_fit + 7.0, y_fit, X_val=100.0 * X_val + 7.0, y_val=y_val)
    refit.fit(X_fit, y_fit, X_val=X_val, y_val=y_val)
    np.testing.assert_array_equal(refit.prior_precision_, fresh.prior_precision_)
    assert refit.sigma_noise_ == fresh.sigma_noise_
    np.testing.assert_array_equal(refit.predict_interval(X), fresh.predict_interval(X))


@pytest.mark.parametrize("interval", ["auto", "conformal", "gaussian"])
def test_the_regressors_fitted_attributes_are_what_the_steps_return(rows, monkeypatch, interval):
    """One call of ``steps.fit`` per fit, and ``interval_`` (the regressor's calibration)
    is the one it returns: no step sets an estimator's attribute."""
    X, y = rows
    results = []
    original = steps.fit

    def recorded(plan, data):
        results.append(original(plan, data))
        return results[-1]

    monkeypatch.setattr(steps, "fit", recorded)
    reg = LaplaceRegressor(regressor_net(max_epochs=5), interval=interval, random_state=0)
    reg.fit(X, y)
    (result,) = results
    assert (
        reg.interval_ == result.interval == ("gaussian" if interval == "gaussian" else "conformal")
    )
    assert reg._fitted is result.fitted
    assert (result.fitted.conformal is None) == (interval == "gaussian")
    assert reg.subset_of_weights_ == result.subset_of_weights
    assert reg.validation_source_ == result.validation_source == "validation_fraction"
