"""The ``Likelihood`` interface: declared in full on the base class, and open to a new
likelihood without touching anything outside :mod:`sklaplace.likelihoods`.

A Poisson count model, written here as a user (or a contributor) would write it, is fitted
and predicted by ``LaplaceRegressor`` end to end and checked against the dense float64
Laplace posterior of a linear net: the registry (``register``, ``for_criterion``) takes it
from the net's criterion, and no other module needs to know it.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetClassifier, NeuralNetRegressor
from torch import nn

import sklaplace
from sklaplace import LaplaceRegressor
from sklaplace._runtime.skorch import likelihood_of
from sklaplace.likelihoods import Likelihood, register
from sklaplace.likelihoods.base import LIKELIHOODS

PACKAGE = Path(sklaplace.__file__).parent
TAU = 2.0


def _uses_of_likelihoods() -> dict[str, list[str]]:
    """Attribute names read on a likelihood (``likelihood.x``, ``lik.x``,
    ``fitted.likelihood.x``) outside the likelihoods package, with where."""
    uses: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "likelihoods" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
            if name in ("likelihood", "lik"):
                uses.setdefault(node.attr, []).append(f"{path.name}:{node.lineno}")
    return uses


def test_the_base_class_declares_every_attribute_its_callers_use():
    uses = _uses_of_likelihoods()
    assert {"loss", "hessian_sqrt", "observation", "decide"} <= set(uses)  # the scan sees
    missing = {name: where for name, where in uses.items() if not hasattr(Likelihood, name)}
    assert not missing, f"used on a likelihood but not declared on Likelihood: {missing}"


def test_an_undeclared_method_says_which_likelihood_lacks_what():
    class Bare(Likelihood):
        is_classifier = False

    with pytest.raises(NotImplementedError, match=r"Bare does not implement observation"):
        Bare().observation(torch.zeros(1, 1), torch.zeros(1, 1), 1.0)
    with pytest.raises(NotImplementedError, match=r"Likelihood does not implement is_classifier"):
        _ = Likelihood().is_classifier


class Poisson(Likelihood):
    """Counts ``y ~ Poisson(exp(f))``; the net returns log rates (``PoissonNLLLoss``)."""

    name = "poisson"
    is_classifier = False
    net_kind = "regressor"
    criteria = (nn.PoissonNLLLoss,)
    supported = "NeuralNetRegressor with PoissonNLLLoss (module returns log rates)"

    def row_loss(self, f, y):
        f = f.to(torch.float64)
        y = y.reshape(f.shape).to(f.dtype)
        return (torch.exp(f) - y * f + torch.lgamma(y + 1)).sum(1)

    def hessian(self, f):
        return torch.diag_embed(torch.exp(f))

    def hessian_sqrt(self, f):
        return torch.diag_embed(torch.exp(f / 2)).permute(2, 0, 1)

    def observation(self, mean, var, sigma):
        rate = torch.exp(mean + var / 2)  # E[exp f] under N(mean, var)
        return rate, torch.expm1(var) * rate**2, rate

    def observation_draw(self, f, sigma):
        return torch.exp(f), torch.exp(f)

    def heldout_row_log_likelihood(self, mean, var, y, sigma=None, head=None):
        rate = torch.exp(mean + var / 2)
        y = y.reshape(rate.shape).to(rate.dtype)
        return (y * torch.log(rate) - rate - torch.lgamma(y + 1)).sum(1)


@pytest.fixture
def poisson():
    register(Poisson)
    try:
        yield Poisson
    finally:
        LIKELIHOODS.remove(Poisson)


def test_a_registered_likelihood_is_found_from_the_criterion(poisson):
    net = NeuralNetRegressor(nn.Linear(2, 1), criterion=nn.PoissonNLLLoss)
    assert type(likelihood_of(net)) is Poisson
    with pytest.raises(TypeError, match=r"Supported: .*PoissonNLLLoss \(module returns log"):
        likelihood_of(NeuralNetClassifier(nn.Linear(2, 2), criterion=nn.PoissonNLLLoss))


def test_a_poisson_likelihood_needs_no_other_module(poisson):
    """LaplaceRegressor with a Poisson net: the dense float64 posterior of a linear net,
    ``Sigma = (sum_n exp(f_n) a_n a_n^T + tau I)^-1``, gives the predictive mean
    ``exp(mu + v / 2)`` and variance ``Var[exp f] + E[exp f]``."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(80, 2))
    y = rng.poisson(np.exp(0.5 + X @ [0.8, -0.5])).astype(np.float64)
    torch.manual_seed(0)
    net = NeuralNetRegressor(
        nn.Linear(2, 1).double(), criterion=nn.PoissonNLLLoss, max_epochs=100, lr=0.05,
        train_split=None, verbose=0,
    ).fit(X, y[:, None])  # fmt: skip
    reg = LaplaceRegressor(
        FrozenEstimator(net), hessian_structure="full", prior_precision=TAU, interval="gaussian"
    ).fit(X, y)
    X_new = np.array([[0.3, -1.0], [1.0, 1.0], [-2.0, 2.0]])
    mean, std = reg.predict(X_new, return_std=True)

    w = np.r_[net.module_.weight.detach().numpy()[0], net.module_.bias.detach().numpy()]
    a = np.c_[X, np.ones(len(X))]
    H = (a * np.exp(a @ w)[:, None]).T @ a
    Sigma = np.linalg.inv(H + TAU * np.eye(3))
    a_new = np.c_[X_new, np.ones(len(X_new))]
    mu, v = a_new @ w, np.einsum("ni,ij,nj->n", a_new, Sigma, a_new)
    rate = np.exp(mu + v / 2)
    np.testing.assert_allclose(mean, rate, rtol=1e-10)
    np.testing.assert_allclose(std, np.sqrt(np.expm1(v) * rate**2 + rate), rtol=1e-10)
    assert math.isfinite(reg.log_marginal_likelihood_value_)
