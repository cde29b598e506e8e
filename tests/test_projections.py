"""The predictive moments and draws of the approximations against dense float64 references.

``LastLayer`` and ``LayerWise`` split the GLM predictive into a projection that no
hyper-parameter changes (``project``) and a contraction for given hyper-parameters
(``moments``, variances or covariances). The references here form what the package never
forms: the per-row Jacobians ``J_n`` from ``torch.func.jacrev`` over the posterior's layers
(in their matrix layout) and ``Sigma``, the explicit inverse of each block's dense posterior
precision ``scale * H + tau * I``; then ``Cov[f_n] = J_n Sigma J_n^T``.

Nets are float64 modules inside an initialised skorch net (not trained: the weights are
those the seed gives), run through a ``NetView`` as the estimators run them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNet, NeuralNetRegressor
from torch import nn
from torch.func import functional_call, jacrev

from sklaplace import LaplaceRegressor
from sklaplace._runtime.passes import NetView
from sklaplace.approximations import LastLayer, LayerWise
from sklaplace.approximations.layers import layer_of
from sklaplace.approximations.selection import select_layers
from sklaplace.likelihoods import Binary, Classification, Regression
from sklaplace.posterior import DiagBlock, KronBlock
from sklaplace.posterior import linalg as posterior_linalg

F64 = torch.float64
LIKELIHOODS = {
    "classification": Classification(),
    "binary": Binary(),
    "regression": Regression(),
}
N_OUT = {"classification": 3, "binary": 1, "regression": 2}
TAU = 0.7
SCALE = torch.tensor(1.3, dtype=F64)


# ------------------------------------------------------------------------------ nets
class MLP(nn.Module):
    """Two hidden layers: Linear -> Tanh -> Linear -> Tanh -> Linear (the head)."""

    def __init__(self, n_out=3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh())
        self.out = nn.Linear(4, n_out)

    def forward(self, X):
        return self.out(self.body(X))


class ConvNet(nn.Module):
    """Conv2d (nine output positions) -> Tanh -> Flatten -> Linear."""

    def __init__(self, n_out=3):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, stride=2)  # 5x5 -> 3x3
        self.out = nn.Linear(27, n_out)

    def forward(self, X):
        return self.out(torch.tanh(self.conv(X)).flatten(1))


class NormNet(nn.Module):
    """Linear -> LayerNorm (a diagonal block from per-row gradients) -> Tanh -> Linear."""

    def __init__(self, n_out=3):
        super().__init__()
        self.hidden = nn.Linear(4, 5)
        self.norm = nn.LayerNorm(5)
        self.out = nn.Linear(5, n_out)

    def forward(self, X):
        return self.out(torch.tanh(self.norm(self.hidden(X))))


NETS = {"mlp": MLP, "conv": ConvNet, "layernorm": NormNet}


def _make(kind, n_out):
    torch.manual_seed(1)
    net = NETS[kind](n_out).to(F64)
    if kind == "layernorm":  # away from the initial gamma = 1, beta = 0
        with torch.no_grad():
            net.norm.weight.add_(0.3 * torch.randn(5, dtype=F64))
            net.norm.bias.add_(0.3 * torch.randn(5, dtype=F64))
    return net.eval()


def _data(kind, m, likelihood, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shape = (m, 2, 5, 5) if kind == "conv" else (m, 4)
    X = torch.randn(shape, generator=gen, dtype=F64)
    n_out = N_OUT[likelihood]
    if likelihood == "classification":
        y = torch.randint(0, n_out, (m,), generator=gen)
    elif likelihood == "binary":
        y = torch.randint(0, 2, (m,), generator=gen).to(F64)
    else:
        y = torch.randn(m, n_out, generator=gen, dtype=F64)
    return X, y


def _view(module, batch_size):
    """A ``NetView`` of ``module`` inside an initialised skorch net (weights as they are)."""
    net = NeuralNet(module, criterion=nn.MSELoss, train_split=None).initialize()
    assert net.module_ is module
    return NetView(net, batch_size)


def _moments(approx, view, X, tau, scale, cov):
    means, out = [], []
    for proj in approx.project(view, X):
        means.append(proj.mean)
        out.append(approx.moments(proj, tau, scale, cov))
    return torch.cat(means), torch.cat(out)


# ------------------------------------------------------------------- dense reference
def _dense_jacobian(net, layers, X):
    """Per-row Jacobians (m, c, D) of the outputs over the layers' matrices, row-major."""
    mats = [layer.weight_matrix() for layer in layers]
    sizes = [mat.numel() for mat in mats]
    theta = torch.cat([mat.reshape(-1) for mat in mats])

    def f(th):
        params = {}
        for layer, part, mat in zip(layers, th.split(sizes), mats, strict=True):
            prefix = f"{layer.name}." if layer.name else ""
            local = layer.to_params(part.reshape(mat.shape))
            params.update({prefix + k: v for k, v in local.items()})
        return functional_call(net, params, (X,))

    return jacrev(f)(theta).detach()


def _block_dense(block):
    """The curvature ``H`` a block stands for, as a dense matrix over row-major vec(W)."""
    if isinstance(block, DiagBlock):
        return torch.diag(block.h.reshape(-1))
    if isinstance(block, KronBlock):
        A = (block.Q_A * block.lam_A) @ block.Q_A.T
        B = (block.Q_B * block.lam_B) @ block.Q_B.T
        return torch.kron(B, A)
    return (block.Q * block.lam) @ block.Q.T


def _dense_sigma(posterior, tau, scale):
    """The posterior covariance: the explicit inverse of each block's dense precision."""
    blocks = []
    for block, t in zip(posterior.blocks, tau, strict=True):
        H = _block_dense(block)
        blocks.append(torch.linalg.inv(scale * H + t * torch.eye(H.shape[0], dtype=F64)))
    return torch.block_diag(*blocks)


def _check_moments(approx, view, net, layers, Xt, tau, scale, rtol):
    """``moments`` with cov=True and cov=False against ``J Sigma J^T`` and its diagonal."""
    mean, cov = _moments(approx, view, Xt, tau, scale, cov=True)
    _, var = _moments(approx, view, Xt, tau, scale, cov=False)
    J = _dense_jacobian(net, layers, Xt)
    expected = torch.einsum("nkd,de,nle->nkl", J, _dense_sigma(approx.posterior, tau, scale), J)
    torch.testing.assert_close(mean, net(Xt).detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cov, expected, rtol=rtol, atol=1e-12)
    torch.testing.assert_close(var, expected.diagonal(dim1=1, dim2=2), rtol=rtol, atol=1e-12)
    # the variances are the diagonal of the covariances, computed another way
    torch.testing.assert_close(var, cov.diagonal(dim1=1, dim2=2), rtol=1e-12, atol=1e-14)
    return cov


# ---------------------------------------------------------------- last-layer moments
@pytest.mark.parametrize("likelihood", ["classification", "binary", "regression"])
@pytest.mark.parametrize("structure", ["diag", "kron", "full"])
def test_last_layer_moments_equal_dense_reference(structure, likelihood):
    net = _make("mlp", N_OUT[likelihood])
    X, y = _data("mlp", 12, likelihood)
    view = _view(net, 5)
    approx = LastLayer(structure).fit(view, "out", LIKELIHOODS[likelihood], X, y)
    assert approx.posterior.blocks[0].structure == structure
    Xt, _ = _data("mlp", 6, likelihood, seed=1)
    tau = torch.tensor([TAU], dtype=F64)
    cov = _check_moments(approx, view, net, [layer_of(net, "out")], 2 * Xt, tau, SCALE, 1e-10)
    if structure != "diag" and likelihood == "classification":
        off = cov - torch.diag_embed(cov.diagonal(dim1=1, dim2=2))
        assert off.abs().max() > 1e-3 * cov.abs().max()  # the covariances are not diagonal


# ---------------------------------------------------------------- layer-wise moments
@pytest.mark.parametrize("structure", ["kron", "diag"])
@pytest.mark.parametrize(
    ("kind", "likelihood"),
    [
        ("mlp", "classification"),
        ("mlp", "regression"),
        ("conv", "classification"),
        ("layernorm", "classification"),
        ("layernorm", "binary"),
    ],
)
def test_layer_wise_moments_equal_dense_reference(kind, likelihood, structure):
    net = _make(kind, N_OUT[likelihood])
    X, y = _data(kind, 9, likelihood)
    view = _view(net, 4)
    approx = LayerWise(structure, "all").fit(view, "out", LIKELIHOODS[likelihood], X, y)
    layers = select_layers(net)
    assert approx.posterior.names == [layer.name for layer in layers]
    tau = torch.linspace(0.5, 2.0, len(layers), dtype=F64)
    Xt, _ = _data(kind, 7, likelihood, seed=1)
    _check_moments(approx, view, net, layers, Xt, tau, SCALE, 1e-10)


@pytest.mark.parametrize("rows", [1, 2, 3, 7, 100])
@pytest.mark.parametrize("structure", ["kron", "diag"])
@pytest.mark.parametrize("kind", ["mlp", "conv", "layernorm"])
def test_layer_wise_covariances_across_rows_equal_dense_reference(
    kind, structure, rows, monkeypatch
):
    """``joint_moments``: Cov[f_k(x_n), f_k(x_m)] = J_nk Sigma J_mk^T for every pair of rows
    (what return_cov and sample_y use), for one-position, convolutional and other layers,
    filled in tiles of ``rows`` rows (2 and 3 do not divide the 7 rows; 1 is every pair
    alone, 7 and 100 one tile): every tiling gives the reference, exactly symmetric."""
    from sklaplace.approximations import layer_wise

    monkeypatch.setattr(layer_wise, "tile_rows", lambda *args: rows)
    net = _make(kind, 3)
    X, y = _data(kind, 9, "classification")
    view = _view(net, 4)
    approx = LayerWise(structure, "all").fit(view, "out", LIKELIHOODS["classification"], X, y)
    layers = select_layers(net)
    tau = torch.linspace(0.5, 2.0, len(layers), dtype=F64)
    Xt, _ = _data(kind, 7, "classification", seed=1)
    row_cov = _assert_joint_moments_match_dense(approx, view, net, layers, Xt, tau)
    # the first outputs only: the same numbers
    _, _, first = approx.joint_moments(view, Xt, tau, SCALE, 2)
    torch.testing.assert_close(first, row_cov[:, :, :2], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("rows", [1, 2, 3, 7])
@pytest.mark.parametrize("structure", ["diag", "kron", "full"])
def test_last_layer_covariances_across_rows_equal_dense_reference(structure, rows, monkeypatch):
    """The last layer's ``joint_moments`` in tiles of ``rows`` rows equal J Sigma J^T."""
    from sklaplace.approximations import last_layer

    monkeypatch.setattr(last_layer, "tile_rows", lambda *args: rows)
    net = _make("mlp", 3)
    X, y = _data("mlp", 12, "classification")
    view = _view(net, 3)
    approx = LastLayer(structure).fit(view, "out", LIKELIHOODS["classification"], X, y)
    tau = torch.tensor([0.4], dtype=F64)
    Xt, _ = _data("mlp", 7, "classification", seed=1)
    layers = [layer_of(net, "out")]
    _assert_joint_moments_match_dense(approx, view, net, layers, Xt, tau)


def test_layer_wise_moments_in_row_chunks_agree(monkeypatch):
    """With ``CHUNK_ELEMENTS = 1`` every row is its own chunk: the same moments."""
    net = _make("conv", 3)
    X, y = _data("conv", 9, "classification")
    view = _view(net, 9)
    approx = LayerWise("kron", "all").fit(view, "out", LIKELIHOODS["classification"], X, y)
    tau = torch.tensor([0.5, 2.0], dtype=F64)
    whole = [_moments(approx, view, X, tau, SCALE, cov)[1] for cov in (True, False)]
    monkeypatch.setattr(posterior_linalg, "CHUNK_ELEMENTS", 1)
    chunked = [_moments(approx, view, X, tau, SCALE, cov)[1] for cov in (True, False)]
    for a, b in zip(chunked, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------- singular curvature
class DuplicatedFeatures(nn.Module):
    """A head whose inputs repeat each hidden feature: its curvature is singular."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 4)
        self.out = nn.Linear(8, 1)

    def forward(self, X):
        h = torch.tanh(self.hidden(X))
        return self.out(torch.cat([h, h], dim=1))


@pytest.fixture(scope="module")
def singular_setup():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.sin(X[:, :1]) + 0.1 * rng.normal(size=(40, 1))
    torch.manual_seed(0)
    net = NeuralNetRegressor(
        DuplicatedFeatures().to(F64), max_epochs=5, lr=0.05, train_split=None, verbose=0
    ).fit(X, y)
    X_new = np.concatenate([X[:10], 3 * rng.normal(size=(10, 3))])
    return X, y[:, 0], net, X_new


@pytest.mark.parametrize("prior_precision", [1e-2, 1e-6, 1e-10, 1e-12])
def test_full_structure_with_singular_curvature_agrees_with_kron(singular_setup, prior_precision):
    """For one regression output B (x) A is the exact GGN, so "kron" and "full" describe
    one posterior. With a singular GGN and a tiny prior, the covariance has entries of
    order 1 / prior_precision; a prediction's variance stays of order one (its features
    lie in the span of the training features), so it must be formed in the eigenbasis."""
    X, y, net, X_new = singular_setup
    regs, out = {}, {}
    for structure in ("kron", "full"):
        regs[structure] = LaplaceRegressor(
            FrozenEstimator(net),
            hessian_structure=structure,
            prior_precision=prior_precision,
            sigma_noise=1.0,
            subset_of_weights="last_layer",
        ).fit(X, y)
        out[structure] = regs[structure].predict(X_new, return_std=True)
    (mean_k, std_k), (mean_f, std_f) = out["kron"], out["full"]
    assert np.isfinite(std_f).all() and np.isfinite(std_k).all()
    np.testing.assert_allclose(mean_f, mean_k, rtol=1e-12)
    np.testing.assert_allclose(std_f, std_k, rtol=1e-6)
    # the same for Var[f] = std^2 - sigma_noise^2 alone, without the noise added to it
    var_k, var_f = std_k**2 - 1.0, std_f**2 - 1.0
    assert var_k.min() > 1e-2
    np.testing.assert_allclose(var_f, var_k, rtol=1e-6)
    if prior_precision == 1e-12:
        # The check has power: contracting the features with the dense covariance
        # Q diag(1/L) Q^T (entries ~1e12) misses these variances by far more than 1e-6.
        block = regs["full"].posterior_.blocks[0]
        with torch.no_grad():
            h = torch.tanh(net.module_.hidden(torch.as_tensor(X_new)))
        a = torch.cat([h, h, torch.ones(len(h), 1, dtype=F64)], dim=1)
        dense_cov = block.covariance(torch.tensor(1e-12, dtype=F64), torch.tensor(1.0, dtype=F64))
        dense = torch.einsum("ni,kilj,nj->nkl", a, dense_cov, a)[:, 0, 0].numpy()
        assert np.max(np.abs(dense / var_k - 1)) > 1e-5


# --------------------------------------------------------------------------- draws
def _assert_mc_moments(samples, mean, cov):
    """Sample mean and covariance within 5 standard errors of ``mean`` and ``cov``.

    For Gaussian draws the sample covariance entry (i, j) has variance
    ``(S_ii S_jj + S_ij^2) / n`` and the sample mean ``S_ii / n``.
    """
    n = samples.shape[0]
    var = cov.diagonal()
    err_mean = (samples.mean(0) - mean).abs()
    assert (err_mean <= 5 * (var / n).sqrt()).all(), err_mean / (var / n).sqrt()
    emp = torch.cov(samples.T)
    se = ((torch.outer(var, var) + cov**2) / n).sqrt()
    assert ((emp - cov).abs() <= 5 * se).all(), (emp - cov).abs() / se


@pytest.mark.parametrize("structure", ["diag", "kron", "full"])
def test_last_layer_draws_have_the_glm_moments(structure):
    """The outputs are linear in the head's weights: draws ~ N(f, J Sigma J^T) exactly,
    within a row and across rows."""
    net = _make("mlp", 3)
    X, y = _data("mlp", 12, "classification")
    view = _view(net, 2)
    approx = LastLayer(structure).fit(view, "out", LIKELIHOODS["classification"], X, y)
    tau = torch.tensor([0.3], dtype=F64)
    Xt = 2 * X[:3]
    n = 20000
    batches = approx.draws(view, Xt, n, tau, SCALE, seed=1)  # chunks of draws per batch
    f = torch.cat([torch.cat(list(chunks)) for chunks in batches], dim=1)
    assert f.shape == (n, 3, 3)
    mean, cov = _moments(approx, view, Xt, tau, SCALE, cov=True)
    for i in range(3):
        _assert_mc_moments(f[:, i], mean[i], cov[i])
    # across rows, output by output: the joint covariance of the posterior
    joint_mean, _, row_cov = approx.joint_moments(view, Xt, tau, SCALE, 3)
    torch.testing.assert_close(joint_mean, mean, rtol=1e-12, atol=1e-12)
    for k in range(3):
        _assert_mc_moments(f[:, :, k], mean[:, k], row_cov[:, :, k])
    # the check has power: a covariance 20% too large is rejected
    with pytest.raises(AssertionError):
        _assert_mc_moments(f[:, 0], mean[0], 1.2 * cov[0])


class NormOnly(nn.Module):
    """One LayerNorm: its output ``gamma * x_hat + beta`` is linear in its parameters."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(3)

    def forward(self, X):
        return self.norm(X)


@pytest.mark.parametrize(
    ("kind", "head", "subset", "structure"),
    [
        ("linear", "", "all", "kron"),
        ("linear", "", "all", "diag"),
        ("mlp", "out", ["out"], "kron"),
        ("layernorm", "norm", "all", "diag"),
    ],
)
def test_layer_wise_draws_have_the_glm_moments(kind, head, subset, structure):
    """Nets linear in the sampled weights (one Linear; the head of an MLP; one LayerNorm):
    the net run under each drawn weight gives outputs ~ N(f, J Sigma J^T) exactly."""
    torch.manual_seed(2)
    if kind == "linear":
        net = nn.Linear(4, 3).to(F64)
    elif kind == "layernorm":
        net = NormOnly().to(F64)
        with torch.no_grad():
            net.norm.weight.add_(0.3 * torch.randn(3, dtype=F64))
            net.norm.bias.add_(0.3 * torch.randn(3, dtype=F64))
    else:
        net = _make("mlp", 3)
    X, y = _data("mlp", 12, "classification")
    X = X[:, :3] if kind == "layernorm" else X
    view = _view(net, 12)
    approx = LayerWise(structure, subset).fit(view, head, LIKELIHOODS["classification"], X, y)
    tau = torch.ones(approx.posterior.n_blocks, dtype=F64)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    Xt = X[:2]
    n = 10000
    batches = approx.draws(view, Xt, n, tau, SCALE, seed=1)  # chunks of draws per batch
    f = torch.cat([torch.cat(list(chunks)) for chunks in batches], dim=1)
    assert f.shape == (n, 2, 3)
    for k, v in net.state_dict().items():  # draws go into the private view only
        assert torch.equal(v, before[k])
    mean, cov = _moments(approx, view, Xt, tau, SCALE, cov=True)
    for i in range(2):
        _assert_mc_moments(f[:, i], mean[i], cov[i])


def _assert_joint_moments_match_dense(approx, view, net, layers, Xt, tau):
    """``joint_moments`` (3 outputs) against ``J Sigma J^T`` from dense float64 Jacobians:
    the mean is the net's, the covariance across rows exact and exactly symmetric, the
    variances its diagonal. Returns the covariance."""
    mean, var, row_cov = approx.joint_moments(view, Xt, tau, SCALE, 3)
    J = _dense_jacobian(net, layers, Xt)
    sigma = _dense_sigma(approx.posterior, tau, SCALE)
    expected = torch.einsum("nkd,de,mke->nmk", J, sigma, J)
    torch.testing.assert_close(mean, net(Xt).detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(row_cov, expected, rtol=1e-10, atol=1e-12)
    assert torch.equal(row_cov, row_cov.transpose(0, 1))
    torch.testing.assert_close(
        var, torch.diagonal(expected, dim1=0, dim2=1).T, rtol=1e-10, atol=1e-12
    )
    return row_cov
