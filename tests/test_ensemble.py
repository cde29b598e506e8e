"""LaplaceEnsembleClassifier / LaplaceEnsembleRegressor: the uniform mixture of Laplace
approximations (issue 21), against the single estimators and direct Monte Carlo, in
float64."""

import inspect
import pickle

import numpy as np
import pytest
import torch
from _nets import (
    AutoOutputClassifier,
    AutoOutputRegressor,
    TanhMLP64,
    classifier_net,
    regressor_net,
)
from scipy.stats import norm
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks
from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from skorch.dataset import ValidSplit
from torch import nn

from sklaplace import (
    LaplaceClassifier,
    LaplaceEnsembleClassifier,
    LaplaceEnsembleRegressor,
    LaplaceRegressor,
)
from sklaplace.fitting.holdout import halves

EPS = np.finfo(np.float64).eps


class Net64(TanhMLP64):
    """A small float64 MLP."""

    def __init__(self, n_in=4, n_out=3, hidden=8):
        super().__init__(n_in, n_out, hidden)


def cls_net(n_out=3, **kw):
    params = dict(max_epochs=15, lr=0.1, train_split=None, verbose=0, batch_size=64)
    params.update(kw)
    return NeuralNetClassifier(Net64, module__n_out=n_out, criterion=nn.CrossEntropyLoss, **params)


def reg_net(**kw):
    params = dict(max_epochs=30, lr=0.05, train_split=None, verbose=0, batch_size=64)
    params.update(kw)
    return NeuralNetRegressor(Net64, module__n_in=1, module__n_out=1, **params)


@pytest.fixture(scope="module")
def ens_cls_data():
    X, y = make_classification(
        n_samples=150,
        n_features=4,
        n_informative=3,
        n_redundant=0,
        n_classes=3,
        class_sep=1.5,
        random_state=0,
    )
    return X.astype(np.float64), y


@pytest.fixture(scope="module")
def ens_reg_data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(120, 1))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=120)
    return X, y


# ---------------------------------------------------------------- one member = single
@pytest.mark.parametrize("frozen", [False, True])
def test_one_member_classifier_is_the_single_estimator(ens_cls_data, frozen):
    X, y = ens_cls_data
    net = cls_net()
    if frozen:
        net = FrozenEstimator(clone(net).fit(X, y))
    val = {"X_val": X[:40], "y_val": y[:40]} if frozen else {}
    single = LaplaceClassifier(net, random_state=0).fit(X, y, **val)
    ens = LaplaceEnsembleClassifier([("a", net)], random_state=0).fit(X, y, **val)
    np.testing.assert_array_equal(ens.predict_proba(X), single.predict_proba(X))
    np.testing.assert_array_equal(ens.predict(X), single.predict(X))
    np.testing.assert_array_equal(ens.prior_precision_[0], single.prior_precision_)


def test_one_member_regressor_is_the_single_estimator(ens_reg_data):
    X, y = ens_reg_data
    single = LaplaceRegressor(reg_net(), random_state=0).fit(X, y)
    ens = LaplaceEnsembleRegressor([("a", reg_net())], random_state=0).fit(X, y)
    assert ens.interval_ == single.interval_ == "conformal"
    for a, b in zip(
        ens.predict(X, return_std=True), single.predict(X, return_std=True), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ens.predict_interval(X, 0.8), single.predict_interval(X, 0.8), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        ens.predict(X[:5], return_cov=True), single.predict(X[:5], return_cov=True), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=0, atol=100 * EPS * np.abs(b).max())


# ---------------------------------------------------------------- the mixture
def test_classifier_mixture_averages_members(ens_cls_data):
    X, y = ens_cls_data
    ens = LaplaceEnsembleClassifier.from_net(cls_net(), n_members=3, random_state=0).fit(X, y)
    probs = np.stack([m.predict_proba(X) for m in ens.estimators_])
    # the members differ (their own seeds), and the mixture is their average
    assert np.abs(probs[0] - probs[1]).max() > 1e-3
    np.testing.assert_allclose(ens.predict_proba(X), probs.mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(ens.predict(X), ens.classes_[probs.mean(0).argmax(1)])


def test_regressor_mixture_moments_match_monte_carlo(ens_reg_data):
    X, y = ens_reg_data
    ens = LaplaceEnsembleRegressor.from_net(reg_net(), n_members=3, random_state=0).fit(X, y)
    Xq = np.array([[-1.5], [0.0], [3.5]])  # the last row far from the data
    mean, std = ens.predict(Xq, return_std=True)
    # the law of total variance from each member's own moments
    pairs = [m.predict(Xq, return_std=True) for m in ens.estimators_]
    m = np.stack([p[0] for p in pairs])
    v = np.stack([p[1] ** 2 for p in pairs])
    np.testing.assert_allclose(mean, m.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std**2, v.mean(0) + m.var(0), rtol=1e-12)
    assert np.all(std**2 > v.mean(0))  # the members' spread adds to their variance
    # a direct Monte Carlo of the mixture: pick a member, then draw from its predictive
    n = 40000
    draws = ens.sample_y(Xq, n_samples=n, random_state=0)
    assert draws.shape == (3, n)
    se_mean = std / np.sqrt(n)
    np.testing.assert_array_less(np.abs(draws.mean(1) - mean), 5 * se_mean)
    # the variance's standard error from the draws' fourth moment
    centred = draws - draws.mean(1, keepdims=True)
    se_var = np.sqrt((np.mean(centred**4, 1) - np.var(draws, 1) ** 2) / n)
    np.testing.assert_array_less(np.abs(draws.var(1) - std**2), 5 * se_var)
    # the covariance across rows has the stds on its diagonal
    mean_c, cov = ens.predict(Xq, return_cov=True)
    np.testing.assert_allclose(mean_c, mean, rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), std, rtol=1e-6)


def test_regressor_mixture_conformal_interval(ens_reg_data):
    X, y = ens_reg_data
    ens = LaplaceEnsembleRegressor.from_net(reg_net(), n_members=3, random_state=0).fit(X, y)
    assert ens.interval_ == "conformal"
    # the calibration rows: the half of the shared unseen rows that tuned nothing
    valid = ens.estimators_[0].validation_indices_
    for m in ens.estimators_[1:]:
        np.testing.assert_array_equal(m.validation_indices_, valid)
    _, cal = halves(len(valid), ens.estimators_[0].random_state)
    rows = valid[cal]
    mean, std = ens.predict(X[rows], return_std=True)
    # (the targets as the net takes them: float32, the dtype of a net not yet built)
    y_cal = y[rows].astype(np.float32).astype(np.float64)
    scores = np.sort(np.abs(y_cal - mean) / std)
    confidence = 0.8
    q = scores[int(np.ceil((len(rows) + 1) * confidence)) - 1]
    Xq = np.array([[-1.0], [0.5], [3.0]])
    m, s = ens.predict(Xq, return_std=True)
    lo, hi = ens.predict_interval(Xq, confidence)
    np.testing.assert_allclose(lo, m - q * s, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hi, m + q * s, rtol=1e-12, atol=1e-14)
    ens.set_params(prior_precision=10.0)
    with pytest.raises(ValueError, match="hyper-parameters of fit"):
        ens.predict_interval(Xq)


def test_members_with_their_own_validation_rows_fall_back_to_gaussian(ens_reg_data):
    X, y = ens_reg_data
    nets = [clone(reg_net(train_split=ValidSplit(k))).fit(X, y[:, None]) for k in (4, 5)]
    members = [(f"n{k}", FrozenEstimator(net)) for k, net in zip((4, 5), nets, strict=True)]
    with pytest.warns(UserWarning, match="different rows"):
        ens = LaplaceEnsembleRegressor(members, random_state=0).fit(X, y)
    assert ens.interval_ == "gaussian"
    _, std = ens.predict(X[:4], return_std=True)
    lo, hi = ens.predict_interval(X[:4], 0.9)
    np.testing.assert_allclose(hi - lo, 2 * norm.ppf(0.95) * std, rtol=1e-12)
    with pytest.raises(ValueError, match="different rows"):
        LaplaceEnsembleRegressor(members, interval="conformal", random_state=0).fit(X, y)


# ---------------------------------------------------------------- one line from one net
def test_from_net_seeds_are_reproducible_and_leave_torch_rng(ens_cls_data):
    X, y = ens_cls_data
    state = torch.random.get_rng_state()
    a = LaplaceEnsembleClassifier.from_net(cls_net(), n_members=2, random_state=3).fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = LaplaceEnsembleClassifier.from_net(cls_net(), n_members=2, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    w0, w1 = (m.estimator_.module_.out.weight for m in a.estimators_)
    assert not torch.equal(w0, w1)
    assert [name for name, _ in a.estimators] == ["member0", "member1"]
    with pytest.raises(ValueError, match="n_members"):
        LaplaceEnsembleClassifier.from_net(cls_net(), n_members=0)
    with pytest.raises(ValueError, match="unfitted net"):
        LaplaceEnsembleClassifier.from_net(clone(cls_net()).fit(X, y))


def test_n_jobs_gives_the_same_result(ens_cls_data):
    X, y = ens_cls_data
    kw = dict(n_members=2, prior_precision="marglik", calibration=None, random_state=1)
    one = LaplaceEnsembleClassifier.from_net(cls_net(), n_jobs=1, **kw).fit(X, y)
    two = LaplaceEnsembleClassifier.from_net(cls_net(), n_jobs=2, **kw).fit(X, y)
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))


def test_members_warnings_point_at_the_callers_line(ens_cls_data):
    X, y = ens_cls_data
    frozen = FrozenEstimator(clone(cls_net()).fit(X, y))
    ens = LaplaceEnsembleClassifier([("a", frozen), ("b", frozen)], random_state=0)
    with pytest.warns(UserWarning, match="No rows the net has not seen") as record:
        ens.fit(X, y)
    assert {w.filename for w in record} == {__file__}


# ---------------------------------------------------------------- errors
def test_bad_estimators_are_refused(ens_cls_data, ens_reg_data):
    X, y = ens_cls_data
    with pytest.raises(ValueError, match="non-empty list"):
        LaplaceEnsembleClassifier([]).fit(X, y)
    with pytest.raises(ValueError, match="duplicate names"):
        LaplaceEnsembleClassifier([("a", cls_net()), ("a", cls_net())]).fit(X, y)
    with pytest.raises(ValueError, match="pair"):
        LaplaceEnsembleClassifier([cls_net()]).fit(X, y)
    with pytest.raises(TypeError, match=r"member 'b'.*skorch net"):
        LaplaceEnsembleClassifier([("a", cls_net()), ("b", LogisticRegression())]).fit(X, y)
    with pytest.raises(TypeError, match=r"member 'b'.*regression"):
        LaplaceEnsembleClassifier([("a", cls_net()), ("b", reg_net())]).fit(X, y)
    binary = NeuralNetBinaryClassifier(Net64, module__n_out=1, verbose=0)
    with pytest.raises(ValueError, match="one kind"):
        LaplaceEnsembleClassifier([("a", cls_net()), ("b", binary)]).fit(X, y)
    Xr, yr = ens_reg_data
    with pytest.raises(TypeError, match=r"member 'a'.*classification"):
        LaplaceEnsembleRegressor([("a", cls_net())]).fit(Xr, yr)


# ---------------------------------------------------------------- scikit-learn
def test_clone_pickle_and_set_params_after_fit(ens_cls_data):
    X, y = ens_cls_data
    ens = LaplaceEnsembleClassifier.from_net(
        cls_net(), n_members=2, prior_precision=1.0, random_state=0
    ).fit(X, y)
    restored = pickle.loads(pickle.dumps(ens))
    np.testing.assert_array_equal(restored.predict_proba(X), ens.predict_proba(X))
    twin = clone(ens)
    assert not hasattr(twin, "estimators_")
    assert twin.get_params()["prior_precision"] == 1.0
    before = ens.predict_proba(X)
    ens.set_params(prior_precision=50.0)  # read at prediction, as for a single estimator
    np.testing.assert_array_equal(ens.prior_precision_, 50.0)
    assert np.abs(ens.predict_proba(X) - before).max() > 1e-6


def test_grid_search_over_prior_precision(ens_cls_data):
    X, y = ens_cls_data
    net = FrozenEstimator(clone(cls_net()).fit(X, y))
    net2 = FrozenEstimator(clone(cls_net(max_epochs=5)).fit(X, y))
    ens = LaplaceEnsembleClassifier([("a", net), ("b", net2)], calibration=None)
    search = GridSearchCV(ens, {"prior_precision": [0.1, 10.0]}, cv=2, scoring="neg_log_loss").fit(
        X, y
    )
    assert search.best_params_["prior_precision"] in (0.1, 10.0)
    assert search.best_estimator_.predict_proba(X).shape == (len(X), 3)


def _check_estimators():
    adam = {"optimizer": torch.optim.Adam, "lr": 0.02, "max_epochs": 5}
    return [
        LaplaceEnsembleClassifier.from_net(
            classifier_net(cls=AutoOutputClassifier, **adam), n_members=2, random_state=0
        ),
        LaplaceEnsembleRegressor.from_net(
            regressor_net(cls=AutoOutputRegressor, **adam), n_members=2, random_state=0
        ),
    ]


def _expected_failed_checks(estimator):
    reason = "skorch trains the net without sample weights; a frozen net's posterior is exact"
    return {
        "check_sample_weight_equivalence_on_dense_data": reason,
        "check_sample_weight_equivalence_on_sparse_data": reason,
    }


_STRICT = (
    {"xfail_strict": True}
    if "xfail_strict" in inspect.signature(parametrize_with_checks).parameters
    else {}
)


@parametrize_with_checks(
    _check_estimators(), expected_failed_checks=_expected_failed_checks, **_STRICT
)
def test_sklearn_common_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("cls", [LaplaceEnsembleClassifier, LaplaceEnsembleRegressor])
def test_html_repr_links_the_api_page(cls):
    link = cls([("a", None)])._get_doc_link()
    assert link.endswith(f"api.html#sklaplace.{cls.__name__}"), link
