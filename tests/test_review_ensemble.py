"""Adversarial review of the Laplace ensembles (issue 21): defects a demanding user hits."""

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from skorch import NeuralNetClassifier
from torch import nn

import sklaplace
from sklaplace import LaplaceEnsembleClassifier

_ROOT = str(Path(sklaplace.__file__).resolve().parents[1])


def _run(script: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": _ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_n_jobs_with_a_module_defined_in_main_says_what_to_do():
    """A net whose module class is defined in the user's script or notebook (``__main__``)
    cannot come back from joblib's workers (skorch pickles it by reference): with
    ``n_jobs=2`` fit used to crash with skorch's bare PicklingError; it now says why and
    how to fix it (the class in an importable module, or ``n_jobs=1``)."""
    script = """
    import numpy as np
    from skorch import NeuralNetRegressor
    from torch import nn
    from sklaplace import LaplaceEnsembleRegressor

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(2, 1)

        def forward(self, X):
            return self.out(X)

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 2)).astype(np.float32)
    y = X.sum(1)
    net = NeuralNetRegressor(Net, max_epochs=1, train_split=None, verbose=0)
    ens = LaplaceEnsembleRegressor.from_net(net, n_members=2, random_state=0, n_jobs=2,
                                            prior_precision=1.0, sigma_noise=1.0)
    try:
        ens.fit(X, y)
    except Exception as exc:
        print("ERROR", type(exc).__name__, exc)
    else:
        print("FITTED")
    """
    out = _run(script)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip().splitlines()[-1]
    assert line == "FITTED" or (
        line.startswith("ERROR ValueError")
        and "__main__" in line
        and "n_jobs=1" in line
        and "importable module" in line
    ), line


def _weights(member):
    return torch.cat([p.detach().flatten() for p in member.estimator_.module_.parameters()])


def test_from_net_with_a_module_instance_gives_each_member_its_own_initial_weights():
    """skorch takes the module as a class or as an instance (the ensembles' own docstring
    example passes ``nn.Sequential(...)``); an instance is cloned with its weights, so
    every member used to start from the same ones, against the docs ("copies of one net
    start from different weights"). Member 0 keeps the instance's weights (it trains as
    the single estimator would); members ``i > 0`` are re-initialised under their own
    seed, reproducibly."""
    X, y = make_classification(
        n_samples=60, n_features=4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
    )
    X = X.astype(np.float32)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    start = torch.cat([p.detach().flatten().clone() for p in module.parameters()])
    # lr=0: training leaves the initial weights as they are
    net = NeuralNetClassifier(
        module, criterion=nn.CrossEntropyLoss, max_epochs=1, lr=0.0, train_split=None, verbose=0
    )
    ens = LaplaceEnsembleClassifier.from_net(
        net, n_members=3, random_state=0, prior_precision=1.0
    ).fit(X, y)
    w = [_weights(m) for m in ens.estimators_]
    assert torch.equal(w[0], start)
    assert not torch.equal(w[1], start) and not torch.equal(w[2], start)
    assert not torch.equal(w[1], w[2])
    again = LaplaceEnsembleClassifier.from_net(
        net, n_members=3, random_state=0, prior_precision=1.0
    ).fit(X, y)
    assert all(torch.equal(a, _weights(b)) for a, b in zip(w, again.estimators_, strict=True))
    # the caller's module instance is left as it was
    assert torch.equal(torch.cat([p.detach().flatten() for p in module.parameters()]), start)


@pytest.fixture(scope="module")
def fitted_on_a_frame():
    X, y = make_classification(
        n_samples=60, n_features=4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
    )
    X = pd.DataFrame(X.astype(np.float32), columns=list("abcd"))
    net = NeuralNetClassifier(
        nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)),
        criterion=nn.CrossEntropyLoss,
        max_epochs=2,
        lr=0.1,
        train_split=None,
        verbose=0,
    )
    ens = LaplaceEnsembleClassifier.from_net(
        net, n_members=3, random_state=0, prior_precision=1.0
    ).fit(X, y)
    return ens, X


def test_feature_name_warning_fires_once_and_names_the_ensemble(fitted_on_a_frame):
    ens, X = fitted_on_a_frame
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ens.predict_proba(X.to_numpy()[:2])
    names = [str(w.message) for w in caught if "feature names" in str(w.message)]
    assert len(names) == 1 and "LaplaceEnsembleClassifier" in names[0], names


def test_wrong_number_of_features_names_the_ensemble(fitted_on_a_frame):
    ens, X = fitted_on_a_frame
    with pytest.raises(ValueError, match="LaplaceEnsembleClassifier is expecting 4"):
        ens.predict(X.to_numpy()[:, :3])


def test_nested_member_parameters_as_in_voting_classifier(fitted_on_a_frame):
    ens, _ = fitted_on_a_frame
    unfitted = clone(ens)
    assert "member0__lr" in unfitted.get_params(deep=True)
    unfitted.set_params(member0__lr=0.5)
    assert unfitted.estimators[0][1].lr == 0.5


def test_estimators_as_lists_of_two_as_in_voting_classifier():
    net = NeuralNetClassifier(
        nn.Sequential(nn.Linear(4, 3)), criterion=nn.CrossEntropyLoss, verbose=0
    )
    assert LaplaceEnsembleClassifier([["a", net]])._check_estimators()[0][0] == "a"


def test_fitting_on_a_data_frame_warns_nothing():
    """In a fresh process: torch shows that warning once per process."""
    script = """
    import warnings
    import numpy as np, pandas as pd
    from torch import nn
    from skorch import NeuralNetClassifier
    from sklaplace import LaplaceEnsembleClassifier

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.standard_normal((60, 4)).astype(np.float32), columns=list("abcd"))
    y = np.arange(60) % 3
    net = NeuralNetClassifier(nn.Sequential(nn.Linear(4, 3)), criterion=nn.CrossEntropyLoss,
                              max_epochs=1, train_split=None, verbose=0)
    warnings.simplefilter("error")
    LaplaceEnsembleClassifier.from_net(net, n_members=2, random_state=0,
                                       prior_precision=1.0).fit(X, y)
    print("CLEAN")
    """
    out = _run(script)
    assert out.stdout.strip().endswith("CLEAN"), out.stderr[-1500:]
