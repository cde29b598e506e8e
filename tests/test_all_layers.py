"""The layer-wise Laplace (``LayerWise``) against exact float64 references built densely.

The reference GGN is ``sum_n J_n^T Lambda_n J_n`` with ``J`` from ``torch.func.jacrev`` over
every selected parameter (in the layers' matrix layout) and ``Lambda`` from the likelihood's
``hessian``. Nets are built in float64 without touching the global default dtype. The
approximation runs them as the estimators do: through a ``NetView`` of a skorch net that
holds the module (initialised, not trained: the weights stay those set here).
"""

from __future__ import annotations

import math

import pytest
import torch
from skorch import NeuralNet
from torch import nn
from torch.func import functional_call, jacrev

from sklaplace._runtime.passes import NetView
from sklaplace.approximations import LayerWise
from sklaplace.approximations.selection import select_layers
from sklaplace.likelihoods import Binary, Classification, Regression
from sklaplace.posterior import FullBlock, KronBlock, Posterior

F64 = torch.float64
LIKELIHOODS = {
    "classification": Classification(),
    "binary": Binary(),
    "regression": Regression(),
}


# ------------------------------------------------------------------------------ nets
class MLP(nn.Module):
    """Linear -> Tanh -> Linear -> LayerNorm -> ReLU(inplace) -> Linear (the head)."""

    def __init__(self, n_in=4, hidden=5, n_out=3, softmax=False):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_in, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.LayerNorm(hidden),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Linear(hidden, n_out)
        self.final = nn.Softmax(dim=-1) if softmax else nn.Identity()

    def forward(self, X):
        return self.final(self.out(self.body(X)))


class ConvNet(nn.Module):
    """Conv2d -> Tanh -> Flatten -> Linear; ``size=kernel`` gives one spatial position."""

    def __init__(self, size=4, kernel=3, padding=0, n_out=3, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, kernel, padding=padding, stride=stride)
        if padding == "same":
            n_pos = size**2
        else:
            n_pos = ((size + 2 * padding - kernel) // stride + 1) ** 2
        self.out = nn.Linear(3 * n_pos, n_out)

    def forward(self, X):
        return self.out(torch.tanh(self.conv(X)).flatten(1))


class Conv1dNet(nn.Module):
    """Conv1d -> Tanh -> Flatten -> Linear; ``size=kernel`` gives one position."""

    def __init__(self, size=6, kernel=3, padding=0, n_out=3, stride=1, dilation=1):
        super().__init__()
        self.conv = nn.Conv1d(2, 3, kernel, padding=padding, stride=stride, dilation=dilation)
        if padding == "same":
            n_pos = size
        else:
            n_pos = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
        self.out = nn.Linear(3 * n_pos, n_out)

    def forward(self, X):
        return self.out(torch.tanh(self.conv(X)).flatten(1))


class EmbedNet(nn.Module):
    """Embedding of ``n_tokens`` indices per row -> Linear per token -> Linear (head)."""

    def __init__(self, n_tokens=2, n_out=3, padding_idx=None):
        super().__init__()
        self.emb = nn.Embedding(7, 3, padding_idx=padding_idx)
        self.tok = nn.Linear(3, 4)
        self.out = nn.Linear(4 * n_tokens, n_out)

    def forward(self, X):
        return self.out(torch.tanh(self.tok(self.emb(X))).flatten(1))


def _make(kind, n_out=3, **kw):
    torch.manual_seed(1)
    if kind == "mlp":
        return MLP(n_out=n_out, **kw).to(F64).eval()
    if kind == "conv":
        return ConvNet(n_out=n_out, **kw).to(F64).eval()
    if kind == "conv1d":
        return Conv1dNet(n_out=n_out, **kw).to(F64).eval()
    return EmbedNet(n_out=n_out, **kw).to(F64).eval()


def _data(kind, m, n_out, likelihood, seed=0, **kw):
    gen = torch.Generator().manual_seed(seed)
    if kind == "mlp":
        X = torch.randn(m, 4, generator=gen, dtype=F64)
    elif kind == "conv":
        size = kw.get("size", 4)
        X = torch.randn(m, 2, size, size, generator=gen, dtype=F64)
    elif kind == "conv1d":
        X = torch.randn(m, 2, kw.get("size", 6), generator=gen, dtype=F64)
    else:
        X = torch.randint(0, 7, (m, kw.get("n_tokens", 2)), generator=gen)
    if likelihood == "classification":
        y = torch.randint(0, n_out, (m,), generator=gen)
    elif likelihood == "binary":
        y = torch.randint(0, 2, (m,), generator=gen).to(F64)
    else:
        y = torch.randn(m, n_out, generator=gen, dtype=F64)
    return X, y


# ------------------------------------------------------------- running the approximation
def _view(module, batch_size):
    """A ``NetView`` of ``module`` inside an initialised skorch net (weights as they are)."""
    net = NeuralNet(module, criterion=nn.MSELoss, train_split=None).initialize()
    assert net.module_ is module
    return NetView(net, batch_size)


def _fit(module, head, X, y, likelihood, structure, subset="all", batch_size=None):
    """``LayerWise`` fitted on ``(X, y)`` in batches of ``batch_size`` (all rows if None),
    and the view it ran on. ``head`` is the name of the output module."""
    view = _view(module, batch_size or len(X))
    approx = LayerWise(structure, subset).fit(view, head, LIKELIHOODS[likelihood], X, y)
    return approx, view


def _glm(approx, view, X, tau, scale, cov=True):
    """The GLM predictive over the batches of ``view``: means (m, c) and covariances
    (m, c, c), or variances (m, c) if not ``cov``."""
    means, moments = [], []
    for proj in approx.project(view, X):
        means.append(proj.mean)
        moments.append(approx.moments(proj, tau, scale, cov))
    return torch.cat(means), torch.cat(moments)


def _draws(approx, view, X, n_samples, tau, scale, seed):
    """Head outputs under weights drawn from the posterior: (n_samples, m, c)."""
    batches = approx.draws(view, X, n_samples, tau, scale, seed)
    return torch.cat([torch.cat(list(chunks)) for chunks in batches], dim=1)


# ------------------------------------------------------------------- dense reference
def _qualified(layer, params):
    prefix = f"{layer.name}." if layer.name else ""
    return {prefix + k: v for k, v in params.items()}


def _dense_jacobian(net, layers, X):
    """J of shape (m, c, D) over the layers' parameter matrices, concatenated row-major."""
    mats = [layer.weight_matrix() for layer in layers]
    sizes = [mat.numel() for mat in mats]
    theta = torch.cat([mat.reshape(-1) for mat in mats])

    def f(th):
        params = {}
        for layer, part, mat in zip(layers, th.split(sizes), mats, strict=True):
            params.update(_qualified(layer, layer.to_params(part.reshape(mat.shape))))
        return functional_call(net, params, (X,))

    return jacrev(f)(theta).detach(), sizes


def _dense_ggn(net, layers, X, likelihood):
    J, sizes = _dense_jacobian(net, layers, X)
    with torch.no_grad():
        lam = LIKELIHOODS[likelihood].hessian(net(X))
    return torch.einsum("nkd,nkl,nle->de", J, lam, J), sizes


def _block_dense(block):
    """The curvature ``H`` a block stands for, as a dense matrix over vec(W)."""
    if isinstance(block, KronBlock):
        A = (block.Q_A * block.lam_A) @ block.Q_A.T
        B = (block.Q_B * block.lam_B) @ block.Q_B.T
        return torch.kron(B, A)
    return torch.diag(block.h.reshape(-1))


def _diag_blocks(H, sizes):
    out, start = [], 0
    for s in sizes:
        out.append(H[start : start + s, start : start + s])
        start += s
    return out


def _dense_sigma(posterior, tau, scale):
    blocks = []
    for block, t in zip(posterior.blocks, tau, strict=True):
        H = _block_dense(block)
        P = scale * H + t * torch.eye(H.shape[0], dtype=F64)
        blocks.append(torch.linalg.inv(P))
    return torch.block_diag(*blocks)


LIKELIHOOD_OUT = [("classification", 3), ("binary", 1), ("regression", 2)]


# ------------------------------------------------------------------------ curvature
@pytest.mark.parametrize(("likelihood", "n_out"), LIKELIHOOD_OUT)
@pytest.mark.parametrize(
    ("kind", "kw"),
    [
        ("mlp", {}),
        ("conv", {"size": 3, "kernel": 3}),
        ("conv1d", {"size": 3, "kernel": 3}),
        ("embed", {"n_tokens": 1}),
    ],
)
def test_kron_equals_exact_ggn_block_on_one_row(likelihood, n_out, kind, kw):
    """KFAC is exact for one row at one position: B (x) A = the GGN block."""
    net = _make(kind, n_out, **kw)
    X, y = _data(kind, 1, n_out, likelihood, **kw)
    approx, _ = _fit(net, "out", X, y, likelihood, "kron")
    post = approx.posterior
    layers = select_layers(net)
    H, sizes = _dense_ggn(net, layers, X, likelihood)
    assert approx.n_rows == 1 and post.names == [layer.name for layer in layers]
    with torch.no_grad():
        expected = LIKELIHOODS[likelihood].loss(net(X), y)
    torch.testing.assert_close(torch.tensor(approx.loss, dtype=F64), expected)
    for block, ref in zip(post.blocks, _diag_blocks(H, sizes), strict=True):
        if isinstance(block, KronBlock):
            torch.testing.assert_close(_block_dense(block), ref, atol=1e-10, rtol=1e-8)
        else:  # LayerNorm: the exact diagonal
            torch.testing.assert_close(block.h.reshape(-1), ref.diagonal(), atol=1e-10, rtol=1e-8)


def test_kron_last_layer_regression_is_exact_on_many_rows():
    """With a Gaussian likelihood B = N I, so B (x) A = I (x) sum_n a_n a_n^T exactly."""
    net = _make("mlp", 2)
    X, y = _data("mlp", 20, 2, "regression")
    approx, _ = _fit(net, "out", X, y, "regression", "kron", subset=["out"])
    layers = select_layers(net, ["out"])
    H, _ = _dense_ggn(net, layers, X, "regression")
    torch.testing.assert_close(_block_dense(approx.posterior.blocks[0]), H, atol=1e-10, rtol=1e-8)


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize(("likelihood", "n_out"), LIKELIHOOD_OUT)
@pytest.mark.parametrize(
    ("kind", "kw"),
    [
        ("mlp", {}),
        ("conv", {"size": 4, "kernel": 3, "padding": 1}),
        ("conv", {"size": 5, "kernel": 2, "padding": "same"}),
        ("conv1d", {"size": 6, "kernel": 3, "padding": 1}),
        ("conv1d", {"size": 7, "kernel": 2, "padding": "same", "dilation": 2}),
        ("embed", {"n_tokens": 2, "padding_idx": 0}),
    ],
)
def test_diag_equals_exact_ggn_diagonal(likelihood, n_out, kind, kw):
    data_kw = {k: v for k, v in kw.items() if k in ("size", "n_tokens")}
    net = _make(kind, n_out, **kw)
    X, y = _data(kind, 7, n_out, likelihood, **data_kw)
    approx, _ = _fit(net, "out", X, y, likelihood, "diag", batch_size=3)
    H, sizes = _dense_ggn(net, select_layers(net), X, likelihood)
    assert approx.n_rows == 7
    for block, ref in zip(approx.posterior.blocks, _diag_blocks(H, sizes), strict=True):
        torch.testing.assert_close(block.h.reshape(-1), ref.diagonal(), atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("structure", ["kron", "diag"])
@pytest.mark.parametrize("kind", ["mlp", "conv", "conv1d", "embed"])
def test_curvature_and_loss_do_not_depend_on_batch_size(structure, kind):
    net = _make(kind, 3)
    X, y = _data(kind, 9, 3, "classification")
    ref, _ = _fit(net, "out", X, y, "classification", structure)
    for size in (1, 4):
        approx, _ = _fit(net, "out", X, y, "classification", structure, batch_size=size)
        assert approx.n_rows == 9
        torch.testing.assert_close(approx.loss, ref.loss)
        for b, r in zip(approx.posterior.blocks, ref.posterior.blocks, strict=True):
            torch.testing.assert_close(_block_dense(b), _block_dense(r), atol=1e-10, rtol=1e-8)
    expected = nn.functional.cross_entropy(net(X), y, reduction="sum")
    torch.testing.assert_close(torch.tensor(ref.loss, dtype=F64), expected.detach())


def test_outputs_are_taken_at_the_head_before_a_softmax():
    """A net ending in Softmax (NLLLoss) gives the curvature of its logits."""
    X, y = _data("mlp", 6, 3, "classification")
    plain, soft = _make("mlp", 3), _make("mlp", 3, softmax=True)
    a, _ = _fit(plain, "out", X, y, "classification", "kron")
    b, _ = _fit(soft, "out", X, y, "classification", "kron")
    torch.testing.assert_close(a.loss, b.loss)
    for x, z in zip(a.posterior.blocks, b.posterior.blocks, strict=True):
        torch.testing.assert_close(_block_dense(x), _block_dense(z))


@pytest.mark.parametrize(("likelihood", "n_out"), [*LIKELIHOOD_OUT, ("classification", 2)])
def test_lambda_square_root_reproduces_the_output_hessian(likelihood, n_out):
    """``sum_r v_r v_r^T = Lambda``, also for a saturated softmax (rank c - 1 root)."""
    f = 3 * torch.randn(6, n_out, generator=torch.Generator().manual_seed(0), dtype=F64)
    f[0, 0] = 50.0
    lik = LIKELIHOODS[likelihood]
    V = lik.hessian_sqrt(f)
    assert V.shape[0] == (n_out - 1 if likelihood == "classification" else n_out)
    lam = torch.einsum("rnk,rnl->nkl", V, V)
    torch.testing.assert_close(lam, lik.hessian(f), atol=1e-14, rtol=0)


# ------------------------------------------------------------------ layer selection
def test_frozen_parameters_are_left_out_and_layernorm_gets_a_diag_block():
    net = _make("mlp", 3)
    net.body[0].requires_grad_(False)  # the whole first layer
    net.out.bias.requires_grad_(False)  # the head without its bias column
    layers = select_layers(net)
    assert [(ly.name, ly.kind) for ly in layers] == [
        ("body.2", "linear"),
        ("body.3", "other"),
        ("out", "linear"),
    ]
    X, y = _data("mlp", 5, 3, "classification")
    post = _fit(net, "out", X, y, "classification", "kron")[0].posterior
    assert [b.structure for b in post.blocks] == ["kron", "diag", "kron"]
    assert post.blocks[2].shape == (3, 5) and post.blocks[1].shape == (1, 10)
    torch.testing.assert_close(post.means[2], net.out.weight.detach())
    assert post.n_params == 5 * 6 + 10 + 15


def test_conv1d_gets_kronecker_factors_over_its_patches():
    """A Conv1d is a Kronecker kind: ``A`` the mean of its input patches' outer products
    (bias absorbed), formed here by slicing the padded input by hand."""
    net = _make("conv1d", 3, size=7, kernel=3, padding=2, stride=2, dilation=2)
    X, y = _data("conv1d", 5, 3, "classification", size=7)
    layers = select_layers(net)
    assert [(ly.name, ly.kind, ly.shape) for ly in layers] == [
        ("conv", "conv1d", (3, 2 * 3 + 1)),
        ("out", "linear", (3, 3 * 4 + 1)),
    ]
    approx, _ = _fit(net, "out", X, y, "classification", "kron", batch_size=2)
    block = approx.posterior.blocks[0]
    assert isinstance(block, KronBlock)
    padded = nn.functional.pad(X, (2, 2))
    patches = torch.stack([padded[:, :, p : p + 5 : 2] for p in range(0, 8, 2)], dim=1)
    a = torch.cat([patches.flatten(2), torch.ones(5, 4, 1, dtype=F64)], dim=2).flatten(0, 1)
    torch.testing.assert_close(
        (block.Q_A * block.lam_A) @ block.Q_A.T, a.T @ a / len(a), atol=1e-12, rtol=1e-10
    )
    with pytest.raises(ValueError, match=r"Conv1d layer 'conv' receives input of shape"):
        layers[0].inputs(X[0])


def test_subset_names_containers_and_rejects_unknown_names():
    net = _make("mlp", 3)
    assert [ly.name for ly in select_layers(net, ["out", "body"])] == [
        "body.0",
        "body.2",
        "body.3",
        "out",
    ]
    with pytest.raises(ValueError, match=r"Unknown module name\(s\) \['nope'\]"):
        select_layers(net, ["nope"])
    with pytest.raises(ValueError, match="no trainable parameters"):
        select_layers(net, ["body.1"])


def test_recurrent_module_gives_a_clear_error():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 4, batch_first=True)
            self.out = nn.Linear(4, 2)

        def forward(self, X):
            return self.out(self.lstm(X)[0][:, -1])

    net = Seq().to(F64)
    with pytest.raises(ValueError, match=r"'lstm' is a LSTM.*subset_of_weights"):
        select_layers(net)
    X, y = torch.randn(4, 5, 3, dtype=F64), torch.randint(0, 2, (4,))
    approx, _ = _fit(net, "out", X, y, "classification", "kron", ["out"])
    assert approx.posterior.names == ["out"]


def test_shared_weights_give_a_clear_error():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(3, 3)
            self.out = nn.Linear(3, 2)

        def forward(self, X):
            return self.out(self.hidden(torch.tanh(self.hidden(X))))

    net = Twice().to(F64)
    X, y = torch.randn(4, 3, dtype=F64), torch.randint(0, 2, (4,))
    with pytest.raises(ValueError, match=r"'hidden' is applied 2 times.*subset_of_weights"):
        _fit(net, "out", X, y, "classification", "kron")


def test_parameter_layout_round_trips():
    for kind, kw in [("mlp", {}), ("conv", {}), ("conv1d", {}), ("embed", {})]:
        net = _make(kind, 3, **kw)
        for layer in select_layers(net):
            mat = layer.weight_matrix()
            assert tuple(mat.shape) == layer.shape
            params = layer.to_params(mat)
            torch.testing.assert_close(layer.weight_matrix(params=params), mat)
            for name, value in params.items():
                torch.testing.assert_close(value, getattr(layer.module, name).detach())


# ----------------------------------------------------------------------- predictive
@pytest.mark.parametrize("structure", ["kron", "diag"])
@pytest.mark.parametrize(
    ("kind", "kw", "likelihood", "n_out"),
    [
        ("mlp", {}, "classification", 3),
        ("mlp", {}, "regression", 2),
        ("mlp", {}, "binary", 1),
        ("conv", {"size": 4, "kernel": 3, "padding": 1, "stride": 2}, "classification", 3),
        ("conv1d", {"size": 7, "kernel": 3, "padding": 1, "stride": 2}, "regression", 2),
        ("conv1d", {"size": 8, "kernel": 2, "dilation": 3}, "classification", 3),
        ("embed", {"n_tokens": 2}, "classification", 3),
    ],
)
def test_glm_moments_equal_dense_j_sigma_jt(structure, kind, kw, likelihood, n_out):
    data_kw = {k: v for k, v in kw.items() if k in ("size", "n_tokens")}
    net = _make(kind, n_out, **kw)
    X, y = _data(kind, 8, n_out, likelihood, **data_kw)
    approx, view = _fit(net, "out", X, y, likelihood, structure, batch_size=5)
    post = approx.posterior
    tau = torch.linspace(0.5, 2.0, post.n_blocks, dtype=F64)
    scale = torch.tensor(0.7, dtype=F64)
    Xt, _ = _data(kind, 6, n_out, likelihood, seed=1, **data_kw)
    mean, cov = _glm(approx, view, Xt, tau, scale)
    J, _ = _dense_jacobian(net, select_layers(net), Xt)
    expected = torch.einsum("nkd,de,nle->nkl", J, _dense_sigma(post, tau, scale), J)
    torch.testing.assert_close(cov, expected, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(mean, net(Xt).detach())
    # the variances alone (what the probit link uses) are the diagonal
    _, var = _glm(approx, view, Xt, tau, scale, cov=False)
    torch.testing.assert_close(var, expected.diagonal(dim1=1, dim2=2), atol=1e-10, rtol=1e-8)


def test_glm_moments_do_not_depend_on_batch_size():
    net = _make("conv", 3, size=4, kernel=3, padding=1)
    X, y = _data("conv", 6, 3, "classification")
    approx, view = _fit(net, "out", X, y, "classification", "kron")
    tau = torch.ones(approx.posterior.n_blocks, dtype=F64)
    scale = torch.tensor(1.0, dtype=F64)
    _, full = _glm(approx, view, X, tau, scale)
    _, parts = _glm(approx, NetView(view.net, 4), X, tau, scale)
    torch.testing.assert_close(parts, full)


# ------------------------------------------------------------------------- sampling
def _assert_mc_moments(samples, mean, cov):
    """Sample mean and covariance within 5 standard errors of ``mean`` and ``cov``.

    For Gaussian draws the sample covariance entry has variance
    ``(S_ii S_jj + S_ij^2) / n`` and the sample mean ``S_ii / n``.
    """
    n = samples.shape[0]
    var = cov.diagonal()
    err_mean = (samples.mean(0) - mean).abs()
    assert (err_mean <= 5 * (var / n).sqrt()).all()
    emp = torch.cov(samples.T)
    se = ((torch.outer(var, var) + cov**2) / n).sqrt()
    assert ((emp - cov).abs() <= 5 * se).all()


@pytest.mark.parametrize("structure", ["kron", "diag"])
def test_sampled_weights_have_the_posterior_covariance(structure):
    net = _make("mlp", 3)
    X, y = _data("mlp", 10, 3, "classification")
    post = _fit(net, "out", X, y, "classification", structure)[0].posterior
    tau = torch.linspace(0.5, 2.0, post.n_blocks, dtype=F64)
    scale = torch.tensor(2.0, dtype=F64)
    gen = torch.Generator().manual_seed(0)
    n = 10000
    draws = post.sample(n, tau, scale, gen)
    assert [tuple(d.shape) for d in draws] == [(n, *b.shape) for b in post.blocks]
    flat = torch.cat([d.reshape(n, -1) for d in draws], dim=1)
    mean = torch.cat([m.reshape(-1) for m in post.means])
    _assert_mc_moments(flat, mean, _dense_sigma(post, tau, scale))


@pytest.mark.parametrize("structure", ["kron", "diag"])
def test_sample_predictions_of_a_linear_model_match_the_glm(structure):
    """For f = W x + b the network is linear in its weights: sampled outputs ~ N(f, J S J^T)."""
    torch.manual_seed(2)
    net = nn.Linear(4, 3).to(F64)
    X, y = _data("mlp", 12, 3, "classification")
    approx, view = _fit(net, "", X, y, "classification", structure)
    tau, scale = torch.tensor([0.3], dtype=F64), torch.tensor(1.0, dtype=F64)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    Xt = X[:2]
    out = _draws(approx, view, Xt, 20000, tau, scale, seed=1)
    assert out.shape == (20000, 2, 3)
    for k, v in net.state_dict().items():  # draws go into the private view only
        assert torch.equal(v, before[k])
    mean, cov = _glm(approx, view, Xt, tau, scale)
    torch.testing.assert_close(mean, net(Xt).detach())
    for n in range(2):
        _assert_mc_moments(out[:, n], mean[n], cov[n])
    # the check has power: a covariance 20% too large is rejected
    with pytest.raises(AssertionError):
        _assert_mc_moments(out[:, 0], mean[0], 1.2 * cov[0])


def test_sample_predictions_are_reproducible_and_run_the_whole_net():
    net = _make("mlp", 3, softmax=True)
    X, y = _data("mlp", 10, 3, "classification")
    approx, view = _fit(net, "out", X, y, "classification", "kron")
    n_blocks = approx.posterior.n_blocks
    tau, scale = torch.full((n_blocks,), 1e12, dtype=F64), torch.tensor(1.0, dtype=F64)
    a = _draws(approx, view, X, 3, tau, scale, seed=0)
    # A huge prior precision pins the weights: every draw gives the logits of the net.
    logits = net.out(net.body(X)).detach()
    for s in range(3):
        torch.testing.assert_close(a[s], logits, atol=1e-4, rtol=0)
    tau = torch.ones(n_blocks, dtype=F64)
    b1 = _draws(approx, view, X, 3, tau, scale, seed=5)
    b2 = _draws(approx, view, X, 3, tau, scale, seed=5)
    torch.testing.assert_close(b1, b2)
    assert not torch.allclose(b1[0], b1[1])


def test_float32_net_gives_float64_results_close_to_float64():
    net64 = _make("mlp", 3)
    net32 = _make("mlp", 3).float()
    X, y = _data("mlp", 10, 3, "classification")
    a64, v64 = _fit(net64, "out", X, y, "classification", "kron")
    a32, v32 = _fit(net32, "out", X.float(), y, "classification", "kron")
    tau, scale = torch.ones(a64.posterior.n_blocks, dtype=F64), torch.tensor(1.0, dtype=F64)
    m64, c64 = _glm(a64, v64, X, tau, scale)
    m32, c32 = _glm(a32, v32, X.float(), tau, scale)
    assert c32.dtype == F64 and m32.dtype == F64
    torch.testing.assert_close(m32, m64, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c32, c64, atol=1e-4, rtol=1e-4)
    assert math.isfinite(float(c32.sum()))


def test_batchnorm_and_prelu_get_exact_diagonal_blocks_in_eval_mode():
    """Modules without a Kronecker form use per-row gradients; BatchNorm uses running stats."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.PReLU(), nn.Linear(5, 3)).to(F64)
    X, y = _data("mlp", 8, 3, "classification")
    net.train()
    net(X)  # move the running statistics away from their initial values
    net.eval()
    approx, view = _fit(net, "3", X, y, "classification", "kron", batch_size=3)
    post = approx.posterior
    assert [b.structure for b in post.blocks] == ["kron", "diag", "diag", "kron"]
    layers = select_layers(net)
    H, sizes = _dense_ggn(net, layers, X, "classification")
    for block, ref in zip(post.blocks[1:3], _diag_blocks(H, sizes)[1:3], strict=True):
        torch.testing.assert_close(block.h.reshape(-1), ref.diagonal(), atol=1e-10, rtol=1e-8)
    tau, scale = torch.ones(4, dtype=F64), torch.tensor(1.0, dtype=F64)
    _, cov = _glm(approx, view, X, tau, scale)
    J, _ = _dense_jacobian(net, layers, X)
    expected = torch.einsum("nkd,de,nle->nkl", J, _dense_sigma(post, tau, scale), J)
    torch.testing.assert_close(cov, expected, atol=1e-10, rtol=1e-8)


def test_module_mode_is_left_as_it_is():
    """The passes run a private view in evaluation mode; the user's module keeps its mode."""
    net = _make("mlp", 3).train()
    X, y = _data("mlp", 4, 3, "classification")
    _, view = _fit(net, "out", X, y, "classification", "diag")
    assert net.training and all(m.training for m in net.modules())
    assert not any(m.training for m in view.module.modules())


def test_head_must_give_rows_by_outputs_and_tau_must_match_blocks():
    net = _make("embed", 3)
    X, y = _data("embed", 4, 3, "classification")
    with pytest.raises(ValueError, match=r"head's output is of shape \(4, 2, 4\)"):
        _fit(net, "tok", X, y, "classification", "kron")
    approx, view = _fit(net, "out", X, y, "classification", "kron")
    assert approx.posterior.n_blocks == 3
    (proj,) = approx.project(view, X)
    with pytest.raises(ValueError, match="shorter"):  # zip(strict=True) over the blocks
        approx.moments(proj, torch.ones(2, dtype=F64), torch.tensor(1.0, dtype=F64), True)


@pytest.mark.parametrize(("kind", "name"), [("mlp", "out"), ("embed", "tok")])
def test_glm_moments_with_a_full_block(kind, name):
    """A dense (FullBlock) layer posterior, at one position and at two (per-token Linear)."""
    net = _make(kind, 3)
    X, y = _data(kind, 7, 3, "classification")
    layers = select_layers(net, [name])
    H, _ = _dense_ggn(net, layers, X, "classification")
    approx, view = _fit(net, "out", X, y, "classification", "kron", subset=[name])
    # the same layer with a dense block in place of the Kronecker one
    approx.posterior = Posterior(
        [FullBlock(H, layers[0].shape)], [layers[0].weight_matrix()], [name]
    )
    tau, scale = torch.tensor([0.8], dtype=F64), torch.tensor(1.3, dtype=F64)
    _, cov = _glm(approx, view, X, tau, scale)
    J, _ = _dense_jacobian(net, layers, X)
    sigma = torch.linalg.inv(scale * H + tau * torch.eye(H.shape[0], dtype=F64))
    expected = torch.einsum("nkd,de,nle->nkl", J, sigma, J)
    torch.testing.assert_close(cov, expected, atol=1e-10, rtol=1e-8)
    _, var = _glm(approx, view, X, tau, scale, cov=False)
    torch.testing.assert_close(var, expected.diagonal(dim1=1, dim2=2), atol=1e-10, rtol=1e-8)
