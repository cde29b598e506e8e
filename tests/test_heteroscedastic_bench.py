"""Smoke test of ``benchmarks/heteroscedastic.py --quick``: every method gives finite
metrics on every cell, the heteroscedastic net's std follows its errors, and the report is
written (to a temporary path, never over the committed results)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "heteroscedastic.py"


def test_quick_run(tmp_path):
    spec = importlib.util.spec_from_file_location("sklaplace_hetero_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    out = tmp_path / "report.md"
    result = module.main(["--quick", "--out", str(out)])
    assert set(result["cells"]) == {("heteroscedastic", "short"), ("toy_cubic", "short")}
    for runs in result["cells"].values():
        for run in runs:
            assert set(run) == set(module.METHODS)
            for name, row in run.items():
                for metric in ("RMSE", "NLL", "coverage90", "width90"):
                    assert np.isfinite(row[metric]), (name, metric)
                assert 0 <= row["coverage90"] <= 1
            assert np.isnan(run["MAP"]["std~err"])  # a constant std has no ranks
            assert run["hetero-LA"]["std~err"] > 0.2  # the net's noise follows the data
    text = out.read_text()
    assert "| hetero-LA-conformal |" in text and "Summary over" in text
