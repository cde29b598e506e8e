"""Kronecker and full blocks on singular curvature, against a dense exact reference.

A duplicated hidden unit, or one-hot columns that sum to the bias column, make a layer's
input factor ``A`` exactly singular: along its null space the posterior precision is the
prior alone, so the predictive variance there is ``|a_null|^2 / tau`` however small
``tau`` is, and rows without a null component must not pick one up from round-off (in
float32, ``|a| eps32`` squared over ``tau`` swamps the true variance at small priors).

The reference forms ``P = scale * B (x) A + tau I`` from the rows themselves and inverts
it explicitly in 50-digit arithmetic (``mpmath``): in float64 an explicit inverse of a
matrix of condition number 1e15 or more is itself wrong in every digit, so it cannot judge
the library at the priors that matter here (the tuning grid reaches 1e-4; 1e-8 and 1e-12
are below it).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import torch
from skorch import NeuralNet
from torch import nn
from torch.func import jacrev

from sklaplace._runtime.passes import NetView
from sklaplace.approximations import LayerWise
from sklaplace.approximations.curvature import Accumulator
from sklaplace.approximations.layers import LinearLayer
from sklaplace.likelihoods import Binary, Regression

F64 = torch.float64
EPS = torch.finfo(F64).eps
PRIORS = [1e-4, 1e-8, 1e-12]
mpmath.mp.dps = 50


# ------------------------------------------------------------------ exact reference
def _mp(x) -> mpmath.matrix:
    return mpmath.matrix(np.asarray(x, dtype=np.float64).tolist())


def _mp_kron(B, A) -> mpmath.matrix:
    out = mpmath.matrix(B.rows * A.rows, B.cols * A.cols)
    for i in range(B.rows):
        for j in range(B.cols):
            for k in range(A.rows):
                for m in range(A.cols):
                    out[i * A.rows + k, j * A.cols + m] = B[i, j] * A[k, m]
    return out


def _mp_gram(rows, weight=1.0) -> mpmath.matrix:
    """``weight * sum_n r_n r_n^T`` summed exactly (the entries of ``rows`` are floats)."""
    r = _mp(rows)
    return (r.T * r) * mpmath.mpf(weight)


def _reference_variances(A, B, scale, tau, jac_rows):
    """``J_k (scale B (x) A + tau I)^-1 J_k^T`` for Jacobian rows ``jac_rows`` (m, c, D),
    as float64 (m, c): every product and the inverse in 50 digits."""
    P = _mp_kron(B, A) * mpmath.mpf(scale)
    for i in range(P.rows):
        P[i, i] += mpmath.mpf(tau)
    S = mpmath.inverse(P)
    m, c, _ = jac_rows.shape
    out = np.empty((m, c))
    for n in range(m):
        for k in range(c):
            j = _mp(jac_rows[n, k][None])
            out[n, k] = float((j * S * j.T)[0, 0])
    return torch.tensor(out, dtype=F64)


def _head_jacobian(a, c):
    """``J = I (x) a^T`` per row: (m, c, c * d) over the row-major weight matrix."""
    eye = torch.eye(c, dtype=F64)
    return torch.stack([torch.kron(eye, row[None]) for row in a.to(F64)])


# -------------------------------------------------------------------------- features
def _features(kind, m, seed, dtype=torch.float32):
    """Head inputs with an exact linear dependence, bias column last.

    ``"duplicate"``: tanh units, the first one repeated; ``"onehot"``: a one-hot column
    triple (summing to the bias column) beside two continuous ones. Scaled so that the
    curvature is large (features of order 10): the float32 round-off of a projection then
    matters at the priors tested.
    """
    g = torch.Generator().manual_seed(seed)
    if kind == "duplicate":
        h = 10 * torch.tanh(torch.randn(m, 5, generator=g, dtype=F64))
        a = torch.cat([h, h[:, :1]], dim=1)
    else:
        hot = nn.functional.one_hot(torch.randint(0, 3, (m,), generator=g), 3).to(F64)
        a = torch.cat([hot, 10 * torch.randn(m, 2, generator=g, dtype=F64)], dim=1)
    a = torch.cat([a, torch.ones(m, 1, dtype=F64)], dim=1)
    return a.to(dtype)


def _off_range(a, kind):
    """The same rows moved off the span of the training rows (a null-space component)."""
    out = a.to(F64).clone()
    out[:, 0] += 3.0  # breaks the duplicate (column 5 copies 0) and the one-hot sum
    return out


def _head_block(structure, likelihood, a, f):
    """The last layer's block, as ``LastLayer`` forms it (``Accumulator.update_head``)."""
    module = nn.Linear(a.shape[1], f.shape[1], bias=False, dtype=F64)
    acc = Accumulator(LinearLayer("head", module), structure)
    acc.update_head(a, f, likelihood)
    return acc.block()


def _glm_variances(block, a, tau, scale):
    t, s = torch.tensor(tau, dtype=F64), torch.tensor(scale, dtype=F64)
    var = block.projected_moments(block.project(a), t, s, cov=False)
    cov = block.projected_moments(block.project(a), t, s, cov=True)
    # the variances of a float32 net are sums of positive terms in float32 (see
    # _positive_sums_tolerance), the covariances float64 throughout
    n_terms = a.shape[1] + var.shape[1] + 2
    rtol = 1e-12 if a.dtype == F64 else 10 * n_terms * torch.finfo(torch.float32).eps
    torch.testing.assert_close(cov.diagonal(dim1=1, dim2=2), var, rtol=rtol, atol=0)
    return var


def _tolerance(A, B, scale, tau):
    """Relative error the float64 eigendecompositions allow on these variances.

    Their backward error is ``n eps ||.||`` per factor; on the span of the curvature it moves
    a variance by ``n eps`` times the condition number ``kappa`` of the precision there,
    and it tilts the eigenbasis by ``n eps kappa_A`` towards the null space, adding
    ``(n eps kappa_A)^2 L_max / tau`` of the variance through ``1 / tau``. Ten times the sum.
    """
    lam_a = np.linalg.eigvalsh(np.asarray(A.tolist(), dtype=np.float64))
    lam_b = np.linalg.eigvalsh(np.asarray(B.tolist(), dtype=np.float64))
    n = len(lam_a) * len(lam_b)
    a_range = lam_a[lam_a > len(lam_a) * EPS * lam_a.max()]
    l_max = scale * lam_b.max() * lam_a.max() + tau
    l_min = scale * lam_b.min() * a_range.min() + tau
    kappa_a = lam_a.max() / a_range.min()
    return 10 * (n * EPS * l_max / l_min + (n * EPS * kappa_a) ** 2 * l_max / tau)


def _positive_sums_tolerance(A, B, dtype):
    """The last-layer Kronecker block's variances of a float32 net: ``u^2`` is rounded to
    float32 once and ``v = u^2 / L`` and ``Var = Q_B^2 v`` are sums of ``n_in`` and
    ``n_out`` positive terms in float32, each accurate to ``n eps32`` relative to itself
    (no cancellation, so the conditioning does not enter). Ten times the sum."""
    if dtype != torch.float32:
        return 0.0
    return 10 * (A.rows + B.rows + 2) * torch.finfo(torch.float32).eps


# ---------------------------------------------------------------------- last layer
@pytest.mark.parametrize("kind", ["duplicate", "onehot"])
@pytest.mark.parametrize("structure", ["kron", "full"])
@pytest.mark.parametrize("tau", PRIORS)
def test_last_layer_on_a_singular_input_factor_matches_the_exact_inverse(kind, structure, tau):
    """Regression (``B = N I``, scale 1 / 0.05^2): float32 features as a float32 net gives
    them, rows inside and outside the span of the training rows."""
    a = _features(kind, 200, seed=0)
    c, scale = 2, 400.0
    f = torch.zeros(len(a), c, dtype=F64)
    block = _head_block(structure, Regression(), a, f)
    A = _mp_gram(a, 1.0 / len(a))
    B = mpmath.eye(c) * len(a)
    if structure == "full":  # H = B (x) A exactly: B = N I, A = the mean outer product
        A, B = _mp_gram(a), mpmath.eye(c)
    rtol = _tolerance(A, B, scale, tau)
    assert rtol < 1e-3  # far below the errors of a float32 projection or a round-off floor
    if structure == "kron":
        rtol += _positive_sums_tolerance(A, B, a.dtype)
    inside = _features(kind, 6, seed=1)
    expected = _reference_variances(A, B, scale, tau, _head_jacobian(inside, c))
    torch.testing.assert_close(
        _glm_variances(block, inside, tau, scale), expected, rtol=rtol, atol=0
    )
    outside = _off_range(inside, kind)
    expected = _reference_variances(A, B, scale, tau, _head_jacobian(outside, c))
    torch.testing.assert_close(
        _glm_variances(block, outside, tau, scale), expected, rtol=rtol, atol=0
    )


@pytest.mark.parametrize("tau", PRIORS)
def test_last_layer_kron_binary_on_a_singular_input_factor(tau):
    """A sigmoid head: ``B = sum_n p_n (1 - p_n)`` (one output), the same singular ``A``."""
    a = _features("duplicate", 200, seed=0)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(1, a.shape[1], generator=g, dtype=F64) / 10
    f = a.to(F64) @ w.T
    block = _head_block("kron", Binary(), a, f)
    p = torch.sigmoid(f)
    A = _mp_gram(a, 1.0 / len(a))
    B = mpmath.matrix([[float((p * (1 - p)).sum())]])
    rtol = _tolerance(A, B, 1.0, tau) + _positive_sums_tolerance(A, B, a.dtype)
    for rows in (_features("duplicate", 6, seed=1), _off_range(_features("duplicate", 6, 1), "")):
        expected = _reference_variances(A, B, 1.0, tau, _head_jacobian(rows, 1))
        torch.testing.assert_close(
            _glm_variances(block, rows, tau, 1.0), expected, rtol=rtol, atol=0
        )


# ---------------------------------------------------------------------- all layers
class _OneHotNet(nn.Module):
    """One-hot (3 columns) and 2 continuous inputs -> Linear(5, 4) -> tanh -> the first
    unit duplicated -> Linear(5, 2): both layers' input factors are singular (the
    one-hot columns sum to the absorbed bias column; the duplicated unit)."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(5, 4)
        self.out = nn.Linear(5, 2)

    def forward(self, X):
        h = torch.tanh(self.first(X))
        return self.out(torch.cat([h, h[:, :1]], dim=1))


def _onehot_inputs(m, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    hot = nn.functional.one_hot(torch.randint(0, 3, (m,), generator=g), 3).to(F64)
    return torch.cat([hot, torch.randn(m, 2, generator=g, dtype=F64)], dim=1).to(dtype)


def _per_row_factors(net, X):
    """Per row, float64: each layer's absorbed input ``a_l`` and ``G_l = df / dz_l``
    (c, n_out_l), from the net's own weights (``torch.func``)."""
    W1 = net.first.weight.detach().to(F64)
    b1 = net.first.bias.detach().to(F64)
    W2 = net.out.weight.detach().to(F64)
    b2 = net.out.bias.detach().to(F64)
    ones = torch.ones(len(X), 1, dtype=F64)
    x = X.to(F64)

    def from_z1(z1):
        h = torch.tanh(z1)
        return W2 @ torch.cat([h, h[:1]]) + b2

    z1 = x @ W1.T + b1
    h = torch.tanh(z1)
    a1 = torch.cat([x, ones], dim=1)
    a2 = torch.cat([h, h[:, :1], ones], dim=1)
    G1 = torch.stack([jacrev(from_z1)(z) for z in z1])  # (m, c, 4)
    G2 = torch.eye(2, dtype=F64).expand(len(X), 2, 2)  # df / df
    return [(a1, G1), (a2, G2)]


def _float32_tolerance(A, B):
    """Relative error a float32 net allows against the float64 reference.

    Its activations and backpropagated vectors carry a relative ``eps32`` each: the
    Jacobians move the variance by ``2 eps32``, ``B`` and ``A`` (on its span) by ``eps32``
    times their condition numbers. Its input factor is formed in float64 from the float32
    activations, so its null space stays exact and the float64 bound of ``_tolerance``
    covers the rest. Ten times the sum.
    """
    eps32 = float(torch.finfo(torch.float32).eps)
    lam_a = np.linalg.eigvalsh(np.asarray(A.tolist(), dtype=np.float64))
    lam_b = np.linalg.eigvalsh(np.asarray(B.tolist(), dtype=np.float64))
    a_range = lam_a[lam_a > len(lam_a) * EPS * lam_a.max()]
    return 10 * eps32 * (2 + lam_a.max() / a_range.min() + lam_b.max() / lam_b.min())


def _all_layer_case(tau, dtype, hyper):
    """``LayerWise`` kron on ``_OneHotNet``: its variances on rows inside and outside the
    training span, the exact ones, and the tolerance. ``hyper``: projected at the
    hyper-parameters (as predictions project, free to choose float32 where it is safe)."""
    torch.manual_seed(0)
    net = _OneHotNet().to(dtype).eval()
    X = _onehot_inputs(150, seed=0, dtype=dtype)
    y = torch.randn(150, 2, dtype=dtype)
    view = NetView(NeuralNet(net, criterion=nn.MSELoss, train_split=None).initialize(), 64)
    approx = LayerWise("kron").fit(view, "out", Regression(), X, y)
    scale = torch.tensor(400.0, dtype=F64)
    taus = torch.full((2,), tau, dtype=F64)
    factors = []
    for a, G in _per_row_factors(net, X):
        factors.append((_mp_gram(a, 1.0 / len(a)), _mp_gram(G.reshape(-1, G.shape[-1]))))
    rtol = max(_tolerance(A, B, float(scale), tau) for A, B in factors)
    if dtype == torch.float32:
        rtol += max(_float32_tolerance(A, B) for A, B in factors)
    assert rtol < 1e-3
    inside = _onehot_inputs(5, seed=1, dtype=dtype)
    outside = inside.clone()
    outside[:, :3] = 0.5  # one-hot columns that do not sum to the bias column
    out = []
    for rows in (inside, outside):
        at = (taus, scale) if hyper else ()
        var = torch.cat(
            [approx.moments(p, taus, scale, False) for p in approx.project(view, rows, *at)]
        )
        expected = 0
        for (A, B), (a, G) in zip(factors, _per_row_factors(net, rows), strict=True):
            # row-major vec(W): d f_k / d W[o, i] = G[k, o] a[i]
            jac = torch.einsum("nko,ni->nkoi", G, a).reshape(len(a), G.shape[1], -1)
            expected = expected + _reference_variances(A, B, float(scale), tau, jac)
        out.append((var, expected))
    return out, rtol


@pytest.mark.parametrize("hyper", [False, True], ids=["free", "at_hyper"])
@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("tau", PRIORS)
def test_all_layer_kron_on_singular_input_factors_matches_the_exact_inverse(tau, dtype, hyper):
    """``LayerWise`` kron, regression (``Lambda = I``): ``A_l = mean a a^T`` and
    ``B_l = sum_n G_n^T G_n`` per layer, rows inside and outside the training span. A
    float32 net's reference is its own weights in float64. Projected at the
    hyper-parameters, a float32 net's rows must still be rotated in float64 here: the
    factors are singular and the priors small (``KronBlock.rotation_dtype``)."""
    cases, rtol = _all_layer_case(tau, dtype, hyper)
    for var, expected in cases:
        torch.testing.assert_close(var, expected, rtol=rtol, atol=0)
