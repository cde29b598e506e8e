"""Likelihoods over real values: Gaussian noise of one scale ``sigma``, or of a variance
the net predicts (with its criterion, :class:`HeteroscedasticGaussianNLL`)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from .base import Likelihood, register

__all__ = ["Heteroscedastic", "HeteroscedasticGaussianNLL", "Regression"]


class HeteroscedasticGaussianNLL(nn.Module):
    """Criterion for a skorch regressor whose module outputs ``[mean | log variance]``.

    For ``K`` targets the module gives ``2 K`` outputs: the means, then the logarithms of
    the noise variances. The loss is the Gaussian negative log-likelihood
    ``0.5 * ((y - mu)^2 / exp(eta) + eta + log(2 pi))``, averaged over rows (and summed
    over targets). ``LaplaceRegressor`` recognises a ``NeuralNetRegressor`` trained with
    it: its predictive standard deviation then adds the net's predicted noise to the
    weight uncertainty.

    Examples
    --------
    >>> import torch
    >>> loss = HeteroscedasticGaussianNLL()
    >>> out = torch.tensor([[0.0, 0.0]])  # mean 0, log variance 0
    >>> round(float(loss(out, torch.tensor([[1.0]]))), 4)  # 0.5 * (1 + 0 + log 2 pi)
    1.4189
    """

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        k = y_pred.shape[-1] // 2
        mu, eta = y_pred[..., :k], y_pred[..., k:]
        y = y_true.reshape(mu.shape).to(mu.dtype)
        nll = 0.5 * ((y - mu) ** 2 * torch.exp(-eta) + eta + math.log(2 * math.pi))
        return nll.sum(-1).mean()


@register
class Regression(Likelihood):
    """Gaussian noise with standard deviation ``sigma`` on each of ``c`` outputs."""

    name = "regression"
    is_classifier = False
    has_noise = True
    net_kind = "regressor"
    criteria = (nn.MSELoss,)
    supported = "NeuralNetRegressor with MSELoss"
    without_heldout = (
        "The prior precision comes from the evidence and sigma_noise from the leave-one-out "
        "residuals of the training rows, which still under-estimate the noise of an "
        "over-fitted net."
    )

    def row_loss(self, f, y):
        f = f.to(torch.float64)
        return 0.5 * ((f - y.reshape(f.shape).to(f.dtype)) ** 2).sum(1)

    def hessian(self, f):
        m, c = f.shape
        return torch.eye(c, dtype=f.dtype, device=f.device).expand(m, c, c)

    def hessian_diag(self, f):
        return torch.ones_like(f)

    def hessian_sqrt(self, f):
        m, c = f.shape
        return torch.eye(c, dtype=f.dtype, device=f.device)[:, None, :].expand(c, m, c)

    def noise_variance(self, sigma):
        if isinstance(sigma, Tensor):
            return sigma**2
        with np.errstate(over="ignore"):
            return float(np.square(np.float64(sigma)))  # inf out of float64's range

    def data_log_likelihood(self, loss, n_rows, n_outputs, sigma, temperature):
        """``-loss / (sigma^2 T) - N K log(sigma sqrt(2 pi))``."""
        return -loss / (sigma**2 * temperature) - n_rows * n_outputs * torch.log(
            sigma * math.sqrt(2 * math.pi)
        )

    def l2_prior_coefficient(self, lam, batch_sizes, n_outputs, reduction) -> float:
        """MSE averages over rows and outputs and has no 0.5: ``N K lam / 2`` ("mean"),
        ``n_batches lam / 2`` ("sum")."""
        if reduction == "mean":
            return sum(batch_sizes) * n_outputs * lam / 2.0
        return len(batch_sizes) * lam / 2.0

    def heldout_row_log_likelihood(self, mean, var, y, sigma, head=None):
        """``log N(y | mean, var + sigma^2)`` of each held-out row, summed over outputs."""
        total = var + sigma**2
        resid = y.reshape(mean.shape).to(mean.dtype) - mean
        return -0.5 * (resid**2 / total + torch.log(2 * math.pi * total)).sum(1)

    def observation(self, mean, var, sigma):
        """The outputs are the means of ``y``; the noise variance is ``sigma^2``."""
        return mean, var, torch.full_like(mean, float(sigma) ** 2)

    def observation_draw(self, f, sigma):
        return f, torch.full_like(f, float(sigma) ** 2)


@register
class Heteroscedastic(Likelihood):
    """Gaussian noise whose variance the net predicts: outputs ``[mean | log variance]``.

    A net with ``2 K`` outputs for ``K`` targets, trained with
    :class:`sklaplace.HeteroscedasticGaussianNLL`: ``f = (mu, eta)``, ``y ~ N(mu,
    exp(eta))``. The curvature uses the Fisher information of this Gaussian in ``(mu,
    eta)``, ``diag(exp(-eta), 1/2)`` (the Hessian of the loss itself is indefinite away from
    the fit), so the GGN is positive semi-definite. Predictions: ``Var[y] = Var[mu] +
    E[exp(eta)]`` with ``E[exp(eta)] = exp(eta + Var[eta] / 2)`` under the Gaussian over
    ``eta``: the weight uncertainty of the noise head widens the noise too.
    """

    name = "heteroscedastic"
    is_classifier = False
    has_noise = False  # the net predicts the noise: no sigma_noise to estimate
    net_kind = "regressor"
    criteria = (HeteroscedasticGaussianNLL,)
    supported = (
        "NeuralNetRegressor with sklaplace.HeteroscedasticGaussianNLL (module outputs a "
        "mean and a log variance)"
    )

    def _split(self, f: Tensor) -> tuple[Tensor, Tensor]:
        k = f.shape[-1] // 2
        return f[..., :k], f[..., k:]

    def row_loss(self, f, y):
        mu, eta = self._split(f.to(torch.float64))
        y = y.reshape(mu.shape).to(mu.dtype)
        return 0.5 * ((y - mu) ** 2 * torch.exp(-eta) + eta + math.log(2 * math.pi)).sum(1)

    def _fisher_diag(self, f):
        _, eta = self._split(f)
        return torch.cat([torch.exp(-eta), torch.full_like(eta, 0.5)], dim=-1)

    def hessian(self, f):
        return torch.diag_embed(self._fisher_diag(f))

    def hessian_diag(self, f):
        return self._fisher_diag(f)

    def hessian_sqrt(self, f):
        """The diagonal's square roots, one cotangent direction per output: (c, m, c)."""
        root = self._fisher_diag(f).sqrt()  # (m, c)
        return torch.diag_embed(root).permute(2, 0, 1)

    def n_outputs(self, n):
        return 2 * n

    def outputs_needed(self, n):
        return (
            f"y has {n} target(s), and a heteroscedastic net gives a mean and a log "
            f"variance for each ({2 * n} outputs)"
        )

    def heldout_row_log_likelihood(self, mean, var, y, sigma=None, head=None):
        mu, v_mu, noise = self.observation(mean, var, sigma)
        total = v_mu + noise
        resid = y.reshape(mu.shape).to(mu.dtype) - mu
        return -0.5 * (resid**2 / total + torch.log(2 * math.pi * total)).sum(1)

    def observation(self, mean, var, sigma):
        mu, eta = self._split(mean)
        v_mu, v_eta = self._split(var)
        return mu, v_mu, torch.exp(eta + v_eta / 2)

    def observation_draw(self, f, sigma):
        mu, eta = self._split(f)
        return mu, torch.exp(eta)
