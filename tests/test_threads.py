"""Threads sharing one net, or one fitted estimator, get exactly the sequential results.

sklaplace runs every pass through a private view of the net's module tree and puts its
hooks (and, for ``predictive="nn"``, its sampled weights) on the view, so concurrent calls
cannot see each other's hooks or weights, and the user's module is never touched. Each test
runs many trials of several threads started together (with a short interpreter switch
interval, so that they interleave finely) and compares every thread's answer, bit for bit,
with the answer of the same call made alone. The pass cache, shared by all threads, is
attacked directly too: a lookup racing an eviction.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, KFold
from skorch import NeuralNetClassifier
from threadpoolctl import threadpool_info, threadpool_limits
from torch import nn

import sklaplace
from sklaplace import LaplaceClassifier
from sklaplace._runtime import cache as _cache
from sklaplace._runtime import passes as _passes
from sklaplace._runtime import threads as _threads

N_TRIALS = 20
N_THREADS = 4


# ---------------------------------------------------------------- settings
def set_cache_bytes(value: int) -> int:
    """Set the cache bound for every thread (the old package: its attribute); the old bound."""
    if hasattr(sklaplace, "set_config"):
        old = sklaplace.get_config()["cache_bytes"]
        sklaplace.set_config(cache_bytes=value)
        return old
    cache = _cache.get_cache()
    old = cache.max_bytes
    cache.max_bytes = value
    return old


@pytest.fixture(params=["cache_off", "cache_on"])
def cache_mode(request, monkeypatch):
    """Each thread test runs with the cache off (every call runs its passes) and on
    (emptied before each trial, so that the threads race to fill it)."""
    monkeypatch.setattr(_passes, "MIN_CACHED_ROWS", 0, raising=False)
    _cache.get_cache().clear()
    old = set_cache_bytes(0 if request.param == "cache_off" else 256 * 2**20)
    yield request.param
    set_cache_bytes(old)
    _cache.get_cache().clear()


@pytest.fixture(scope="module", autouse=True)
def blas_threads_restored():
    """The BLAS thread count as it was before this module's tests (concurrent fits may
    leave it lowered: see test_overlapping_fits_leave_the_blas_threads_as_they_were)."""
    before = blas_threads()
    yield
    if before and blas_threads() != before:
        threadpool_limits(limits=min(before), user_api="blas")


@pytest.fixture(autouse=True)
def fine_switching():
    """Switch threads every 10 microseconds (instead of 5 ms) while the test runs."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


# ---------------------------------------------------------------- data and nets
class Net(nn.Module):
    """Two hidden layers; its forward lets other threads run between its layers, as a
    module with Python-level work between torch operations does."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(5, 16)
        self.l2 = nn.Linear(16, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.l1(x))
        time.sleep(0)
        return self.out(torch.tanh(self.l2(h)))


# the user's modules that HookSpy.forward inspects while sklaplace runs it
WATCHED: list[nn.Module] = []
HOOKS_SEEN: list[int] = []


class HookSpy(Net):
    """Records, each time it runs, how many hooks the watched (user's) modules carry."""

    def forward(self, x):
        for module in WATCHED:
            for m in module.modules():
                HOOKS_SEEN.append(len(m._forward_hooks) + len(m._forward_pre_hooks))
        return super().forward(x)


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=600,
        n_features=5,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        random_state=1,
    )
    return X.astype(np.float32), y


def train(data, module=Net, **kwargs):
    X, y = data
    torch.manual_seed(0)
    params = {
        "criterion": nn.CrossEntropyLoss,
        "max_epochs": 5,
        "lr": 0.1,
        "batch_size": 32,
        "train_split": None,
        "verbose": 0,
    }
    params.update(kwargs)
    return NeuralNetClassifier(module, **params).fit(X, y)


@pytest.fixture(scope="module")
def net(data):
    return train(data)


def hooks_on(module: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in module.modules()
    )


def in_threads(call, n_trials=N_TRIALS, n_threads=N_THREADS, before_trial=None):
    """``call(i)`` for i in range(n_threads), started together; results per trial."""
    trials = []
    with ThreadPoolExecutor(n_threads) as pool:
        for _ in range(n_trials):
            if before_trial is not None:
                before_trial()
            barrier = threading.Barrier(n_threads)

            def task(i, barrier=barrier):
                barrier.wait()
                return call(i)

            trials.append(list(pool.map(task, range(n_threads))))
    return trials


def check_trials(trials, expected) -> None:
    """Every thread of every trial gave exactly the sequential answer."""
    wrong = []
    for t, results in enumerate(trials):
        for i, got in enumerate(results):
            want = expected[i]
            if got.shape != want.shape or not np.array_equal(got, want):
                wrong.append((t, i, got.shape))
    assert not wrong, f"{len(wrong)} of {len(trials) * len(trials[0])} calls differ: {wrong[:5]}"


def clear_cache():
    _cache.get_cache().clear()


# ---------------------------------------------------------------- process-wide settings
class Rendezvous:
    """Makes thread "B" run its curvature pass while thread "A" is inside its own, and
    finish it after "A" has returned: two passes that overlap without nesting."""

    def __init__(self) -> None:
        self.active = False
        self.calls = threading.local()
        self.a_inside = threading.Event()
        self.a_done = threading.Event()

    def forward_called(self) -> None:
        if not self.active:
            return
        n = getattr(self.calls, "n", 0) + 1
        self.calls.n = n
        if n != 2:  # the first call checks the head; the second is the curvature pass
            return
        if threading.current_thread().name == "A":
            self.a_inside.set()
            time.sleep(0.2)  # B enters its pass meanwhile
        else:
            self.a_done.wait(5.0)


RENDEZVOUS = Rendezvous()


class Synchronised(Net):
    def forward(self, x):
        RENDEZVOUS.forward_called()
        return super().forward(x)


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_overlapping_fits_leave_the_blas_threads_as_they_were(data):
    """A curvature pass limits numpy's BLAS (a process-wide setting) to torch's threads;
    two passes in two threads that overlap without nesting must leave it as it was.
    (Defined first in this module: the other tests' threads may already have lowered it.)"""
    X, y = data
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    before = blas_threads()
    if not before or min(before) <= 1:  # (first in this module: before its other threads)
        torch.set_num_threads(torch_threads)
        pytest.skip("the BLAS runs one thread here: no limit to leave behind")
    net = train(data, module=Synchronised, max_epochs=1)
    old = set_cache_bytes(0)

    def fit(name):
        if name == "B":
            RENDEZVOUS.a_inside.wait(5.0)
        LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0, batch_size=len(y)).fit(X, y)
        if name == "A":
            RENDEZVOUS.a_done.set()

    RENDEZVOUS.active = True
    try:
        threads = [threading.Thread(target=fit, args=(name,), name=name) for name in "AB"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert RENDEZVOUS.a_inside.is_set() and RENDEZVOUS.a_done.is_set()
        after = blas_threads()
    finally:
        RENDEZVOUS.active = False
        threadpool_limits(limits=min(before), user_api="blas")  # restore for other tests
        torch.set_num_threads(torch_threads)
        set_cache_bytes(old)
    assert after == before


# ---------------------------------------------------------------- one fitted estimator
def check_shared_estimator(est, net, X, before_trial=None) -> None:
    """Threads predicting with ``est`` at once give exactly the sequential answers, and
    leave no hook and no sampled weight on the user's module."""
    # each thread predicts other rows (a slice of X, in another order)
    inputs = [X[i::2][:: 1 if i % 2 else -1] for i in range(N_THREADS)]
    weights = {k: v.clone() for k, v in net.module_.state_dict().items()}
    expected = [est.predict_proba(Xi) for Xi in inputs]
    trials = in_threads(lambda i: est.predict_proba(inputs[i]), before_trial=before_trial)
    check_trials(trials, expected)
    assert hooks_on(net.module_) == 0
    for k, v in net.module_.state_dict().items():
        assert_array_equal(v.numpy(), weights[k].numpy())


@pytest.mark.parametrize(
    "params",
    [
        {"subset_of_weights": "last_layer", "hessian_structure": "kron", "batch_size": 8},
        {"subset_of_weights": "all", "hessian_structure": "kron"},
    ],
    ids=["last_layer", "all_layers"],
)
def test_threads_share_one_fitted_estimator(params, data, net, cache_mode):
    X, y = data
    est = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0, **params).fit(X, y)
    check_shared_estimator(
        est, net, X, before_trial=clear_cache if cache_mode == "cache_on" else None
    )


def test_threads_draw_weights_into_their_own_view(data, net):
    """``predictive="nn"`` over all layers puts sampled weights into the module it runs."""
    X, y = data
    est = LaplaceClassifier(
        FrozenEstimator(net),
        prior_precision=1.0,
        subset_of_weights="all",
        hessian_structure="diag",
        predictive="nn",
        n_samples=5,
        random_state=0,
    ).fit(X, y)
    check_shared_estimator(est, net, X)


@pytest.mark.parametrize("subset", ["last_layer", "all"])
def test_threads_fit_on_one_net(subset, data, net, cache_mode):
    """Several estimators fitted at once on one frozen net, each on other rows."""
    X, y = data
    rows = [np.arange(i, len(y), 2) for i in range(N_THREADS)]

    def fit_predict(i):
        est = LaplaceClassifier(
            FrozenEstimator(net), prior_precision=1.0, subset_of_weights=subset
        )
        r = rows[i]
        est.fit(X[r], y[r])
        return np.append(est.predict_proba(X).ravel(), est.log_marginal_likelihood())

    expected = [fit_predict(i) for i in range(N_THREADS)]
    trials = in_threads(
        fit_predict,
        n_trials=N_TRIALS // 2,
        before_trial=clear_cache if cache_mode == "cache_on" else None,
    )
    check_trials(trials, expected)
    assert hooks_on(net.module_) == 0


def test_skorch_and_sklaplace_on_one_net_at_once(data, net, cache_mode):
    """skorch's own predictions, made while sklaplace runs the same net, stay right."""
    X, y = data
    est = LaplaceClassifier(
        FrozenEstimator(net), prior_precision=1.0, subset_of_weights="all"
    ).fit(X, y)
    expected = [est.predict_proba(X), net.predict_proba(X)]
    calls = [est.predict_proba, net.predict_proba]
    trials = in_threads(lambda i: calls[i % 2](X), n_trials=10)
    check_trials(trials, expected * (N_THREADS // 2))


# ---------------------------------------------------------------- the user's module
@pytest.mark.parametrize("subset", ["last_layer", "all"])
def test_no_hook_is_ever_put_on_the_users_module(subset, data):
    """Not after a call, and not during one: the module's own forward looks at the user's
    module while sklaplace runs it, in fit and in predictions."""
    X, y = data
    net = train(data, module=HookSpy, max_epochs=1)
    WATCHED[:] = [net.module_]
    HOOKS_SEEN.clear()
    try:
        est = LaplaceClassifier(
            FrozenEstimator(net), prior_precision=1.0, subset_of_weights=subset
        ).fit(X, y)
        est.predict_proba(X)
        est.set_params(predictive="nn", n_samples=3).predict_proba(X[:50])
    finally:
        WATCHED.clear()
    assert HOOKS_SEEN, "the spy did not run"
    assert max(HOOKS_SEEN) == 0
    assert hooks_on(net.module_) == 0


# ---------------------------------------------------------------- grid search
def test_grid_search_with_threads_scores_as_sequential(data, net):
    """joblib's threading backend: the same scores as one thread, and no NaN (a failed
    candidate scores NaN by default)."""
    X, y = data
    search = GridSearchCV(
        LaplaceClassifier(FrozenEstimator(net), subset_of_weights="all", hessian_structure="diag"),
        {"prior_precision": [0.1, 1.0, 10.0, 100.0]},
        cv=KFold(3),
        scoring="neg_log_loss",
    )
    sequential = search.fit(X, y).cv_results_
    keys = [f"split{k}_test_score" for k in range(3)]
    for _ in range(3):
        clear_cache()  # the candidates of a fold race to compute its passes
        with joblib.parallel_backend("threading", n_jobs=N_THREADS):
            threaded = GridSearchCV(**search.get_params(deep=False)).fit(X, y).cv_results_
        for k in keys:
            assert not np.isnan(threaded[k]).any()
            assert_array_equal(threaded[k], sequential[k])


# ---------------------------------------------------------------- the cache itself
def new_cache(bound: int):
    """A private cache with ``bound`` bytes, for either package version."""
    if hasattr(_cache, "PassCache"):
        set_cache_bytes(bound)
        return _cache.PassCache()
    return _cache.LRUCache(max_bytes=bound)


class RacingKey:
    """A cache key; a probe (``armed``) lets another thread evict the entry at its second
    hash (the one ``get`` makes to refresh the entry it found) and waits up to 0.3 s for
    it. Probes are new objects equal to the stored key, as the cache's tuple keys are."""

    def __init__(self, armed: bool = False) -> None:
        self.armed = armed
        self.hashes = 0
        self.go = threading.Event()
        self.evicted = threading.Event()

    def __hash__(self) -> int:
        if self.armed:
            self.hashes += 1
            if self.hashes == 2:
                self.go.set()
                self.evicted.wait(0.3)
        return 12345

    def __eq__(self, other) -> bool:
        return isinstance(other, RacingKey)


@pytest.fixture
def cache_bound():
    old = set_cache_bytes(256 * 2**20)
    yield
    set_cache_bytes(old)


def test_cache_get_racing_an_eviction(cache_bound, monkeypatch):
    monkeypatch.setattr(_cache, "ADMIT_FRACTION", 1)  # two 80-byte entries, a 100-byte bound
    cache = new_cache(100)
    cache.put(RacingKey(), np.zeros(10))  # 80 bytes
    probe = RacingKey(armed=True)
    errors = []

    def evict():
        probe.go.wait(5.0)
        try:
            cache.put("other", np.zeros(10))  # evicts the entry: 160 bytes > 100
        except Exception as exc:  # reported below
            errors.append(exc)
        probe.evicted.set()

    thread = threading.Thread(target=evict)
    thread.start()
    try:
        got = cache.get(probe)
    finally:
        probe.go.set()
        probe.evicted.set()
        thread.join()
    assert probe.hashes >= 2, "the race was not set up"
    assert not errors
    # the lookup either came first (the entry) or after the eviction (None); never an error
    assert got is None or got.shape == (10,)
    assert cache.get(RacingKey()) is None  # evicted by now
    assert cache.get("other") is not None


class YieldingKey:
    """A key whose hash lets other threads run (as a key of tuples of strings could be
    interrupted): lookups and evictions of other threads fall between a lookup's steps."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __hash__(self) -> int:
        time.sleep(0)
        return hash(self.k)

    def __eq__(self, other) -> bool:
        return isinstance(other, YieldingKey) and other.k == self.k


def test_cache_under_concurrent_get_put_and_eviction(cache_bound):
    bound = 8 * 80
    cache = new_cache(bound)
    errors = []
    stop = threading.Event()

    def worker(seed):
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                k = int(rng.integers(40))
                if rng.random() < 0.5:
                    cache.put(YieldingKey(k), np.full(10, k, dtype=np.float64))
                else:
                    value = cache.get(YieldingKey(k))
                    if value is not None and not (value == k).all():
                        errors.append(("wrong value", k))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(N_THREADS)]
    for t in threads:
        t.start()
    stop.wait(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(cache) <= bound // 80
    with contextlib.suppress(AttributeError):  # the size the cache believes it holds
        assert cache.nbytes == 80 * len(cache)


# ---------------------------------------------------------------- torch threads of the passes
@contextlib.contextmanager
def torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def record_threads(monkeypatch, fail: bool = False) -> list[int]:
    """Record torch's thread count at every forward pass sklaplace runs (and raise from the
    first one with ``fail``)."""
    seen: list[int] = []
    forward = _passes.NetView.forward

    def recording(view, Xi):
        seen.append(torch.get_num_threads())
        if fail:
            raise RuntimeError("a forward pass failed")
        return forward(view, Xi)

    monkeypatch.setattr(_passes.NetView, "forward", recording)
    return seen


@pytest.mark.parametrize(
    ("setting", "expected"), [("auto", 1), ("torch", 2), (1, 1), (3, 2)], ids=str
)
def test_passes_of_a_small_net_run_on_one_thread_and_restore_the_callers(
    setting, expected, data, net, monkeypatch
):
    """The net here (16 x 16 weights, batches of 32 rows) is small: under "auto" its passes
    run on one torch thread (many small parallel regions stall on a busy machine), and the
    caller's count is back after the call, after an exception too."""
    X, y = data
    est = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0, subset_of_weights="all")
    with torch_threads(2), sklaplace.config_context(pass_threads=setting, cache_bytes=0):
        seen = record_threads(monkeypatch)
        est.fit(X, y).predict_proba(X)
        assert seen and set(seen) == {expected}
        assert torch.get_num_threads() == 2
        record_threads(monkeypatch, fail=True)
        with pytest.raises(RuntimeError, match="a forward pass failed"):
            est.predict_proba(X)
        assert torch.get_num_threads() == 2


def test_a_large_net_keeps_torchs_threads(data, monkeypatch):
    """A net whose largest weight matrix times the batch rows reaches SMALL_PASS_WORK runs
    its passes on torch's own thread count."""
    X, y = data
    net = train(data, max_epochs=1)
    with torch_threads(2):
        seen = record_threads(monkeypatch)
        monkeypatch.setattr(_threads, "SMALL_PASS_WORK", 16 * 16 * 32)  # l2's weight x batch
        LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y).predict_proba(X)
        assert seen and set(seen) == {2}


def test_the_thread_count_changes_predictions_by_round_off_only(data, net):
    """Passes on one thread or on two give the same predictions up to float32 round-off
    (a different split of each sum: a few units in the last place of the float32 net's
    outputs, carried into float64 moments)."""
    X, y = data
    with torch_threads(2):
        probas = []
        for setting in ("auto", "torch"):
            with sklaplace.config_context(pass_threads=setting):
                est = LaplaceClassifier(
                    FrozenEstimator(net), prior_precision=1.0, subset_of_weights="all"
                )
                probas.append(est.fit(X, y).predict_proba(X))
    np.testing.assert_allclose(probas[0], probas[1], rtol=0, atol=64 * np.finfo(np.float32).eps)


def test_overlapping_calls_leave_torchs_threads_as_they_were(data):
    """Two fits in two threads lower torch's thread count (which torch hands to threads
    started later) and overlap without nesting: afterwards the calling thread and new
    threads see the count that was set before."""
    X, y = data
    net = train(data, module=Synchronised, max_epochs=1)
    old = set_cache_bytes(0)

    def fit(name):
        if name == "B":
            RENDEZVOUS.a_inside.wait(5.0)
        LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
        if name == "A":
            RENDEZVOUS.a_done.set()

    RENDEZVOUS.a_inside.clear()
    RENDEZVOUS.a_done.clear()
    RENDEZVOUS.calls = threading.local()
    seen_by_new_thread = []
    with torch_threads(2):
        RENDEZVOUS.active = True
        try:
            threads = [threading.Thread(target=fit, args=(name,), name=name) for name in "AB"]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert RENDEZVOUS.a_inside.is_set() and RENDEZVOUS.a_done.is_set()
            late = threading.Thread(
                target=lambda: seen_by_new_thread.append(torch.get_num_threads())
            )
            late.start()
            late.join()
            here = torch.get_num_threads()
        finally:
            RENDEZVOUS.active = False
            set_cache_bytes(old)
    assert (here, seen_by_new_thread) == (2, [2])


def test_pass_threads_is_validated():
    with pytest.raises(ValueError, match="pass_threads must be 'auto', 'torch' or a positive"):
        sklaplace.set_config(pass_threads=0)
    with pytest.raises(ValueError, match="pass_threads must be"):
        sklaplace.config_context(pass_threads="fast").__enter__()
    assert sklaplace.get_config()["pass_threads"] == "auto"
