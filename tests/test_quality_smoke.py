"""Smoke test of the uncertainty-quality benchmark: ``benchmarks/quality.py --quick``.

Runs the quick configuration into a temporary directory (never over the committed results
or plots) and checks that every workflow ran every method with finite metrics, that the
unseen rows were the ones the workflow promises, and that the report and plots were
written.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "quality.py"
CLF_LAPLACE = {"LA-LL", "LA-LL+T", "LA-all", "LA-all+T"}
REG_LAPLACE = {"LA-LL", "LA-all", "LA-LL-conformal", "LA-all-conformal"}
EXPECTED = {  # (kind, workflow) -> methods
    **{("classification", w): {"MAP", "TS", "TS-logits", "ensemble"} | CLF_LAPLACE for w in "abc"},
    ("classification", "d"): {"MAP"} | CLF_LAPLACE,
    **{("regression", w): {"MAP", "split-conformal", "ensemble"} | REG_LAPLACE for w in "abc"},
    ("regression", "d"): {"MAP", "LA-LL", "LA-all"},
}
CLF_METRICS = ("accuracy", "log_loss", "ECE", "Brier", "AUROC scaled", "AUROC[noise]")
REG_METRICS = ("RMSE", "NLL", "coverage90", "std_growth")


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("sklaplace_quality_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    pytest.importorskip("matplotlib")
    from sklearn.calibration import CalibratedClassifierCV

    if not any(
        "temperature" in str(c) for c in CalibratedClassifierCV._parameter_constraints["method"]
    ):
        pytest.skip(
            "the benchmark's TS baseline, CalibratedClassifierCV(method='temperature'), "
            "needs scikit-learn >= 1.8"
        )
    out = tmp_path_factory.mktemp("quality")
    return out, _load_benchmark().main(["--quick", "--out-dir", str(out)])


def test_every_workflow_runs_every_method_on_every_task(quick_run):
    _, result = quick_run
    assert result["failures"] == []
    rows = result["rows"]
    cfg = result["config"]
    for (kind, workflow), methods in EXPECTED.items():
        tasks = cfg["clf_tasks"] if kind == "classification" else cfg["reg_tasks"]
        for task in tasks:
            got = {
                r["method"]
                for r in rows
                if (r["kind"], r["workflow"], r["task"]) == (kind, workflow, task)
            }
            assert got == methods, (kind, workflow, task)


def test_metrics_are_finite_and_in_range(quick_run):
    _, result = quick_run
    conformal_too_few = {(k, w, m) for (k, w, m, _, msg) in result["warnings"] if "too few" in msg}
    for r in result["rows"]:
        where = (r["kind"], r["workflow"], r["task"], r["method"])
        if r["kind"] == "classification":
            for metric in CLF_METRICS:
                assert np.isfinite(r[metric]), (where, metric)
            assert 0 <= r["ECE"] <= 1 and 0 < r["log_loss"]
            assert all(0 <= v <= 1 for m, v in r.items() if m.startswith("AUROC"))
            assert ("AUROC held-out" in r) == (r["task"] in ("wine", "digits")), where
        else:
            for metric in REG_METRICS:
                assert np.isfinite(r[metric]), (where, metric)
            assert 0 <= r["coverage90"] <= 1
            # an infinite conformal interval only where the package said it is one (or,
            # for plain split conformal, where fewer than 9 rows calibrate 90 %)
            if not np.isfinite(r["width90"]) and r["method"] != "split-conformal":
                assert (r["kind"], r["workflow"], r["method"]) in conformal_too_few, where


def test_unseen_rows_are_those_the_workflow_promises(quick_run):
    _, result = quick_run
    assert result["notes"] == []  # (a), (b): exactly the rows skorch's split held out
    sources = {"a": "train_split", "b": "train_split", "c": "X_val", "d": None}
    for r in result["rows"]:
        if r["method"].startswith("LA-"):
            assert r["source"] == sources[r["workflow"]], r


def test_report_and_plots_are_written_to_the_out_dir(quick_run):
    out, result = quick_run
    assert result["results"] == out / "RESULTS_quality.md"
    text = result["results"].read_text()
    for heading in (
        "## Targets (issue 11, item 8)",
        "## Classification: summary per workflow",
        "### Workflow (a)",
        "### Workflow (b)",
        "### Workflow (c)",
        "## Workflow (d): no rows the net has not seen",
        "## Regression: summary per workflow",
        "## Cost",
        "## Failures, warnings and consistency checks",
    ):
        assert heading in text, heading
    for method in CLF_LAPLACE | REG_LAPLACE | {"TS", "ensemble"}:
        assert f"| {method} |" in text, method
    names = {
        "reliability_make_classification.png",
        "ood_ecdf_digits.png",
        "moons_confidence.png",
        "toy_regression.png",
    }
    assert names <= {p.name for p in out.glob("*.png")}
    assert all((out / n).stat().st_size > 1000 for n in names)
    assert {Path(p).name for p, _ in result["plots"]} == names
