"""The math modules against exact float64 references built independently of them.

Jacobians and output Hessians come from ``torch.func``, inverses from ``torch.linalg.inv``,
log-determinants from ``torch.linalg.slogdet`` and expectations from 1-D quadrature, so a
wrong index order, a missing factor or a transposed eigenbasis shows up as a mismatch.
"""

import functools
import math
from typing import NamedTuple

import numpy as np
import pytest
import torch
from scipy import integrate
from torch import Tensor, nn
from torch.func import hessian, jacrev
from torch.nn import functional as F

from sklaplace import links as predictive_module
from sklaplace._runtime.blas import blas_threads_like_torch, gram
from sklaplace.approximations.curvature import Accumulator
from sklaplace.approximations.layers import LinearLayer
from sklaplace.likelihoods import Binary, Classification, Regression
from sklaplace.links import OutputRoot, mc_log_link, probit_logits
from sklaplace.posterior import DiagBlock, FullBlock, KronBlock, Posterior
from sklaplace.posterior import linalg as posterior_linalg
from sklaplace.tuning.optimize import maximize_evidence

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"  # raised inside torch.func
)

F64 = torch.float64
STRUCTURES = ("diag", "kron", "full")
# (likelihood, number of outputs). A softmax over one class has zero curvature and a
# sigmoid head has one logit, so classification uses 3 and 2 outputs, binary 1.
CASES = [
    ("classification", 3),
    ("classification", 2),
    ("binary", 1),
    ("regression", 1),
    ("regression", 3),
]
CASE_IDS = [f"{lik}-{c}" for lik, c in CASES]
LIKELIHOODS = {
    "classification": Classification(),
    "binary": Binary(),
    "regression": Regression(),
}


# --------------------------------------------------------------------------- references
def _problem(likelihood, n_out, bias, n_rows=12, n_feat=3, seed=0):
    """Features ``a`` (bias column appended if ``bias``), weights ``W``, outputs, targets."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n_rows, n_feat, generator=g, dtype=F64)
    if bias:
        a = torch.cat([a, torch.ones(n_rows, 1, dtype=F64)], dim=1)
    W = torch.randn(n_out, a.shape[1], generator=g, dtype=F64)
    f = a @ W.T
    if likelihood == "classification":
        y = torch.randint(n_out, (n_rows,), generator=g)
    elif likelihood == "binary":
        y = torch.randint(2, (n_rows,), generator=g).to(F64)
    else:
        y = f + torch.randn(n_rows, n_out, generator=g, dtype=F64)
    return a, W, f, y


def _row_loss(likelihood, f_n, y_n):
    """The loss of one row as a function of that row's outputs ``f_n`` (c,)."""
    if likelihood == "classification":
        return F.cross_entropy(f_n, y_n)
    if likelihood == "binary":
        return F.binary_cross_entropy_with_logits(f_n[0], y_n)
    return 0.5 * ((f_n - y_n) ** 2).sum()


@functools.cache
def _reference(likelihood, n_out, bias, n_rows=12, seed=0):
    """``_problem`` plus its dense GGN and loss, computed once per case (do not mutate)."""
    a, W, f, y = _problem(likelihood, n_out, bias, n_rows=n_rows, seed=seed)
    return (a, W, f, y, *_dense_ggn(likelihood, a, W, y))


def _dense_ggn(likelihood, a, W, y):
    """``sum_n J_n^T Lambda_n J_n`` over row-major ``vec(W)`` and the summed loss."""
    w_vec = W.reshape(-1)

    def head(w, a_n):
        return w.reshape(W.shape) @ a_n

    H = torch.zeros(w_vec.numel(), w_vec.numel(), dtype=F64)
    loss = torch.zeros((), dtype=F64)
    for a_n, y_n in zip(a, y, strict=True):
        J = jacrev(head)(w_vec, a_n)  # (c, c * d)
        f_n = head(w_vec, a_n)
        lam = hessian(lambda f, y_n=y_n: _row_loss(likelihood, f, y_n))(f_n)  # (c, c)
        H += J.T @ lam @ J
        loss += _row_loss(likelihood, f_n, y_n)
    return H, loss


def _dense_block(block):
    """The curvature a block represents, as a dense matrix over row-major ``vec(W)``."""
    if isinstance(block, DiagBlock):
        return torch.diag(block.h.reshape(-1))
    if isinstance(block, KronBlock):
        B = (block.Q_B * block.lam_B) @ block.Q_B.T
        A = (block.Q_A * block.lam_A) @ block.Q_A.T
        return torch.kron(B, A)  # row-major vec: index (k, i) -> k * n_in + i
    return (block.Q * block.lam) @ block.Q.T


class _Head(NamedTuple):
    """What a pass over the head's rows produces: the block, the summed loss, the rows."""

    block: DiagBlock | KronBlock | FullBlock
    loss: Tensor
    n_rows: int


def _accumulate(structure, likelihood, a, f, y, batch_size) -> _Head:
    """The head's curvature from features ``a`` (bias column included) and outputs ``f``,
    batch by batch, as ``LastLayer`` sums it: ``Accumulator.update_head`` and the
    likelihood's summed loss."""
    lik = LIKELIHOODS[likelihood]
    # a bias-free Linear whose matrix is (c, d): the test's ``a`` already ends in 1
    module = nn.Linear(a.shape[1], f.shape[1], bias=False, dtype=F64)
    acc = Accumulator(LinearLayer("head", module), structure)
    loss = torch.zeros((), dtype=F64)
    n_rows = 0
    for start in range(0, len(a), batch_size):
        stop = start + batch_size
        acc.update_head(a[start:stop], f[start:stop], lik)
        loss = loss + lik.loss(f[start:stop], y[start:stop])
        n_rows += len(a[start:stop])
    return _Head(acc.block(), loss, n_rows)


def _jacobian(a_n, n_out):
    """``J = I (x) a^T``: the Jacobian of ``W a`` with respect to row-major ``vec(W)``."""
    return torch.kron(torch.eye(n_out, dtype=F64), a_n[None, :])


# --------------------------------------------------------------------------- curvature
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("likelihood", "n_out"), CASES, ids=CASE_IDS)
def test_full_block_equals_dense_ggn(likelihood, n_out, bias):
    a, _, f, y, H, loss = _reference(likelihood, n_out, bias)
    acc = _accumulate("full", likelihood, a, f, y, len(a))
    assert isinstance(acc.block, FullBlock)
    torch.testing.assert_close(_dense_block(acc.block), H, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(acc.loss, loss, rtol=1e-12, atol=1e-12)
    assert acc.n_rows == len(a)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("likelihood", "n_out"), CASES, ids=CASE_IDS)
def test_diag_block_equals_dense_ggn_diagonal(likelihood, n_out, bias):
    a, W, f, y, H, _ = _reference(likelihood, n_out, bias)
    block = _accumulate("diag", likelihood, a, f, y, len(a)).block
    assert block.shape == tuple(W.shape)
    torch.testing.assert_close(block.h.reshape(-1), torch.diagonal(H), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("likelihood", "n_out"), CASES, ids=CASE_IDS)
def test_kron_block_exact_for_a_single_row(likelihood, n_out, bias):
    # One row: A = a a^T and B = Lambda, so B (x) A = Lambda (x) a a^T is the GGN itself.
    a, _, f, y, H, _ = _reference(likelihood, n_out, bias, n_rows=1)
    block = _accumulate("kron", likelihood, a, f, y, 1).block
    torch.testing.assert_close(_dense_block(block), H, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("n_out", [1, 3])
def test_kron_block_exact_for_regression(n_out, bias):
    # Lambda_n = I for every row, so B = N I and B (x) A = I (x) sum_n a_n a_n^T = H.
    a, W, f, y = _problem("regression", n_out, bias, n_rows=20)
    H, _ = _dense_ggn("regression", a, W, y)
    block = _accumulate("kron", "regression", a, f, y, 7).block
    torch.testing.assert_close(_dense_block(block), H, rtol=1e-10, atol=1e-12)


def test_kron_block_is_an_approximation_for_multirow_classification():
    # With Lambda_n varying over rows, (sum Lambda)(x)(mean a a^T) != sum Lambda (x) a a^T:
    # the test would fail if the accumulator silently computed the exact GGN.
    a, _, f, y, H, _ = _reference("classification", 3, True)
    K = _dense_block(_accumulate("kron", "classification", a, f, y, len(a)).block)
    rel = torch.linalg.matrix_norm(K - H) / torch.linalg.matrix_norm(H)
    assert rel > 0.05


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("likelihood", "n_out"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("structure", STRUCTURES)
def test_curvature_does_not_depend_on_batch_size(structure, likelihood, n_out, bias):
    a, _, f, y = _problem(likelihood, n_out, bias, n_rows=10)
    accs = [_accumulate(structure, likelihood, a, f, y, bs) for bs in (1, 3, len(a))]
    reference = _dense_block(accs[-1].block)
    for acc in accs[:-1]:
        assert acc.n_rows == len(a)
        torch.testing.assert_close(_dense_block(acc.block), reference, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(acc.loss, accs[-1].loss, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("transposed", [False, True], ids=["contiguous", "strided"])
def test_gram_equals_the_float64_product_and_is_symmetric(dtype, transposed):
    """``gram`` (numpy's syrk on the CPU, torch.mm otherwise) is ``x^T x`` in float64."""
    x = torch.randn(40, 7, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = x.T.contiguous().T if transposed else x
    x = x.to(dtype)
    with blas_threads_like_torch():
        G = gram(x)
    assert G.dtype == F64
    reference = x.to(F64).T @ x.to(F64)
    tol = {torch.float16: 5e-2, torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(G, reference, rtol=tol, atol=tol)
    torch.testing.assert_close(G, G.T, rtol=0, atol=0)


def test_blas_threads_follow_torch_inside_a_pass():
    from threadpoolctl import threadpool_info, threadpool_limits

    before = {
        d["filepath"]: d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"
    }
    if not before:
        pytest.skip("numpy links no BLAS that threadpoolctl can see")
    with blas_threads_like_torch():
        inside = {
            d["filepath"]: d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"
        }
    after = {d["filepath"]: d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"}
    limit = min(torch.get_num_threads(), *before.values())
    assert inside == dict.fromkeys(before, limit)
    assert after == before
    # a lower limit set by the user is kept, never raised to torch's
    n_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with threadpool_limits(limits=1, user_api="blas"), blas_threads_like_torch():
            inside = [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]
        assert inside == [1] * len(before)
    finally:
        torch.set_num_threads(n_threads)


# --------------------------------------------------------------------------- posterior
TAU = torch.tensor(0.7, dtype=F64)
SCALE = torch.tensor(1.3, dtype=F64)


def _posterior_case(structure, seed=0):
    """A 3-class head with bias, its block, dense precision ``P`` and new features."""
    a, W, f, y = _problem("classification", 3, True, n_rows=12, seed=seed)
    block = _accumulate(structure, "classification", a, f, y, len(a)).block
    P = SCALE * _dense_block(block) + TAU * torch.eye(W.numel(), dtype=F64)
    g = torch.Generator().manual_seed(seed + 100)
    a_new = 2 * torch.randn(5, 3, generator=g, dtype=F64)
    a_new = torch.cat([a_new, torch.ones(5, 1, dtype=F64)], dim=1)
    return block, W, P, a_new


@pytest.mark.parametrize("structure", STRUCTURES)
def test_output_cov_equals_dense_glm_covariance(structure):
    block, _, P, a_new = _posterior_case(structure)
    sigma = torch.linalg.inv(P)
    expected = torch.stack([_jacobian(a_n, 3) @ sigma @ _jacobian(a_n, 3).T for a_n in a_new])
    got = block.output_cov(a_new, TAU, SCALE)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_kron_output_cov_for_many_outputs_takes_the_einsum_and_agrees(monkeypatch):
    """Past ``CHUNK_ELEMENTS`` the products of Q_B's columns are not formed: same result."""
    block, _, _, a_new = _posterior_case("kron")
    fast = block.output_cov(a_new, TAU, SCALE)
    monkeypatch.setattr(posterior_linalg, "CHUNK_ELEMENTS", 1)
    torch.testing.assert_close(block.output_cov(a_new, TAU, SCALE), fast, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_row_cov_equals_dense_cross_row_covariance(structure):
    block, W, P, a_new = _posterior_case(structure)
    sigma = torch.linalg.inv(P)
    n_out = W.shape[0]
    expected = torch.empty(len(a_new), len(a_new), n_out, dtype=F64)
    for k in range(n_out):
        # row k of J_n for every n: the gradient of output k at each new row
        Jk = torch.stack([_jacobian(a_n, n_out)[k] for a_n in a_new])
        expected[:, :, k] = Jk @ sigma @ Jk.T
    got = block.row_cov(a_new, TAU, SCALE)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # the diagonal of the cross-row covariance is the per-row output variance
    torch.testing.assert_close(
        torch.diagonal(got, dim1=0, dim2=1).T,
        torch.diagonal(block.output_cov(a_new, TAU, SCALE), dim1=1, dim2=2),
    )


@pytest.mark.parametrize("structure", STRUCTURES)
def test_log_det_ratio_equals_slogdet(structure):
    block, W, P, _ = _posterior_case(structure)
    post = Posterior([block], [W], ["head"])
    sign, logdet = torch.linalg.slogdet(P)
    assert sign > 0
    expected = logdet - W.numel() * torch.log(TAU)
    torch.testing.assert_close(post.log_det_ratio(TAU.reshape(1), SCALE), expected)


def test_two_block_posterior_log_det_and_prior_quadratic():
    # Block-diagonal P = diag(P_1, P_2) with a different prior precision per block.
    b1, W1, _, _ = _posterior_case("kron", seed=1)
    b2, W2, _, _ = _posterior_case("diag", seed=2)
    tau = torch.tensor([0.3, 2.0], dtype=F64)
    post = Posterior([b1, b2], [W1, W2], ["a", "b"])
    P = torch.block_diag(
        SCALE * _dense_block(b1) + tau[0] * torch.eye(W1.numel(), dtype=F64),
        SCALE * _dense_block(b2) + tau[1] * torch.eye(W2.numel(), dtype=F64),
    )
    P0 = torch.diag(torch.cat([tau[0].expand(W1.numel()), tau[1].expand(W2.numel())]))
    expected = torch.linalg.slogdet(P)[1] - torch.linalg.slogdet(P0)[1]
    torch.testing.assert_close(post.log_det_ratio(tau, SCALE), expected)
    theta = torch.cat([W1.reshape(-1), W2.reshape(-1)])
    torch.testing.assert_close(post.prior_quadratic(tau), theta @ P0 @ theta)
    assert post.n_params == W1.numel() + W2.numel()


@pytest.mark.parametrize("structure", STRUCTURES)
def test_samples_have_the_posterior_covariance(structure):
    block, W, P, _ = _posterior_case(structure)
    post = Posterior([block], [W], ["head"])
    n = 20_000
    (draws,) = post.sample(n, TAU.reshape(1), SCALE, torch.Generator().manual_seed(0))
    assert draws.shape == (n, *W.shape)
    S = torch.linalg.inv(P)
    dev = (draws - W).reshape(n, -1)
    # Second moment about the known mean: for Gaussian draws, entry (i, j) of
    # dev^T dev / n has mean S_ij and variance (S_ii S_jj + S_ij^2) / n (Isserlis).
    emp = dev.T @ dev / n
    se = torch.sqrt((torch.outer(S.diagonal(), S.diagonal()) + S**2) / n)
    assert torch.all((emp - S).abs() <= 5 * se), float(((emp - S).abs() / se).max())
    # The sample mean has standard error sqrt(S_ii / n).
    assert torch.all(dev.mean(0).abs() <= 5 * torch.sqrt(S.diagonal() / n))
    # the test has power: the off-diagonal structure is far above the noise level
    if structure != "diag":
        off = S - torch.diag(S.diagonal())
        assert (off.abs() / se).max() > 20


@pytest.mark.parametrize("structure", STRUCTURES)
def test_sampling_is_reproducible_with_a_seeded_generator(structure):
    block, W, _, _ = _posterior_case(structure)
    post = Posterior([block], [W], ["head"])
    tau = TAU.reshape(1)
    (d1,) = post.sample(4, tau, SCALE, torch.Generator().manual_seed(3))
    (d2,) = post.sample(4, tau, SCALE, torch.Generator().manual_seed(3))
    (d3,) = post.sample(4, tau, SCALE, torch.Generator().manual_seed(4))
    assert torch.equal(d1, d2)
    assert not torch.equal(d1, d3)


# --------------------------------------------------------------------------- evidence
def _evidence_case(likelihood, structure):
    n_out = {"classification": 3, "binary": 1, "regression": 2}[likelihood]
    a, W, f, y, H_ggn, loss = _reference(likelihood, n_out, True, n_rows=15, seed=5)
    acc = _accumulate(structure, likelihood, a, f, y, 4)
    # "full" is compared with the torch.func GGN; the others with the curvature they
    # represent (checked against the GGN above).
    H = H_ggn if structure == "full" else _dense_block(acc.block)
    post = Posterior([acc.block], [W], ["head"])
    return post, W, H, loss, acc, len(a), n_out


def _log_evidence(post, loss, n, n_out, likelihood, tau, sigma, temperature):
    """The Laplace log evidence as the estimators compose it: the likelihood's data term
    and the posterior's ``log_evidence`` at the curvature scale ``1 / (sigma^2 T)``."""
    lik = LIKELIHOODS[likelihood]
    data = lik.data_log_likelihood(loss, n, n_out, sigma, temperature)
    scale = torch.as_tensor(1.0 / (lik.noise_variance(sigma) * temperature), dtype=F64)
    return post.log_evidence(data, tau, scale)


def _dense_evidence(likelihood, H, W, loss, n, n_out, tau, sigma, temperature):
    """The evidence of the user guide, term by term, with an explicit slogdet."""
    p = W.numel()
    s2 = sigma**2 if likelihood == "regression" else torch.ones((), dtype=F64)
    P = H / (s2 * temperature) + tau * torch.eye(p, dtype=F64)
    if likelihood == "regression":
        log_lik = -loss / (s2 * temperature) - n * n_out * torch.log(
            sigma * math.sqrt(2 * math.pi)
        )
    else:
        log_lik = -loss / temperature
    log_det_p0 = p * torch.log(tau)
    quad = tau * (W**2).sum()
    return log_lik - 0.5 * (torch.linalg.slogdet(P)[1] - log_det_p0 + quad)


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("likelihood", ["classification", "binary", "regression"])
def test_log_marginal_likelihood_equals_dense_formula(likelihood, structure):
    post, W, H, loss, acc, n, n_out = _evidence_case(likelihood, structure)
    torch.testing.assert_close(acc.loss, loss)
    tau = torch.tensor(0.9, dtype=F64)
    sigma = torch.tensor(0.6, dtype=F64)
    temperature = 1.7
    got = _log_evidence(post, acc.loss, n, n_out, likelihood, tau.reshape(1), sigma, temperature)
    expected = _dense_evidence(likelihood, H, W, loss, n, n_out, tau, sigma, temperature)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("likelihood", ["classification", "regression"])
def test_log_marginal_likelihood_gradient_matches_finite_differences(likelihood, structure):
    post, _, _, _, acc, n, n_out = _evidence_case(likelihood, structure)

    def evidence(log_tau, log_sigma):
        return _log_evidence(
            post, acc.loss, n, n_out, likelihood, log_tau.exp().reshape(1), log_sigma.exp(), 1.3
        )

    x = torch.tensor([math.log(0.8), math.log(0.7)], dtype=F64, requires_grad=True)
    grads = torch.autograd.grad(evidence(x[0], x[1]), x)[0]
    h = 1e-5
    fd = torch.empty(2, dtype=F64)
    with torch.no_grad():
        for i in range(2):
            e = torch.zeros(2, dtype=F64)
            e[i] = h
            xp, xm = x + e, x - e
            fd[i] = (evidence(xp[0], xp[1]) - evidence(xm[0], xm[1])) / (2 * h)
    # central differences: truncation O(h^2 f''') ~ 1e-10, round-off ~ eps |f| / h ~ 1e-9
    torch.testing.assert_close(grads, fd, rtol=1e-6, atol=1e-7)
    if likelihood != "regression":
        assert grads[1] == 0


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("likelihood", ["classification", "regression"])
def test_maximize_evidence_finds_the_grid_maximum(likelihood, structure):
    post, W, H, loss, acc, n, n_out = _evidence_case(likelihood, structure)
    temperature = 1.0

    def evidence(tau, sigma):
        return _log_evidence(post, acc.loss, n, n_out, likelihood, tau, sigma, temperature)

    tune_sigma = likelihood == "regression"
    tau_hat, sigma_hat = maximize_evidence(
        evidence, np.array([1.0]), 1.0, tune_prior=True, tune_sigma=tune_sigma
    )
    # Brute force on a grid, evaluated in numpy from the eigenvalues of the dense curvature.
    lam = np.linalg.eigvalsh(H.numpy()).clip(0)
    p, sse2, sq = W.numel(), float(loss), float((W**2).sum())
    log_tau = np.linspace(-6, 6, 241)  # step 0.05
    log_sigma = np.linspace(-3, 2, 201) if tune_sigma else np.zeros(1)  # step 0.025
    lt, ls = np.meshgrid(log_tau, log_sigma, indexing="ij")
    tau, sigma = np.exp(lt)[..., None], np.exp(ls)[..., None]
    if tune_sigma:
        s2 = sigma[..., 0] ** 2
        log_lik = -sse2 / s2 - n * n_out * np.log(sigma[..., 0] * np.sqrt(2 * np.pi))
    else:
        s2, log_lik = np.ones_like(lt), -sse2 * np.ones_like(lt)
    log_det = np.log(lam / s2[..., None] + tau).sum(-1) - p * np.log(tau[..., 0])
    grid = log_lik - 0.5 * (log_det + tau[..., 0] * sq)
    i, j = np.unravel_index(np.argmax(grid), grid.shape)
    assert 0 < i < len(log_tau) - 1  # interior maximum: the grid brackets it
    assert abs(np.log(tau_hat[0]) - log_tau[i]) <= log_tau[1] - log_tau[0]
    if tune_sigma:
        assert 0 < j < len(log_sigma) - 1
        assert abs(np.log(sigma_hat) - log_sigma[j]) <= log_sigma[1] - log_sigma[0]
    else:
        assert sigma_hat == 1.0
    at_opt = float(evidence(torch.tensor(tau_hat), torch.tensor(sigma_hat, dtype=F64)))
    assert at_opt >= grid.max() - 1e-8


# --------------------------------------------------------------------------- predictive
def _probit_probabilities(likelihood, mean, var):
    """The probit predictive probabilities: the link of ``probit_logits``."""
    return torch.exp(LIKELIHOODS[likelihood].log_link(probit_logits(mean, var)))


def _mc_probabilities(likelihood, mean, cov, n_samples, generator):
    """The Monte Carlo predictive probabilities: ``exp`` of ``mc_log_link``."""
    log_link = LIKELIHOODS[likelihood].log_link
    return torch.exp(mc_log_link(log_link, mean, cov, n_samples, generator))


def test_probit_probabilities_formula():
    g = torch.Generator().manual_seed(0)
    f = 2 * torch.randn(6, 3, generator=g, dtype=F64)
    v = torch.rand(6, 3, generator=g, dtype=F64) * 5
    expected = torch.softmax(f / torch.sqrt(1 + math.pi / 8 * v), dim=1)
    torch.testing.assert_close(_probit_probabilities("classification", f, v), expected)
    torch.testing.assert_close(
        _probit_probabilities("classification", f, torch.zeros_like(v)), torch.softmax(f, 1)
    )
    p1 = torch.sigmoid(f[:, :1] / torch.sqrt(1 + math.pi / 8 * v[:, :1]))[:, 0]
    got = _probit_probabilities("binary", f[:, :1], v[:, :1])
    torch.testing.assert_close(got, torch.stack([1 - p1, p1], dim=1))
    # log_predict: probit by default; the head (a, b) maps f to a f + b (Var[f] by a^2)
    lik = LIKELIHOODS["classification"]
    torch.testing.assert_close(lik.log_predict(f, v), torch.log(expected))
    hot = torch.softmax(f / 2 / torch.sqrt(1 + math.pi / 8 * v / 4), dim=1)
    torch.testing.assert_close(lik.log_predict(f, v, head=(0.5, None)), torch.log(hot))
    b = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    shifted = torch.softmax((f / 2 + b) / torch.sqrt(1 + math.pi / 8 * v / 4), dim=1)
    torch.testing.assert_close(lik.log_predict(f, v, head=(0.5, b)), torch.log(shifted))
    got = LIKELIHOODS["binary"].log_predict(f[:, :1], v[:, :1])
    torch.testing.assert_close(got, torch.log(torch.stack([1 - p1, p1], dim=1)))


@pytest.mark.parametrize("var", [1e-3, 1e-2])
def test_probit_approaches_monte_carlo_for_small_variances(var):
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([[-2.0, 0.5, 1.0], [1.5, 1.4, -0.3], [0.0, 0.0, 2.0]], dtype=F64)
    v = var * (0.5 + torch.rand(mu.shape, generator=g, dtype=F64))  # in [0.5, 1.5] * var
    n = 200_000
    z = torch.randn((n, *mu.shape), generator=g, dtype=F64)
    p = torch.softmax(mu + v.sqrt() * z, dim=-1)
    mc, mc_se = p.mean(0), p.std(0) / math.sqrt(n)
    probit = _probit_probabilities("classification", mu, v)
    # Tolerance, for independent logits f_i ~ N(mu_i, v_i):
    #   E[p_k(f)] = p_k(mu) + 1/2 sum_i d2p_k/df_i2 v_i + O(v^2),
    #   p_k(kappa mu) = p_k(mu) + sum_i dp_k/df_i (kappa_i - 1) mu_i + O(v^2),
    # with |dp_k/df_i| <= 1/4, |d2p_k/df_i2| = |p_k(1-p_k)(1-2p_k)| or |p_k p_i (2p_i-1)|
    # <= 1/(6 sqrt 3) < 0.1, and |kappa_i - 1| <= pi v_i / 16. Both agree with p_k(mu) at
    # v = 0, so |probit - E| <= sum_i (0.05 + pi |mu_i| / 64) v_i + O(v^2). The O(v^2)
    # remainder is below 1% of the first-order bound for v <= 1e-2; allow 50% slack,
    # plus 5 Monte Carlo standard errors.
    first_order = ((0.05 + math.pi * mu.abs() / 64) * v).sum(1, keepdim=True)
    tol = 1.5 * first_order + 5 * mc_se
    assert torch.all((probit - mc).abs() <= tol), (probit - mc).abs() / tol
    # the bound is tight enough that a link using the std instead of the variance fails
    wrong = torch.softmax(mu / torch.sqrt(1 + math.pi / 8 * v.sqrt()), dim=1)
    assert torch.any((wrong - mc).abs() > tol)


def _gauss_expectation(func, mu, var):
    """``E[func(x)]`` for ``x ~ N(mu, var)`` by adaptive quadrature."""
    sd = math.sqrt(var)

    def integrand(x):
        return func(x) * math.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))

    val, err = integrate.quad(integrand, mu - 12 * sd, mu + 12 * sd, epsabs=1e-13, epsrel=1e-12)
    assert err < 1e-10
    return val


def _sigmoid(x):
    return 0.5 * (1 + math.tanh(0.5 * x))


def test_mc_probabilities_is_reproducible():
    mu = torch.tensor([[0.3, -1.0, 2.0]], dtype=F64)
    cov = torch.tensor([[[1.0, 0.3, 0.0], [0.3, 2.0, -0.5], [0.0, -0.5, 0.7]]], dtype=F64)
    p1 = _mc_probabilities("classification", mu, cov, 50, torch.Generator().manual_seed(7))
    p2 = _mc_probabilities("classification", mu, cov, 50, torch.Generator().manual_seed(7))
    p3 = _mc_probabilities("classification", mu, cov, 50, torch.Generator().manual_seed(8))
    assert torch.equal(p1, p2)
    assert not torch.equal(p1, p3)
    torch.testing.assert_close(p1.sum(1), torch.ones(1, dtype=F64))
    # the same draws serve every row: a row's estimate does not depend on the others
    # (150 draws: two full chunks and a partial one)
    two = torch.cat([mu, mu.flip(1)]), torch.cat([cov, cov.flip(1, 2)])
    both = _mc_probabilities("classification", *two, 150, torch.Generator().manual_seed(7))
    alone = _mc_probabilities("classification", mu, cov, 150, torch.Generator().manual_seed(7))
    torch.testing.assert_close(both[:1], alone, rtol=1e-13, atol=1e-15)


def test_mc_probabilities_binary_converges_to_quadrature():
    mu = [-2.0, -0.5, 0.0, 1.0, 3.0]
    var = [0.5, 2.0, 1.0, 4.0, 0.1]
    n = 100_000
    f_mean = torch.tensor(mu, dtype=F64)[:, None]
    f_cov = torch.tensor(var, dtype=F64)[:, None, None]
    got = _mc_probabilities("binary", f_mean, f_cov, n, torch.Generator().manual_seed(0))
    assert got.shape == (5, 2)
    torch.testing.assert_close(got.sum(1), torch.ones(5, dtype=F64))
    for row, (m, v) in enumerate(zip(mu, var, strict=True)):
        mean = _gauss_expectation(_sigmoid, m, v)
        second = _gauss_expectation(lambda x: _sigmoid(x) ** 2, m, v)
        se = math.sqrt((second - mean**2) / n)  # exact std of sigmoid(f), over sqrt(n)
        assert abs(float(got[row, 1]) - mean) <= 5 * se


def test_mc_probabilities_softmax_along_a_rank_one_covariance():
    # f = mu + s u with s ~ N(0, v) and a unit u that is not a coordinate axis: E[softmax]
    # is a 1-D integral over s. Checks that draws follow the eigenvectors of the covariance.
    mu = torch.tensor([0.5, -0.2, 1.0], dtype=F64)
    u = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    u = u / u.norm()
    v, n = 1.5, 100_000
    cov = (v * torch.outer(u, u))[None]
    got = _mc_probabilities("classification", mu[None], cov, n, torch.Generator().manual_seed(0))
    for k in range(3):

        def p_k(s, k=k):
            return float(torch.softmax(mu + s * u, 0)[k])

        mean = _gauss_expectation(p_k, 0.0, v)
        second = _gauss_expectation(lambda s, p_k=p_k: p_k(s) ** 2, 0.0, v)
        se = math.sqrt((second - mean**2) / n)
        assert abs(float(got[0, k]) - mean) <= 5 * se
    # A covariance along (1, 1, 1) only shifts all logits equally: softmax is invariant.
    # Round-off leaves the two null eigenvalues at ~eps * 4, i.e. logit noise of
    # sqrt(4 eps) * |z| ~ 1e-7 at most, moving probabilities by a quarter of that.
    ones = torch.ones(3, dtype=F64) / math.sqrt(3)
    shift = (4.0 * torch.outer(ones, ones))[None]
    got = _mc_probabilities("classification", mu[None], shift, 50, torch.Generator())
    torch.testing.assert_close(got, torch.softmax(mu, 0)[None], rtol=0, atol=1e-7)


@pytest.mark.parametrize("structure", ["kron", "diag"])
def test_mc_draws_from_the_output_root_have_the_closed_form_moments(structure):
    """The draws ``mean + basis (scale * z)`` that ``mc_log_link`` makes from a block's
    ``projected_root`` have the GLM covariance (checked against the dense inverse in
    test_output_cov_equals_dense_glm_covariance) and the mean, within Monte Carlo error."""
    block, _, _, a_new = _posterior_case(structure)
    p = block.project(a_new)
    scale, basis = block.projected_root(p, TAU, SCALE)
    cov = block.projected_moments(p, TAU, SCALE, cov=True)
    mean = torch.randn(len(a_new), 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    n = 20_000
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    draws = mean + predictive_module._deviations(scale, basis, 0, len(a_new), z)  # (n, m, c)
    for row in range(len(a_new)):
        S, dev = cov[row], draws[:, row] - mean[row]
        emp = dev.T @ dev / n  # second moment about the known mean; Isserlis as above
        se = torch.sqrt((torch.outer(S.diagonal(), S.diagonal()) + S**2) / n)
        assert torch.all((emp - S).abs() <= 5 * se), float(((emp - S).abs() / se).max())
        assert torch.all(dev.mean(0).abs() <= 5 * torch.sqrt(S.diagonal() / n))
        if structure == "kron":  # the test has power: the outputs are correlated
            assert ((S - torch.diag(S.diagonal())).abs() / se).max() > 20


def test_mc_from_a_root_agrees_with_mc_from_the_covariance_and_decomposes_nothing(monkeypatch):
    """The same expectation as decomposing each row's covariance (other draws: within Monte
    Carlo error), and no eigendecomposition per row."""
    block, _, _, a_new = _posterior_case("kron")
    p = block.project(a_new)
    mean = torch.randn(len(a_new), 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    cov = block.projected_moments(p, TAU, SCALE, cov=True)
    n = 40_000
    dense = _mc_probabilities("classification", mean, cov, n, torch.Generator().manual_seed(0))

    def no_eigh(*args, **kwargs):
        raise AssertionError("decomposed a covariance")

    monkeypatch.setattr(predictive_module.torch.linalg, "eigh", no_eigh)
    root = OutputRoot(*block.projected_root(p, TAU, SCALE))
    got = _mc_probabilities("classification", mean, root, n, torch.Generator().manual_seed(5))
    # each estimate is a mean of n softmax values in [0, 1]: standard error <= 0.5 / sqrt(n)
    assert torch.all((got - dense).abs() <= 5 * math.sqrt(2) * 0.5 / math.sqrt(n))
    torch.testing.assert_close(got.sum(1), torch.ones(len(a_new), dtype=F64))
    # a logit temperature divides the covariance: the root's scale by its square root
    torch.testing.assert_close((root / 4.0).scale, root.scale / 2)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_lam_min_is_the_smallest_curvature_eigenvalue_even_if_negative(structure):
    """``check_numerics`` reads ``lam_min``: it must be the smallest eigenvalue of the
    curvature, also when round-off left one below zero (for Kronecker blocks the smallest
    product ``b_i a_j``, which a negative factor eigenvalue puts at the other's maximum)."""
    block, *_ = _posterior_case(structure)
    zero, one = torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64)
    assert block.lam_min == pytest.approx(float(block.eigenvalues(zero, one).min()), abs=0)
    if structure == "kron":
        block.lam_B = block.lam_B.clone()
        block.lam_B[0] = -1e-9
    elif structure == "diag":
        block.h = block.h.clone()
        block.h[0, 0] = -1e-9
    else:
        block.lam = block.lam.clone()
        block.lam[0] = -1e-9
    expected = float(block.eigenvalues(zero, one).min())
    assert expected < 0 and block.lam_min == pytest.approx(expected, rel=1e-12)
