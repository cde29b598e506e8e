"""Adversarial review of the Laplace ensembles (issue 21): defects a demanding user hits."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import sklaplace

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
