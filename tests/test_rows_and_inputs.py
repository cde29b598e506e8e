"""Every row accounted for, inputs as the net takes them, bounded memory, exact logs.

* a sparse buffer (a graph adjacency) in the module: fits, with the cache on or off, and a
  change of its values is never served from the cache;
* a sparse X (with duplicate entries) is used as scipy defines it and left untouched;
* a net trained by skorch on integer codes gets its X as integers, as skorch gives them,
  whether the module embeds them with ``nn.Embedding``, one-hot encodes them or indexes a
  table with them;
* the net's ``iterator_valid`` settings cannot drop, repeat or reorder rows: every row is
  used by the curvature and predicted, or the estimator refuses with a clear error; the
  estimator's ``batch_size`` set after fit is the one predictions run with;
* Monte Carlo predictions (``link_approx="mc"``, ``predictive="nn"``) with many draws
  stay within a memory bound (checked on the process's resident memory, sampled while
  the prediction runs), and so do probit predictions with 1000 classes;
* a pickled fitted estimator holds none of the rows it was fitted or tuned on;
* a head bias with ``requires_grad=False`` gets no posterior, through ``"last_layer"`` as
  through a list of module names;
* ``predict_log_proba`` is computed in log space: finite where a probability underflows.
"""

from __future__ import annotations

import os
import pickle
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_classification, make_regression
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, RandomSampler

import sklaplace
from sklaplace import LaplaceClassifier, LaplaceRegressor
from sklaplace._runtime import cache as _cache
from sklaplace._runtime import passes as _passes


# ---------------------------------------------------------------- helpers
def cache_off():
    """The cache turned off inside a ``with`` block."""
    return sklaplace.config_context(cache_bytes=0)


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.setattr(_passes, "MIN_CACHED_ROWS", 0, raising=False)
    _cache.get_cache().clear()
    yield
    _cache.get_cache().clear()


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def peak_extra_memory(call):
    """``(call(), bytes)``: the peak of the process's resident memory over its level before
    the call, sampled every 0.2 ms from another thread while the call runs.

    Buffers over 32 MiB are always fresh pages from the system (glibc maps them), so an
    allocation of that size is seen however the heap was used before.
    """
    base = _resident()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _resident())
            time.sleep(0.0002)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        out = call()
    finally:
        stop.set()
        thread.join()
    return out, peak[0] - base


class Plain(nn.Module):
    def __init__(self, n_in: int = 5, n_out: int = 3) -> None:
        super().__init__()
        self.l1 = nn.Linear(n_in, 16)
        self.out = nn.Linear(16, n_out)

    def forward(self, x):
        return self.out(torch.relu(self.l1(x)))


def train(module, X, y, *, cls=NeuralNetClassifier, epochs=5, **kwargs):
    torch.manual_seed(0)
    params = {
        "max_epochs": epochs,
        "lr": 0.1,
        "batch_size": 64,
        "train_split": None,
        "verbose": 0,
    }
    if cls is NeuralNetClassifier:
        params["criterion"] = nn.CrossEntropyLoss
    params.update(kwargs)
    net = cls(module, **params)
    return net.fit(X, y) if epochs else net.initialize()


def same_weights(net, **kwargs):
    """A net like ``net`` (``kwargs`` changing its settings) holding the same weights."""
    params = net.get_params(deep=False)
    params.update(kwargs)
    other = type(net)(**params).initialize()
    other.module_.load_state_dict(net.module_.state_dict())
    return other


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=300,
        n_features=5,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        random_state=0,
    )
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def net(data):
    return train(Plain, *data)


# ---------------------------------------------------------------- a sparse buffer
class GraphNet(Plain):
    """Features mixed along a chain graph held in a sparse adjacency buffer."""

    def __init__(self, layout: str = "coo") -> None:
        super().__init__()
        adj = torch.eye(5) + 0.5 * torch.diag(torch.ones(4), 1)
        self.register_buffer("adj", adj.to_sparse() if layout == "coo" else adj.to_sparse_csr())

    def forward(self, x):
        return super().forward((self.adj @ x.T).T)


def _sparse_values(adj: torch.Tensor) -> torch.Tensor:
    return adj._values() if adj.layout == torch.sparse_coo else adj.values()


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_a_sparse_buffer_fits_and_is_never_stale(layout, data):
    X, y = data
    graph_net = train(GraphNet, X, y, module__layout=layout)

    def run():
        est = LaplaceClassifier(FrozenEstimator(graph_net), prior_precision=1.0).fit(X, y)
        return est.predict_proba(X), est.log_marginal_likelihood()

    with cache_off():
        off = run()
    on = run()  # fills the cache
    assert_array_equal(on[0], off[0])
    assert np.isfinite(on[0]).all()
    # the graph's weights changed in place: a new result, the same with the cache on or off
    _sparse_values(graph_net.module_.adj).mul_(3.0)
    changed_on = run()
    with cache_off():
        changed_off = run()
    assert_array_equal(changed_on[0], changed_off[0])
    assert changed_on[1] == changed_off[1]
    assert np.abs(changed_on[0] - on[0]).max() > 1e-3


def csr_with_duplicates(X: np.ndarray) -> sp.csr_matrix:
    """X as a CSR matrix holding every non-zero twice, as two halves (exact in binary)."""
    rows, cols = np.nonzero(X)
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    halves = X[rows, cols] / 2
    data = np.repeat(halves, 2)
    indices = np.repeat(cols, 2)
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=len(X)) * 2)]
    out = sp.csr_matrix((data, indices, indptr), shape=X.shape)
    assert not out.has_canonical_format
    return out


def test_a_sparse_X_is_used_as_is_and_left_untouched(data, net):
    """Duplicate entries sum (scipy's meaning); fit and predictions do not modify X."""
    X, y = data
    Xs = csr_with_duplicates(X)
    arrays = [a.copy() for a in (Xs.data, Xs.indices, Xs.indptr)]
    dense = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
    est = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(Xs, y)
    assert_array_equal(est.predict_proba(Xs), dense.predict_proba(X))
    assert est.log_marginal_likelihood() == dense.log_marginal_likelihood()
    for before, after in zip(arrays, (Xs.data, Xs.indices, Xs.indptr), strict=True):
        assert_array_equal(after, before)


# ---------------------------------------------------------------- integer codes
class CodesNet(nn.Module):
    """Three categorical features (10 codes each) through one embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.l1 = nn.Linear(12, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(torch.relu(self.l1(self.emb(x).flatten(1))))


class OneHotNet(nn.Module):
    """The codes one-hot encoded in ``forward`` (no embedding module)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(30, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(torch.relu(self.l1(F.one_hot(x, 10).flatten(1).float())))


class TableNet(nn.Module):
    """A lookup table held as a parameter and indexed by the codes (no embedding module)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(10, 4))
        self.l1 = nn.Linear(12, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(torch.relu(self.l1(self.table[x].flatten(1))))


@pytest.fixture(scope="module")
def codes():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 10, size=(300, 3))
    y = (X[:, 0] + X[:, 1]) % 3
    return X, y


@pytest.mark.parametrize(
    "module, subset",
    [
        (CodesNet, "last_layer"),
        (CodesNet, "all"),
        (OneHotNet, "last_layer"),
        (TableNet, "last_layer"),
    ],
    ids=["embedding", "embedding_all_layers", "one_hot", "table"],
)
def test_a_net_trained_on_integer_codes(module, subset, codes):
    """skorch gives the module X as it is (int64 here); so must sklaplace."""
    X, y = codes
    codes_net = train(module, X, y, epochs=10)
    # a nearly flat posterior (huge prior precision): the net's own probabilities
    est = LaplaceClassifier(
        FrozenEstimator(codes_net), prior_precision=1e8, subset_of_weights=subset
    ).fit(X, y)
    assert_allclose(est.predict_proba(X), codes_net.predict_proba(X), atol=1e-5)
    assert est.n_train_ == len(y)


def test_an_unfitted_embedding_net_trains_on_the_codes(codes):
    X, y = codes
    torch.manual_seed(0)
    unfitted = NeuralNetClassifier(
        CodesNet, criterion=nn.CrossEntropyLoss, max_epochs=3, lr=0.1, train_split=None, verbose=0
    )
    est = LaplaceClassifier(unfitted, prior_precision=1e8, random_state=0).fit(X, y)
    assert_allclose(est.predict_proba(X), est.estimator_.predict_proba(X), atol=1e-5)


# ---------------------------------------------------------------- every row, in order
@pytest.mark.parametrize(
    "setting",
    [{"iterator_valid__drop_last": True}, {"iterator_valid__shuffle": True}],
    ids=["drop_last", "shuffle"],
)
def test_iterator_settings_keep_every_row_in_order(setting, data, net):
    X, y = data
    changed = same_weights(net, **setting)
    reference = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
    est = LaplaceClassifier(FrozenEstimator(changed), prior_precision=1.0).fit(X, y)
    assert est.n_train_ == reference.n_train_ == len(y)
    assert est.log_marginal_likelihood() == reference.log_marginal_likelihood()
    for rows in (X[:100], X[:30], X[:1]):  # batches of 64: a partial batch, one, one row
        got = est.predict_proba(rows)
        assert got.shape == (len(rows), 3)
        assert_array_equal(got, reference.predict_proba(rows))


BATCHES_SEEN: list[int] = []


class BatchSpy(Plain):
    """Records the number of rows of each batch it runs."""

    def forward(self, x):
        BATCHES_SEEN.append(x.shape[0])
        return super().forward(x)


def test_batch_size_set_after_fit_is_read_by_predictions(data):
    """``batch_size`` ("rows per forward pass in fit and prediction") is validated at
    every prediction; a value set after fit must be the one predictions run with."""
    X, y = data
    spy = train(BatchSpy, X, y, epochs=1)
    est = LaplaceClassifier(FrozenEstimator(spy), prior_precision=1.0, batch_size=64).fit(X, y)
    est.set_params(batch_size=50)
    BATCHES_SEEN.clear()
    with cache_off():
        est.predict_proba(X[:100])
    assert BATCHES_SEEN == [50, 50]


def test_a_shuffling_sampler_is_refused(data, net):
    X, y = data
    shuffled = same_weights(net, iterator_valid__sampler=RandomSampler(range(len(y))))
    with pytest.raises(ValueError, match="sampler"):
        LaplaceClassifier(FrozenEstimator(shuffled), prior_precision=1.0).fit(X, y)


class FirstBatchOnly(DataLoader):
    """An iterator that stops after its first batch (it drops rows)."""

    def __iter__(self):
        yield next(iter(super().__iter__()))


def test_an_iterator_that_drops_rows_is_refused(data, net):
    X, y = data
    dropping = same_weights(net, iterator_valid=FirstBatchOnly)
    with pytest.raises(ValueError, match="every row"):
        LaplaceClassifier(FrozenEstimator(dropping), prior_precision=1.0).fit(X, y)
    # the prediction path with such a net: swapped in behind a fitted estimator's back
    est = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
    est.estimator_ = dropping
    if hasattr(est, "_fitted"):  # the fitted state that predictions read
        from sklaplace._runtime.stamp import Stamp

        est._fitted.net = dropping
        est._fitted.stamp = Stamp(dropping.module_)  # same weights, new storage
    with pytest.raises(ValueError, match="every row"):
        est.predict_proba(X)


# ---------------------------------------------------------------- bounded memory
MIB = 2**20


@pytest.mark.parametrize(
    "params",
    [{"link_approx": "mc"}, {"predictive": "nn"}],
    ids=["mc", "nn"],
)
def test_many_draws_stay_within_a_memory_bound(params, data, net):
    """20000 draws for 300 rows and 3 classes are 144 MB of float64 outputs at once; drawn
    in chunks they need a few MB."""
    X, y = data
    n_samples = 20_000
    est = LaplaceClassifier(
        FrozenEstimator(net), prior_precision=1.0, n_samples=n_samples, random_state=0, **params
    ).fit(X, y)
    est.set_params(n_samples=10).predict_proba(X)  # warm up
    est.set_params(n_samples=n_samples)
    proba, extra = peak_extra_memory(lambda: est.predict_proba(X))
    assert proba.shape == (len(y), 3)
    assert_allclose(proba.sum(1), 1.0, rtol=1e-9)
    assert extra < 48 * MIB, f"{extra / MIB:.0f} MiB for {n_samples} draws"


@pytest.mark.filterwarnings("ignore:The number of unique classes")
def test_probit_with_1000_classes_forms_no_output_covariances(data):
    """Probit reads the output variances only: no (batch, c, c) covariance (256 MiB here)."""
    n_classes, batch = 1000, 32
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_classes, 5)).astype(np.float32)
    y = np.arange(n_classes)
    wide = train(Plain, X, y, epochs=0, module__n_out=n_classes, batch_size=batch)
    est = LaplaceClassifier(
        FrozenEstimator(wide), prior_precision=1.0, hessian_structure="diag"
    ).fit(X, y)
    est.predict_proba(X[:batch])  # warm up
    proba, extra = peak_extra_memory(lambda: est.predict_proba(X[: 4 * batch]))
    assert proba.shape == (4 * batch, n_classes)
    assert extra < batch * n_classes * n_classes * 8 / 8  # an eighth of one (b, c, c) stack


# ---------------------------------------------------------------- what a pickle holds
def _contains_rows(blob: bytes, rows: np.ndarray) -> list[int]:
    """Indices of the rows whose float32 or float64 bytes appear in ``blob``."""
    found = []
    for i, row in enumerate(rows):
        for dtype in (np.float32, np.float64):
            if np.ascontiguousarray(row, dtype=dtype).tobytes() in blob:
                found.append(i)
    return found


def test_the_row_search_finds_pickled_rows(data):
    """The search below does find rows that a pickle holds (as arrays or tensors)."""
    X, _ = data
    assert _contains_rows(pickle.dumps(X[:10]), X[:10]) == list(range(10))
    blob = pickle.dumps(torch.as_tensor(X[:10].astype(np.float64)))
    assert _contains_rows(blob, X[:10]) == list(range(10))


def test_a_pickled_classifier_holds_no_rows(data):
    X, y = data
    unfitted = NeuralNetClassifier(
        Plain, criterion=nn.CrossEntropyLoss, max_epochs=3, lr=0.1, train_split=None, verbose=0
    )
    est = LaplaceClassifier(unfitted, random_state=0).fit(X, y)  # prior_precision="holdout"
    assert est.validation_indices_ is not None and len(est.validation_indices_)
    blob = pickle.dumps(est)
    assert _contains_rows(blob, X) == []
    assert_array_equal(pickle.loads(blob).predict_proba(X), est.predict_proba(X))


def test_a_pickled_regressor_holds_no_rows():
    X, y = make_regression(n_samples=300, n_features=5, noise=5.0, random_state=0)
    X, y = X.astype(np.float32), (y / y.std()).astype(np.float32)
    unfitted = NeuralNetRegressor(
        Plain, module__n_out=1, max_epochs=3, lr=0.05, train_split=None, verbose=0
    )
    # prior_precision and sigma_noise "holdout": tuned on rows held out of the training
    est = LaplaceRegressor(unfitted, random_state=0).fit(X, y)
    assert est.validation_indices_ is not None and len(est.validation_indices_)
    blob = pickle.dumps(est)
    assert _contains_rows(blob, X) == []
    assert_array_equal(pickle.loads(blob).predict(X), est.predict(X))


# ---------------------------------------------------------------- a frozen head bias
def test_a_frozen_head_bias_gets_no_posterior_either_way(data):
    X, y = data
    net = train(Plain, X, y)
    net.module_.out.bias.requires_grad_(False)
    fits = [
        LaplaceClassifier(
            FrozenEstimator(net),
            prior_precision=1.0,
            hessian_structure="diag",
            subset_of_weights=s,
        ).fit(X, y)
        for s in ("last_layer", ["out"])
    ]
    for est in fits:
        assert [tuple(b.shape) for b in est.posterior_.blocks] == [(3, 16)]
    # the same exact GGN diagonal, through the head's features or through float32 backward
    # passes: equal to float32 precision (a bias block would add 3 parameters: O(1) apart)
    last, named = fits
    assert_allclose(last.log_marginal_likelihood(), named.log_marginal_likelihood(), rtol=1e-6)
    assert_allclose(last.predict_proba(X), named.predict_proba(X), rtol=1e-6)


# ---------------------------------------------------------------- logs of tiny probabilities
@pytest.mark.parametrize(
    "params",
    [{}, {"link_approx": "mc", "n_samples": 20}, {"predictive": "nn", "n_samples": 20}],
    ids=["probit", "mc", "nn"],
)
@pytest.mark.parametrize("binary", [False, True], ids=["softmax", "sigmoid"])
def test_log_proba_is_finite_where_probabilities_underflow(binary, params, data):
    X, y = data
    if binary:
        y = (y > 0).astype(np.float32)
        net = train(Plain, X, y, cls=NeuralNetBinaryClassifier, module__n_out=1)
    else:
        net = train(Plain, X, y)
    with torch.no_grad():  # logits of thousands: probabilities far below float64's range
        net.module_.out.weight.mul_(400.0)
        net.module_.out.bias.mul_(400.0)
        logits = net.forward(X).double()
    # a posterior so tight (prior precision 1e16: weight draws within float32 rounding of
    # the trained weights, every layer included) that the log-probabilities are those of
    # the logits themselves
    if binary:
        logits = logits.reshape(-1, 1)
        want = torch.cat([-F.softplus(logits), -F.softplus(-logits)], 1)
    else:
        want = torch.log_softmax(logits, dim=1)
    want = want.numpy()
    assert (want < -800).any()  # exp() of these is 0 in float64
    est = LaplaceClassifier(
        FrozenEstimator(net), prior_precision=1e16, random_state=0, **params
    ).fit(X, y)
    got = est.predict_log_proba(X)
    assert np.isfinite(got).all()
    assert_allclose(got, want, rtol=1e-4, atol=1e-6)
