"""Ecosystem behaviour, tested rather than assumed.

scikit-learn's common checks on both estimators, then the round trips a user relies on:
clone, pickle / joblib, Pipeline (numpy and pandas), GridSearchCV over a frozen net,
cross_val_score, string labels, the NLLLoss / CrossEntropyLoss equivalence, the regressor's
GaussianProcessRegressor-like outputs, frozen weights that stay bit-identical, and
hyper-parameters that change predictions without a pass over the training data.
"""

import inspect
import math
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from _nets import (
    AutoOutputClassifier,
    AutoOutputRegressor,
    binary_net,
    classifier_net,
    regressor_net,
)
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

import sklaplace
from sklaplace import LaplaceClassifier, LaplaceRegressor

# Fit, predict, pickling, Pipeline and GridSearchCV of both estimators: also run by .ci/run
# at the minimum versions setup.cfg declares.
pytestmark = pytest.mark.floors


# ---------------------------------------------------------------- common checks
def _check_estimators():
    adam = {"optimizer": torch.optim.Adam, "lr": 0.02, "max_epochs": 10}
    return [
        # the default configuration: CrossEntropyLoss, kron, probit
        LaplaceClassifier(classifier_net(cls=AutoOutputClassifier, **adam), random_state=0),
        # skorch's default NLLLoss on a softmax output, dense last layer, Monte Carlo link
        LaplaceClassifier(
            classifier_net(
                cls=AutoOutputClassifier, criterion=nn.NLLLoss, module__final="softmax", **adam
            ),
            hessian_structure="full",
            link_approx="mc",
            n_samples=20,
            random_state=0,
        ),
        # one logit: the tag multi_class=False makes the checks use binary targets; the
        # temperature tuned on the held-out rows with the prior
        LaplaceClassifier(
            binary_net(**adam), hessian_structure="diag", temperature="holdout", random_state=0
        ),
        LaplaceRegressor(regressor_net(cls=AutoOutputRegressor, **adam), random_state=0),
        LaplaceRegressor(
            regressor_net(cls=AutoOutputRegressor, **adam),
            hessian_structure="diag",
            prior_precision="marglik",
            sigma_noise="marglik",
            random_state=0,
        ),
    ]


def _expected_failed_checks(estimator):
    # Every other common check passes, including row-order and subset invariance with
    # link_approx="mc" (the Monte Carlo draws are shared by all rows). The estimators here
    # train their (unfitted) nets in fit, and skorch's training does not weigh rows, so
    # weights and repeated rows train different nets (the posterior itself weighs rows
    # exactly: tests/test_sample_weight.py checks it on a frozen net).
    reason = "skorch trains the net without sample weights; a frozen net's posterior is exact"
    return {
        "check_sample_weight_equivalence_on_dense_data": reason,
        "check_sample_weight_equivalence_on_sparse_data": reason,
    }


# xfail_strict (scikit-learn >= 1.8) makes a listed check that passes fail the test, so the
# list cannot go stale; older scikit-learn (down to the floor in setup.cfg) runs the same
# checks with the listed ones as plain xfails.
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


# ---------------------------------------------------------------- shared data and nets
@pytest.fixture(scope="module")
def cls_split():
    X, y = make_classification(
        n_samples=240,
        n_features=6,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        class_sep=1.5,
        random_state=0,
    )
    return train_test_split(X, y, test_size=60, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def cls_split_net(cls_split):
    """A trained 3-class CrossEntropyLoss net (to be wrapped in FrozenEstimator)."""
    X_tr, _, y_tr, _ = cls_split
    torch.manual_seed(0)
    net = classifier_net(3, max_epochs=20, lr=0.02, optimizer=torch.optim.Adam)
    return net.fit(X_tr.astype(np.float32), y_tr)


@pytest.fixture(scope="module")
def compat_reg_data():
    X, y = make_regression(n_samples=150, n_features=4, noise=5.0, random_state=0)
    Y = np.c_[y, -0.5 * y + 3.0 * X[:, 0]]
    return X, Y / Y.std(0)


def _laplace_regressor(n_out, **kwargs):
    net = regressor_net(n_out, max_epochs=20, lr=0.02, optimizer=torch.optim.Adam)
    kwargs = {"prior_precision": 1.0, "sigma_noise": 1.0, **kwargs}
    return LaplaceRegressor(net, random_state=0, **kwargs)


# ---------------------------------------------------------------- clone, pickle, joblib
def test_clone(cls_split, cls_split_net):
    X_tr, _, y_tr, _ = cls_split
    unfitted = LaplaceClassifier(classifier_net(3), prior_precision=3.0, random_state=0)
    copy = clone(unfitted)
    assert copy.estimator is not unfitted.estimator
    assert copy.get_params()["prior_precision"] == 3.0
    assert copy.estimator.get_params()["module__n_out"] == 3

    frozen = FrozenEstimator(cls_split_net)
    fitted = LaplaceClassifier(frozen).fit(X_tr, y_tr)
    copy = clone(fitted)
    assert copy.estimator is frozen  # FrozenEstimator clones to itself: never retrained
    assert not hasattr(copy, "posterior_")
    with pytest.raises(NotFittedError):
        copy.predict_proba(X_tr)


@pytest.mark.parametrize("link_approx", ["probit", "mc"])
def test_pickle_and_joblib_round_trip_classifier(cls_split, cls_split_net, link_approx, tmp_path):
    X_tr, X_te, y_tr, _ = cls_split
    clf = LaplaceClassifier(
        FrozenEstimator(cls_split_net), link_approx=link_approx, random_state=0
    )
    expected = clf.fit(X_tr, y_tr).predict_proba(X_te)
    joblib.dump(clf, tmp_path / "clf.joblib")
    for restored in (pickle.loads(pickle.dumps(clf)), joblib.load(tmp_path / "clf.joblib")):
        np.testing.assert_array_equal(restored.predict_proba(X_te), expected)
        np.testing.assert_array_equal(restored.classes_, clf.classes_)
        # the restored posterior still retunes without refitting
        restored.set_params(prior_precision=0.01)
        assert not np.allclose(restored.predict_proba(X_te), expected)


def test_pickle_and_joblib_round_trip_regressor(compat_reg_data, tmp_path):
    X, Y = compat_reg_data
    reg = _laplace_regressor(2, sigma_noise="marglik").fit(X[:100], Y[:100])
    mean, std = reg.predict(X[100:], return_std=True)
    joblib.dump(reg, tmp_path / "reg.joblib")
    for restored in (pickle.loads(pickle.dumps(reg)), joblib.load(tmp_path / "reg.joblib")):
        mean2, std2 = restored.predict(X[100:], return_std=True)
        np.testing.assert_array_equal(mean2, mean)
        np.testing.assert_array_equal(std2, std)


# ---------------------------------------------------------------- Pipeline and pandas
def test_pipeline_float64_numpy(cls_split):
    X_tr, X_te, y_tr, y_te = cls_split
    shift = np.linspace(-50.0, 50.0, X_tr.shape[1])  # unscaled float64 input
    pipe = make_pipeline(
        StandardScaler(),
        LaplaceClassifier(classifier_net(3, max_epochs=20, lr=0.1), random_state=0),
    )
    pipe.fit(20.0 * X_tr + shift, y_tr)
    proba = pipe.predict_proba(20.0 * X_te + shift)
    assert proba.dtype == np.float64
    assert proba.shape == (len(X_te), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert pipe.score(20.0 * X_te + shift, y_te) > 0.7
    assert pipe[-1].n_features_in_ == X_tr.shape[1]


@pytest.fixture(scope="module")
def frames(cls_split):
    X_tr, X_te, y_tr, _ = cls_split
    columns = [f"f{i}" for i in range(X_tr.shape[1])]
    return pd.DataFrame(X_tr, columns=columns), pd.DataFrame(X_te, columns=columns), y_tr


def _assert_feature_name_rules(estimator, df_test):
    """What scikit-learn does: reordered columns raise, a bare array warns (and works)."""
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        estimator.predict_proba(df_test[df_test.columns[::-1]])
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        proba = estimator.predict_proba(df_test.to_numpy())
    np.testing.assert_array_equal(proba, estimator.predict_proba(df_test))


def test_pipeline_pandas_feature_names(frames, cls_split_net):
    df_tr, df_te, y_tr = frames
    pipe = make_pipeline(StandardScaler(), LaplaceClassifier(FrozenEstimator(cls_split_net)))
    pipe.set_output(transform="pandas")  # the scaler hands a DataFrame to the Laplace step
    pipe.fit(df_tr, y_tr)
    np.testing.assert_array_equal(pipe.feature_names_in_, df_tr.columns)
    np.testing.assert_array_equal(pipe[-1].feature_names_in_, df_tr.columns)
    assert pipe.predict_proba(df_te).shape == (len(df_te), 3)
    _assert_feature_name_rules(pipe, df_te)


def test_pandas_feature_names_on_the_estimator(frames, cls_split_net):
    df_tr, df_te, y_tr = frames
    clf = LaplaceClassifier(FrozenEstimator(cls_split_net)).fit(df_tr, y_tr)
    np.testing.assert_array_equal(clf.feature_names_in_, df_tr.columns)
    _assert_feature_name_rules(clf, df_te)
    # refitting on a bare array forgets the names, as scikit-learn estimators do
    clf.fit(df_tr.to_numpy(), y_tr)
    assert not hasattr(clf, "feature_names_in_")


# ---------------------------------------------------------------- model selection
def test_cross_val_score(cls_split, compat_reg_data):
    X_tr, _, y_tr, _ = cls_split
    clf = LaplaceClassifier(classifier_net(3, max_epochs=15, lr=0.1), random_state=0)
    acc = cross_val_score(clf, X_tr, y_tr, cv=3)
    assert acc.shape == (3,) and np.all(acc > 0.6)  # chance is 1/3
    nll = cross_val_score(clf, X_tr, y_tr, cv=3, scoring="neg_log_loss")
    assert np.all(np.isfinite(nll)) and np.all(nll < 0)

    X, Y = compat_reg_data
    r2 = cross_val_score(_laplace_regressor(1), X, Y[:, 0], cv=3)
    assert r2.shape == (3,) and np.all(r2 > 0.5)


# Digits: a net trained on one part, the prior tuned by GridSearchCV on a second (the net
# never saw it), everything judged on a third.
GRID = np.logspace(-3, 4, 8)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_fit, X_te, y_fit, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    X_tr, X_val, y_tr, y_val = train_test_split(
        X_fit, y_fit, test_size=0.4, random_state=0, stratify=y_fit
    )
    return X_tr, X_val, X_te, y_tr, y_val, y_te


@pytest.fixture(scope="module")
def digits_net(digits):
    """A small trained MLP and a copy of its weights taken right after training."""
    X_tr, _, _, y_tr, _, _ = digits
    torch.manual_seed(0)
    net = classifier_net(
        10, hidden=64, max_epochs=15, lr=0.02, optimizer=torch.optim.Adam, batch_size=64
    ).fit(X_tr.astype(np.float32), y_tr)
    weights = {k: v.detach().clone() for k, v in net.module_.state_dict().items()}
    return net, weights


@pytest.fixture(scope="module")
def digits_search(digits, digits_net):
    _, X_val, _, _, y_val, _ = digits
    net, _ = digits_net
    search = GridSearchCV(
        LaplaceClassifier(FrozenEstimator(net)),
        {"prior_precision": GRID},
        scoring="neg_log_loss",
        cv=3,
    )
    return search.fit(X_val, y_val)


def test_grid_search_selects_a_sensible_prior(digits, digits_net, digits_search):
    """A sensible choice: tuned on held-out data, the Laplace predictive does not hurt.

    Its test log loss is within 0.02 nats of the MAP net's and within 0.05 of the best
    candidate's (judged on the test set, which the search never saw), and far below the
    worst candidate's: tiny prior precisions make the predictive nearly uniform (log loss
    near log 10), the nonsense end of the grid.
    """
    _, _, X_te, _, _, y_te = digits
    net, _ = digits_net
    best = digits_search.best_params_["prior_precision"]
    assert best > GRID[0]

    map_loss = log_loss(y_te, net.predict_proba(X_te.astype(np.float32)), labels=range(10))
    clf = digits_search.best_estimator_
    chosen = log_loss(y_te, clf.predict_proba(X_te))
    per_candidate = []
    for value in GRID:  # retuned without refitting: the posterior is already there
        per_candidate.append(
            log_loss(y_te, clf.set_params(prior_precision=value).predict_proba(X_te))
        )
    clf.set_params(prior_precision=best)
    assert chosen <= map_loss + 0.02
    assert chosen <= min(per_candidate) + 0.05
    assert chosen < 0.5 * max(per_candidate)
    assert max(per_candidate) > 0.5 * math.log(10)


def test_laplace_keeps_the_map_accuracy_on_digits(digits, digits_net):
    X_tr, _, X_te, y_tr, _, y_te = digits
    net, _ = digits_net
    map_acc = accuracy_score(y_te, net.predict(X_te.astype(np.float32)))
    clf = LaplaceClassifier(FrozenEstimator(net)).fit(X_tr, y_tr)  # probit, defaults
    lap_acc = accuracy_score(y_te, clf.predict(X_te))
    assert map_acc > 0.9
    assert abs(lap_acc - map_acc) <= 0.005


# ---------------------------------------------------------------- frozen weights
def _assert_weights_equal(net, weights):
    state = net.module_.state_dict()
    assert state.keys() == weights.keys()
    for name, value in state.items():
        assert torch.equal(value, weights[name]), name


def test_frozen_weights_stay_bit_identical(digits, digits_net, digits_search):
    X_tr, _, _, y_tr, _, _ = digits
    net, weights = digits_net
    n_epochs = len(net.history)
    clf = LaplaceClassifier(FrozenEstimator(net), hessian_structure="full").fit(X_tr, y_tr)
    assert clf.estimator_ is net
    _assert_weights_equal(net, weights)
    # after the whole GridSearchCV (fixture): 3 folds x 8 candidates + refit
    assert digits_search.best_estimator_.estimator_ is net
    _assert_weights_equal(net, weights)
    assert len(net.history) == n_epochs  # never trained further


# ---------------------------------------------------------------- retune without data
class _ForwardCounter:
    """Counts the net's forward passes (one per batch) that sklaplace runs. (A hook on
    the net would change the net after fit, which predictions refuse.)"""

    def __init__(self, monkeypatch):
        self.calls = 0
        forward = sklaplace._runtime.passes.NetView.forward

        def counted(view, Xi):
            self.calls += 1
            return forward(view, Xi)

        monkeypatch.setattr(sklaplace._runtime.passes.NetView, "forward", counted)


@pytest.fixture
def no_cache():
    """Disable sklaplace's pass cache, so that every prediction runs its own forward pass."""
    with sklaplace.config_context(cache_bytes=0):
        yield


def test_set_params_changes_predictions_without_a_data_pass(
    digits, digits_net, no_cache, monkeypatch
):
    X_tr, _, X_te, y_tr, _, _ = digits
    net, _ = digits_net
    batch_size = 50
    n_batches = math.ceil(len(X_te) / batch_size)
    clf = LaplaceClassifier(
        FrozenEstimator(net),
        prior_precision="marglik",
        batch_size=batch_size,
        subset_of_weights="last_layer",
    )
    clf.fit(X_tr, y_tr)
    counter = _ForwardCounter(monkeypatch)
    before = clf.predict_proba(X_te)
    assert counter.calls == n_batches
    for value in (0.01, 100.0):
        counter.calls = 0
        after = clf.set_params(prior_precision=value).predict_proba(X_te)
        assert counter.calls == n_batches  # X_test's batches, no training data
        assert not np.allclose(after, before, atol=1e-4)
        np.testing.assert_array_equal(clf.prior_precision_, [value])
    counter.calls = 0
    clf.set_params(prior_precision=1.0, temperature=0.1).predict_proba(X_te)
    assert counter.calls == n_batches
    # back to the mode fit resolved: fit's value, no tuning at prediction time
    counter.calls = 0
    again = clf.set_params(prior_precision="marglik", temperature=1.0).predict_proba(X_te)
    assert counter.calls == n_batches
    np.testing.assert_array_equal(again, before)
    # another mode needs a fit: modes are resolved in fit only
    with pytest.raises(ValueError, match="prior_precision='holdout' is a tuning mode"):
        clf.set_params(prior_precision="holdout").predict_proba(X_te)
    assert counter.calls == n_batches


def test_regressor_sigma_noise_retunes_without_a_data_pass(compat_reg_data, no_cache, monkeypatch):
    X, Y = compat_reg_data
    reg = _laplace_regressor(1, batch_size=40).fit(X[:100], Y[:100, 0])
    counter = _ForwardCounter(monkeypatch)
    _, std = reg.predict(X[100:], return_std=True)
    _, std2 = reg.set_params(sigma_noise=3.0).predict(X[100:], return_std=True)
    assert counter.calls == 2 * math.ceil(50 / 40)
    assert np.all(std2 > std)


# ---------------------------------------------------------------- labels and criteria
def test_string_labels(cls_split):
    X_tr, X_te, y_tr, _ = cls_split
    names = np.array(["ant", "bee", "cat"])
    kwargs = {"max_epochs": 10, "lr": 0.1}
    clf_int = LaplaceClassifier(classifier_net(3, **kwargs), random_state=0).fit(X_tr, y_tr)
    for labels in (names[y_tr], names[y_tr].astype(object)):
        clf = LaplaceClassifier(classifier_net(3, **kwargs), random_state=0).fit(X_tr, labels)
        np.testing.assert_array_equal(clf.classes_, names)
        pred = clf.predict(X_te)
        assert set(pred) <= set(names)
        np.testing.assert_array_equal(pred, names[clf_int.predict(X_te)])
        np.testing.assert_array_equal(clf.predict_proba(X_te), clf_int.predict_proba(X_te))


def test_string_labels_with_a_frozen_net(cls_split, cls_split_net):
    X_tr, X_te, y_tr, _ = cls_split
    names = np.array(["ant", "bee", "cat"])
    clf = LaplaceClassifier(FrozenEstimator(cls_split_net), prior_precision=1e8).fit(
        X_tr, names[y_tr]
    )
    np.testing.assert_array_equal(clf.classes_, names)
    # a huge prior precision leaves the MAP net: columns line up with the net's classes
    net_proba = cls_split_net.predict_proba(X_te.astype(np.float32))
    np.testing.assert_allclose(clf.predict_proba(X_te), net_proba, atol=1e-4)
    np.testing.assert_array_equal(clf.predict(X_te), names[net_proba.argmax(1)])


def test_binary_net_with_string_labels(cls_split):
    X_tr, X_te, y_tr, y_te = cls_split
    labels = np.where(y_tr == 1, "yes", "no")
    torch.manual_seed(0)
    net = binary_net(max_epochs=20, lr=0.1).fit(
        X_tr.astype(np.float32), (labels == "yes").astype(np.float32)
    )
    for estimator in (FrozenEstimator(net), binary_net(max_epochs=20, lr=0.1)):
        clf = LaplaceClassifier(estimator, random_state=0).fit(X_tr, labels)
        np.testing.assert_array_equal(clf.classes_, ["no", "yes"])
        proba = clf.predict_proba(X_te)
        assert proba.shape == (len(X_te), 2)
        np.testing.assert_allclose(proba.sum(1), 1.0)
        pred = clf.predict(X_te)
        np.testing.assert_array_equal(pred == "yes", proba[:, 1] > 0.5)
        assert np.mean(pred == np.where(y_te == 1, "yes", "no")) > 0.75
    # the frozen net's own probability of "yes" is the second column at a huge prior
    clf = LaplaceClassifier(FrozenEstimator(net), prior_precision=1e8).fit(X_tr, labels)
    np.testing.assert_allclose(
        clf.predict_proba(X_te), net.predict_proba(X_te.astype(np.float32)), atol=1e-4
    )


@pytest.mark.parametrize("structure", ["kron", "diag", "full"])
def test_nll_on_softmax_equals_cross_entropy_on_logits(cls_split, cls_split_net, structure):
    X_tr, X_te, y_tr, _ = cls_split
    nll_net = classifier_net(3, criterion=nn.NLLLoss, module__final="softmax").initialize()
    nll_net.module_.load_state_dict(cls_split_net.module_.state_dict())
    np.testing.assert_allclose(
        nll_net.predict_proba(X_te.astype(np.float32)),
        cls_split_net.predict_proba(X_te.astype(np.float32)),
        rtol=1e-5,
    )
    kwargs = {"hessian_structure": structure, "prior_precision": 0.5}
    ce = LaplaceClassifier(FrozenEstimator(cls_split_net), **kwargs).fit(X_tr, y_tr)
    nll = LaplaceClassifier(FrozenEstimator(nll_net), **kwargs).fit(X_tr, y_tr)
    p_ce, p_nll = ce.predict_proba(X_te), nll.predict_proba(X_te)
    np.testing.assert_allclose(p_nll, p_ce, rtol=1e-5, atol=1e-6)
    assert not np.allclose(p_ce, cls_split_net.predict_proba(X_te.astype(np.float32)), atol=1e-3)
    assert nll.log_marginal_likelihood_value_ == pytest.approx(ce.log_marginal_likelihood_value_)


# ---------------------------------------------------------------- regressor outputs
@pytest.mark.parametrize("n_targets", [1, 2])
def test_regressor_shapes_follow_gaussian_process_regressor(compat_reg_data, n_targets):
    X, Y = compat_reg_data
    y = Y[:, 0] if n_targets == 1 else Y
    X_tr, X_te, y_tr = X[:100], X[100:110], y[:100]
    reg = _laplace_regressor(n_targets, sigma_noise="marglik").fit(X_tr, y_tr)
    gpr = GaussianProcessRegressor().fit(X_tr, y_tr)

    mean = reg.predict(X_te)
    assert mean.shape == gpr.predict(X_te).shape == y[:10].shape
    net_mean = reg.estimator_.predict(X_te.astype(np.float32))
    np.testing.assert_allclose(mean, net_mean.reshape(mean.shape), rtol=1e-5, atol=1e-6)

    mean_s, std = reg.predict(X_te, return_std=True)
    _, gpr_std = gpr.predict(X_te, return_std=True)
    assert std.shape == gpr_std.shape == mean.shape
    np.testing.assert_array_equal(mean_s, mean)
    assert np.all(std > reg.sigma_noise_)  # observation noise plus weight uncertainty

    mean_c, cov = reg.predict(X_te, return_cov=True)
    _, gpr_cov = gpr.predict(X_te, return_cov=True)
    assert cov.shape == gpr_cov.shape
    np.testing.assert_array_equal(mean_c, mean)
    diag = np.diagonal(cov, axis1=0, axis2=1).T  # (m,) or (m, n_targets)
    np.testing.assert_allclose(diag, std**2, rtol=1e-6)

    with pytest.raises(RuntimeError, match="At most one of return_std or return_cov"):
        reg.predict(X_te, return_std=True, return_cov=True)

    draws = reg.sample_y(X_te, n_samples=4, random_state=0)
    assert draws.shape == gpr.sample_y(X_te, n_samples=4).shape
    np.testing.assert_array_equal(draws, reg.sample_y(X_te, n_samples=4, random_state=0))
    many = reg.sample_y(X_te, n_samples=4000, random_state=1)
    tol = 5 * std / math.sqrt(4000)
    assert np.all(np.abs(many.mean(axis=-1) - mean) < tol)
    np.testing.assert_allclose(many.std(axis=-1), std, rtol=0.1)


@pytest.mark.parametrize("n_targets", [1, 2])
def test_predict_interval_contains_the_mean(compat_reg_data, n_targets):
    X, Y = compat_reg_data
    y = Y[:, 0] if n_targets == 1 else Y
    reg = _laplace_regressor(n_targets).fit(X[:100], y[:100])
    mean = reg.predict(X[100:])
    lower, upper = reg.predict_interval(X[100:], confidence=0.9)
    assert lower.shape == upper.shape == mean.shape
    assert np.all(lower < mean) and np.all(mean < upper)
    np.testing.assert_allclose((lower + upper) / 2, mean, atol=1e-10)
    lower50, upper50 = reg.predict_interval(X[100:], confidence=0.5)
    assert np.all(lower < lower50) and np.all(upper50 < upper)
