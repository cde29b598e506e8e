"""Heteroscedastic regression: a net that predicts a mean and a log variance per row.

Against a float64 reference: a linear net (the last layer is the whole model) with
outputs ``(mu, eta)``; the Laplace posterior with the Fisher ``diag(exp(-eta), 1/2)`` as
the output curvature, written out densely here, gives the predictive
``Var[y] = Var[mu] + exp(eta + Var[eta] / 2)``. And end to end: on data whose noise grows
with the input, the predicted std follows the noise and conformal intervals cover.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetRegressor
from torch import nn

from sklaplace import HeteroscedasticGaussianNLL, LaplaceRegressor

TAU = 3.0


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    y = np.sin(2 * X[:, 0]) + (0.05 + 0.4 * np.abs(X[:, 1])) * rng.normal(size=n)
    return X, y


def _linear_net(X, y):
    torch.manual_seed(0)
    net = NeuralNetRegressor(
        nn.Linear(2, 2).double(), criterion=HeteroscedasticGaussianNLL, max_epochs=50,
        lr=0.05, train_split=None, verbose=0,
    )  # fmt: skip
    return net.fit(X, y[:, None])


def test_the_criterion_is_the_gaussian_negative_log_likelihood():
    out = torch.tensor([[0.5, math.log(2.0)], [-1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[1.5], [0.0]], dtype=torch.float64)
    expected = np.mean(
        [-np.log(np.exp(-((1.5 - 0.5) ** 2) / 4) / np.sqrt(4 * np.pi)),
         -np.log(np.exp(-1 / 2) / np.sqrt(2 * np.pi))]
    )  # fmt: skip
    assert float(HeteroscedasticGaussianNLL()(out, y)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("structure", ["full", "kron", "diag"])
def test_a_linear_heteroscedastic_net_matches_the_dense_reference(structure):
    X, y = _data(60)
    net = _linear_net(X, y)
    reg = LaplaceRegressor(
        FrozenEstimator(net), hessian_structure=structure, prior_precision=TAU, interval="gaussian"
    ).fit(X, y)
    X_new = np.array([[0.3, -1.0], [1.5, 1.5], [4.0, -3.0]])
    mean, std = reg.predict(X_new, return_std=True)

    W = np.c_[net.module_.weight.detach().numpy(), net.module_.bias.detach().numpy()]  # (2, 3)
    a = np.c_[X, np.ones(len(X))]
    eta = a @ W[1]
    lam = np.stack([np.exp(-eta), np.full_like(eta, 0.5)], 1)  # the Fisher's diagonal
    if structure == "full":
        pairs = zip(a, lam, strict=True)
        H = sum(np.kron(np.diag(lam_n), np.outer(a_n, a_n)) for a_n, lam_n in pairs)
    elif structure == "kron":  # KFAC: B (x) A with A the mean of a a^T
        H = np.kron(np.diag(lam.sum(0)), a.T @ a / len(a))
    else:
        H = np.diag(np.concatenate([lam[:, k] @ a**2 for k in range(2)]))
    Sigma = np.linalg.inv(H + TAU * np.eye(6))
    a_new = np.c_[X_new, np.ones(len(X_new))]
    J_mu = np.c_[a_new, np.zeros_like(a_new)]  # row n: d mu / d vec(W)
    J_eta = np.c_[np.zeros_like(a_new), a_new]
    var_mu = np.einsum("ni,ij,nj->n", J_mu, Sigma, J_mu)
    var_eta = np.einsum("ni,ij,nj->n", J_eta, Sigma, J_eta)
    expected = np.sqrt(var_mu + np.exp(a_new @ W[1] + var_eta / 2))
    np.testing.assert_allclose(mean, a_new @ W[0], rtol=1e-12)
    np.testing.assert_allclose(std, expected, rtol=1e-9)
    assert reg.sigma_noise_ == 1.0  # unused: the net predicts the noise


def test_the_predicted_noise_follows_the_data_and_conformal_intervals_cover():
    X, y = _data(600)
    X_val, y_val = _data(300, seed=1)
    X_test, y_test = _data(2000, seed=2)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 2))
    net = NeuralNetRegressor(
        module, criterion=HeteroscedasticGaussianNLL, max_epochs=150, lr=0.01,
        optimizer=torch.optim.Adam, train_split=None, verbose=0,
    ).fit(X.astype(np.float32), y[:, None].astype(np.float32))  # fmt: skip
    reg = LaplaceRegressor(FrozenEstimator(net), random_state=0).fit(
        X, y, X_val=X_val, y_val=y_val
    )
    _, std = reg.predict(X_test, return_std=True)
    true_std = 0.05 + 0.4 * np.abs(X_test[:, 1])
    assert np.corrcoef(std, true_std)[0, 1] > 0.9
    lower, upper = reg.predict_interval(X_test, 0.9)
    coverage = np.mean((y_test >= lower) & (y_test <= upper))
    assert 0.86 <= coverage <= 0.94  # 150 calibration rows, 2000 test rows
    # the same net read as homoscedastic would need one sigma for all rows: refused
    with pytest.raises(ValueError, match="a mean and a log variance"):
        LaplaceRegressor(FrozenEstimator(net)).fit(X, np.c_[y, y])


def test_a_net_whose_training_loss_is_negative_is_fitted():
    """Little noise: the Gaussian NLL summed over the training rows is negative, which
    once broke fit (a square root of it, meant for sums of squares, was taken)."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(120, 2))
    y = X[:, 0] - X[:, 1] + 0.05 * rng.normal(size=120)
    torch.manual_seed(0)
    net = NeuralNetRegressor(
        nn.Linear(2, 2).double(), criterion=HeteroscedasticGaussianNLL,
        optimizer=torch.optim.Adam, max_epochs=300, lr=0.05, train_split=None, verbose=0,
    ).fit(X[:80], y[:80, None])  # fmt: skip
    assert float(net.history[-1, "train_loss"]) < 0
    reg = LaplaceRegressor(FrozenEstimator(net)).fit(X[:80], y[:80], X_val=X[80:], y_val=y[80:])
    mean, std = reg.predict(X[80:], return_std=True)
    assert np.isfinite(mean).all() and (std > 0).all() and np.isfinite(std).all()


def test_an_overflowing_noise_term_warns_and_sigma_noise_is_not_called_tuned():
    """Far from the data a wide posterior of the log variance makes the noise term
    exp(eta + Var[eta] / 2) overflow: predict says so; and fit, without unseen rows, does
    not claim that sigma_noise (which such a net does not use) could not be tuned."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (50, 1))
    y = X[:, 0] + 0.1 * rng.normal(size=50)
    torch.manual_seed(0)
    net = NeuralNetRegressor(
        nn.Linear(1, 2).double(), criterion=HeteroscedasticGaussianNLL, max_epochs=50,
        lr=0.05, train_split=None, verbose=0,
    ).fit(X, y[:, None])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sigma_noise="holdout" (the default) says nothing
        reg = LaplaceRegressor(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
    with pytest.warns(UserWarning, match=r"infinite on 1 row\(s\).*prior_precision"):
        _, std = reg.predict(np.array([[0.5], [200.0]]), return_std=True)
    assert np.isfinite(std[0]) and np.isinf(std[1])
