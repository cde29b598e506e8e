"""Smoke test of ``benchmarks/heteroscedastic.py --quick``.

Runs the quick configuration (one seed, the short regime, two tasks) into a temporary
path, never over the committed results, and checks that every method gave finite metrics
on every cell, that the two-output nets trained to a finite loss, that the heteroscedastic
net's std follows its errors on these tasks, and that the report was written.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "heteroscedastic.py"
METRICS = ("RMSE", "NLL", "coverage90", "width90")


def test_quick_run(tmp_path):
    spec = importlib.util.spec_from_file_location("sklaplace_hetero_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    out = tmp_path / "report.md"
    result = module.main(["--quick", "--out", str(out)])
    assert set(result["cells"]) == {(task, "short") for task in module.QUICK_TASKS}
    for runs in result["cells"].values():
        assert len(runs) == 1
        for run in runs:
            assert set(run) == {*module.METHODS, "training"}
            for name in module.METHODS:
                row = run[name]
                for metric in METRICS:
                    assert np.isfinite(row[metric]), (name, metric)
                assert 0 <= row["coverage90"] <= 1
                assert row["inf_std"] == 0
            assert np.isnan(run["MAP"]["std~err"])  # a constant std has no ranks
            assert run["hetero-LA"]["std~err"] > 0.2  # the net's noise follows the data
            assert run["training"]["finite"]
            assert run["training"]["last"] < run["training"]["first"]
    text = out.read_text()
    for heading in ("## Summary over", "### heteroscedastic, short", "## Training of"):
        assert heading in text
    assert "| hetero-LA-conformal |" in text
