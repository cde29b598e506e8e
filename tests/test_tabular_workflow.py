"""The tabular data scientist's workflow, end to end (issue 14).

A mixed-type frame (numbers with missing values, categories), string labels, a
ColumnTransformer whose OneHotEncoder output stays sparse, a skorch net trained inside a
Pipeline with its default validation split, the fitted Pipeline wrapped frozen, sample
weights, GridSearchCV with routed unseen rows, a pickle round trip; and the smaller
promises: the net's own decisions (a binary threshold), one forward pass for last-layer
sampling.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import sklearn
import torch
from sklearn.compose import make_column_transformer
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier
from torch import nn

from sklaplace import LaplaceClassifier
from sklaplace._runtime import passes as _passes

# The mixed-type frame workflow: also run by .ci/run at the minimum versions (setup.cfg).
pytestmark = pytest.mark.floors


class TabularMLP(nn.Module):
    """Takes the preprocessor's output, dense or a densified sparse batch."""

    def __init__(self, n_out=3):
        super().__init__()
        self.body = nn.Sequential(nn.LazyLinear(32), nn.ReLU())
        self.out = nn.Linear(32, n_out)

    def forward(self, X):
        return self.out(self.body(X.float()))


def _frame(n, seed):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "income": rng.normal(50, 10, n),
            "age": rng.integers(18, 80, n).astype(float),
            "city": rng.choice(["paris", "lyon", "nice", "lille"], n),
            "plan": rng.choice(["basic", "pro"], n),
        }
    )
    score = (df["income"] - 50) / 10 + (df["city"] == "paris") - 0.5 * (df["plan"] == "pro")
    labels = np.array(["churn", "stay", "upgrade"])
    y = labels[np.digitize(score + rng.normal(0, 0.7, n), [-0.5, 0.8])]
    df.loc[rng.choice(n, n // 20, replace=False), "income"] = np.nan
    return df, y


def _preprocessor():
    numeric = make_pipeline(SimpleImputer(), StandardScaler())
    return make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
        (numeric, ["income", "age"]),
        sparse_threshold=1.0,  # keep the one-hot output sparse
    )


@pytest.fixture(scope="module")
def fitted_pipeline():
    X, y = _frame(700, 0)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        TabularMLP,
        criterion=nn.CrossEntropyLoss,
        max_epochs=25,
        lr=0.01,
        optimizer=torch.optim.Adam,
        verbose=0,
    )  # fmt: skip  (skorch's default train_split: ValidSplit(5, stratified))
    codes = np.searchsorted(np.unique(y), y)
    pipe = make_pipeline(_preprocessor(), net).fit(X, codes)
    assert sp.issparse(pipe[:-1].transform(X))
    return pipe, X, y


def test_the_mixed_type_workflow_end_to_end(fitted_pipeline, tmp_path):
    pipe, X, y = fitted_pipeline
    X_new, y_new = _frame(300, 1)
    w = np.where(y == "upgrade", 2.0, 1.0)  # the rare class counts twice

    # the fitted Pipeline, frozen: its net's own validation rows are found and verified
    clf = LaplaceClassifier(FrozenEstimator(pipe), calibration="temperature")
    clf.fit(X, np.searchsorted(np.unique(y), y), sample_weight=w)
    assert clf.validation_source_ == "train_split"
    assert clf.n_features_in_ == 4 and list(clf.feature_names_in_) == list(X.columns)
    proba = clf.predict_proba(X_new)
    assert proba.shape == (300, 3) and np.allclose(proba.sum(1), 1.0)
    # the posterior sits on the net: predictions go through the fitted steps
    net_proba = pipe.predict_proba(X_new)
    assert np.mean(proba.argmax(1) == net_proba.argmax(1)) > 0.95

    # string labels, unseen rows passed explicitly and routed through GridSearchCV
    with sklearn.config_context(enable_metadata_routing=True):
        laplace = LaplaceClassifier(FrozenEstimator(pipe)).set_fit_request(
            sample_weight=True, X_val=True, y_val=True
        )
        search = GridSearchCV(
            laplace,
            {"subset_of_weights": ["last_layer", "all"], "calibration": [None, "auto"]},
            cv=KFold(3, shuffle=True, random_state=0),
            scoring=get_scorer("neg_log_loss").set_score_request(sample_weight=True),
        ).fit(X, y, sample_weight=w, X_val=X_new[:150], y_val=y_new[:150])
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    best = search.best_estimator_
    assert best.validation_source_ == "X_val"
    np.testing.assert_array_equal(best.classes_, ["churn", "stay", "upgrade"])
    assert set(best.predict(X_new)) <= {"churn", "stay", "upgrade"}

    # a pickle round trip gives the same predictions
    path = tmp_path / "clf.pkl"
    path.write_bytes(pickle.dumps(best))
    restored = pickle.loads(path.read_bytes())
    np.testing.assert_array_equal(restored.predict_proba(X_new), best.predict_proba(X_new))


def test_an_unfitted_pipeline_is_fitted_and_trained_inside_fit():
    X, y = _frame(400, 2)
    net = NeuralNetClassifier(
        TabularMLP, criterion=nn.CrossEntropyLoss, max_epochs=10, lr=0.01,
        optimizer=torch.optim.Adam, verbose=0,
    )  # fmt: skip
    clf = LaplaceClassifier(make_pipeline(_preprocessor(), net), random_state=0).fit(X, y)
    assert clf.validation_source_ == "train_split"
    fitted = clf.estimator_
    assert fitted[-1].initialized_ and not net.__dict__.get("initialized_", False)
    assert clf.predict_proba(X[:5]).shape == (5, 3)


def test_a_binary_net_keeps_its_threshold():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(np.float32)
    torch.manual_seed(0)
    net = NeuralNetBinaryClassifier(
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)), max_epochs=60, lr=0.05,
        optimizer=torch.optim.Adam, train_split=None, threshold=0.8, verbose=0,
    ).fit(X, y)  # fmt: skip
    clf = LaplaceClassifier(FrozenEstimator(net), prior_precision=1e6).fit(X, y)
    np.testing.assert_array_equal(clf.predict(X), net.predict(X))
    # the threshold matters here: argmax would call many more rows 1
    assert np.mean(net.predict(X)) < np.mean(clf.predict_proba(X)[:, 1] > 0.5) - 0.05


def test_last_layer_sampling_runs_the_net_once_per_batch(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    net = NeuralNetClassifier(
        TabularMLP, criterion=nn.CrossEntropyLoss, max_epochs=2, batch_size=50,
        train_split=None, verbose=0,
    ).fit(X, y)  # fmt: skip
    clf = LaplaceClassifier(
        FrozenEstimator(net),
        prior_precision=1.0,
        predictive="nn",
        n_samples=50,
        random_state=0,
        subset_of_weights="last_layer",
    ).fit(X, y)
    calls = []
    forward = _passes.NetView.forward
    monkeypatch.setattr(
        _passes.NetView, "forward", lambda v, Xi: calls.append(1) or forward(v, Xi)
    )
    proba = clf.predict_proba(X)
    assert len(calls) == 4  # one forward pass per batch of 50, not one per draw
    assert proba.shape == (200, 3)
