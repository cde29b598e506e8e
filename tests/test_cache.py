"""The pass cache: tuning hyper-parameters pays for the data pass once, and never lies.

``GridSearchCV(LaplaceClassifier(FrozenEstimator(net)), ...)`` fits and scores the same
frozen net on the same folds once per candidate. The curvature and the projected predictive
pass do not depend on ``prior_precision``, ``temperature`` or ``sigma_noise``, so sklaplace
computes them once per fold and looks them up for the other candidates. These tests count
the curvature passes and the projected passes (and the rows they run) to show that, and
show that the cache is never stale (a retrained net, one changed row or label, another
Hessian structure, a changed BatchNorm buffer or another architecture with the same weights
all give the fresh result), survives ``clone`` and stays within its memory bound. Every fit
still runs the net on a few rows to check its output layer (``find_head``): validation runs
on a cache hit exactly as on a miss. (tests/test_cache_differential.py attacks the keys.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _nets import classifier_net, regressor_net
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, KFold
from skorch import NeuralNetClassifier
from torch import nn

import sklaplace
from sklaplace import LaplaceClassifier, LaplaceRegressor
from sklaplace._runtime import cache as _cache_module
from sklaplace._runtime import passes as _passes
from sklaplace._runtime.cache import PassCache, get_cache
from sklaplace.approximations import LastLayer, LayerWise
from sklaplace.metrics import neg_gaussian_nll
from sklaplace.posterior import KronBlock


# ---------------------------------------------------------------- fixtures and helpers
@pytest.fixture
def cache(monkeypatch, request):
    """The process-wide cache, emptied before the test; the settings are restored after it.

    The test data are small: passes over any number of rows are cached here (by default
    passes under ``MIN_CACHED_ROWS`` rows are not, since fingerprinting would cost more).
    Every pass is stored from its first request (``cache_admission="always"``) unless the
    test asks for another admission (``indirect`` parametrisation of this fixture).
    """
    c = get_cache()
    old = sklaplace.get_config()
    c.clear()
    monkeypatch.setattr(_passes, "MIN_CACHED_ROWS", 0)
    sklaplace.set_config(cache_admission=getattr(request, "param", "always"))
    yield c
    sklaplace.set_config(cache_bytes=old["cache_bytes"], cache_admission=old["cache_admission"])
    c.clear()


class Counter:
    """Counts the net's forward calls, the curvature passes and the projected passes.

    ``forward`` counts calls of the net's forward on sklaplace's view of it (one per batch,
    find_head's probe included); ``curvature`` the curvature passes; ``projected`` the rows
    run by projected (predictive) passes.
    """

    def __init__(self, monkeypatch) -> None:
        self.forward = self.curvature = self.projected = 0
        counter = self
        forward = _passes.NetView.forward

        def counting_forward(view, Xi):
            counter.forward += 1
            return forward(view, Xi)

        monkeypatch.setattr(_passes.NetView, "forward", counting_forward)
        for cls in (LastLayer, LayerWise):
            curvature, project = cls._curvature, cls._project_batches

            def counting_curvature(self, *args, _original=curvature, **kwargs):
                counter.curvature += 1
                return _original(self, *args, **kwargs)

            def counting_project(self, view, X, layers, _original=project):
                for proj in _original(self, view, X, layers):
                    counter.projected += len(proj.mean)
                    yield proj

            monkeypatch.setattr(cls, "_curvature", counting_curvature)
            monkeypatch.setattr(cls, "_project_batches", counting_project)

    def reset(self) -> None:
        self.forward = self.curvature = self.projected = 0


@pytest.fixture
def counting(monkeypatch):
    def make(module=None):
        return Counter(monkeypatch)

    return make


@pytest.fixture(scope="module")
def cache_cls_data():
    X, y = make_classification(
        n_samples=300, n_features=6, n_informative=4, n_redundant=0, n_classes=3,
        class_sep=1.0, random_state=0,
    )  # fmt: skip
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def cache_cls_net(cache_cls_data):
    X, y = cache_cls_data
    torch.manual_seed(0)
    return classifier_net(3, max_epochs=10, lr=0.1).fit(X, y)


@pytest.fixture(scope="module")
def cache_reg_data():
    X, y = make_regression(n_samples=300, n_features=5, noise=10.0, random_state=0)
    return X.astype(np.float32), (y / y.std()).astype(np.float32)


@pytest.fixture(scope="module")
def cache_reg_net(cache_reg_data):
    X, y = cache_reg_data
    torch.manual_seed(0)
    return regressor_net(1, max_epochs=20, lr=0.05).fit(X, y[:, None])


def _summary(clf, X_eval):
    """What a fit produces: curvature eigenvalues, training loss and predictions on X_eval."""
    one = torch.tensor(1.0, dtype=torch.float64)
    eig = clf.posterior_.blocks[0].eigenvalues(one, one).numpy().ravel()
    pred = clf.predict_proba(X_eval) if hasattr(clf, "predict_proba") else clf.predict(X_eval)
    return {"eigenvalues": eig, "loss": np.array([clf.train_loss_]), "prediction": pred}


def _assert_same(a, b):
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-14, err_msg=key)


def _differs(a, b):
    return any(
        a[k].shape != b[k].shape or not np.allclose(a[k], b[k], rtol=1e-9, atol=1e-12) for k in a
    )


# ---------------------------------------------------------------- one pass per fold
CV = KFold(5, shuffle=True, random_state=0)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("cache", ["always", "reuse"], indirect=True)
def test_grid_search_pays_for_the_data_pass_once_per_fold(
    kind,
    cache_cls_data,
    cache_cls_net,
    cache_reg_data,
    cache_reg_net,
    cache,
    counting,
    monkeypatch,
):
    """20 candidates x 5 folds run as many curvature passes and projected passes (and
    projections of the scored rows onto the posterior's eigenbasis) as 1 x 5 folds.

    The counts include GridSearchCV's refit on all rows and the scoring passes on the test
    folds. The same search with the cache disabled gives the same scores: the cache changes
    the cost, not a number.
    """
    projected = []
    project = KronBlock.project

    def counting_project(block, a):
        projected.append(len(a))
        return project(block, a)

    monkeypatch.setattr(KronBlock, "project", counting_project)
    if kind == "classifier":
        (X, y), net, scoring = cache_cls_data, cache_cls_net, "neg_log_loss"
        estimator = LaplaceClassifier(
            FrozenEstimator(net), prior_precision=1.0, subset_of_weights="last_layer"
        )
        grid = {"prior_precision": np.logspace(-2, 3, 10), "temperature": [0.5, 1.0]}
    else:
        (X, y), net, scoring = cache_reg_data, cache_reg_net, neg_gaussian_nll
        estimator = LaplaceRegressor(
            FrozenEstimator(net),
            prior_precision=1.0,
            sigma_noise=1.0,
            subset_of_weights="last_layer",
        )
        grid = {
            "prior_precision": np.logspace(-2, 3, 5),
            "sigma_noise": [0.3, 1.0],
            "temperature": [0.5, 1.0],
        }
    counter = counting(net.module_)

    GridSearchCV(estimator, {"prior_precision": [1.0]}, cv=CV, scoring=scoring).fit(X, y)
    one = (counter.projected, counter.curvature, sum(projected))
    cache.clear()
    counter.reset()
    projected.clear()
    search = GridSearchCV(estimator, grid, cv=CV, scoring=scoring).fit(X, y)
    assert len(search.cv_results_["params"]) == 20
    assert (counter.projected, counter.curvature, sum(projected)) == one
    assert one[1] == 5 + 1  # one curvature per fold, one for the refit
    assert one[2] == one[0] == len(X)  # each scored row projected once
    assert cache.hits > 0

    sklaplace.set_config(cache_bytes=0)
    cache.clear()
    counter.reset()
    projected.clear()
    uncached = GridSearchCV(estimator, grid, cv=CV, scoring=scoring).fit(X, y)
    assert counter.curvature == 20 * 5 + 1
    assert sum(projected) == 20 * len(X)
    np.testing.assert_array_equal(
        search.cv_results_["mean_test_score"], uncached.cv_results_["mean_test_score"]
    )
    assert search.best_params_ == uncached.best_params_


def test_a_tight_bound_keeps_what_the_search_reuses(
    cache_cls_data, cache_cls_net, cache, counting
):
    """A bound that holds only what a grid search reuses still gives one data pass per fold.

    What a grid search reuses is each fold's curvature (about 3 kB here) and the scored
    fold's outputs with its projected features (60 rows x 20 float64 = 9.6 kB); the
    training pass itself is never stored.
    """
    X, y = cache_cls_data
    sklaplace.set_config(cache_bytes=70_000)  # > 5 curvatures and 5 scored passes
    counter = counting()
    estimator = LaplaceClassifier(
        FrozenEstimator(cache_cls_net), prior_precision=1.0, subset_of_weights="last_layer"
    )
    grid = {"prior_precision": np.logspace(-2, 3, 20)}
    GridSearchCV(estimator, grid, cv=CV, scoring="neg_log_loss", refit=False).fit(X, y)
    assert counter.curvature == 5
    assert counter.projected == len(X)  # each scored row once
    n_batches = 5 * (math.ceil(240 / 64) + math.ceil(60 / 64))  # fit and score, once
    assert counter.forward == n_batches + 20 * 5  # + find_head's probe at every fit


# ---------------------------------------------------------------- never stale
class BatchNormNet(nn.Module):
    """Linear -> BatchNorm -> activation -> Linear: weights, a buffer and an architecture."""

    def __init__(self, activation: str = "relu") -> None:
        super().__init__()
        self.hidden = nn.Linear(6, 16)
        self.bn = nn.BatchNorm1d(16)
        self.act = {"relu": nn.ReLU(), "tanh": nn.Tanh()}[activation]
        self.out = nn.Linear(16, 3)

    def forward(self, X):
        return self.out(self.act(self.bn(self.hidden(X))))


def _bn_net():
    return NeuralNetClassifier(
        BatchNormNet, criterion=nn.CrossEntropyLoss, max_epochs=5, lr=0.1, batch_size=64,
        train_split=None, verbose=0,
    )  # fmt: skip


def _retrain(net, X, y):
    net.partial_fit(X, y, epochs=1)  # the same net object, weights changed in place
    return net, X, y, {}


def _change_a_row(net, X, y):
    X[7] += 0.5  # the same array object, one row changed in place
    return net, X, y, {}


def _change_a_label(net, X, y):
    y[7] = (y[7] + 1) % 3
    return net, X, y, {}


def _change_the_structure(net, X, y):
    return net, X, y, {"hessian_structure": "diag"}


def _change_a_buffer(net, X, y):
    with torch.no_grad():
        net.module_.bn.running_mean[:4] += 0.3  # used in eval mode, not a parameter
    return net, X, y, {}


def _change_the_architecture(net, X, y):
    other = clone(net).set_params(module__activation="tanh").initialize()
    other.module_.load_state_dict(net.module_.state_dict())  # same weights and buffers
    return other, X, y, {}


CHANGES = [
    _retrain,
    _change_a_row,
    _change_a_label,
    _change_the_structure,
    _change_a_buffer,
    _change_the_architecture,
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__.lstrip("_"))
def test_a_change_is_never_served_from_the_cache(change, cache_cls_data, cache):
    """After the change, the cached fit equals a fresh computation, and differs from before."""
    X, y = (a.copy() for a in cache_cls_data)
    X_eval = cache_cls_data[0][::7].copy()
    torch.manual_seed(0)
    net = _bn_net().fit(X, y)
    before = _summary(
        LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y), X_eval
    )  # warm

    net, X, y, params = change(net, X, y)
    warm = _summary(
        LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0, **params).fit(X, y), X_eval
    )
    cache.clear()
    fresh = _summary(
        LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0, **params).fit(X, y), X_eval
    )
    _assert_same(warm, fresh)
    assert _differs(before, fresh)  # the change matters, so a stale hit would be caught


def test_the_same_content_in_new_objects_is_a_hit(cache_cls_data, cache_cls_net, cache, counting):
    """Keys are contents, not identities: copies of X and y hit the cache."""
    X, y = cache_cls_data
    counter = counting()
    first = _summary(
        LaplaceClassifier(FrozenEstimator(cache_cls_net), prior_precision=1.0).fit(X, y), X
    )
    counter.reset()
    again = _summary(
        LaplaceClassifier(FrozenEstimator(cache_cls_net), prior_precision=1.0).fit(
            X.copy(), y.copy()
        ),
        X,
    )
    assert (counter.forward, counter.curvature, counter.projected) == (1, 0, 0)  # the probe
    _assert_same(first, again)


# ---------------------------------------------------------------- clone
def test_a_clone_fit_is_a_cache_hit(cache_cls_data, cache_cls_net, cache, counting):
    X, y = cache_cls_data
    clf = LaplaceClassifier(FrozenEstimator(cache_cls_net), prior_precision=2.0).fit(X, y)
    counter = counting()
    copy = clone(clf).fit(X, y)
    assert (counter.forward, counter.curvature) == (1, 0)  # find_head's probe only
    _assert_same(_summary(clf, X), _summary(copy, X))


def test_a_clone_that_retrains_the_same_weights_reuses_the_curvature(
    cache_cls_data, cache, monkeypatch
):
    """With random_state, an unfitted net trains to the same weights: the curvature is a hit."""
    X, y = cache_cls_data
    clf = LaplaceClassifier(
        classifier_net(3, max_epochs=3), prior_precision=1.0, random_state=0
    ).fit(X, y)
    counter = Counter(monkeypatch)
    copy = clone(clf).fit(X, y)
    assert counter.curvature == 0
    _assert_same(_summary(clf, X), _summary(copy, X))


# ---------------------------------------------------------------- bounded
def _entry_sizes(cache):
    return [size for _, size in cache._data.values()]


def _bound():
    return sklaplace.get_config()["cache_bytes"]


def test_an_entry_larger_than_the_bound_is_not_stored(
    cache_cls_data, cache_cls_net, cache, counting
):
    X, y = cache_cls_data
    reference = _summary(
        LaplaceClassifier(FrozenEstimator(cache_cls_net), prior_precision=1.0).fit(X, y), X
    )
    cache.clear()
    sklaplace.set_config(cache_bytes=2_000)  # a curvature is about 3 kB, a projection 48 kB
    counter = counting()
    small = _summary(
        LaplaceClassifier(FrozenEstimator(cache_cls_net), prior_precision=1.0).fit(X, y), X
    )
    assert all(size <= _bound() for size in _entry_sizes(cache))
    assert cache.nbytes <= _bound()
    counter.reset()
    LaplaceClassifier(FrozenEstimator(cache_cls_net), prior_precision=1.0).fit(
        X, y
    )  # nothing large to reuse
    assert counter.curvature == 1
    assert counter.forward >= math.ceil(len(X) / cache_cls_net.batch_size)  # the whole pass again
    _assert_same(small, reference)


def test_least_recently_used_entries_are_evicted(cache_cls_data, cache_cls_net, cache, counting):
    """Fitting on many row subsets keeps the cache within its bound; results stay exact."""
    X, y = cache_cls_data
    subsets = [np.arange(i, 300, 4) for i in range(4)]
    references = []
    for rows in subsets:
        references.append(
            _summary(
                LaplaceClassifier(
                    FrozenEstimator(cache_cls_net),
                    prior_precision=1.0,
                    subset_of_weights="last_layer",
                ).fit(X[rows], y[rows]),
                X,
            )
        )
    cache.clear()
    # room for about four projected passes over X (25 to 30 kB each: a float32 net's
    # projections are kept in float32; at most a quarter of the bound) with their
    # curvatures (3 kB each): the fourth subset evicts the first
    sklaplace.set_config(cache_bytes=120_000)
    counter = counting()
    for rows, reference in zip(subsets, references, strict=True):
        result = _summary(
            LaplaceClassifier(
                FrozenEstimator(cache_cls_net), prior_precision=1.0, subset_of_weights="last_layer"
            ).fit(X[rows], y[rows]),
            X,
        )
        assert 0 < cache.nbytes <= _bound()
        _assert_same(result, reference)
    counter.reset()
    rows = subsets[0]  # evicted long ago: computed again, and still right
    result = _summary(
        LaplaceClassifier(
            FrozenEstimator(cache_cls_net), prior_precision=1.0, subset_of_weights="last_layer"
        ).fit(X[rows], y[rows]),
        X,
    )
    assert counter.curvature == 1
    _assert_same(result, references[0])


def test_lowering_the_bound_evicts_at_once_and_zero_disables(cache_cls_data, cache_cls_net, cache):
    X, y = cache_cls_data
    LaplaceClassifier(FrozenEstimator(cache_cls_net), prior_precision=1.0).fit(X, y).predict_proba(
        X
    )
    assert cache.nbytes > 10_000
    sklaplace.set_config(cache_bytes=10_000)
    assert cache.nbytes <= 10_000
    sklaplace.set_config(cache_bytes=0)
    assert len(cache) == 0
    LaplaceClassifier(FrozenEstimator(cache_cls_net), prior_precision=1.0).fit(X, y).predict_proba(
        X
    )
    assert len(cache) == 0


def test_lru_order():
    cache = PassCache()
    with sklaplace.config_context(cache_bytes=320):
        for key in "abcd":
            cache.put(key, np.zeros(10))  # 80 bytes each, a quarter of the bound: 320
        assert cache.get("a") is not None  # "a" is now the most recently used
        cache.put("e", np.zeros(10))  # 400 > 320: evicts the least recently used, "b"
        assert cache.get("b") is None
        assert all(cache.get(k) is not None for k in "acde")
        cache.put("big", np.zeros(11))  # 88 bytes: over a quarter of the bound, not stored
        assert cache.get("big") is None and len(cache) == 4
    with sklaplace.config_context(cache_bytes=0):  # off: nothing is looked up or stored
        assert cache.get("a") is None
        cache.put("f", np.zeros(1))
    assert len(cache) == 4


def test_set_config_validates_and_config_context_restores():
    before = sklaplace.get_config()
    with pytest.raises(ValueError, match="cache_bytes must be a non-negative int"):
        sklaplace.set_config(cache_bytes=-1)
    with pytest.raises(ValueError, match="cache_bytes must be a non-negative int"):
        sklaplace.set_config(cache_bytes=1.5)
    with sklaplace.config_context(cache_bytes=123):
        assert sklaplace.get_config()["cache_bytes"] == 123
    assert sklaplace.get_config() == before


# ---------------------------------------------------------------- admission
def _fresh_rows(X, seed):
    return X + np.random.default_rng(seed).normal(scale=1e-3, size=X.shape).astype(X.dtype)


@pytest.mark.parametrize("cache", ["reuse"], indirect=True)
def test_a_prediction_on_new_rows_is_neither_fingerprinted_nor_stored(
    cache_cls_data, cache_cls_net, cache, counting, monkeypatch
):
    """Under the default admission a one-off prediction costs no fingerprint and no copy
    into the cache: only the fit's curvature (kept by reference) is stored."""
    X, y = cache_cls_data
    clf = LaplaceClassifier(FrozenEstimator(cache_cls_net), prior_precision=1.0).fit(X, y)
    stored = len(cache)
    prints = []
    fingerprint_net = _passes.fingerprint_net
    monkeypatch.setattr(
        _passes, "fingerprint_net", lambda net: prints.append(1) or fingerprint_net(net)
    )
    for seed in range(3):
        clf.predict_proba(_fresh_rows(X, seed))
    assert prints == [] and len(cache) == stored


@pytest.mark.parametrize("cache", ["reuse"], indirect=True)
def test_a_repeated_prediction_is_stored_at_its_second_request(
    cache_cls_data, cache_cls_net, cache, counting
):
    """The second request for the same rows (new objects with the same content) stores the
    pass, the third is served from it; the answers are the same each time."""
    X, y = cache_cls_data
    clf = LaplaceClassifier(FrozenEstimator(cache_cls_net), prior_precision=1.0).fit(X, y)
    counter = counting()
    rows = _fresh_rows(X, 0)
    runs = []
    for _ in range(3):
        counter.reset()
        runs.append((clf.predict_proba(rows.copy()), counter.projected))
    assert [n for _, n in runs] == [len(X), len(X), 0]
    for proba, _ in runs[1:]:
        np.testing.assert_array_equal(proba, runs[0][0])


@pytest.mark.parametrize("cache", ["reuse"], indirect=True)
def test_admission_never_decides_a_hit(cache_cls_data, cache_cls_net, cache, monkeypatch):
    """Requests whose cheap digests collide (here: all of them) are admitted, and each is
    still answered for its own rows: only the full key serves an entry."""
    X, y = cache_cls_data
    monkeypatch.setattr(_cache_module, "request_digest", lambda obj: "same")
    clf = LaplaceClassifier(FrozenEstimator(cache_cls_net), prior_precision=1.0).fit(X, y)
    batches = [_fresh_rows(X, seed) * (1 + seed) for seed in range(3)]
    cached = [clf.predict_proba(rows) for rows in batches]
    with sklaplace.config_context(cache_bytes=0):
        reference = [clf.predict_proba(rows) for rows in batches]
    for a, b in zip(cached, reference, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(reference[0], reference[2])  # the rows matter


def test_cache_admission_is_validated_and_scoped():
    before = sklaplace.get_config()
    assert before["cache_admission"] == "reuse"
    with pytest.raises(ValueError, match="cache_admission must be 'reuse'"):
        sklaplace.set_config(cache_admission="never")
    with sklaplace.config_context(cache_admission="always"):
        assert sklaplace.get_config()["cache_admission"] == "always"
    assert sklaplace.get_config() == before
