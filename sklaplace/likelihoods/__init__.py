"""Likelihoods: everything that depends on what the net's outputs ``f`` mean.

One object per likelihood, with the interface of :class:`Likelihood`: the summed training
loss, the Hessian ``Lambda_n`` of a row's loss with respect to ``f`` (and its square root,
its diagonal and its sum over rows), the link from ``f`` to predictions, the
log-likelihood of held-out rows under the Gaussian ``N(mean, var)`` over ``f``, and the
data term of the evidence. Nothing else in sklaplace branches on the likelihood.

Each likelihood registers the skorch net and criteria it stands for
(:func:`~.base.register`), so a new one is a class in this package:
:mod:`.classification` (softmax, sigmoid), :mod:`.regression` (Gaussian noise, fixed or
predicted by the net), on the interface in :mod:`.base`.

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

from .base import Likelihood, for_criterion, register, supported
from .classification import Binary, Classification
from .regression import Heteroscedastic, HeteroscedasticGaussianNLL, Regression

__all__ = [
    "Binary",
    "Classification",
    "Heteroscedastic",
    "HeteroscedasticGaussianNLL",
    "Likelihood",
    "Regression",
    "for_criterion",
    "register",
    "supported",
]
