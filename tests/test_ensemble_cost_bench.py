"""Smoke test of ``benchmarks/ensemble_cost.py --quick`` (issue 21's cost benchmark).

Runs the quick configuration (2 members of small nets, one round, no timing of the
workers' start) into a temporary path,
never over the committed results, and checks that every timed call gave a positive time,
that every ratio of the report was computed from those calls, that joblib's workers the
script started are gone afterwards, and that the report was written. Timings are not
checked (a shared machine): the full run's are in ``benchmarks/RESULTS_ensemble_cost.md``.
"""

import importlib.util
import math
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ensemble_cost.py"
COMMON = {
    "de_train",
    "de_predict",
    "single_fit",
    "single_predict",
    "mola_fit_1",
    "mola_fit_2",
    "from_net_1",
    "from_net_2",
    "mola_predict",
}
CALLS = {"classifier": COMMON, "regressor": COMMON | {"single_interval", "mola_interval"}}


def _load():
    spec = importlib.util.spec_from_file_location("sklaplace_ensemble_cost_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quick_run(tmp_path):
    module = _load()
    out = tmp_path / "report.md"
    result = module.main(["--quick", "--out", str(out)])
    assert len(result["workers"]) == 2
    assert len({pid for pid, _ in result["workers"]}) == 2  # both workers were reset
    for kind, calls in CALLS.items():
        got = result["kinds"][kind]
        assert set(got["runs"]) == calls
        for name, runs in got["runs"].items():
            assert runs, name
            assert all(math.isfinite(w) and w > 0 for w, _ in runs), name
        labels = [row[0] for row in got["ratios"]]
        expected = [label for label, ours, _, _ in module.RATIOS if ours.split(":")[0] in calls]
        assert labels == expected
        for label, ours, base, ratio, *_ in got["ratios"]:
            assert ours > 0 and base > 0 and math.isclose(ratio, ours / base, rel_tol=1e-9), label
    text = out.read_text()
    assert "## Classifier" in text and "## Regressor" in text
    assert text.count("| MoLA fit, n_jobs=1 / k single fits |") == 2
    assert text.count("| MoLA predict_interval / k single predict_interval |") == 1
    assert "load average" in text


def test_tree_cpu_counts_child_processes():
    """The CPU column of n_jobs=2 includes the workers': a child's CPU time is counted."""
    module = _load()
    burn = (
        "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n"
        "    pass\nprint('ready', flush=True)\nsys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        # the child's 0.3 s, counted in clock ticks (10 ms)
        assert module.tree_cpu() - time.process_time() >= 0.25
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
