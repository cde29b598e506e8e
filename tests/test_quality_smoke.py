"""Smoke test of the uncertainty-quality benchmark: ``benchmarks/quality.py --quick``.

Runs the quick configuration into a temporary directory (never over the committed results
or plots) and checks that every method produced finite metrics and the report and plots
were written.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "quality.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("sklaplace_quality_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("quality")
    return out, _load_benchmark().main(["--quick", "--out-dir", str(out)])


def test_classification_table_has_every_method_with_finite_metrics(quick_run):
    _, result = quick_run
    table = result["classification"]
    methods = {m for _, _, m in table}
    expected = {"MAP", "temperature"} | {
        f"LL-{s}-{p}"
        for s in ("diag", "kron", "full")
        for p in ("marglik", "val", "holdout", "prior1", "weight_decay")
    }
    expected |= {f"LL-kron-{p}-mc" for p in ("marglik", "val", "holdout", "prior1")}
    assert expected <= methods
    for (task, _, method), row in table.items():
        for metric in ("accuracy", "log_loss", "ECE", "Brier", "AUROC", "OOD conf"):
            assert np.isfinite(row[metric]), (task, method, metric)
        assert 0 <= row["AUROC"] <= 1 and 0 < row["OOD conf"] <= 1
    assert any("AUROC[held-out classes]" in row for row in table.values())


def test_regression_table_has_every_method_with_finite_metrics(quick_run):
    _, result = quick_run
    table = result["regression"]
    methods = {m for _, _, m in table}
    assert {"MAP+val-sigma", "LL-kron-marglik", "LL-kron-val", "LL-full-prior1"} <= methods
    for key, row in table.items():
        for metric in ("RMSE", "NLL", "coverage90", "width90", "std_growth"):
            assert np.isfinite(row[metric]), (key, metric)


def test_report_and_plots_are_written_to_the_out_dir(quick_run):
    out, result = quick_run
    assert result["results"] == out / "RESULTS_quality.md"
    text = result["results"].read_text()
    assert "| method | cells | LL<=MAP | ECE<MAP | AUROC>MAP |" in text
    assert "| LL-kron-val |" in text and "## Regression: summary" in text
    names = {
        "reliability_make_classification.png",
        "ood_ecdf_digits.png",
        "moons_confidence.png",
        "toy_regression.png",
    }
    assert names <= {p.name for p in out.glob("*.png")}
    assert all((out / n).stat().st_size > 1000 for n in names)
