"""The nets: skorch MLPs, their training regimes, and their outputs in float64.

Classification: MLP in-100-100-out (ReLU), ``NeuralNetClassifier`` with
``CrossEntropyLoss``; regression: a one-output MLP per task (``REG_NETS``),
``NeuralNetRegressor`` with ``MSELoss``. Adam, batch 64, no weight decay. A regime is a
number of epochs: ``long`` over-fits these small data sets (the usual case), ``short``
stops early.

``own_split=True`` leaves skorch's default ``train_split`` (``ValidSplit(5)``: a fifth of
the rows is held out of training and scored each epoch); ``own_split=False`` sets
``train_split=None`` (every row trains).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from skorch import NeuralNetClassifier, NeuralNetRegressor
from torch import nn

REGIMES = {"short": 30, "long": 300}  # name -> max_epochs
QUICK_REGIMES = {"short": 30}


class MLP(nn.Module):
    """n_in -> hidden -> hidden -> n_out, ReLU or tanh."""

    def __init__(self, n_in=2, n_out=2, hidden=100, act="relu"):
        super().__init__()
        act_cls = {"relu": nn.ReLU, "tanh": nn.Tanh}[act]
        self.body = nn.Sequential(
            nn.Linear(n_in, hidden), act_cls(), nn.Linear(hidden, hidden), act_cls()
        )
        self.out = nn.Linear(hidden, n_out)

    def forward(self, X):
        return self.out(self.body(X))


@dataclass(frozen=True)
class NetSpec:
    hidden: int
    act: str
    lr: float


CLF_NET = NetSpec(100, "relu", 1e-3)
REG_NETS = {
    "diabetes": NetSpec(50, "relu", 1e-3),
    "heteroscedastic": NetSpec(50, "tanh", 1e-2),
    "toy_cubic": NetSpec(7, "relu", 1e-2),
    "friedman1": NetSpec(50, "relu", 1e-3),
}


def _common(spec: NetSpec, n_in: int, n_out: int, epochs: int, own_split: bool) -> dict:
    kw = dict(
        module=MLP,
        module__n_in=n_in,
        module__n_out=n_out,
        module__hidden=spec.hidden,
        module__act=spec.act,
        optimizer=torch.optim.Adam,
        lr=spec.lr,
        max_epochs=epochs,
        batch_size=64,
        verbose=0,
    )
    if not own_split:
        kw["train_split"] = None
    return kw


def make_classifier(task, epochs: int, own_split: bool) -> NeuralNetClassifier:
    """An unfitted classifier net for ``task``."""
    kw = _common(CLF_NET, task.X_train.shape[1], task.n_classes, epochs, own_split)
    return NeuralNetClassifier(criterion=nn.CrossEntropyLoss, **kw)


def make_regressor(task, epochs: int, own_split: bool) -> NeuralNetRegressor:
    """An unfitted one-output regressor net for ``task``."""
    kw = _common(REG_NETS[task.name], task.X_train.shape[1], 1, epochs, own_split)
    return NeuralNetRegressor(criterion=nn.MSELoss, **kw)


def net_targets(y: np.ndarray) -> np.ndarray:
    """y as skorch takes it: labels as they are, regression targets as (n, 1) float32."""
    if y.dtype.kind == "f":
        return y.reshape(-1, 1).astype(np.float32)
    return y


def train(net, X, y, seed: int):
    """Fit ``net`` from a seeded initialisation; returns (net, seconds)."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    net.fit(X, net_targets(y))
    return net, time.perf_counter() - t0


def outputs64(net, X) -> np.ndarray:
    """The module's outputs (logits, or regression means) as float64, shape (n, n_out).

    skorch's ``predict_proba`` is float32: probabilities within 6e-8 of 1 round to 1 and
    metrics computed from them are clipped at float32 precision. Every metric here starts
    from these float64 outputs instead.
    """
    with torch.no_grad():
        out = net.forward(X, training=False)
    return out.detach().cpu().to(torch.float64).numpy()


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def own_split_rows(net, X, y) -> np.ndarray:
    """The rows skorch's ``train_split`` of a fitted net holds out of (X, y)."""
    _, valid = net.train_split(net.get_dataset(X, net_targets(y)), net_targets(y))
    return np.sort(np.asarray(valid.indices))
