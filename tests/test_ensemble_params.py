"""The ensembles' parameters (issue 21): the members' nested parameters as for
scikit-learn's ``VotingClassifier``, the one-net spelling ``Ensemble(net, n_members=k)``,
X's feature checks at prediction, and X never reaching torch as the caller's memory."""

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest
from _nets import AutoOutputClassifier, classifier_net, regressor_net
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklaplace import (
    LaplaceClassifier,
    LaplaceEnsembleClassifier,
    LaplaceEnsembleRegressor,
    LaplaceRegressor,
)
from sklaplace.fitting import inputs


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=80, n_features=4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
    )
    return X.astype(np.float32), y


def net(**kw):
    return classifier_net(3, max_epochs=kw.pop("max_epochs", 3), train_split=None, **kw)


# ---------------------------------------------------------------- nested parameters
def test_members_parameters_are_nested_as_in_voting_classifier():
    a, b = net(lr=0.1), net(lr=0.2)
    ens = LaplaceEnsembleClassifier([("a", a), ["b", b]], prior_precision=1.0)
    params = ens.get_params(deep=True)
    assert params["a"] is a and params["b"] is b
    assert params["a__lr"] == 0.1 and params["b__lr"] == 0.2
    assert "a" not in ens.get_params(deep=False)
    ens.set_params(a__lr=0.5, prior_precision=2.0)
    assert (a.lr, b.lr, ens.prior_precision) == (0.5, 0.2, 2.0)
    # a member replaced by its name; the other entries stay as they were
    c = net(lr=0.3)
    ens.set_params(b=c)
    assert ens.estimators == [("a", a), ("b", c)]
    assert ens.get_params()["b__lr"] == 0.3
    # clone keeps the nested values, on copies
    twin = clone(ens)
    assert twin.get_params()["a__lr"] == 0.5 and twin.estimators[0][1] is not a


def test_grid_search_over_a_members_parameter(data):
    X, y = data
    ens = LaplaceEnsembleClassifier(
        [("a", net()), ("b", net())], prior_precision=1.0, calibration=None, random_state=0
    )
    search = GridSearchCV(ens, {"a__max_epochs": [1, 3]}, cv=2).fit(X, y)
    assert search.best_params_["a__max_epochs"] in (1, 3)
    best = search.best_estimator_.named_estimators_
    assert best["a"].estimator_.max_epochs == search.best_params_["a__max_epochs"]
    assert best["b"].estimator_.max_epochs == 3


# ---------------------------------------------------------------- one net, n_members
def test_one_net_is_from_net(data):
    """``Ensemble(net, n_members=k)`` builds the members ``from_net`` lists: the same
    names, seeds and fits."""
    X, y = data
    kw = dict(prior_precision=1.0, calibration=None, random_state=3)
    one = LaplaceEnsembleClassifier(net(), n_members=3, **kw).fit(X, y)
    listed = LaplaceEnsembleClassifier.from_net(net(), 3, **kw).fit(X, y)
    assert list(one.named_estimators_) == ["member0", "member1", "member2"]
    assert [name for name, _ in listed.estimators] == list(one.named_estimators_)
    np.testing.assert_array_equal(one.predict_proba(X), listed.predict_proba(X))
    # the default: 5 members
    assert len(LaplaceEnsembleClassifier(net())._check_estimators()) == 5


def test_one_net_parameters_reach_every_member(data):
    X, y = data
    the_net = net(lr=0.1)
    ens = LaplaceEnsembleClassifier(the_net, n_members=2, prior_precision=1.0, random_state=0)
    params = ens.get_params(deep=True)
    assert params["estimators__lr"] == 0.1 and params["n_members"] == 2
    ens.set_params(estimators__max_epochs=2, n_members=3)
    twin = clone(ens)
    assert twin.estimators is not the_net and twin.get_params()["estimators__max_epochs"] == 2
    assert twin.n_members == 3
    ens.fit(X, y)
    assert [m.estimator_.max_epochs for m in ens.estimators_] == [2, 2, 2]
    assert the_net.max_epochs == 2 and not hasattr(the_net, "module_")  # not fitted in place


def test_grid_search_over_n_members(data):
    X, y = data
    ens = LaplaceEnsembleClassifier(net(), prior_precision=1.0, calibration=None, random_state=0)
    search = GridSearchCV(ens, {"n_members": [1, 2]}, cv=2, scoring="neg_log_loss").fit(X, y)
    k = search.best_params_["n_members"]
    assert len(search.best_estimator_.estimators_) == k


def test_one_pipeline_ending_in_a_net(data):
    X, y = data
    pipe = make_pipeline(StandardScaler(), net())
    ens = LaplaceEnsembleClassifier(pipe, n_members=2, prior_precision=1.0, random_state=0)
    assert "estimators__neuralnetclassifier__lr" in ens.get_params()
    ens.fit(X, y)
    assert ens.predict_proba(X).shape == (len(X), 3)


def test_bad_one_net_and_n_members_are_refused(data):
    X, y = data
    with pytest.raises(ValueError, match="n_members=3 but estimators lists 2 members"):
        LaplaceEnsembleClassifier([("a", net()), ("b", net())], n_members=3).fit(X, y)
    # equal to the list's length is fine
    assert len(LaplaceEnsembleClassifier([("a", net())], n_members=1)._check_estimators()) == 1
    with pytest.raises(ValueError, match="n_members"):
        LaplaceEnsembleClassifier(net(), n_members=0).fit(X, y)
    fitted = clone(net()).fit(X, y)
    for one in (fitted, FrozenEstimator(fitted)):
        with pytest.raises(ValueError, match="must be an unfitted net"):
            LaplaceEnsembleClassifier(one, n_members=2).fit(X, y)
    with pytest.raises(TypeError, match="regression"):
        LaplaceEnsembleClassifier(regressor_net(), n_members=2).fit(X, y)
    for name in ("prior_precision", "a__b"):
        with pytest.raises(ValueError, match="member names must differ"):
            LaplaceEnsembleClassifier([(name, net())]).fit(X, y)


@pytest.mark.parametrize(
    ("ensemble", "single"),
    [(LaplaceEnsembleClassifier, LaplaceClassifier), (LaplaceEnsembleRegressor, LaplaceRegressor)],
)
def test_ensemble_signature_repeats_the_single_estimators(ensemble, single):
    """scikit-learn needs explicit ``__init__`` signatures, so the ensembles repeat the
    single estimators' parameters: the same names, order and defaults, between the
    ensemble's own (``estimators, n_members`` first, ``n_jobs`` last)."""
    ens = inspect.signature(ensemble).parameters
    one = inspect.signature(single).parameters
    assert list(ens) == ["estimators", "n_members", *list(one)[1:], "n_jobs"]
    assert all(ens[p].default == one[p].default for p in list(one)[1:])
    assert set(ensemble._parameter_constraints) == set(ens)


# ---------------------------------------------------------------- X at prediction
@pytest.fixture(scope="module")
def fitted_regressor():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.standard_normal((60, 2)).astype(np.float32), columns=["u", "v"])
    y = X["u"].to_numpy() - X["v"].to_numpy()
    reg = regressor_net(max_epochs=2, train_split=None)
    ens = LaplaceEnsembleRegressor(reg, n_members=2, prior_precision=1.0, sigma_noise=1.0)
    return ens.set_params(random_state=0).fit(X, y), X


@pytest.mark.parametrize(
    "call",
    [
        lambda ens, X: ens.predict(X),
        lambda ens, X: ens.predict(X, return_std=True),
        lambda ens, X: ens.predict(X, return_cov=True),
        lambda ens, X: ens.predict_interval(X),
        lambda ens, X: ens.sample_y(X, 3),
    ],
)
def test_regressor_feature_names_warn_once_naming_the_ensemble(fitted_regressor, call):
    ens, X = fitted_regressor
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call(ens, X.to_numpy()[:3])
    said = [str(w.message) for w in caught if "feature names" in str(w.message)]
    assert len(said) == 1 and "LaplaceEnsembleRegressor" in said[0], said
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (the feature names again)
        with pytest.raises(ValueError, match="LaplaceEnsembleRegressor is expecting 2 features"):
            call(ens, X.to_numpy()[:3, :1])


# ---------------------------------------------------------------- X reaching the net
@pytest.mark.parametrize("kind", ["array", "frame", "dict"])
def test_the_net_never_gets_the_callers_memory(kind):
    """Read-only memory (a copy-on-write frame's columns) reaches torch as a writable
    copy; writable memory is left as it is (the passes copy each batch: the in-place
    forward tests in test_cache_differential_context.py), so fit's memory stays flat."""
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    X.flags.writeable = False
    given = {"array": X, "frame": pd.DataFrame(X), "dict": {"x": X}}[kind]
    out = inputs.check_X(LaplaceClassifier(None), given, reset=True)
    arr = out["x"] if kind == "dict" else out
    assert not np.shares_memory(arr, X) and arr.flags.writeable
    np.testing.assert_array_equal(arr, X)
    W = np.arange(12, dtype=np.float32).reshape(6, 2)
    out = inputs.check_X(LaplaceClassifier(None), W, reset=True)
    assert np.shares_memory(out, W)


# ---------------------------------------------------------------- scikit-learn's checks
@parametrize_with_checks(
    [
        LaplaceEnsembleClassifier(
            classifier_net(cls=AutoOutputClassifier, max_epochs=3),
            n_members=2,
            prior_precision=1.0,
            random_state=0,
        )
    ],
    expected_failed_checks=lambda est: {
        check: "skorch trains the net without sample weights"
        for check in (
            "check_sample_weight_equivalence_on_dense_data",
            "check_sample_weight_equivalence_on_sparse_data",
        )
    },
)
def test_sklearn_checks_with_one_net(estimator, check):
    check(estimator)
