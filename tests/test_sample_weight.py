"""Sample weights: a row of weight k counts as k copies of the row, in the curvature, the
loss, the evidence and the held-out tuning; and they reach the estimator through scikit-
learn's metadata routing (Pipeline, GridSearchCV).

The nets are float64, so that weighting and repeating compute the same sums up to the
order of float64 additions.
"""

from __future__ import annotations

import numpy as np
import pytest
import sklearn
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from skorch import NeuralNetClassifier, NeuralNetRegressor
from torch import nn

from sklaplace import LaplaceClassifier, LaplaceRegressor

RTOL = 1e-10  # float64 sums in another order


def _mlp(n_in, n_out):
    return nn.Sequential(nn.Linear(n_in, 12), nn.Tanh(), nn.Linear(12, n_out)).double()


@pytest.fixture(scope="module")
def cls():
    X, y = make_classification(
        n_samples=160, n_features=5, n_informative=4, n_redundant=0, n_classes=3,
        random_state=0,
    )  # fmt: skip
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        _mlp(5, 3), criterion=nn.CrossEntropyLoss, max_epochs=20, lr=0.1,
        train_split=None, verbose=0,
    ).fit(X, y)  # fmt: skip
    return X, y, net


@pytest.fixture(scope="module")
def reg():
    X, y = make_regression(n_samples=160, n_features=4, noise=5.0, random_state=0)
    y = y / y.std()
    torch.manual_seed(0)
    net = NeuralNetRegressor(_mlp(4, 1), max_epochs=30, lr=0.05, train_split=None, verbose=0).fit(
        X, y[:, None]
    )
    return X, y, net


def _repeat(w, *arrays):
    index = np.repeat(np.arange(len(w)), w)
    return [a[index] for a in arrays]


@pytest.mark.parametrize(
    ("subset", "structure"),
    [("last_layer", "kron"), ("last_layer", "diag"), ("last_layer", "full"),
     ("all", "kron"), ("all", "diag")],
)  # fmt: skip
def test_integer_weights_equal_repeated_rows(cls, subset, structure):
    X, y, net = cls
    w = np.random.default_rng(0).integers(0, 4, size=len(y))  # zeros drop rows
    kw = {"subset_of_weights": subset, "hessian_structure": structure, "prior_precision": 0.5}
    weighted = LaplaceClassifier(FrozenEstimator(net), **kw).fit(X, y, sample_weight=w)
    repeated = LaplaceClassifier(FrozenEstimator(net), **kw).fit(*_repeat(w, X, y))
    assert weighted.train_loss_ == pytest.approx(repeated.train_loss_, rel=RTOL)
    assert weighted.log_marginal_likelihood() == pytest.approx(
        repeated.log_marginal_likelihood(), rel=RTOL
    )
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-9)
    # and the weights matter
    plain = LaplaceClassifier(FrozenEstimator(net), **kw).fit(X, y)
    assert not np.allclose(plain.predict_proba(X), weighted.predict_proba(X), rtol=1e-6)


def test_weighted_held_out_rows_tune_as_repeated_rows(reg):
    X, y, net = reg
    w_val = np.random.default_rng(1).integers(1, 4, size=60)
    kw = {"interval": "gaussian"}  # every held-out row tunes
    weighted = LaplaceRegressor(FrozenEstimator(net), **kw).fit(
        X[:100], y[:100], X_val=X[100:], y_val=y[100:], sample_weight_val=w_val
    )
    X_rep, y_rep = _repeat(w_val, X[100:], y[100:])
    repeated = LaplaceRegressor(FrozenEstimator(net), **kw).fit(
        X[:100], y[:100], X_val=X_rep, y_val=y_rep
    )
    np.testing.assert_allclose(weighted.prior_precision_, repeated.prior_precision_, rtol=1e-6)
    assert weighted.sigma_noise_ == pytest.approx(repeated.sigma_noise_, rel=1e-6)
    unweighted = LaplaceRegressor(FrozenEstimator(net), **kw).fit(
        X[:100], y[:100], X_val=X[100:], y_val=y[100:]
    )
    assert unweighted.sigma_noise_ != pytest.approx(weighted.sigma_noise_, rel=1e-3)


def test_bad_weights_are_refused(cls):
    X, y, net = cls
    est = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0)
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        est.fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(159,\), expected \(160,\)"):
        est.fit(X, y, sample_weight=np.ones(len(y) - 1))
    with pytest.raises(ValueError, match="at least one non-zero number"):
        est.fit(X, y, sample_weight=np.zeros(len(y)))


def test_an_unfitted_net_is_trained_without_the_weights_and_says_so(cls):
    X, y, _ = cls
    net = NeuralNetClassifier(
        _mlp(5, 3), criterion=nn.CrossEntropyLoss, max_epochs=2, train_split=None, verbose=0
    )
    with pytest.warns(UserWarning, match="the net is trained without it"):
        LaplaceClassifier(net, prior_precision=1.0).fit(X, y, sample_weight=np.ones(len(y)))


def test_metadata_routing_through_a_pipeline_and_a_grid_search(cls):
    X, y, net = cls
    w = np.random.default_rng(2).integers(1, 3, size=100)
    with sklearn.config_context(enable_metadata_routing=True):
        laplace = LaplaceClassifier(FrozenEstimator(net)).set_fit_request(
            sample_weight=True, X_val=True, y_val=True
        )
        pipe = Pipeline([("identity", FunctionTransformer()), ("laplace", laplace)])
        pipe.fit(X[:100], y[:100], sample_weight=w, X_val=X[100:], y_val=y[100:])
        direct = LaplaceClassifier(FrozenEstimator(net)).fit(
            X[:100], y[:100], sample_weight=w, X_val=X[100:], y_val=y[100:]
        )
        np.testing.assert_array_equal(pipe.predict_proba(X), direct.predict_proba(X))
        assert pipe[-1].validation_source_ == "X_val"
        # GridSearchCV splits sample_weight with the rows; X_val (another length) is passed
        search = GridSearchCV(
            LaplaceClassifier(FrozenEstimator(net)).set_fit_request(
                sample_weight=True, X_val=True, y_val=True
            ),
            {"calibration": [None, "bias_temperature"]},
            cv=KFold(3),
            scoring=get_scorer("neg_log_loss").set_score_request(sample_weight=True),
        ).fit(X[:90], y[:90], sample_weight=w[:90], X_val=X[100:], y_val=y[100:])
        assert np.isfinite(search.cv_results_["mean_test_score"]).all()
