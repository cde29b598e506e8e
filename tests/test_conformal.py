"""Conformal intervals: the coverage guarantee, the finite-sample quantile, the switches.

Normalised split conformal prediction promises, for calibration and test rows drawn from
the same distribution, ``P(y in interval) >= confidence`` on average over draws of the
calibration rows (and ``< confidence + 1 / (n + 1)``). The test draws fresh calibration
and test rows many times around one frozen net, on a task whose noise grows with the input
(so the Gaussian intervals, with one sigma, are wrong in places), and checks the average
coverage against the guarantee, within three standard errors of the Monte Carlo average.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _nets import regressor_net
from sklearn.frozen import FrozenEstimator

from sklaplace import LaplaceRegressor
from sklaplace.metrics import interval_coverage, interval_width, make_interval_scorer
from sklaplace.tuning.conformal import ConformalScores


def _draw(rng, n):
    X = rng.uniform(-2, 2, size=(n, 2)).astype(np.float32)
    noise = 0.05 + 0.5 * np.abs(X[:, 1])
    y = np.sin(2 * X[:, 0]) + noise * rng.normal(size=n)
    return X, y.astype(np.float32)


@pytest.fixture(scope="module")
def frozen_net():
    rng = np.random.default_rng(0)
    X, y = _draw(rng, 300)
    torch.manual_seed(0)
    net = regressor_net(1, hidden=32, max_epochs=60, lr=0.01, optimizer=torch.optim.Adam)
    return net.fit(X, y[:, None]), X, y


@pytest.mark.parametrize("confidence", [0.8, 0.9])
def test_conformal_intervals_cover_at_least_the_confidence(frozen_net, confidence):
    net, X, y = frozen_net
    rng = np.random.default_rng(1)
    n_val, n_test, trials = 60, 2000, 40
    n_cal = n_val // 2  # fit keeps half of the unseen rows for calibration
    coverage = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # edge-of-range notes of the tuning
        for seed in range(trials):
            X_val, y_val = _draw(rng, n_val)
            X_test, y_test = _draw(rng, n_test)
            reg = LaplaceRegressor(FrozenEstimator(net), random_state=seed)
            reg.fit(X, y, X_val=X_val, y_val=y_val)
            assert reg.interval_ == "conformal"
            lower, upper = reg.predict_interval(X_test, confidence)
            coverage.append(np.mean((y_test >= lower) & (y_test <= upper)))
    cov = np.array(coverage)
    se = cov.std(ddof=1) / np.sqrt(trials)
    assert cov.mean() >= confidence - 3 * se
    assert cov.mean() <= confidence + 1 / (n_cal + 1) + 3 * se


def test_the_finite_sample_quantile_and_too_few_rows():
    y = np.arange(1.0, 20.0)[:, None]  # scores 1..19 (mean 0, std 1)
    scores = ConformalScores(y, np.zeros_like(y), np.ones_like(y))
    assert scores.n == 19
    # k = ceil(20 * 0.9) = 18: the 18th smallest score
    assert scores.quantile(0.9)[0] == 18.0
    lower, upper = scores.interval(np.zeros((3, 1)), 2 * np.ones((3, 1)), 0.9)
    np.testing.assert_array_equal(upper, 36.0)
    np.testing.assert_array_equal(lower, -36.0)
    with pytest.warns(UserWarning, match="too few for 0.96 confidence.*at least 24 of them"):
        assert np.isinf(scores.quantile(0.96)[0])  # k = ceil(20 * 0.96) = 20 > 19
    # the least number of rows the message names is the least that gives a finite interval
    for confidence, needed in ((0.9, 9), (0.8, 4), (0.95, 19), (0.5, 1)):
        rows = np.arange(float(needed))[:, None]
        enough = ConformalScores(rows, np.zeros_like(rows), np.ones_like(rows))
        assert np.isfinite(enough.quantile(confidence)).all()
        fewer = ConformalScores(rows[:-1], np.zeros_like(rows[:-1]), np.ones_like(rows[:-1]))
        with pytest.warns(UserWarning, match=f"at least {needed} of them"):
            assert np.isinf(fewer.quantile(confidence)).all()


def test_interval_modes_and_their_errors(frozen_net):
    net, X, y = frozen_net
    rng = np.random.default_rng(2)
    X_val, y_val = _draw(rng, 60)
    frozen = FrozenEstimator(net)
    # no unseen rows: "auto" falls back to the Gaussian interval, "conformal" refuses
    with pytest.warns(UserWarning, match="No rows the net has not seen"):
        auto = LaplaceRegressor(frozen, random_state=0).fit(X, y)
    assert auto.interval_ == "gaussian"
    with pytest.raises(ValueError, match="interval='conformal' needs rows the net was not"):
        with pytest.warns(UserWarning, match="No rows the net has not seen"):
            LaplaceRegressor(frozen, interval="conformal").fit(X, y)
    with pytest.raises(ValueError, match="interval='conformal' was set after a fit"):
        auto.set_params(interval="conformal").predict_interval(X_val)
    # numbers given: every unseen row calibrates
    reg = LaplaceRegressor(frozen, prior_precision=1.0, sigma_noise=0.3, interval="conformal")
    reg.fit(X, y, X_val=X_val, y_val=y_val)
    assert reg._fitted.conformal.n == 60
    lower, upper = reg.predict_interval(X_val[:5], 0.9)
    mean, std = reg.predict(X_val[:5], return_std=True)
    q = reg._fitted.conformal.quantile(0.9)[0]
    np.testing.assert_allclose((upper - lower) / (2 * std), q, rtol=1e-12)
    np.testing.assert_allclose((upper + lower) / 2, mean, rtol=1e-12)
    # the calibration belongs to fit's hyper-parameters
    with pytest.raises(ValueError, match="conformal calibration was computed with"):
        reg.set_params(sigma_noise=0.5).predict_interval(X_val)
    reg.set_params(interval="gaussian").predict_interval(X_val)  # fine


def test_intervals_from_too_few_calibration_rows_score_as_unbounded(frozen_net):
    """Five calibration rows cannot give 0.9 coverage: the interval is the whole line, and
    sklaplace's own metrics and scorer take it (coverage 1, width inf) instead of failing."""
    net, X, y = frozen_net
    X_val, y_val = _draw(np.random.default_rng(4), 5)
    reg = LaplaceRegressor(
        FrozenEstimator(net), prior_precision=1.0, sigma_noise=0.3, interval="conformal"
    ).fit(X, y, X_val=X_val, y_val=y_val)
    with pytest.warns(UserWarning, match="too few"):
        lower, upper = reg.predict_interval(X[:20], 0.9)
    assert np.isneginf(lower).all() and np.isposinf(upper).all()
    assert interval_coverage(y[:20], lower, upper) == 1.0
    assert interval_width(lower, upper) == np.inf
    with pytest.warns(UserWarning, match="too few"):
        assert make_interval_scorer(0.9)(reg, X[:20], y[:20]) == 1.0


def test_normalize_y_returns_everything_in_the_units_of_y(frozen_net):
    """A net trained on standardised targets, given the raw ones with normalize_y=True,
    predicts exactly what the standardised fit predicts, mapped back to y's units."""
    net, X, y = frozen_net  # trained on y, which is already about unit scale
    y_raw = y.astype(np.float64) * 7.0 + 40.0
    shift, scale = y_raw.mean(), y_raw.std()  # what normalize_y computes, in float64
    y_std = (y_raw - shift) / scale
    rng = np.random.default_rng(3)
    X_val, y_val = _draw(rng, 60)
    y_val_raw = (y_val * 7.0 + 40.0).astype(np.float64)
    raw = LaplaceRegressor(FrozenEstimator(net), normalize_y=True, random_state=0)
    raw.fit(X, y_raw, X_val=X_val, y_val=y_val_raw)
    ref = LaplaceRegressor(FrozenEstimator(net), random_state=0)
    ref.fit(X, y_std, X_val=X_val, y_val=(y_val_raw - shift) / scale)
    mean, std = raw.predict(X_val, return_std=True)
    ref_mean, ref_std = ref.predict(X_val, return_std=True)
    np.testing.assert_allclose(mean, ref_mean * scale + shift, rtol=1e-12)
    np.testing.assert_allclose(std, ref_std * scale, rtol=1e-12)
    lower, upper = raw.predict_interval(X_val, 0.9)
    ref_lower, ref_upper = ref.predict_interval(X_val, 0.9)
    np.testing.assert_allclose(lower, ref_lower * scale + shift, rtol=1e-12)
    np.testing.assert_allclose(upper, ref_upper * scale + shift, rtol=1e-12)
    cov = raw.predict(X_val[:4], return_cov=True)[1]
    np.testing.assert_allclose(
        cov, ref.predict(X_val[:4], return_cov=True)[1] * scale**2, rtol=1e-6
    )


def test_random_state_fixes_the_split_into_tuning_and_calibration_rows(frozen_net):
    """With random_state=None each fit draws new halves of the unseen rows, so identical
    fits tune other hyper-parameters and give other intervals; the docstring says so, and
    an int repeats the fit exactly."""
    net, X, y = frozen_net
    X_val, y_val = _draw(np.random.default_rng(5), 60)

    def interval(random_state):
        reg = LaplaceRegressor(FrozenEstimator(net), random_state=random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # edge-of-range notes of the tuning
            reg.fit(X, y, X_val=X_val, y_val=y_val)
        return np.concatenate(reg.predict_interval(X_val[:5], 0.9))

    np.testing.assert_array_equal(interval(0), interval(0))
    drawn = [interval(None) for _ in range(4)]
    assert any(not np.array_equal(drawn[0], other) for other in drawn[1:])
    doc = " ".join(LaplaceRegressor.__doc__.split())
    assert "With None, every call to ``fit`` draws these anew" in doc
    assert "tunes and a half that calibrates" in doc
