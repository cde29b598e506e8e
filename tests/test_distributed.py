"""GridSearchCV over a frozen net in parallel: joblib's loky processes and a dask cluster.

``GridSearchCV(LaplaceClassifier(FrozenEstimator(net)), {"prior_precision": [...]},
n_jobs=2)`` must choose the same candidate and give the same test scores in worker processes
(each with its own pass cache, each unpickling the estimator) as in one process. The
workers must also not oversubscribe the cores: loky limits OpenMP's threads in its workers to
``cpu_count // n_jobs``, and dask's nanny starts workers with ``OMP_NUM_THREADS=1``; both are
checked through ``torch.get_num_threads()`` in the workers (see docs/scaling.rst).
"""

import logging
import os

import joblib
import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from skorch import NeuralNetClassifier
from torch import nn

from sklaplace import LaplaceClassifier

GRID = {"prior_precision": np.logspace(-2, 3, 6)}


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=300, n_features=5, n_informative=4, n_redundant=0, n_classes=3, random_state=0
    )
    return X, y


@pytest.fixture(scope="module")
def net(data):
    """A trained net whose module is plain torch (workers unpickle it without tests/)."""
    X, y = data
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    net = NeuralNetClassifier(
        module,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.02,
        max_epochs=20,
        train_split=None,
        verbose=0,
    )
    return net.fit(X[:150].astype(np.float32), y[:150])


def _search(net, n_jobs):
    return GridSearchCV(
        LaplaceClassifier(FrozenEstimator(net)),
        GRID,
        scoring="neg_log_loss",
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        n_jobs=n_jobs,
    )


@pytest.fixture(scope="module")
def sequential(data, net):
    X, y = data
    return _search(net, 1).fit(X, y)


def _assert_same_search(search, reference):
    assert search.best_params_ == reference.best_params_
    for key in ["mean_test_score", *(f"split{i}_test_score" for i in range(3))]:
        np.testing.assert_allclose(search.cv_results_[key], reference.cv_results_[key], rtol=1e-10)
    np.testing.assert_allclose(search.best_score_, reference.best_score_, rtol=1e-10)


def _expected_threads(n_jobs):
    """What joblib gives each loky worker: OMP_NUM_THREADS if set, else cpu_count // n_jobs."""
    return int(os.environ.get("OMP_NUM_THREADS", max(1, joblib.cpu_count() // n_jobs)))


def test_loky_matches_sequential(data, net, sequential):
    X, y = data
    with joblib.parallel_backend("loky"):
        search = _search(net, 2).fit(X, y)
    _assert_same_search(search, sequential)
    # the selected model predicts as the one chosen in a single process
    np.testing.assert_allclose(search.predict_proba(X), sequential.predict_proba(X), rtol=1e-12)
    # loky caps OpenMP in its workers (OMP_NUM_THREADS), which torch reads when imported
    threads = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(torch.get_num_threads)() for _ in range(4)
    )
    assert set(threads) == {_expected_threads(2)}


def test_dask_matches_sequential(data, net, sequential):
    pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    X, y = data
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # the nanny starts workers with OMP_NUM_THREADS=1: torch uses one thread each
        assert set(client.run(torch.get_num_threads).values()) == {1}
        client.run(torch.set_num_threads, 1)  # the explicit form, for workers started otherwise
        with joblib.parallel_backend("dask"):
            search = _search(net, 2).fit(X, y)
        _assert_same_search(search, sequential)
        assert len(client.run(os.getpid)) == 2
