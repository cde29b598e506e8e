"""End to end against closed forms: the estimators on float64 nets whose answer is known.

* A linear regression net (``nn.Linear(d, K)``) with its weights set to the exact posterior
  mean of Bayesian linear regression: the Laplace approximation is then exact, so the
  predictive mean, std, covariance and the log evidence equal those of BLR.
* A tiny classification net: ``predict_proba`` (probit) equals ``softmax(kappa * logits)``
  with the output variances from a dense last-layer GGN built here with ``torch.func``.
"""

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from torch import nn
from torch.func import functional_call, hessian, jacrev
from torch.nn import functional as F

from sklaplace import LaplaceClassifier, LaplaceRegressor

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"  # raised inside torch.func
)

SIGMA, TAU = 0.5, 2.0


# --------------------------------------------------------------------------- regression
def _blr_data(n_out, orthogonal, n=30, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if orthogonal:
        # Columns orthogonal to each other and to the ones column, with distinct norms,
        # so X_aug^T X_aug = diag(16, 4, n) and the diagonal GGN is exact.
        Q, _ = np.linalg.qr(np.column_stack([np.ones(n), X]))
        X = Q[:, 1:] * np.array([4.0, 2.0])
    W_true = rng.normal(size=(d, n_out))
    Y = X @ W_true + 0.3 + SIGMA * rng.normal(size=(n, n_out))
    X_new = np.vstack([rng.normal(size=(5, d)), [[6.0, -5.0], [0.0, 0.0]]])
    return X, Y, X_new


def _augment(X):
    return np.column_stack([X, np.ones(len(X))])


def _blr(X, Y, tau, sigma, temperature=1.0):
    """Precision ``P`` and posterior mean ``W`` (n_out, d + 1) of Bayesian linear regression."""
    Xa = _augment(X)
    P = Xa.T @ Xa / (sigma**2 * temperature) + tau * np.eye(Xa.shape[1])
    W = np.linalg.solve(P, Xa.T @ Y / (sigma**2 * temperature)).T
    return P, W


def _frozen_linear_net(X, Y, W):
    """Train a float64 ``nn.Linear`` briefly with skorch, then set its weights to ``W``."""
    d, n_out = X.shape[1], Y.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = nn.Linear(d, n_out).double()
        net = NeuralNetRegressor(
            module, max_epochs=2, lr=0.01, batch_size=16, train_split=None, verbose=0
        )
        net.fit(X, Y)
    with torch.no_grad():
        net.module_.weight.copy_(torch.as_tensor(W[:, :d]))
        net.module_.bias.copy_(torch.as_tensor(W[:, d]))
    return FrozenEstimator(net)


def _laplace_evidence(X, Y, W, tau, sigma):
    """The Laplace log evidence at fixed weights ``W``, any ``tau`` and ``sigma``."""
    Xa = _augment(X)
    n, n_out = Y.shape
    sse = ((Y - Xa @ W.T) ** 2).sum()
    P = Xa.T @ Xa / sigma**2 + tau * np.eye(Xa.shape[1])
    log_det = n_out * (np.linalg.slogdet(P)[1] - Xa.shape[1] * np.log(tau))
    log_lik = -0.5 * sse / sigma**2 - n * n_out * np.log(sigma * np.sqrt(2 * np.pi))
    return log_lik - 0.5 * (log_det + tau * (W**2).sum())


# (structure, orthogonal features): diag is exact only when X_aug^T X_aug is diagonal.
REGRESSION_CASES = [("kron", False), ("full", False), ("diag", True), ("kron", True)]


@pytest.mark.parametrize("n_out", [1, 2])
@pytest.mark.parametrize(("structure", "orthogonal"), REGRESSION_CASES)
def test_linear_regressor_reproduces_bayesian_linear_regression(structure, orthogonal, n_out):
    X, Y, X_new = _blr_data(n_out, orthogonal)
    P, W = _blr(X, Y, TAU, SIGMA)
    y = Y[:, 0] if n_out == 1 else Y  # 1-D targets give 1-D predictions
    reg = LaplaceRegressor(
        _frozen_linear_net(X, Y, W),
        hessian_structure=structure,
        prior_precision=TAU,
        sigma_noise=SIGMA,
    ).fit(X, y)

    Xa_new = _augment(X_new)
    cov_f = Xa_new @ np.linalg.inv(P) @ Xa_new.T  # same for every output
    mean = Xa_new @ W.T
    cov = cov_f + SIGMA**2 * np.eye(len(X_new))
    std = np.sqrt(np.diag(cov))
    if n_out == 1:
        mean = mean[:, 0]
    else:
        std = np.repeat(std[:, None], n_out, axis=1)
        cov = np.repeat(cov[:, :, None], n_out, axis=2)

    np.testing.assert_allclose(reg.predict(X_new), mean, rtol=1e-10, atol=1e-12)
    got_mean, got_std = reg.predict(X_new, return_std=True)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_std, std, rtol=1e-9)
    got_mean, got_cov = reg.predict(X_new, return_cov=True)
    assert got_cov.shape == cov.shape
    np.testing.assert_allclose(got_cov, cov, rtol=1e-9, atol=1e-12)

    # At the exact posterior mean the Laplace evidence is the exact BLR evidence.
    Xa = _augment(X)
    marginal_cov = SIGMA**2 * np.eye(len(X)) + Xa @ Xa.T / TAU
    exact = sum(multivariate_normal(cov=marginal_cov).logpdf(Y[:, k]) for k in range(n_out))
    assert reg.log_marginal_likelihood() == pytest.approx(exact, rel=1e-10)
    assert reg.log_marginal_likelihood_value_ == pytest.approx(exact, rel=1e-10)
    # Elsewhere it is the Laplace formula at these (now non-optimal) weights.
    for tau, sigma in [(0.3, 0.5), (2.0, 1.7), (10.0, 0.2)]:
        expected = _laplace_evidence(X, Y, W, tau, sigma)
        got = reg.log_marginal_likelihood(prior_precision=tau, sigma_noise=sigma)
        assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("structure", ["kron", "full"])
def test_linear_regressor_temperature_and_prior_read_at_predict(structure):
    # set_params after fit: P = X_aug^T X_aug / (sigma^2 T) + tau I, no refit.
    X, Y, X_new = _blr_data(1, False)
    _, W = _blr(X, Y, TAU, SIGMA)
    reg = LaplaceRegressor(
        _frozen_linear_net(X, Y, W),
        hessian_structure=structure,
        prior_precision=TAU,
        sigma_noise=SIGMA,
    ).fit(X, Y[:, 0])
    reg.set_params(temperature=2.5, prior_precision=0.4, sigma_noise=0.8)
    P, _ = _blr(X, Y, 0.4, 0.8, temperature=2.5)
    Xa_new = _augment(X_new)
    std = np.sqrt(np.einsum("ni,ij,nj->n", Xa_new, np.linalg.inv(P), Xa_new) + 0.8**2)
    _, got_std = reg.predict(X_new, return_std=True)
    np.testing.assert_allclose(got_std, std, rtol=1e-9)


def test_diag_is_an_approximation_with_correlated_features():
    # Guard for the case selection above: with correlated features the diagonal GGN is
    # not exact, so the BLR comparison would (rightly) fail for hessian_structure="diag".
    X, Y, X_new = _blr_data(1, False)
    P, W = _blr(X, Y, TAU, SIGMA)
    reg = LaplaceRegressor(
        _frozen_linear_net(X, Y, W),
        hessian_structure="diag",
        prior_precision=TAU,
        sigma_noise=SIGMA,
    ).fit(X, Y[:, 0])
    Xa_new = _augment(X_new)
    std = np.sqrt(np.einsum("ni,ij,nj->n", Xa_new, np.linalg.inv(P), Xa_new) + SIGMA**2)
    _, got_std = reg.predict(X_new, return_std=True)
    assert np.max(np.abs(got_std / std - 1)) > 1e-3


# --------------------------------------------------------------------------- classification
def _classification_net(binary):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(24, 2))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 1] > 0.8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        n_out = 1 if binary else 3
        module = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, n_out)).double()
        if binary:
            y = (y > 0).astype(np.int64)
            net = NeuralNetBinaryClassifier(
                module, max_epochs=5, lr=0.2, train_split=None, verbose=0
            )
            net.fit(X, y.astype(np.float64))
        else:
            net = NeuralNetClassifier(
                module,
                criterion=nn.CrossEntropyLoss,
                max_epochs=5,
                lr=0.2,
                train_split=None,
                verbose=0,
            )
            net.fit(X, y)
    X_new = np.vstack([rng.normal(size=(4, 2)), [[5.0, -4.0], [0.0, 0.0]]])
    return net, X, y, X_new


def _head_jacobian(module, X):
    """Last layer: logits (n, c), ``d logits / d [W | b]`` (n, c, c (d+1)) and ``[W | b]``."""
    weight, bias = module[2].weight.detach(), module[2].bias.detach()
    Xt = torch.as_tensor(X)

    def logits(w, b):
        return functional_call(module, {"2.weight": w, "2.bias": b}, (Xt,))

    Jw, Jb = jacrev(logits, argnums=(0, 1))(weight, bias)  # (n, c, c, d), (n, c, c)
    J = torch.cat([Jw, Jb[..., None]], dim=-1).detach()  # the hidden layer requires grad
    theta = torch.cat([weight, bias[:, None]], dim=1).reshape(-1)
    return logits(weight, bias).detach(), J.reshape(len(X), weight.shape[0], -1), theta


def _row_loss(binary, f_n, y_n):
    if binary:
        return F.binary_cross_entropy_with_logits(f_n[0], y_n.to(f_n.dtype))
    return F.cross_entropy(f_n, y_n)


@pytest.mark.parametrize("binary", [False, True], ids=["softmax", "sigmoid"])
@pytest.mark.parametrize("structure", ["diag", "kron", "full"])
def test_classifier_probit_matches_dense_last_layer_covariance(structure, binary):
    net, X, y, X_new = _classification_net(binary)
    tau = 0.5
    clf = LaplaceClassifier(
        FrozenEstimator(net),
        hessian_structure=structure,
        prior_precision=tau,
        subset_of_weights="last_layer",
    ).fit(X, y)

    module = net.module_
    f, J, theta = _head_jacobian(module, X)
    yt = torch.as_tensor(y)
    lams = torch.stack(  # Lambda_n: Hessian of each row's loss w.r.t. its logits
        [
            hessian(lambda g, y_n=y_n: _row_loss(binary, g, y_n))(f_n)
            for f_n, y_n in zip(f, yt, strict=True)
        ]
    )
    H = torch.einsum("nki,nkl,nlj->ij", J, lams, J)
    c, p = f.shape[1], J.shape[-1]
    if structure == "diag":
        H = torch.diag(torch.diagonal(H))
    elif structure == "kron":
        a = J[:, 0, : p // c]  # the first row of I (x) a^T is the feature vector itself
        H = torch.kron(lams.sum(0), a.T @ a / len(a))
    P = H + tau * torch.eye(p, dtype=torch.float64)

    f_new, J_new, _ = _head_jacobian(module, X_new)
    var = torch.einsum("nki,ij,nkj->nk", J_new, torch.linalg.inv(P), J_new)
    z = f_new / torch.sqrt(1 + math.pi / 8 * var)
    if binary:
        p1 = torch.sigmoid(z[:, 0])
        expected = torch.stack([1 - p1, p1], dim=1)
    else:
        expected = torch.softmax(z, dim=1)
    np.testing.assert_allclose(clf.predict_proba(X_new), expected.numpy(), rtol=1e-9, atol=1e-12)
    # the far-away row is less confident than the plug-in softmax / sigmoid
    if binary:
        plug_in = torch.sigmoid(f_new[:, 0])
        plug_in = torch.maximum(plug_in, 1 - plug_in)
    else:
        plug_in = torch.softmax(f_new, 1).max(1).values
    assert clf.predict_proba(X_new).max(1)[-2] < float(plug_in[-2])

    # Evidence: -loss - 0.5 (logdet P - p log tau + tau ||theta||^2), last layer only.
    loss = sum(_row_loss(binary, f_n, y_n) for f_n, y_n in zip(f, yt, strict=True))
    expected_lml = -loss - 0.5 * (
        torch.linalg.slogdet(P)[1] - p * math.log(tau) + tau * (theta**2).sum()
    )
    assert clf.log_marginal_likelihood() == pytest.approx(float(expected_lml), rel=1e-10)


def test_no_held_out_rows_sigma_is_the_leave_one_out_fixed_point():
    """Without unseen rows, sigma solves ``sigma^2 = mean((r_i / (1 - h_i))^2)``.

    For a linear net the linearisation is the model: ``h_i`` is exactly the diagonal of the
    ridge hat matrix ``X_a (X_a^T X_a / sigma^2 + tau I)^-1 X_a^T / sigma^2`` and
    ``r_i / (1 - h_i)`` exactly row ``i``'s leave-one-out residual of the Bayesian posterior
    mean; ``tau`` is the evidence's. Solved here independently by fixed-point iteration.
    """
    X, Y, _ = _blr_data(1, False, n=40)
    _, W = _blr(X, Y, TAU, SIGMA)
    with pytest.warns(UserWarning, match="No rows the net has not seen"):
        reg = LaplaceRegressor(_frozen_linear_net(X, Y, W), random_state=0).fit(X, Y[:, 0])
    tau = float(reg.prior_precision_[0])
    Xa = _augment(X)
    r = Y[:, 0] - Xa @ W[0]
    sigma = float(np.sqrt(np.mean(r**2)))
    for _ in range(200):
        P = Xa.T @ Xa / sigma**2 + tau * np.eye(Xa.shape[1])
        h = np.einsum("ni,ij,nj->n", Xa, np.linalg.inv(P), Xa) / sigma**2
        sigma = float(np.sqrt(np.mean((r / (1 - h)) ** 2)))
    assert reg.sigma_noise_ == pytest.approx(sigma, rel=1e-5)
    # the leave-one-out noise is larger than the training residuals' RMS
    assert reg.sigma_noise_ > float(np.sqrt(np.mean(r**2)))
    # and tau is the evidence's maximum at fixed sigma (jointly with it, then sigma moved)
    ev = LaplaceRegressor(
        _frozen_linear_net(X, Y, W), prior_precision="marglik", sigma_noise="marglik"
    ).fit(X, Y[:, 0])
    assert tau == pytest.approx(float(ev.prior_precision_[0]), rel=1e-6)
