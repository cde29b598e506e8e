"""The caller's torch context and the caller's memory: every call computes what an ordinary
call computes, with the cache on and off, and leaves the caller's X as it was.

The differential suite (``tests/test_cache_differential.py``) changes the net; this module
changes the context a call runs in, which is not part of the net:

* torch's **per-thread modes**: ``torch.inference_mode()`` (how serving code calls a
  model), ``torch.no_grad()`` and ``torch.autocast("cpu", dtype=torch.bfloat16)`` around
  ``fit``, around the predictions, or both. sklaplace runs its passes outside all three
  (``sklaplace._runtime.passes.torch_state``), so each result must equal, bit for bit, a fresh
  ordinary fit with the cache off; and whatever a call inside them puts in the cache must be
  what an ordinary call computes (an ordinary call after it is served it), and the other
  way round.
* torch's **process-wide settings** (the default dtype, deterministic algorithms, the
  float32 matmul precision): they cannot be set per thread, so they key the cache.
* a ``forward`` that changes **its input in place** (``x /= 10``): the caller's X is
  unchanged after fit and predictions, two predictions are identical, and they equal those
  of the same net without the in-place operation; with a read-only memory-mapped X (which
  used to crash the process) in a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_array_equal
from sklearn.datasets import make_classification, make_regression
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetClassifier, NeuralNetRegressor
from torch import nn

import sklaplace
from sklaplace import LaplaceClassifier, LaplaceRegressor
from sklaplace._runtime import cache as _cache
from sklaplace._runtime import passes as _passes

N_ROWS = 300

CONTEXTS = {
    "inference_mode": torch.inference_mode,
    "no_grad": torch.no_grad,
    "autocast_bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
}
PLAIN = contextlib.nullcontext


def cache_off():
    return sklaplace.config_context(cache_bytes=0)


@pytest.fixture(autouse=True, params=["always", "reuse"])
def cache(monkeypatch, request):
    """An empty cache, on, caching passes of any size (restored afterwards), under both
    admissions: every pass stored from its first request, or from its second."""
    monkeypatch.setattr(_passes, "MIN_CACHED_ROWS", 0, raising=False)
    old = sklaplace.get_config()["cache_admission"]
    sklaplace.set_config(cache_admission=request.param)  # (threads too)
    cache = _cache.get_cache()
    cache.clear()
    yield cache
    cache.clear()
    sklaplace.set_config(cache_admission=old)


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=N_ROWS, n_features=5, n_informative=4, n_redundant=0, n_classes=3,
        random_state=0,
    )  # fmt: skip
    return X.astype(np.float32), y


class Plain(nn.Module):
    def __init__(self, n_out: int = 3) -> None:
        super().__init__()
        self.l1 = nn.Linear(5, 16)
        self.out = nn.Linear(16, n_out)

    def hidden(self, x):
        return torch.relu(self.l1(x))

    def forward(self, x):
        return self.out(self.hidden(x))


def make_net(module, data, *, cls=NeuralNetClassifier, epochs=5, **kwargs):
    X, y = data
    torch.manual_seed(0)
    params = {"max_epochs": epochs, "lr": 0.1, "batch_size": 64, "train_split": None}
    if cls is NeuralNetClassifier:
        params["criterion"] = nn.CrossEntropyLoss
    params.update(kwargs)
    net = cls(module, verbose=0, **params)
    return net.fit(X, y) if epochs else net.initialize()


@pytest.fixture(scope="module")
def net(data):
    return make_net(Plain, data)


def classify(net, data, subset, fit_ctx=PLAIN, predict_ctx=PLAIN, **params):
    """Fit (inside ``fit_ctx``) and predict (inside ``predict_ctx``): probabilities and
    evidence."""
    X, y = data
    params.setdefault("prior_precision", 1.0)
    with fit_ctx():
        est = LaplaceClassifier(FrozenEstimator(net), subset_of_weights=subset, **params)
        est.fit(X, y)
    with predict_ctx():
        return est.predict_proba(X), est.log_marginal_likelihood()


def assert_same(a, b) -> None:
    assert_array_equal(a[0], b[0])
    assert a[1] == b[1]


def differential(run, inside, cache) -> None:
    """``run(fit_ctx, predict_ctx)`` inside the contexts equals a fresh ordinary run with
    the cache off, whichever of the two fills the cache."""
    with cache_off():
        reference = run(PLAIN, PLAIN)
        assert_same(run(*inside), reference)
    cache.clear()
    assert_same(run(*inside), reference)  # fills the cache
    hits = cache.hits
    assert_same(run(PLAIN, PLAIN), reference)  # served what the context's call stored
    assert cache.hits > hits, "the ordinary call must share the context's cache entries"
    cache.clear()
    run(PLAIN, PLAIN)  # fills the cache
    assert_same(run(*inside), reference)


# ---------------------------------------------------------------- per-thread modes
@pytest.mark.parametrize("subset", ["last_layer", "all"])
@pytest.mark.parametrize("where", ["fit", "predict", "both"])
@pytest.mark.parametrize("context", list(CONTEXTS))
def test_a_call_inside_a_torch_mode_is_an_ordinary_call(context, where, subset, net, data, cache):
    ctx = CONTEXTS[context]
    inside = (ctx if where in ("fit", "both") else PLAIN, ctx if where != "fit" else PLAIN)

    def run(fit_ctx, predict_ctx):
        return classify(net, data, subset, fit_ctx, predict_ctx)

    differential(run, inside, cache)


@pytest.mark.parametrize("subset", ["last_layer", "all"])
@pytest.mark.parametrize("context", list(CONTEXTS))
def test_sampled_predictive_inside_a_torch_mode(context, subset, net, data, cache):
    """The ``"nn"`` predictive runs the net once per draw: outside the mode too."""

    def run(fit_ctx, predict_ctx):
        return classify(
            net, data, subset, fit_ctx, predict_ctx, predictive="nn", n_samples=5, random_state=0
        )

    differential(run, (CONTEXTS[context], CONTEXTS[context]), cache)


@pytest.mark.parametrize("context", list(CONTEXTS))
def test_evidence_tuning_inside_a_torch_mode(context, net, data, cache):
    """``prior_precision="marglik"`` maximises the evidence with gradients from autograd:
    gradients are on in fit whatever the caller's mode."""

    def run(fit_ctx, predict_ctx):
        return classify(net, data, "all", fit_ctx, predict_ctx, prior_precision="marglik")

    differential(run, (CONTEXTS[context], PLAIN), cache)


def test_autocast_changes_the_nets_own_outputs(net, data):
    """The autocast cases are not vacuous: the net's own outputs differ under it."""
    X = torch.from_numpy(data[0])
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net.module_(X).float()
        assert (low - net.module_(X)).abs().max() > 1e-3


@pytest.mark.parametrize("context", list(CONTEXTS))
def test_regressor_predictions_inside_a_torch_mode(context, cache):
    X, y = make_regression(n_samples=N_ROWS, n_features=5, noise=5.0, random_state=0)
    X, y = X.astype(np.float32), (y / y.std()).astype(np.float32)[:, None]
    net = make_net(Plain, (X, y), cls=NeuralNetRegressor, module__n_out=1, lr=0.05)
    ctx = CONTEXTS[context]

    def run(fit_ctx, predict_ctx):
        with fit_ctx():
            est = LaplaceRegressor(
                FrozenEstimator(net), subset_of_weights="all", prior_precision=1.0, random_state=0
            ).fit(X[:200], y[:200], X_val=X[200:], y_val=y[200:])
        with predict_ctx():
            mean, std = est.predict(X, return_std=True)
            _, cov = est.predict(X[:40], return_cov=True)
            draws = est.sample_y(X[:40], n_samples=3)
            lo, hi = est.predict_interval(X)
        parts = [mean, std, cov, draws, lo, hi]
        return np.concatenate([np.ravel(p) for p in parts]), est.log_marginal_likelihood()

    differential(run, (ctx, ctx), cache)


@pytest.mark.parametrize("context", ["inference_mode", "no_grad"])
def test_training_an_unfitted_net_inside_a_torch_mode(context, data):
    """An unfitted net is trained (by skorch) and fitted as outside the mode."""
    X, y = data
    net = make_net(Plain, data, epochs=0, max_epochs=3)

    def run(ctx):
        with ctx():
            est = LaplaceClassifier(
                net, subset_of_weights="all", prior_precision="holdout", random_state=0
            ).fit(X, y)
            return est.predict_proba(X), est.log_marginal_likelihood()

    with cache_off():
        assert_same(run(CONTEXTS[context]), run(PLAIN))


def test_X_given_as_a_tensor_made_in_inference_mode(net, data):
    """An inference tensor cannot be saved for a backward pass: the all-layer passes run
    on their own copy of it."""
    X, y = data
    with torch.inference_mode():
        X_inference = torch.from_numpy(X.copy())
    with cache_off():
        reference = classify(net, data, "all")
        est = LaplaceClassifier(FrozenEstimator(net), subset_of_weights="all", prior_precision=1.0)
        est.fit(X_inference, y)
        assert_array_equal(est.predict_proba(X_inference), reference[0])


class Recording(Plain):
    """Records, at each forward pass, whether it trains and the modes it runs in."""

    log: list = []  # noqa: RUF012 (shared on purpose: the passes run on copies)

    def forward(self, x):
        Recording.log.append((self.training, _passes._autocast_enabled("cpu")))
        return super().forward(x)


def test_the_callers_autocast_trains_the_net_and_never_reaches_the_passes(data):
    """Training is skorch's: it keeps the caller's mixed precision. sklaplace's passes
    (evaluation mode) run without it."""
    X, y = data
    net = make_net(Recording, data, epochs=0, max_epochs=2)
    Recording.log.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16), cache_off():
        est = LaplaceClassifier(net, subset_of_weights="all", prior_precision=1.0).fit(X, y)
        est.predict_proba(X)
    training = [auto for train, auto in Recording.log if train]
    passes = [auto for train, auto in Recording.log if not train]
    assert training and all(training)
    assert passes and not any(passes)


def test_a_forward_that_turns_gradients_off_is_refused(data):
    """A layer run under ``torch.no_grad()`` inside forward has no Jacobian: the all-layer
    fit refuses it instead of giving it zero curvature."""

    class NoGradBody(Plain):
        def hidden(self, x):
            with torch.no_grad():
                return torch.relu(self.l1(x))

    net = make_net(NoGradBody, data)
    with pytest.raises(ValueError, match="'l1' ran without recording gradients"):
        LaplaceClassifier(FrozenEstimator(net), subset_of_weights="all", prior_precision=1.0).fit(
            *data
        )


# ---------------------------------------------------------------- process-wide settings
class DefaultDtypeGain(Plain):
    """Reads torch's default dtype, as a forward that builds tensors in it does."""

    def forward(self, x):
        gain = 2.0 if torch.get_default_dtype() == torch.float64 else 1.0
        return self.out(self.hidden(x) * gain)


def test_the_default_dtype_keys_the_cache(data):
    net = make_net(DefaultDtypeGain, data)
    before = classify(net, data, "all")  # fills the cache
    torch.set_default_dtype(torch.float64)
    try:
        on = classify(net, data, "all")
        with cache_off():
            off = classify(net, data, "all")
    finally:
        torch.set_default_dtype(torch.float32)
    assert_same(on, off)
    assert np.abs(on[0] - before[0]).max() > 1e-3


@contextlib.contextmanager
def _setting(name):
    if name == "default_dtype":
        torch.set_default_dtype(torch.float64)
        yield
        torch.set_default_dtype(torch.float32)
    elif name == "deterministic":
        torch.use_deterministic_algorithms(True)
        yield
        torch.use_deterministic_algorithms(False)
    elif name == "float32_matmul_precision":
        # (torch >= 2.9 translates the setting into per-backend flags, restored one by one)
        flags = [(torch.backends, "fp32_precision")] + [
            (getattr(torch.backends, b).matmul, "fp32_precision") for b in ("mkldnn", "cuda")
        ]
        flags = [(obj, attr, getattr(obj, attr)) for obj, attr in flags if hasattr(obj, attr)]
        old = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("medium" if old != "medium" else "highest")
        yield
        torch.set_float32_matmul_precision(old)
        for obj, attr, value in flags:
            setattr(obj, attr, value)
    elif name == "mkldnn":
        with torch.backends.mkldnn.flags(enabled=not torch.backends.mkldnn.enabled):
            yield


@pytest.mark.parametrize(
    "setting", ["default_dtype", "deterministic", "float32_matmul_precision", "mkldnn"]
)
def test_process_wide_torch_settings_are_in_the_key(setting, net, data):
    X, y = data
    view = _passes.NetView(net)
    key = _passes.pass_key(view, "curvature", X, y)
    assert key is not None
    with _setting(setting):
        changed = _passes.pass_key(_passes.NetView(net), "curvature", X, y)
    assert changed != key
    assert _passes.pass_key(_passes.NetView(net), "curvature", X, y) == key


# ---------------------------------------------------------------- in-place forwards
class InPlaceInput(Plain):
    """Changes its input in place (``x.float()`` is ``x`` for float32 input)."""

    def forward(self, x):
        x = x.float()
        x /= 10
        return self.out(self.hidden(x))


class OutOfPlaceInput(Plain):
    """The same computation without changing the input."""

    def forward(self, x):
        return self.out(self.hidden(x.float() / 10))


class InPlaceDict(nn.Module):
    """Two inputs, both changed in place."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(5, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, a, b):
        a /= 10
        b *= 0.5
        return self.out(torch.relu(self.l1(a + b)))


class OutOfPlaceDict(InPlaceDict):
    def forward(self, a, b):
        return self.out(torch.relu(self.l1(a / 10 + b * 0.5)))


def _twin(net, module, data):
    """A net of ``module`` with ``net``'s weights."""
    other = make_net(module, data, epochs=0)
    other.module_.load_state_dict(net.module_.state_dict())
    return other


def _as(form, X):
    if form == "float64":
        return X.astype(np.float64)
    if form == "dataframe":
        return pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])])
    if form == "sparse":
        return sp.csr_matrix(X)
    if form == "dict":
        return {"a": X.copy(), "b": X[:, ::-1].copy()}
    return X.copy()


def _snapshot(X):
    if isinstance(X, dict):
        return {k: v.copy() for k, v in X.items()}
    return X.copy()


def _assert_unchanged(X, before) -> None:
    if isinstance(X, dict):
        for k in X:
            assert_array_equal(X[k], before[k])
    elif sp.issparse(X):
        assert_array_equal(X.toarray(), before.toarray())
    else:
        assert_array_equal(np.asarray(X), np.asarray(before))


@pytest.mark.filterwarnings("ignore:The held-out rows are fitted best")
@pytest.mark.parametrize("predictive", ["glm", "nn"])
@pytest.mark.parametrize("subset", ["last_layer", "all"])
@pytest.mark.parametrize("form", ["float32", "float64", "dataframe", "sparse", "dict"])
def test_a_forward_that_changes_its_input_in_place(form, subset, predictive, data, cache):
    """The caller's X (and X_val) is unchanged by fit and predictions; two predictions are
    identical and equal those of the same net without the in-place operation."""
    X, y = data
    modules = (InPlaceDict, OutOfPlaceDict) if form == "dict" else (InPlaceInput, OutOfPlaceInput)
    train = (_as("dict", X), y) if form == "dict" else data  # (skorch splits a frame)
    in_place = make_net(modules[0], train)
    plain = _twin(in_place, modules[1], train)
    params = {
        "subset_of_weights": subset,
        "predictive": predictive,
        "n_samples": 4,
        "prior_precision": "holdout",
        "random_state": 0,
    }
    X_fit, X_val = _as(form, X[:200]), _as(form, X[200:])
    fit_before, val_before = _snapshot(X_fit), _snapshot(X_val)
    est = LaplaceClassifier(FrozenEstimator(in_place), **params)
    est.fit(X_fit, y[:200], X_val=X_val, y_val=y[200:])
    _assert_unchanged(X_fit, fit_before)
    _assert_unchanged(X_val, val_before)
    first, second = est.predict_proba(X_val), est.predict_proba(X_val)
    _assert_unchanged(X_val, val_before)
    assert_array_equal(first, second)
    with cache_off():
        ref = LaplaceClassifier(FrozenEstimator(plain), **params)
        ref.fit(_as(form, X[:200]), y[:200], X_val=_as(form, X[200:]), y_val=y[200:])
        assert_array_equal(first, ref.predict_proba(_as(form, X[200:])))


_MEMMAP_SCRIPT = """
import sys
import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetClassifier
from torch import nn
from sklaplace import LaplaceClassifier

class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(5, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        x = x.float()
        x /= 10
        return self.out(torch.relu(self.l1(x)))

X = np.load(sys.argv[1], mmap_mode="r")
y = np.load(sys.argv[2])
assert not X.flags.writeable
torch.manual_seed(0)
net = NeuralNetClassifier(InPlace, criterion=nn.CrossEntropyLoss, max_epochs=3,
                          train_split=None, verbose=0).fit(np.array(X), y)
for subset in ("last_layer", "all"):
    est = LaplaceClassifier(FrozenEstimator(net), subset_of_weights=subset, prior_precision=1.0)
    proba = est.fit(X, y).predict_proba(X)
    again = LaplaceClassifier(FrozenEstimator(net), subset_of_weights=subset,
                              prior_precision=1.0).fit(np.array(X), y).predict_proba(np.array(X))
    assert np.array_equal(proba, again), subset
print("ok")
"""


def test_a_read_only_memory_mapped_X_with_an_in_place_forward(data, tmp_path):
    """Used to write to read-only pages (a segfault): run in a subprocess."""
    X, y = data
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    # the subprocess imports this checkout's sklaplace, as the tests do
    package = os.path.dirname(os.path.dirname(sklaplace.__file__))
    path = os.pathsep.join(filter(None, [package, os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_MEMMAP_SCRIPT), "X.npy", "y.npy"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip().endswith("ok")
