"""Test-session settings shared by every test module."""

import numpy as np
import pytest
import torch
from _nets import classifier_net, regressor_net
from sklearn.datasets import make_classification, make_regression


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Run the suite's tiny nets on one intra-op thread, then restore the setting.

    Their ops are too small to gain from threads, and on a busy 2-core machine OpenMP's
    waiting threads made the estimator tests 20 times slower (measured: 267 s against 13 s).
    """
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


# Small data and nets shared by the device and robustness tests (a module that defines a
# fixture of the same name uses its own).
@pytest.fixture(scope="module")
def cls_data():
    X, y = make_classification(
        n_samples=200, n_features=5, n_informative=4, n_redundant=0, n_classes=3, random_state=0
    )
    return X, y


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=150, n_features=4, noise=5.0, random_state=0)
    return X, y / y.std()


@pytest.fixture(scope="module")
def cls_net(cls_data):
    X, y = cls_data
    torch.manual_seed(0)
    return classifier_net(3, max_epochs=20, lr=0.02, optimizer=torch.optim.Adam).fit(
        X.astype(np.float32), y
    )


@pytest.fixture(scope="module")
def reg_net(reg_data):
    X, y = reg_data
    torch.manual_seed(0)
    net = regressor_net(max_epochs=20, lr=0.02, optimizer=torch.optim.Adam)
    return net.fit(X.astype(np.float32), y[:, None].astype(np.float32))
