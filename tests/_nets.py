"""Small net factories shared by the tests (tests only; not part of the package).

``MLP`` takes any number of input features (its first layer is ``nn.LazyLinear``), so one
factory serves every data set, including the random shapes of scikit-learn's common checks.
``AutoOutputClassifier`` / ``AutoOutputRegressor`` size their output layer from ``y`` just
before training, which ``parametrize_with_checks`` needs: its checks fit the same estimator
on binary, multiclass and multi-target data.
"""

from __future__ import annotations

import numpy as np
from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from torch import nn

__all__ = [
    "MLP",
    "AutoOutputClassifier",
    "AutoOutputRegressor",
    "binary_net",
    "classifier_net",
    "regressor_net",
]


class MLP(nn.Module):
    """``LazyLinear(hidden) -> ReLU -> Linear(n_out)`` with an optional final layer.

    Parameters
    ----------
    n_out : int
        Output units.
    hidden : int
        Width of the hidden layer.
    final : {"none", "softmax", "tanh"}
        ``"softmax"`` for skorch's default ``NLLLoss``; ``"tanh"`` builds a net whose output
        does not come straight from a Linear layer (unsupported by the last-layer Laplace).
    """

    def __init__(self, n_out: int = 2, hidden: int = 16, final: str = "none") -> None:
        super().__init__()
        self.body = nn.Sequential(nn.LazyLinear(hidden), nn.ReLU())
        self.out = nn.Linear(hidden, n_out)
        self.final = {"none": nn.Identity(), "softmax": nn.Softmax(dim=-1), "tanh": nn.Tanh()}[
            final
        ]

    def forward(self, X):
        return self.final(self.out(self.body(X)))


class AutoOutputClassifier(NeuralNetClassifier):
    """``NeuralNetClassifier`` whose output layer gets one unit per class of ``y`` at fit."""

    def fit(self, X, y=None, **fit_params):
        self.set_params(module__n_out=len(np.unique(y)))
        return super().fit(X, y, **fit_params)


class AutoOutputRegressor(NeuralNetRegressor):
    """``NeuralNetRegressor`` whose output layer gets one unit per target of ``y`` at fit."""

    def fit(self, X, y=None, **fit_params):
        y = np.asarray(y)
        self.set_params(module__n_out=1 if y.ndim == 1 else y.shape[1])
        return super().fit(X, y, **fit_params)


def _common(max_epochs, lr, **kwargs):
    params = {
        "max_epochs": max_epochs,
        "lr": lr,
        "batch_size": 64,
        "train_split": None,
        "verbose": 0,
    }
    params.update(kwargs)
    return params


def classifier_net(n_out=2, *, hidden=16, max_epochs=10, lr=0.1, cls=NeuralNetClassifier, **kw):
    """A ``NeuralNetClassifier`` on ``MLP``, with ``CrossEntropyLoss`` unless told otherwise.

    For skorch's ``NLLLoss`` pass ``criterion=nn.NLLLoss, module__final="softmax"``.
    """
    kw.setdefault("criterion", nn.CrossEntropyLoss)
    return cls(MLP, module__n_out=n_out, module__hidden=hidden, **_common(max_epochs, lr, **kw))


def binary_net(*, hidden=16, max_epochs=10, lr=0.1, **kw):
    """A ``NeuralNetBinaryClassifier`` (one logit, ``BCEWithLogitsLoss``) on ``MLP``."""
    return NeuralNetBinaryClassifier(
        MLP, module__n_out=1, module__hidden=hidden, **_common(max_epochs, lr, **kw)
    )


def regressor_net(n_out=1, *, hidden=16, max_epochs=10, lr=0.05, cls=NeuralNetRegressor, **kw):
    """A ``NeuralNetRegressor`` (``MSELoss``) on ``MLP``."""
    return cls(MLP, module__n_out=n_out, module__hidden=hidden, **_common(max_epochs, lr, **kw))


class TanhMLP64(nn.Module):
    """A small float64 MLP with one tanh hidden layer (the ensembles' tests)."""

    def __init__(self, n_in, n_out, hidden):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh())
        self.out = nn.Linear(hidden, n_out)
        self.double()

    def forward(self, X):
        return self.out(self.body(X))
