"""The interface every likelihood offers, and the registry that maps criteria to them.

A likelihood registers itself (:func:`register`) with the skorch nets and criteria it
stands for (``net_kind``, ``criteria``, ``from_criterion``); ``_runtime.skorch`` asks
:func:`for_criterion` which one a net was trained with, so a new likelihood is a class
in this package and nothing else.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["LIKELIHOODS", "Likelihood", "for_criterion", "register", "supported"]


class Likelihood:
    """Interface shared by the likelihoods (see :mod:`sklaplace.likelihoods`).

    Every method and attribute the rest of sklaplace uses is declared here: a default where
    one is right for every likelihood, else ``NotImplementedError`` naming what is missing.

    Attributes
    ----------
    name : str
        A short name.
    is_classifier : bool
        Predicts classes (``LaplaceClassifier``) rather than values (``LaplaceRegressor``).
    multi_class : bool
        A classifier for more than two classes (scikit-learn's tag).
    has_noise : bool
        Has a noise scale ``sigma`` to estimate (``sigma_noise``).
    without_heldout : str
        What is predicted when the tuning finds no unseen rows (for the warning).
    net_kind : {"classifier", "binary", "regressor"}
        The skorch net class it is trained with (``NeuralNetClassifier``,
        ``NeuralNetBinaryClassifier``, ``NeuralNetRegressor``).
    criteria : tuple of type
        The criteria (loss classes, and their subclasses) it stands for.
    supported : str
        The net and criteria, for the message that lists what is supported.
    """

    name: ClassVar[str] = "likelihood"
    multi_class: ClassVar[bool] = False
    has_noise: ClassVar[bool] = False
    without_heldout: ClassVar[str] = "The predictions are the net's own."
    net_kind: ClassVar[str] = ""
    criteria: ClassVar[tuple[type[nn.Module], ...]] = ()
    supported: ClassVar[str] = ""

    @property
    def is_classifier(self) -> bool:
        """Predicts classes (``LaplaceClassifier``) or values (``LaplaceRegressor``)."""
        raise self._missing("is_classifier (a class attribute: True or False)")

    @classmethod
    def from_criterion(cls, criterion: type[nn.Module], net) -> Likelihood:
        """The likelihood for a net trained with ``criterion`` (one of ``criteria``)."""
        return cls()

    def _missing(self, what: str):
        return NotImplementedError(f"{type(self).__name__} does not implement {what}.")

    # ---------------------------------------- the loss and its curvature
    def row_loss(self, f: Tensor, y: Tensor) -> Tensor:
        """Each row's loss (m,), float64."""
        raise self._missing("row_loss (each row's training loss)")

    def loss(self, f: Tensor, y: Tensor, w: Tensor | None = None) -> Tensor:
        """The loss summed over rows, each weighted by ``w`` if given (float64 scalar)."""
        rows = self.row_loss(f, y)
        return rows.sum() if w is None else (w * rows).sum()

    def hessian(self, f: Tensor) -> Tensor:
        """``Lambda_n`` for each row: (m, c, c)."""
        raise self._missing("hessian (the loss's Hessian in the outputs)")

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
        (:func:`sklaplace._runtime.blas.gram`): for many classes that halves the work of the
        dense sum and forms no (c, c) temporaries but the result. This default is for a
        diagonal ``Lambda`` (sigmoid, Gaussian); the softmax overrides it.
        """
        diag = self.hessian_diag(f.to(torch.float64))
        return (diag.sum(0) if w is None else w @ diag), None

    def hessian_sqrt(self, f: Tensor) -> Tensor:
        """Columns of ``S_n`` with ``S_n S_n^T = Lambda_n``, as ``(r, m, c)`` cotangents."""
        raise self._missing("hessian_sqrt (a square root of the Hessian)")

    # ---------------------------------------- the net's outputs and targets
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

    # ---------------------------------------- evidence and held-out rows
    def noise_variance(self, sigma) -> float:
        """``sigma^2`` of the curvature scale ``1 / (sigma^2 T)``: 1 without a noise scale."""
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

    def heldout_row_log_likelihood(self, mean, var, y, sigma=None, head=None) -> Tensor:
        """Log predictive density (m,) of each held-out row ``y`` under the Gaussian
        ``N(mean, var)`` over the outputs (and noise ``sigma``); ``head``: a classifier's
        recalibration head ``(scale, bias)`` (None: the identity)."""
        raise self._missing("heldout_row_log_likelihood (the held-out log-likelihood)")

    def heldout_log_likelihood(self, mean, var, y, sigma=None, head=None, w=None) -> Tensor:
        """Summed (weighted by ``w`` if given) ``heldout_row_log_likelihood``."""
        rows = self.heldout_row_log_likelihood(mean, var, y, sigma, head)
        return rows.sum() if w is None else (w * rows).sum()

    # ---------------------------------------- a classifier's predictions
    def log_link(self, f: Tensor) -> Tensor:
        """Log-probabilities of the classes from outputs ``f`` (..., c) (classifiers)."""
        raise self._missing("log_link (a classifier's link)")

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
        """Log of the predictive class probabilities from the Gaussian over ``f``
        (classifiers; see :meth:`sklaplace.likelihoods.Classification.log_predict`)."""
        raise self._missing("log_predict (a classifier's predictive)")

    def decide(self, log_proba: np.ndarray) -> np.ndarray:
        """The predicted class index of each row (classifiers)."""
        raise self._missing("decide (a classifier's decision)")

    def align_classes(self, net, classes: np.ndarray) -> np.ndarray:
        """The classes in the net's own order when y uses the net's ``classes_``; this
        default keeps them as they are."""
        return classes

    # ---------------------------------------- a regressor's predictions
    def observation(self, mean: Tensor, var: Tensor, sigma) -> tuple[Tensor, Tensor, Tensor]:
        """``(mean of y, variance of that mean, noise variance)``, (m, K) each, from the
        Gaussian ``N(mean, var)`` over the outputs ``f`` (regressors)."""
        raise self._missing("observation (a regressor's predictive moments)")

    def observation_draw(self, f: Tensor, sigma) -> tuple[Tensor, Tensor]:
        """For outputs drawn under sampled weights ``f`` (S, m, c): each draw's mean of
        ``y`` and noise variance, (S, m, K) each (regressors)."""
        raise self._missing("observation_draw (a regressor's predictive under draws)")


LIKELIHOODS: list[type[Likelihood]] = []


def register(likelihood: type[Likelihood]) -> type[Likelihood]:
    """Add a likelihood to those :func:`for_criterion` finds (a class decorator)."""
    LIKELIHOODS.append(likelihood)
    return likelihood


def for_criterion(net_kind: str, criterion: type[nn.Module], net) -> Likelihood | None:
    """The likelihood of a ``net_kind`` net trained with ``criterion``, or None."""
    for likelihood in LIKELIHOODS:
        if likelihood.net_kind == net_kind and issubclass(criterion, likelihood.criteria):
            return likelihood.from_criterion(criterion, net)
    return None


def supported() -> str:
    """The nets and criteria with a likelihood, for error messages."""
    return "; ".join(likelihood.supported for likelihood in LIKELIHOODS)
