"""Projected passes in batches sized for the projection, not the net's training batches.

When the caller leaves the batch size to the net, an all-layer projection runs its first
batch at the net's size, then batches as large as ``PROJECTION_BYTES`` allows by the
first batch's parts (at most ``PROJECTION_MERGE`` of the net's batches); the results are
those of the net's batches to float rounding. An explicit batch size is kept, and so are
the net's batches where the parts do not bound the pass's memory (the last layer, a
subset of the layers).
"""

from __future__ import annotations

import pytest
import torch
from skorch import NeuralNet
from torch import nn

from sklaplace import config_context
from sklaplace._runtime.passes import NetView
from sklaplace.approximations import LastLayer, LayerWise, base
from sklaplace.likelihoods import Regression

F64 = torch.float64


def _net(batch_size):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
    module.append(nn.Linear(16, 2))
    module = module.to(F64).eval()
    return NeuralNet(
        module, criterion=nn.MSELoss, train_split=None, batch_size=batch_size
    ).initialize()


def _data(m, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, 6, generator=g, dtype=F64), torch.randn(m, 2, generator=g, dtype=F64)


def _pass(approx, view, X, tau, scale):
    with config_context(cache_bytes=0):  # every pass runs (a hit comes in merged chunks)
        projections = list(approx.project(view, X, tau, scale))
    sizes = [len(p.mean) for p in projections]
    mean = torch.cat([p.mean for p in projections])
    cov = torch.cat([approx.moments(p, tau, scale, cov=True) for p in projections])
    return sizes, mean, cov


def test_an_all_layer_projection_merges_the_nets_batches_and_gives_the_same_moments():
    net = _net(16)
    X, y = _data(300, 0)
    approx = LayerWise("kron").fit(NetView(net, 16), "4", Regression(), X, y)
    tau, scale = torch.full((3,), 0.5, dtype=F64), torch.tensor(2.0, dtype=F64)
    Xt, _ = _data(300, 1)
    sizes, mean, cov = _pass(approx, NetView(net), Xt, tau, scale)
    assert sizes == [16, 128, 128, 28]  # the net's 16 rows, then 8 of its batches at once
    given, mean16, cov16 = _pass(approx, NetView(net, 16), Xt, tau, scale)
    assert given == [16] * 18 + [12]  # a batch size given is kept
    # the same sums over other BLAS blockings: float64 rounding of O(10)-term sums
    torch.testing.assert_close(mean, mean16, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(cov, cov16, rtol=1e-11, atol=1e-14)


def test_the_budget_bounds_the_merged_batches(monkeypatch):
    """Parts larger than the budget allows keep the net's batch size; a smaller budget
    gives smaller merged batches."""
    net = _net(16)
    X, y = _data(300, 0)
    approx = LayerWise("kron").fit(NetView(net, 16), "4", Regression(), X, y)
    tau, scale = torch.full((3,), 0.5, dtype=F64), torch.tensor(2.0, dtype=F64)
    per_row = sum(base.nbytes(p) for p in approx.project(NetView(net, 300), X)) / 300
    monkeypatch.setattr(base, "PROJECTION_BYTES", int(4 * per_row * 40))
    sizes, _, _ = _pass(approx, NetView(net), X, tau, scale)
    assert sizes == [16] + [40] * 7 + [4]
    monkeypatch.setattr(base, "PROJECTION_BYTES", 1)
    sizes, _, _ = _pass(approx, NetView(net), X, tau, scale)
    assert sizes == [16] * 18 + [12]


@pytest.mark.parametrize("approx", [LastLayer("kron"), LayerWise("kron", ["0", "4"])])
def test_the_last_layer_and_subsets_keep_the_nets_batches(approx):
    """Their parts say nothing of the memory of the body's activations."""
    net = _net(16)
    X, y = _data(100, 0)
    approx.fit(NetView(net, 16), "4", Regression(), X, y)
    tau = torch.full((approx.posterior.n_blocks,), 0.5, dtype=F64)
    sizes, _, _ = _pass(approx, NetView(net), X, tau, torch.tensor(1.0, dtype=F64))
    assert sizes == [16] * 6 + [4]
