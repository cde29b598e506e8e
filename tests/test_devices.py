"""Devices, dtypes and the device-independent pickle.

The posterior lives on the net's device and inputs are moved there; a float64 net gives
float64-accurate predictions (checked against a dense float64 reference) that agree with
its float32 twin; inputs of any numeric dtype work with nets of either dtype; a pickled
estimator holds its posterior on the CPU and moves it to the net's device when loaded.
Tests on "cuda" run only where torch sees a GPU.
"""

import copy
import math
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from sklaplace import LaplaceClassifier, LaplaceRegressor

CUDA = torch.cuda.is_available()
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="torch sees no GPU")),
]
DTYPES = [torch.float32, torch.float64]


def twin(net, dtype=torch.float32, device="cpu"):
    """A copy of a fitted skorch net with its weights cast to ``dtype`` on ``device``."""
    net = copy.deepcopy(net)
    net.module_.to(device=device, dtype=dtype)
    net.device = device
    return net


def posterior_tensors(obj, seen=None):
    """Every tensor reachable from a posterior (lists, tuples, dicts, sklaplace objects)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, list | tuple):
        return [t for o in obj for t in posterior_tensors(o, seen)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in posterior_tensors(o, seen)]
    if type(obj).__module__.startswith("sklaplace.") and hasattr(obj, "__dict__"):
        return posterior_tensors(vars(obj), seen)
    return []


def fitted_state_tensors(est):
    """Tensors of the fitted state outside the skorch net (which skorch pickles itself)."""
    state = {k: v for k, v in vars(est).items() if k not in ("estimator", "estimator_")}
    return posterior_tensors(state)


# ---------------------------------------------------------------- devices and dtypes
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("device", DEVICES)
def test_posterior_lives_on_the_nets_device(cls_data, cls_net, device, dtype):
    X, y = cls_data
    clf = LaplaceClassifier(FrozenEstimator(twin(cls_net, dtype, device)), random_state=0)
    clf.fit(X, y)
    tensors = posterior_tensors(clf.posterior_)
    assert tensors
    assert all(t.device.type == device for t in tensors)
    assert all(t.dtype == torch.float64 for t in tensors)  # curvature is kept in float64
    for link in ("probit", "mc"):
        proba = clf.set_params(link_approx=link).predict_proba(X)
        assert proba.dtype == np.float64
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_float64_net_agrees_with_its_float32_twin(cls_data, reg_data, cls_net, reg_net, device):
    X, y = cls_data
    probas = [
        LaplaceClassifier(
            FrozenEstimator(twin(cls_net, dtype, device)), hessian_structure=s, prior_precision=1.0
        )
        .fit(X, y)
        .predict_proba(X)
        for s in ("kron", "full")
        for dtype in DTYPES
    ]
    # float32 forward passes differ from float64 ones in the 7th digit. A fixed prior: the
    # held-out default tunes on a nearly flat objective, whose argmax such digits can move
    np.testing.assert_allclose(probas[0], probas[1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(probas[2], probas[3], rtol=0, atol=1e-5)

    X, y = reg_data
    outs = [
        LaplaceRegressor(
            FrozenEstimator(twin(reg_net, dtype, device)), prior_precision=1.0, sigma_noise=0.3
        )
        .fit(X, y)
        .predict(X, return_std=True)
        for dtype in DTYPES
    ]
    for a, b in zip(outs[0], outs[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _dense_reference(net, X, tau):
    """Last-layer full-GGN Laplace + probit, written out densely in float64 numpy.

    The features come from the net in its dtype, in the net's batches (as sklaplace runs
    it: the same matrix shapes, so the same float32 kernels); all that follows is float64.
    """
    body, out = net.module_.body, net.module_.out
    hs, zs = [], []
    with torch.no_grad():
        for start in range(0, len(X), net.batch_size):
            x = torch.as_tensor(X[start : start + net.batch_size])
            h = body(x.to(dtype=out.weight.dtype, device=out.weight.device))
            hs.append(h.double().cpu().numpy())
            zs.append(out(h).double().cpu().numpy())  # the net's own logits, in its dtype
    h, z = np.concatenate(hs), np.concatenate(zs)
    a = np.c_[h, np.ones(len(X))]
    c, d = z.shape[1], a.shape[1]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    H = np.zeros((c * d, c * d))
    for a_n, p_n in zip(a, p, strict=True):
        lam = np.diag(p_n) - np.outer(p_n, p_n)
        H += np.kron(lam, np.outer(a_n, a_n))
    sigma = np.linalg.inv(H + tau * np.eye(c * d)).reshape(c, d, c, d)
    var = np.einsum("ni,kikj,nj->nk", a, sigma, a)
    f = z / np.sqrt(1 + math.pi / 8 * var)
    q = np.exp(f - f.max(1, keepdims=True))
    return q / q.sum(1, keepdims=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("device", DEVICES)
def test_predictions_match_a_dense_float64_reference(cls_data, cls_net, device, dtype):
    X, y = cls_data
    net = twin(cls_net, dtype, device)
    clf = LaplaceClassifier(FrozenEstimator(net), hessian_structure="full", prior_precision=0.5)
    proba = clf.fit(X, y).predict_proba(X)
    # The reference sees the same features, computed in the same batches; everything after
    # is float64 (1e-9 allows for its longer sums). Should another CPU's kernels round the
    # features differently anyway, each feature is a dot product of d terms in the net's
    # dtype: its relative error is at most about d * eps, and the probabilities inherit it.
    d = net.module_.out.in_features
    rtol = max(1e-9, d * torch.finfo(dtype).eps) if dtype == torch.float32 else 1e-9
    np.testing.assert_allclose(proba, _dense_reference(net, X, 0.5), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_mixed_input_and_net_dtypes(cls_data, reg_data, cls_net, reg_net, device):
    X, y = cls_data
    X_int = np.round(3 * X).astype(np.int64)
    for dtype in DTYPES:
        clf = LaplaceClassifier(FrozenEstimator(twin(cls_net, dtype, device))).fit(X, y)
        ref = clf.predict_proba(X)
        # the cast to the net's dtype happens per batch, like the cast of the whole array
        x_net = X.astype(np.float32) if dtype == torch.float32 else X
        np.testing.assert_array_equal(clf.predict_proba(x_net), ref)
        np.testing.assert_allclose(clf.predict_proba(X.astype(np.float32)), ref, atol=1e-6)
        np.testing.assert_array_equal(
            clf.predict_proba(X_int), clf.predict_proba(X_int.astype(np.float64))
        )
        for X_fit in (X.astype(np.float32), X_int, X_int.astype(np.int32)):
            refit = LaplaceClassifier(FrozenEstimator(clf.estimator_)).fit(X_fit, y)
            assert np.isfinite(refit.predict_proba(X)).all()

    X, y = reg_data
    for dtype in DTYPES:
        net = FrozenEstimator(twin(reg_net, dtype, device))
        for X_fit, y_fit in [
            (X.astype(np.float32), y.astype(np.float32)),
            (X, y.astype(np.float32)),
            (np.round(X).astype(np.int64), np.round(10 * y).astype(np.int64)),
        ]:
            reg = LaplaceRegressor(net).fit(X_fit, y_fit)
            mean, std = reg.predict(X_fit, return_std=True)
            assert mean.dtype == std.dtype == np.float64
            assert np.isfinite(mean).all() and (std > 0).all()


# ---------------------------------------------------------------- pickle across devices
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("device", DEVICES)
def test_pickled_state_holds_only_cpu_tensors(cls_data, cls_net, device, dtype):
    X, y = cls_data
    clf = LaplaceClassifier(
        FrozenEstimator(twin(cls_net, dtype, device)), prior_precision="holdout", random_state=0
    ).fit(X, y)
    live = fitted_state_tensors(clf)
    assert any(t.device.type == device for t in live)

    state = clf._fitted.__getstate__()  # the fitted state moves its tensors when pickled
    saved = posterior_tensors({k: v for k, v in state.items() if k != "net"})
    assert len(saved) == len(live) > 0
    assert all(t.device.type == "cpu" for t in saved)
    # pickling copies: the live estimator keeps its tensors where they were
    assert all(t.device.type == device for t in fitted_state_tensors(clf))

    restored = pickle.loads(pickle.dumps(clf))
    assert all(t.device.type == device for t in fitted_state_tensors(restored))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert restored.log_marginal_likelihood(1.0) == clf.log_marginal_likelihood(1.0)


def test_loading_moves_the_posterior_to_the_nets_device(cls_data, cls_net):
    """The mechanism without a GPU: a net on torch's "meta" device pulls the posterior there."""
    X, y = cls_data
    clf = LaplaceClassifier(FrozenEstimator(cls_net), prior_precision=1.0).fit(X, y)
    state = clf._fitted.__getstate__()
    state["net"] = twin(cls_net, device="meta")
    loaded = type(clf._fitted).__new__(type(clf._fitted))
    loaded.__setstate__(state)
    moved = posterior_tensors(loaded.posterior)
    assert moved and all(t.device.type == "meta" for t in moved)
    assert all(t.device.type == "cpu" for t in fitted_state_tensors(clf))


@pytest.mark.skipif(not CUDA, reason="torch sees no GPU")
def test_the_posterior_follows_a_net_moved_after_fit(cls_data, cls_net):
    X, y = cls_data
    clf = LaplaceClassifier(FrozenEstimator(twin(cls_net))).fit(X, y)
    expected = clf.predict_proba(X)
    clf.estimator_.module_.to("cuda")
    clf.estimator_.device = "cuda"
    np.testing.assert_allclose(clf.predict_proba(X), expected, atol=1e-6)
    assert all(t.device.type == "cuda" for t in fitted_state_tensors(clf))


@pytest.mark.skipif(not CUDA, reason="torch sees no GPU")
def test_cuda_pickle_loads_where_no_gpu_is_visible(cls_data, cls_net, tmp_path):
    X, y = cls_data
    clf = LaplaceClassifier(FrozenEstimator(twin(cls_net, device="cuda"))).fit(X, y)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", clf.predict_proba(X))
    (tmp_path / "clf.pkl").write_bytes(pickle.dumps(clf))
    script = (
        "import pickle, sys, warnings, numpy as np, torch\n"
        "assert not torch.cuda.is_available()\n"
        "d = sys.argv[1]\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore')\n"
        "    clf = pickle.loads(open(d + '/clf.pkl', 'rb').read())\n"
        "assert clf.posterior_.means[0].device.type == 'cpu'\n"
        "p = clf.predict_proba(np.load(d + '/X.npy'))\n"
        "np.testing.assert_allclose(p, np.load(d + '/expected.npy'), atol=1e-6)\n"
    )
    # the net's module class lives in tests/_nets.py: the subprocess must import it too
    path = os.pathsep.join(filter(None, [os.path.dirname(__file__), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env)
