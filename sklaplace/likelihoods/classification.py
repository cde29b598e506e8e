"""Likelihoods over classes: the softmax over ``c`` logits and the sigmoid of one."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..links import affine, mc_log_link, probit_logits
from .base import Likelihood, register

__all__ = ["Binary", "Classification"]


class _Classifier(Likelihood):
    """A likelihood over classes: the link from outputs to class probabilities, averaged
    over the Gaussian over ``f`` by the probit approximation or Monte Carlo."""

    is_classifier = True
    multi_class = True  # more than two classes possible

    def net_targets(self, y, dtype):
        return np.asarray(y, dtype=np.int64)

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


@register
class Classification(_Classifier):
    """Softmax cross-entropy over ``c`` logits.

    Parameters
    ----------
    module_applies_softmax : bool, default=False
        The module ends in ``nn.Softmax`` (skorch's default ``NLLLoss`` takes the log of its
        output): ``f`` is then the input of that softmax.
    """

    name = "classification"
    net_kind = "classifier"
    criteria = (nn.CrossEntropyLoss, nn.NLLLoss)
    supported = (
        "NeuralNetClassifier with CrossEntropyLoss (module returns logits) or NLLLoss "
        "(module returns probabilities, skorch's default)"
    )

    def __init__(self, module_applies_softmax: bool = False) -> None:
        self.module_applies_softmax = module_applies_softmax

    @classmethod
    def from_criterion(cls, criterion, net):
        return cls(module_applies_softmax=issubclass(criterion, nn.NLLLoss))

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


@register
class Binary(_Classifier):
    """Sigmoid cross-entropy on one logit; predictions have two columns (0 and 1)."""

    name = "binary"
    multi_class = False
    net_kind = "binary"
    criteria = (nn.BCEWithLogitsLoss,)
    supported = "NeuralNetBinaryClassifier with BCEWithLogitsLoss"

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    @classmethod
    def from_criterion(cls, criterion, net):
        return cls(threshold=getattr(net, "threshold", 0.5))

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
