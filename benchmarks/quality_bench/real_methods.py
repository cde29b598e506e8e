"""Nets and methods of the real tabular tasks.

The net is what a tabular data scientist fits: ``Pipeline(ColumnTransformer(OneHotEncoder
+ StandardScaler), NeuralNetClassifier(MLP 128-128))``, Adam (lr 1e-3), batch 256 (the
benchmark's time budget), no weight decay. The one-hot categories are the table's (a fixed
schema), so every net of a task has the same inputs.

Methods (each a predictor with float64 ``log_proba(X)``):

* ``MAP``: the net (its logits in float64);
* ``temperature``, ``sigmoid``, ``isotonic``: ``CalibratedClassifierCV(FrozenEstimator(net),
  method=...)`` fitted on the unseen rows, as users write it (scikit-learn fits one
  calibrator on all the rows of a frozen estimator);
* ``BCTS``: bias-corrected temperature scaling on the float64 logits
  (:func:`quality_bench.calibrators.fit_bcts`);
* ``ensemble``: the mean probability of 5 nets trained like the workflow's net;
* the sklaplace rows, ``SKLAPLACE_ROWS``: a label, the parameters it sets on top of the
  package's defaults, and the workflows it runs in. A row whose parameter the installed
  sklaplace does not have yet is skipped (and the report says so).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import log_softmax, logsumexp
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from skorch import NeuralNetClassifier
from torch import nn

from sklaplace import LaplaceClassifier

from .calibrators import fit_bcts
from .nets import MLP

HIDDEN = 128
BATCH = 256
REAL_REGIMES = {"short": 20, "long": 100}  # name -> max_epochs; `long` over-fits
CALIBRATORS = ("temperature", "sigmoid", "isotonic", "BCTS")
BASELINES = ("MAP", *CALIBRATORS, "ensemble")

# label -> (parameters on top of the defaults, workflows). The first row is "the default"
# of the targets. Workflow (d) has no unseen rows: only the default runs there.
SKLAPLACE_ROWS = {
    "sklaplace default": ({}, "abcd"),
    "calibration=None": ({"calibration": None}, "abc"),
    "calibration='temperature'": ({"calibration": "temperature"}, "bc"),
    "calibration='bias_temperature'": ({"calibration": "bias_temperature"}, "bc"),
}
DEFAULT = "sklaplace default"


def available_rows(rows=None) -> tuple[dict, dict]:
    """The rows the installed sklaplace can run, and the skipped ones with the reason."""
    rows = SKLAPLACE_ROWS if rows is None else rows
    known = set(LaplaceClassifier(None).get_params())
    ok, skipped = {}, {}
    for label, (params, workflows) in rows.items():
        missing = sorted(set(params) - known)
        if missing:
            skipped[label] = f"LaplaceClassifier has no parameter {', '.join(missing)}"
        else:
            ok[label] = (params, workflows)
    return ok, skipped


class TabularMLP(MLP):
    """The benchmark's MLP on the preprocessor's float64 output."""

    def forward(self, X):
        return super().forward(X.float())


def make_pipeline_net(task, epochs: int, own_split: bool) -> Pipeline:
    """An unfitted ``Pipeline(ColumnTransformer, NeuralNetClassifier)`` for ``task``."""
    pre = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(
                    categories=task.categories, handle_unknown="ignore", sparse_output=False
                ),
                task.categorical,
            ),
            ("numeric", StandardScaler(), task.numeric),
        ],
        sparse_threshold=0.0,
    )
    n_in = sum(len(c) for c in task.categories) + len(task.numeric)
    kw = dict(
        module=TabularMLP,
        module__n_in=n_in,
        module__n_out=task.n_classes,
        module__hidden=HIDDEN,
        module__act="relu",
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=epochs,
        batch_size=BATCH,
        verbose=0,
    )
    if not own_split:
        kw["train_split"] = None
    return Pipeline([("pre", pre), ("net", NeuralNetClassifier(**kw))])


def logits64(pipe: Pipeline, X) -> np.ndarray:
    """The fitted pipeline's logits in float64 (skorch's probabilities are float32)."""
    with torch.no_grad():
        out = pipe[-1].forward(pipe[:-1].transform(X), training=False)
    return out.detach().cpu().to(torch.float64).numpy()


def own_split_rows(pipe: Pipeline, X, y) -> np.ndarray:
    """The rows of (X, y) that the fitted pipeline's net held out (its ``train_split``)."""
    net = pipe[-1]
    _, valid = net.train_split(net.get_dataset(pipe[:-1].transform(X), y), y)
    return np.sort(np.asarray(valid.indices))


class MAP:
    def __init__(self, pipe):
        self.pipe, self.info = pipe, {}

    def log_proba(self, X):
        return log_softmax(logits64(self.pipe, X), axis=1)


class SklearnCalibrated:
    """``CalibratedClassifierCV(FrozenEstimator(net), method=method)`` on the unseen rows."""

    def __init__(self, pipe, method, X_u, y_u):
        self.model = CalibratedClassifierCV(FrozenEstimator(pipe), method=method)
        self.model.fit(X_u, y_u)
        self.info = {}
        cal = self.model.calibrated_classifiers_[0].calibrators[0]
        if method == "temperature":
            self.info["T"] = 1.0 / float(cal.beta_)

    def log_proba(self, X):
        p = np.asarray(self.model.predict_proba(X), dtype=np.float64)
        with np.errstate(divide="ignore"):
            return np.log(p)


class BCTSPredictor:
    def __init__(self, pipe, X_u, y_u):
        self.pipe = pipe
        self.head = fit_bcts(logits64(pipe, X_u), y_u)
        self.info = {"T": self.head.T}

    def log_proba(self, X):
        return self.head.log_proba(logits64(self.pipe, X))


class Ensemble:
    def __init__(self, members):
        self.members, self.info = members, {}

    def log_proba(self, X):
        lp = np.stack([log_softmax(logits64(m, X), axis=1) for m in self.members])
        return logsumexp(lp, axis=0) - np.log(len(self.members))


class Laplace:
    """A fitted ``LaplaceClassifier`` through its public API."""

    def __init__(self, model):
        self.model = model
        self.info = {
            "prior": float(np.ravel(model.prior_precision_)[0]),
            "source": model.validation_source_,
        }
        if "calibration" in model.get_params():  # the recalibration head (issue 18)
            self.info["calibration"] = str(model.calibration_)
            self.info["T"] = 1.0 / float(model.calibration_scale_)

    def log_proba(self, X):
        return np.asarray(self.model.predict_log_proba(X), dtype=np.float64)


def baselines(pipe, members, X_u, y_u) -> dict:
    """name -> builder of each baseline, fitted on the unseen rows (X_u, y_u)."""
    out = {"MAP": lambda: MAP(pipe)}
    for m in ("temperature", "sigmoid", "isotonic"):
        out[m] = lambda m=m: SklearnCalibrated(pipe, m, X_u, y_u)
    out["BCTS"] = lambda: BCTSPredictor(pipe, X_u, y_u)
    out["ensemble"] = lambda: Ensemble(members)
    return out
