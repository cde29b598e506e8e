"""The precision of the all-layer projections: float32 rotations only where they are safe.

A float32 net's Jacobian factors may be rotated into a Kronecker block's eigenbasis in
float32 when the hyper-parameters are known (predictions project at them). The rounding
perturbs a row's rotated Jacobian by ``gamma |J|``, ``gamma = (n_in + n_out + 2) eps32``,
and the conditioning ``kappa = L_max / L_min`` of the precision amplifies it: the variance
moves by at most ``(2 sqrt(kappa) + gamma kappa) gamma`` of itself, which
``KronBlock.rotation_dtype`` keeps within ``10 gamma``; the float32 sums of positive terms
add ``gamma`` more (see :mod:`sklaplace.posterior`). On a singular curvature at a small
prior (``kappa`` huge), a float32 rotation leaves a null-space component of order
``gamma |a|`` whose variance over ``tau`` swamps the true one: float64 there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skorch import NeuralNet
from test_singular_factors import _mp_gram, _reference_variances
from torch import nn

from sklaplace._runtime.passes import NetView
from sklaplace.approximations import LayerWise
from sklaplace.likelihoods import Regression
from sklaplace.posterior import KronBlock

F32, F64 = torch.float32, torch.float64
EPS32 = torch.finfo(F32).eps
N_FEAT, RANK, C, N_OUT = 6, 3, 3, 5
MIX = 10 * torch.randn(RANK, N_FEAT, generator=torch.Generator().manual_seed(100))


def _singular_rows(m, seed):
    """Float32 layer inputs ``a`` (m, 7) in a generic 4-dimensional subspace (3 mixed
    features and the bias: the null space of ``A`` is no coordinate direction, so float32
    rounding does not keep a row out of it) and backpropagated vectors ``G`` (m, c, 5)."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(m, RANK, generator=g)
    a = torch.cat([h @ MIX.to(F32), torch.ones(m, 1)], dim=1)
    return a, torch.randn(m, C, N_OUT, generator=g)


def _variances(block, a, G, tau, scale, dtype):
    """The block's variances (m, c) from factors rotated in ``dtype``."""
    g = G.permute(1, 0, 2)[:, :, None, :].to(dtype)  # (c, m, 1, n_out)
    v, u = block.rotate(g, a[:, None, :].to(dtype))
    return block.jacobian_moments(v, u, torch.tensor(tau, dtype=F64), scale, cov=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_rotation_dtype_keeps_float32_within_its_bound_and_refuses_it_where_it_fails(seed):
    """Against a 50-digit reference: wherever ``rotation_dtype`` picks float32, the
    float32 variances are within ``11 gamma`` of the exact ones; at a prior where the
    singular input factor makes float32 miss them by more, it picks float64."""
    a, G = _singular_rows(200, seed)
    A, B = _mp_gram(a.to(F64), 1.0 / len(a)), _mp_gram(G.reshape(-1, N_OUT).to(F64))
    block = KronBlock(
        torch.tensor(np.array(A.tolist(), dtype=float)),
        torch.tensor(np.array(B.tolist(), dtype=float)),
    )
    assert block.lam_min == 0.0  # singular: the bias and 3 features span 4 of 7 inputs
    fresh_a, fresh_G = _singular_rows(6, seed + 10)  # inside the span of the training rows
    jac = torch.einsum("nko,ni->nkoi", fresh_G.to(F64), fresh_a.to(F64)).reshape(6, C, -1)
    gamma = (N_FEAT + 1 + N_OUT + 2) * EPS32
    scale = torch.tensor(1.0, dtype=F64)
    chosen = {}
    for tau in (1e-12, 1e-8, 1e-4, 1.0, 1e2, 1e4, 1e6):
        exact = _reference_variances(A, B, 1.0, tau, jac)
        var32 = _variances(block, fresh_a, fresh_G, tau, scale, F32)
        var64 = _variances(block, fresh_a, fresh_G, tau, scale, F64)
        err32 = float(((var32 - exact).abs() / exact).max())
        chosen[tau] = block.rotation_dtype(torch.tensor(tau, dtype=F64), scale)
        if chosen[tau] == F32:
            assert err32 <= 11 * gamma, (tau, err32)
        else:
            assert var64.dtype == F64
    assert chosen[1e-12] == F64 and chosen[1e6] == F32
    # the guard matters: at the smallest prior a float32 rotation is far off
    exact = _reference_variances(A, B, 1.0, 1e-12, jac)
    var32 = _variances(block, fresh_a, fresh_G, 1e-12, scale, F32)
    assert float(((var32 - exact).abs() / exact).max()) > 100 * gamma


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
        self.out = nn.Linear(16, 2)

    def forward(self, X):
        return self.out(self.body(X))


def _fitted(dtype):
    torch.manual_seed(0)
    module = _MLP().to(dtype).eval()
    X = torch.randn(120, 6, generator=torch.Generator().manual_seed(1)).to(dtype)
    y = torch.randn(120, 2, generator=torch.Generator().manual_seed(2)).to(dtype)
    view = NetView(NeuralNet(module, criterion=nn.MSELoss, train_split=None).initialize(), 32)
    return LayerWise("kron").fit(view, "out", Regression(), X, y), view


def _moments_at(approx, view, X, tau, scale, hyper, cov=False):
    at = (tau, scale) if hyper else ()
    projections = list(approx.project(view, X, *at))
    moments = torch.cat([approx.moments(p, tau, scale, cov) for p in projections])
    return projections, moments


def test_a_well_conditioned_float32_net_is_projected_in_float32():
    """The common case: a prior of the order of the curvature's scale. Every block is
    rotated in float32 (the projection's parts are float32), and the variances and
    covariances stay within ``11 gamma`` of the float64 projection's."""
    approx, view = _fitted(F32)
    lam_max = max(block.lam_max for block in approx.posterior.blocks)
    tau = torch.full((3,), lam_max, dtype=F64)  # kappa <= 2
    scale = torch.tensor(1.0, dtype=F64)
    assert approx.precision(view, tau, scale) == (F32, F32, F32)
    X = torch.randn(50, 6, generator=torch.Generator().manual_seed(3))
    proj32, var32 = _moments_at(approx, view, X, tau, scale, hyper=True)
    assert all(v.dtype == F32 and u.dtype == F32 for p in proj32 for v, u in p.parts)
    _, var64 = _moments_at(approx, view, X, tau, scale, hyper=False)
    gamma = max((sum(b.shape) + 2) * EPS32 for b in approx.posterior.blocks)
    torch.testing.assert_close(var32, var64, rtol=11 * gamma, atol=0)
    _, cov32 = _moments_at(approx, view, X, tau, scale, hyper=True, cov=True)
    _, cov64 = _moments_at(approx, view, X, tau, scale, hyper=False, cov=True)
    # a covariance moves by at most that much of sqrt(Var_k Var_l)
    bound = 11 * gamma * torch.sqrt(var64[:, :, None] * var64[:, None, :])
    assert bool(((cov32 - cov64).abs() <= bound).all())


def test_a_float64_net_and_tiny_priors_stay_float64():
    """float64 nets are never rotated in float32; nor is a float32 net's block whose
    conditioning at the prior would amplify float32's rounding beyond the bound."""
    approx, view = _fitted(F64)
    scale = torch.tensor(1.0, dtype=F64)
    assert approx.precision(view, torch.full((3,), 1e6, dtype=F64), scale) is None
    approx, view = _fitted(F32)
    lam_max = approx.posterior.blocks[0].lam_max
    tau = torch.tensor([1e-6 * lam_max, 1e6, 1e6], dtype=F64)
    assert approx.precision(view, tau, scale) == (F64, F32, F32)


def test_predictions_project_at_their_hyper_parameters(monkeypatch):
    """``predict_proba`` of a float32 net hands its prior to the projection: with a prior
    above the curvature's scale the blocks rotate in float32, with a tiny one in float64."""
    from sklearn.frozen import FrozenEstimator

    from sklaplace import LaplaceClassifier, config_context

    seen = []
    rotate = KronBlock.rotate

    def spy(self, g, a):
        seen.append(g.dtype)
        return rotate(self, g, a)

    monkeypatch.setattr(KronBlock, "rotate", spy)
    X, y, net = _small_float32_net(200)
    for prior in (1e6, 1e-8):
        la = LaplaceClassifier(FrozenEstimator(net), prior_precision=prior).fit(X, y)
        seen.clear()
        with config_context(cache_bytes=0):
            la.predict_proba(X[:50])
        assert seen and set(seen) == {F32 if prior == 1e6 else F64}, (prior, set(seen))


def test_float32_moments_never_lose_a_variance_to_underflow():
    """Out of float32's range float64 is used: a huge prior (``1 / L`` below it) is
    refused by ``rotation_dtype``, and a row whose float32 terms would underflow (tiny
    backpropagated vectors) is summed in float64, never returned as zero."""
    a, G = _singular_rows(50, 0)
    A = a.to(F64).T @ a.to(F64) / len(a)
    B = G.reshape(-1, N_OUT).to(F64).T @ G.reshape(-1, N_OUT).to(F64)
    block = KronBlock(A, B)
    scale = torch.tensor(1.0, dtype=F64)
    assert block.rotation_dtype(torch.tensor(1e300, dtype=F64), scale) == F64
    tau = 10 * block.lam_max
    assert block.rotation_dtype(torch.tensor(tau, dtype=F64), scale) == F32
    G[0] *= 1e-20  # its variance ~1e-40 / tau: float32 products underflow
    var32 = _variances(block, a, G, tau, scale, F32)
    var64 = _variances(block, a, G, tau, scale, F64)
    assert bool((var32[0] > 0).all())
    gamma = (N_FEAT + 1 + N_OUT + 2) * EPS32
    torch.testing.assert_close(var32, var64, rtol=11 * gamma, atol=0)


def test_model_selection_projects_in_float64_once_for_every_candidate(monkeypatch):
    """Inside a search, a float32 net's projections are float64 (safe at every prior), so
    the candidates share one cached projection per fold instead of one per precision:
    with priors on both sides of the float32 rule, the scoring passes are one per fold.
    Outside a search the same estimator at prior 1e6 rotates in float32."""
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import GridSearchCV, KFold

    from sklaplace import LaplaceClassifier, config_context
    from sklaplace.approximations import LayerWise

    seen, passes = [], []
    rotate = KronBlock.rotate

    def spy(self, g, a):
        seen.append(g.dtype)
        return rotate(self, g, a)

    original = LayerWise._project_batches

    def counted(self, view, X, layers):
        passes.append(len(X))
        return original(self, view, X, layers)

    monkeypatch.setattr(KronBlock, "rotate", spy)
    monkeypatch.setattr(LayerWise, "_project_batches", counted)
    X, y, net = _small_float32_net(1200)
    est = LaplaceClassifier(FrozenEstimator(net), subset_of_weights="all", calibration=None)
    search = GridSearchCV(
        est, {"prior_precision": [1e-8, 1.0, 1e6]}, cv=KFold(2), scoring="neg_log_loss"
    )
    search.fit(X, y)
    assert seen and set(seen) == {F64}
    n_scored = sum(1 for n in passes if n == 600)  # each fold's scored rows (600 of 1200)
    assert n_scored == 2, passes  # one per fold, shared by the three candidates
    seen.clear()
    with config_context(cache_bytes=0):
        est.set_params(prior_precision=1e6).fit(X, y).predict_proba(X[:50])
    assert set(seen) == {F32}


def _small_float32_net(n_rows: int):
    """``(X, y, net)``: a float32 MLP 6-8-2 trained by skorch on ``n_rows`` rows."""
    from skorch import NeuralNetClassifier

    g = torch.Generator().manual_seed(0)
    X = torch.randn(n_rows, 6, generator=g).numpy()
    y = (X[:, 0] > 0).astype(np.int64)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2)),
        criterion=nn.CrossEntropyLoss,
        max_epochs=3,
        train_split=None,
        verbose=0,
    ).fit(X, y)
    return X, y, net
