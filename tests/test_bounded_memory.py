"""Bounded memory: covariances across rows (``return_cov``, ``sample_y``), the held-out
rows' projections during tuning, and what ``subset_of_weights="auto"`` takes (issue 19).

The covariance across rows is filled tile by tile (its exactness against dense float64
references, for every tiling, is in ``tests/test_projections.py``): here, what the
estimators make of it, its peak memory (in a fresh process), and the refusal, before any
pass over X, of a covariance that cannot fit (with a tiny bound here, and in a subprocess
under an address-space limit for the 100,000-row case that used to die in the allocator).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetRegressor
from torch import nn

import sklaplace
from sklaplace import LaplaceRegressor, prediction
from sklaplace._runtime.passes import NetView


def _regressor_net(n_in=3, hidden=16, n_out=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((120, n_in)).astype(np.float32)
    Y = np.c_[np.sin(X[:, :1]) + 0.1 * rng.standard_normal((120, 1)), X[:, 1:2]][:, :n_out]
    torch.manual_seed(seed)
    module = nn.Sequential(
        nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
        nn.Linear(hidden, n_out),
    )  # fmt: skip
    net = NeuralNetRegressor(
        module, max_epochs=20, lr=0.05, train_split=None, verbose=0
    ).fit(X, Y.astype(np.float32))  # fmt: skip
    return X, Y.astype(np.float64), net


@pytest.fixture(scope="module")
def reg_setup():
    return _regressor_net()


def _count_passes(monkeypatch):
    """Count the batches any pass over data runs (forward passes of the private view)."""
    calls = []
    original = NetView.forward
    monkeypatch.setattr(NetView, "forward", lambda self, Xi: calls.append(1) or original(self, Xi))
    return calls


# ------------------------------------------------------------------ covariance across rows
@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_return_cov_that_cannot_fit_is_refused_before_any_pass(reg_setup, subset, monkeypatch):
    """Beyond ``max_result_bytes`` the covariance is refused with the size it needs and the
    alternative, before the net runs; sample_y counts its eigenvectors too."""
    X, y, net = reg_setup
    reg = LaplaceRegressor(
        FrozenEstimator(net), subset_of_weights=subset, prior_precision=1.0, sigma_noise=0.5
    ).fit(X, y[:, 0])
    m = 50
    result = 8 * m * m
    calls = _count_passes(monkeypatch)
    with sklaplace.config_context(max_result_bytes=result - 1):
        with pytest.raises(MemoryError, match=r"50 rows .* 19.5 KiB.*return_std=True.*49 rows"):
            reg.predict(X[:m], return_cov=True)
        with pytest.raises(MemoryError, match=r"sample_y on 50 rows.*eigenvectors"):
            reg.sample_y(X[:m])
    assert calls == []
    with sklaplace.config_context(max_result_bytes=result):  # the result fits; draws do not
        _, cov = reg.predict(X[:m], return_cov=True)
        assert cov.shape == (m, m)
        with pytest.raises(MemoryError, match="sample_y"):
            reg.sample_y(X[:m])
    with sklaplace.config_context(max_result_bytes=2 * result):
        assert reg.sample_y(X[:m], n_samples=3).shape == (m, 3)
    assert sklaplace.get_config()["max_result_bytes"] == "available"


def test_max_result_bytes_is_checked():
    with pytest.raises(ValueError, match="max_result_bytes must be a non-negative int"):
        sklaplace.set_config(max_result_bytes=-1)
    with pytest.raises(ValueError, match="max_result_bytes must be a non-negative int"):
        with sklaplace.config_context(max_result_bytes="all"):
            pass


_SCRIPT_HEAD = """
import resource, sys
import numpy as np, torch
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetRegressor
from torch import nn
from sklaplace import LaplaceRegressor
torch.set_num_threads(1)
rng = np.random.default_rng(0)
torch.manual_seed(0)
module = nn.Sequential(nn.Linear(3, {hidden}), nn.Tanh(), nn.Linear({hidden}, {hidden}),
                       nn.Tanh(), nn.Linear({hidden}, 1))
X = rng.standard_normal((200, 3)).astype(np.float32)
net = NeuralNetRegressor(module, max_epochs=2, train_split=None, verbose=0)
net.fit(X, X[:, :1] ** 2)
reg = LaplaceRegressor(FrozenEstimator(net), subset_of_weights="all", prior_precision=1.0,
                       sigma_noise=0.5).fit(X, X[:, 0] ** 2)
"""


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_return_cov_on_100000_rows_is_refused_not_an_allocator_failure():
    """100,000 rows need 74.5 GiB: refused with the size and the alternative (under an
    8 GiB address-space limit, so the case does not depend on the machine's memory)."""
    script = (
        _SCRIPT_HEAD.format(hidden=8)
        + """
resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, resource.RLIM_INFINITY))
X_new = rng.standard_normal((100_000, 3)).astype(np.float32)
try:
    reg.predict(X_new, return_cov=True)
except MemoryError as exc:
    print("REFUSED", exc)
"""
    )
    out = _run(script)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "REFUSED" in out.stdout, out.stdout[-2000:]
    assert "74.5 GiB" in out.stdout and "return_std=True" in out.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_return_cov_peak_memory_is_a_small_multiple_of_the_result():
    """1,500 rows through two 64-wide layers: the result is 17 MiB; the old
    (outputs, rows, rows) intermediate per block was 64 times that. Peak resident memory
    the call adds (fresh process): at most 4 times the result plus a few tiles of 32 MiB."""
    script = (
        _SCRIPT_HEAD.format(hidden=64)
        + """
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
X_new = rng.standard_normal((1500, 3)).astype(np.float32)
import gc; gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = rss()
mean, cov = reg.predict(X_new, return_cov=True)
print("PEAK", hwm() - before, cov.nbytes)
"""
    )
    out = _run(script)
    assert out.returncode == 0, out.stderr[-2000:]
    peak, result = map(int, out.stdout.split("PEAK")[1].split())
    assert result == 8 * 1500 * 1500
    assert peak <= 4 * result + 3 * 32 * 2**20, (peak / 2**20, result / 2**20)


def test_nn_predictive_covariance_is_that_of_its_draws(reg_setup, monkeypatch):
    """``predictive="nn"``: the covariance across rows of the draws' means (plus the noise
    on the diagonal), in tiles that do not divide the rows."""
    X, y, net = reg_setup
    reg = LaplaceRegressor(
        FrozenEstimator(net), subset_of_weights="all", prior_precision=1.0, sigma_noise=0.5,
        predictive="nn", n_samples=40, random_state=3,
    ).fit(X, y[:, 0])  # fmt: skip
    fitted, hyper = reg._predictor(), reg._hyper()
    chunks = prediction.draws(fitted, X[:7], hyper, 40, reg._seed())
    f = torch.cat([torch.cat(list(c)) for c in chunks], 1)[:, :, 0].numpy()  # (S, m)
    centred = f - f.mean(0)
    expected = centred.T @ centred / len(f) + np.eye(7) * 0.25
    monkeypatch.setattr(prediction, "tile_rows", lambda *args: 3)
    mean, cov = reg.predict(X[:7], return_cov=True)
    np.testing.assert_allclose(mean, f.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cov, expected, rtol=1e-10, atol=1e-12)
    assert np.array_equal(cov, cov.T)


def test_return_cov_of_several_normalised_targets(monkeypatch):
    """Two targets with normalize_y: each target's covariance in its own units, its
    diagonal the variance return_std gives, in tiles that do not divide the rows."""
    X, Y, net = _regressor_net(n_out=2)
    Y = Y * [1.0, 10.0] + [0.0, 5.0]
    reg = LaplaceRegressor(
        FrozenEstimator(net), subset_of_weights="all", prior_precision=1.0, sigma_noise=0.5,
        normalize_y=True,
    ).fit(X, Y)  # fmt: skip
    _, std = reg.predict(X[:9], return_std=True)
    from sklaplace.approximations import layer_wise

    monkeypatch.setattr(layer_wise, "tile_rows", lambda *args: 4)
    _, cov = reg.predict(X[:9], return_cov=True)
    assert cov.shape == (9, 9, 2)
    np.testing.assert_allclose(np.diagonal(cov, axis1=0, axis2=1).T, std**2, rtol=1e-10)
    assert np.array_equal(cov, cov.transpose(1, 0, 2))


# ------------------------------------------------------------------ "auto" by cost
def _mlp(*widths):
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


@pytest.mark.parametrize(
    ("widths", "expected"),
    [
        ((20, 128, 128, 10), "all"),  # benchmarks/all_layers.py
        ((20, 32, 32, 3), "all"),  # benchmarks/memory.py
        ((64, 100, 100, 10), "all"),  # the quality benchmark's classifiers
        ((2, 100, 100, 2), "all"),
        ((10, 50, 50, 1), "all"),  # its regressors
        ((784, 128, 10), "all"),  # an MNIST MLP
        ((3000, 8, 8, 2), "last_layer"),  # a one-hot encoded column of 3,000 categories
        ((6000, 8, 8, 2), "last_layer"),
        ((3000, 256, 10), "last_layer"),
        ((10, 3000, 1), "last_layer"),  # a wide output factor
    ],
)
def test_auto_counts_the_cost_of_the_factors(widths, expected):
    """ "auto" takes every layer when the Kronecker factors are cheap next to the net, the
    last layer when a factor is not (whatever the number of weights); diag blocks cost
    what the weights do, so "diag" keeps every layer of these small nets."""
    from sklaplace.approximations import choose_subset

    module = _mlp(*widths)
    assert choose_subset("auto", module, widths[-1], "kron") == expected
    assert choose_subset("auto", module, widths[-1], "diag") == "all"


def test_auto_on_a_wide_one_hot_net_fits_the_last_layer_cheaply():
    """A net whose first layer takes 3,000 one-hot columns: "auto" is the last layer (the
    all-layer Kronecker fit costs dozens of training epochs and a 3,000 x 3,000 factor),
    with the posterior of asking for it."""
    rng = np.random.default_rng(0)
    n, d = 300, 3000
    X = np.zeros((n, d), np.float32)
    X[np.arange(n), rng.integers(0, d, n)] = 1
    y = rng.integers(0, 2, n)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    from skorch import NeuralNetClassifier

    from sklaplace import LaplaceClassifier

    net = NeuralNetClassifier(
        module, criterion=nn.CrossEntropyLoss, max_epochs=2, train_split=None, verbose=0
    ).fit(X, y)
    auto = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
    assert auto.subset_of_weights_ == "last_layer"
    assert auto.posterior_.names == ["4"]
    last = LaplaceClassifier(
        FrozenEstimator(net), prior_precision=1.0, subset_of_weights="last_layer"
    ).fit(X, y)
    np.testing.assert_array_equal(auto.predict_proba(X[:20]), last.predict_proba(X[:20]))
