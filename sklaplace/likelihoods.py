"""Likelihoods: everything that depends on what the net's outputs ``f`` mean.

One object per likelihood, with the same interface: the summed training loss, the Hessian
``Lambda_n`` of a row's loss with respect to ``f`` (and its square root, its diagonal and
its sum over rows), the link from ``f`` to predictions, the log-likelihood of held-out rows
under the Gaussian ``N(mean, var)`` over ``f``, and the data term of the evidence. Nothing
else in sklaplace branches on the likelihood.

Conventions (see :doc:`/user_guide`): the loss is summed over rows; cross-entropy on
logits, binary cross-entropy on one logit, ``0.5 * sum (y - f)^2`` for regression (the
noise variance ``sigma^2`` enters through the posterior's curvature scale
``1 / (sigma^2 T)``).

Examples
--------
>>> import torch
>>> lik = Classification()
>>> f = torch.tensor([[2.0, 0.0, -1.0]], dtype=torch.float64)
>>> lik.hessian(f).shape, torch.allclose(lik.hessian_sum(f), lik.hessian(f)[0])
(torch.Size([1, 3, 3]), True)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from .links import affine, mc_log_link, probit_logits

__all__ = [
    "Binary",
    "Classification",
    "Heteroscedastic",
    "HeteroscedasticGaussianNLL",
    "Likelihood",
    "Regression",
]


class Likelihood:
    """Interface shared by the likelihoods (see the module docstring)."""

    name: str
    is_classifier: bool
    has_noise = False  # a noise scale (sigma) to estimate
    # what is predicted when the hyper-parameters find no unseen rows (see _hyper)
    without_heldout = "The predictions are the net's own."

    def row_loss(self, f: Tensor, y: Tensor) -> Tensor:
        """Each row's loss (m,), float64."""
        raise NotImplementedError

    def loss(self, f: Tensor, y: Tensor, w: Tensor | None = None) -> Tensor:
        """The loss summed over rows, each weighted by ``w`` if given (float64 scalar)."""
        rows = self.row_loss(f, y)
        return rows.sum() if w is None else (w * rows).sum()

    def hessian(self, f: Tensor) -> Tensor:
        """``Lambda_n`` for each row: (m, c, c)."""
        raise NotImplementedError

    def hessian_diag(self, f: Tensor) -> Tensor:
        """The diagonal of ``Lambda_n`` for each row: (m, c)."""
        return torch.diagonal(self.hessian(f), dim1=1, dim2=2)

    def hessian_sum(self, f: Tensor, w: Tensor | None = None) -> Tensor:
        """``sum_n w_n Lambda_n``: (c, c), without forming the (m, c, c) stack."""
        d, R = self.hessian_sum_factors(f, w)
        total = torch.diag(d)
        return total if R is None else total - R.T @ R

    def hessian_sum_factors(self, f: Tensor, w: Tensor | None = None):
        """``(d, R)`` with ``sum_n w_n Lambda_n = diag(d) - R^T R`` (``R`` None: diagonal).

        The accumulators add ``d`` as a vector and ``R^T R`` as a symmetric rank-k update
        (``_blas.gram``): for many classes that halves the work of the dense sum and forms
        no (c, c) temporaries but the result. This default is for a diagonal ``Lambda``
        (sigmoid, Gaussian); the softmax overrides it.
        """
        diag = self.hessian_diag(f.to(torch.float64))
        return (diag.sum(0) if w is None else w @ diag), None

    def heldout_log_likelihood(self, mean, var, y, sigma, head=None, w=None):
        """Summed (weighted by ``w`` if given) log predictive density of held-out rows;
        ``head``: a classifier's recalibration head ``(scale, bias)`` (None: identity)."""
        rows = self.heldout_row_log_likelihood(mean, var, y, sigma, head)
        return rows.sum() if w is None else (w * rows).sum()

    def hessian_sqrt(self, f: Tensor) -> Tensor:
        """Columns of ``S_n`` with ``S_n S_n^T = Lambda_n``, as ``(r, m, c)`` cotangents."""
        raise NotImplementedError

    def module_output(self, f: Tensor) -> Tensor:
        """What the net's module returns when its last Linear layer outputs ``f``."""
        return f

    def outputs_needed(self, n: int) -> str:
        """What ``n`` outputs of the net stand for, for error messages."""
        return f"y has {n} targets"

    def n_outputs(self, n: int) -> int:
        """The net outputs needed for ``n`` classes or targets."""
        return n

    def net_targets(self, y: np.ndarray, dtype) -> np.ndarray:
        """Targets as the net's loss takes them (class indices, or values in ``dtype``)."""
        return np.asarray(y, dtype=dtype)

    def noise_variance(self, sigma: float) -> float:
        """``sigma^2`` of the curvature scale ``1 / (sigma^2 T)``: 1 unless regression."""
        return 1.0

    def data_log_likelihood(self, loss, n_rows: int, n_outputs: int, sigma, temperature):
        """``log p(D | theta*)`` at the trained weights, from the summed loss."""
        return -loss / temperature

    def l2_prior_coefficient(self, lam, batch_sizes, n_outputs, reduction) -> float:
        """``c`` such that ``sum loss + c / 2 ||theta||^2`` is the epoch objective of
        training with coupled weight decay ``lam`` (criterion ``reduction`` "mean" or "sum",
        one epoch in batches of ``batch_sizes``); the summed loss is this likelihood's."""
        count = sum(batch_sizes) if reduction == "mean" else len(batch_sizes)
        return count * lam


class _Classifier(Likelihood):
    is_classifier = True
    multi_class = True  # more than two classes possible

    def net_targets(self, y, dtype):
        return np.asarray(y, dtype=np.int64)

    def align_classes(self, net, classes: np.ndarray) -> np.ndarray:
        """The classes in the net's own order when y uses the net's ``classes_``."""
        return classes

    def decide(self, log_proba: np.ndarray) -> np.ndarray:
        """The predicted class index of each row."""
        return np.argmax(log_proba, axis=1)

    def log_link(self, f: Tensor) -> Tensor:
        """Log-probabilities of the classes from outputs ``f`` (..., c)."""
        raise NotImplementedError

    def log_predict(
        self,
        mean: Tensor,
        var_or_cov: Tensor,
        *,
        link_approx: str = "probit",
        head=None,
        n_samples: int = 100,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Log of the predictive class probabilities from the Gaussian over ``f``.

        ``head = (a, b)``, the recalibration head, maps the Gaussian exactly first:
        ``a f + b ~ N(a mean + b, a^2 cov)`` (:func:`sklaplace.links.affine`; None:
        the identity). ``"probit"`` needs the variances (m, c), ``"mc"`` the covariances
        (m, c, c).
        """
        if head is not None:
            mean, var_or_cov = affine(mean, var_or_cov, *head)
        if link_approx == "probit":
            return self.log_link(probit_logits(mean, var_or_cov))
        return mc_log_link(self.log_link, mean, var_or_cov, n_samples, generator)

    def heldout_row_log_likelihood(self, mean, var, y, sigma=None, head=None):
        """Log predictive probability (probit) of each held-out label ``y`` (m,)."""
        log_p = self.log_predict(mean, var, head=head)
        return log_p.gather(1, y.long().reshape(-1, 1))[:, 0]

    def link_derivatives(self, f: Tensor, y: Tensor):
        """``(ll, g, d, r)`` at logits ``f`` (m, c): the log-probability of each label ``y``
        under the link, ``ll`` (m,), its gradient in ``f``, ``g`` (m, c), and its negative
        Hessian in ``f`` as ``diag(d_n) - r_n r_n^T`` (``d``, ``r`` (m, c); ``r`` None: the
        Hessian is diagonal), all in closed form: the recalibration head's Newton steps
        (:mod:`sklaplace.tuning.recalibration`) chain them through the head and the probit.
        """
        raise NotImplementedError


class Classification(_Classifier):
    """Softmax cross-entropy over ``c`` logits.

    Parameters
    ----------
    module_applies_softmax : bool, default=False
        The module ends in ``nn.Softmax`` (skorch's default ``NLLLoss`` takes the log of its
        output): ``f`` is then the input of that softmax.
    """

    name = "classification"

    def __init__(self, module_applies_softmax: bool = False) -> None:
        self.module_applies_softmax = module_applies_softmax

    def row_loss(self, f, y):
        return F.cross_entropy(f.to(torch.float64), y.long(), reduction="none")

    def hessian(self, f):
        p = torch.softmax(f, dim=1)
        return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]

    def hessian_diag(self, f):
        p = torch.softmax(f, dim=1)
        return p - p * p

    def hessian_sum_factors(self, f, w=None):
        """``diag(sum_n w_n p_n) - sum_n w_n p_n p_n^T``: ``R`` the rows ``sqrt(w_n) p_n``."""
        p = torch.softmax(f.to(torch.float64), dim=1)
        if w is None:
            return p.sum(0), p
        return w @ p, p * w.sqrt()[:, None]

    def hessian_sqrt(self, f):
        """Softmax: ``S = diag(u) - p u^T`` with ``u = sqrt(p)`` (``u^T u = 1``).

        ``S u = 0``, so ``Lambda`` has rank ``c - 1``: rotating the columns with the
        Householder reflection that maps ``e_j`` to ``u`` makes column ``j`` zero and
        leaves, for ``r != j``, ``u_r (e_r + beta e_j - (1 + beta) p)`` with
        ``beta = u_j / (1 - u_j)``; ``j`` is the least likely class, so
        ``1 - u_j >= 1 - c^(-1/2)``. That saves one of ``c`` backward directions.
        """
        c = f.shape[1]
        p = torch.softmax(f, dim=1)
        u = p.sqrt()
        if c < 2:
            return (u - p * u)[None]
        j = p.argmin(dim=1, keepdim=True)
        u_j = u.gather(1, j)
        beta = u_j / (1 - u_j)
        r = torch.arange(c - 1, device=f.device)
        keep = (r + (r >= j)).T  # the classes other than j, (c - 1, m)
        u_keep = u.T.gather(0, keep)
        base = (-(1 + beta) * p).scatter_add_(1, j, beta)  # beta e_j - (1 + beta) p
        out = u_keep[:, :, None] * base
        return out.scatter_add_(2, keep[:, :, None], u_keep[:, :, None])

    def module_output(self, f):
        return torch.softmax(f, dim=1) if self.module_applies_softmax else f

    def outputs_needed(self, n):
        return f"y has {n} classes"

    def align_classes(self, net, classes):
        net_classes = getattr(net, "classes_", None) if hasattr(net, "classes_") else None
        if net_classes is None:
            return classes
        net_classes = np.asarray(net_classes)
        if np.isin(classes, net_classes).all() and not np.array_equal(net_classes, classes):
            return net_classes
        return classes

    def log_link(self, f):
        return torch.log_softmax(f, dim=-1)

    def link_derivatives(self, f, y):
        """Softmax: ``g = e_y - p`` and ``-d^2 ll / df^2 = diag(p) - p p^T``."""
        log_p = torch.log_softmax(f, dim=-1)
        y = y.long().reshape(-1, 1)
        p = log_p.exp()
        return log_p.gather(1, y)[:, 0], (-p).scatter_add_(1, y, torch.ones_like(p[:, :1])), p, p


class Binary(_Classifier):
    """Sigmoid cross-entropy on one logit; predictions have two columns (0 and 1)."""

    name = "binary"
    multi_class = False

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def outputs_needed(self, n):
        return "a NeuralNetBinaryClassifier needs one output (the logit of class 1)"

    def n_outputs(self, n):
        if n != 2:
            raise ValueError(
                "Only binary classification is supported with a NeuralNetBinaryClassifier "
                f"(one logit); y has {n} classes. Use NeuralNetClassifier with one output "
                "per class."
            )
        return 1

    def net_targets(self, y, dtype):
        return np.asarray(y, dtype=dtype)

    def decide(self, log_proba):
        """Class 1 where its probability exceeds the net's ``threshold`` (as skorch)."""
        return (np.exp(log_proba[:, 1]) > self.threshold).astype(np.int64)

    def row_loss(self, f, y):
        return F.binary_cross_entropy_with_logits(
            f.to(torch.float64).reshape(-1), y.reshape(-1).to(torch.float64), reduction="none"
        )

    def hessian(self, f):
        p = torch.sigmoid(f)
        return (p * (1 - p))[:, :, None]

    def hessian_diag(self, f):
        p = torch.sigmoid(f)
        return p * (1 - p)

    def hessian_sqrt(self, f):
        p = torch.sigmoid(f)
        return (p * (1 - p)).sqrt()[None]

    def log_link(self, f):
        x = f[..., 0]
        return torch.stack([F.logsigmoid(-x), F.logsigmoid(x)], dim=-1)

    def link_derivatives(self, f, y):
        """Sigmoid on one logit: ``g = y - s`` and ``-d^2 ll / df^2 = s (1 - s)``,
        ``s = sigmoid(f)``."""
        x = f[:, 0]
        one = y.long().reshape(-1) == 1
        ll = torch.where(one, F.logsigmoid(x), F.logsigmoid(-x))
        s = torch.sigmoid(x)
        g = one.to(f.dtype) - s
        return ll, g[:, None], (s * torch.sigmoid(-x))[:, None], None


class Regression(Likelihood):
    """Gaussian noise with standard deviation ``sigma`` on each of ``c`` outputs."""

    name = "regression"
    is_classifier = False
    has_noise = True
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

    def observation(self, mean: Tensor, var: Tensor, sigma) -> tuple[Tensor, Tensor, Tensor]:
        """``(mean of y, variance of the mean, noise variance)`` per row and target from
        the Gaussian ``N(mean, var)`` over the outputs ``f``: the noise is ``sigma^2``."""
        return mean, var, torch.full_like(mean, float(sigma) ** 2)

    def observation_draw(self, f: Tensor, sigma) -> tuple[Tensor, Tensor]:
        """For outputs drawn under sampled weights ``f`` (S, m, c): each draw's mean of
        ``y`` and noise variance, (S, m, K) each."""
        return f, torch.full_like(f, float(sigma) ** 2)


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


class HeteroscedasticGaussianNLL(torch.nn.Module):
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
