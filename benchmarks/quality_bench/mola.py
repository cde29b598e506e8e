"""MoLA (issue 21, item 6): the mixture of Laplace approximations against the deep ensemble.

Every workflow runs ``LaplaceEnsembleClassifier`` / ``LaplaceEnsembleRegressor`` with the
package's defaults (``random_state`` = the seed) on the *same* members as the workflow's
deep ensemble: in (b)-(d) the five trained nets, each in ``FrozenEstimator``; in (a) five
unfitted nets the ensemble trains inside ``fit``, and the deep ensemble it is compared
with is made of those very nets once trained (the row ``ENS_OWN``; the workflow's own
``ensemble`` row, of separately trained nets, stays for reference). Its first member's
net is trained as the single-net default's (same ``random_state``), so in (a) MoLA and
the default share that net.

The targets of issue 21 (item 6), over the runs and cells of every workflow:

* classification: MoLA's test log loss at or below the deep ensemble's in at least 80 %
  of runs (a relative excess below ``LL_TIE`` is a tie); held-out-class AUROC above the
  ensemble's in at least 75 % of cells;
* regression: Gaussian NLL at or below the ensemble's in at least 75 % of cells, and the
  coverage of ``predict_interval(X, 0.9)`` (split conformal) in [0.88, 0.95] in every cell
  of (a)-(c) (workflow (d) has no unseen rows to calibrate on: its interval is Gaussian).

Per run, MoLA's per-row loss (log loss; regression: Gaussian NLL) is compared with the
deep ensemble's and the single-net default's by a paired bootstrap over the test rows.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from sklaplace import LaplaceEnsembleClassifier, LaplaceEnsembleRegressor

from . import tables
from .calibrators import paired_bootstrap
from .summary import COVERAGE_BAND, LL_TIE

MOLA = "MoLA"
ENS_OWN = "ensemble (MoLA's nets)"  # both as in methods.MOLA_METHODS
RATE_LL, RATE_HELD, RATE_NLL = 0.80, 0.75, 0.75
N_BOOT = 2000
LOG_EPS = np.log(np.finfo(np.float64).eps)


def mola(estimators, seed, regression=False):
    """The unfitted MoLA of ``estimators`` (package defaults, ``random_state=seed``)."""
    cls = LaplaceEnsembleRegressor if regression else LaplaceEnsembleClassifier
    return cls([(f"m{i}", e) for i, e in enumerate(estimators)], random_state=seed)


class MixturePredictor:
    """A fitted Laplace ensemble through its public API (the benchmark's predictor)."""

    def __init__(self, model):
        self.model = model
        members = model.estimators_
        self.info = {
            "prior": float(np.median(model.prior_precision_)),
            "source": members[0].validation_source_,
        }
        if hasattr(members[0], "sigma_noise_"):
            self.info["sigma"] = float(np.median(model.sigma_noise_))
        for name in ("prior_shift_", "noise_shift_"):  # the mixture step's factors, if any
            if hasattr(model, name):
                self.info[name.rstrip("_")] = float(getattr(model, name))

    @property
    def nets(self):
        """The members' trained nets (in (a): the nets ``fit`` trained)."""
        return [m.estimator_ for m in self.model.estimators_]

    def log_proba(self, X):
        return np.asarray(self.model.predict_log_proba(X), dtype=np.float64)

    def mean_std(self, X):
        mean, std = self.model.predict(X, return_std=True)
        return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)

    def interval(self, X, confidence):
        return self.model.predict_interval(X, confidence)


def shared_rows_note(model, expected, where) -> str | None:
    """A note when a member did not use the rows skorch's split held out (or they differ)."""
    for i, m in enumerate(model.estimators_):
        src, idx = m.validation_source_, m.validation_indices_
        if src != "train_split" or idx is None or not np.array_equal(idx, expected):
            return (
                f"{where} MoLA member {i}: validation_source_={src!r}, "
                f"{0 if idx is None else len(idx)} rows (skorch's split holds out "
                f"{len(expected)})"
            )
    return None


def row_losses(predictor, task, regression) -> np.ndarray:
    """Per test row: log loss (clipped as the metrics clip) or Gaussian NLL (the units the
    predictor predicts in; a constant scale shifts every method's NLL alike)."""
    if regression:
        mean, std = predictor.mean_std(task.X_test)
        mean, std = np.ravel(mean), np.ravel(std)
        y = (np.ravel(task.y_test) - getattr(task, "y_shift", 0.0)) / getattr(task, "y_scale", 1.0)
        return 0.5 * np.log(2 * np.pi * std**2) + 0.5 * (y - mean) ** 2 / std**2
    lp = np.clip(np.asarray(predictor.log_proba(task.X_test), np.float64), LOG_EPS, 0.0)
    return -lp[np.arange(len(task.y_test)), task.y_test]


def compare(row, losses, ensemble, default, seed):
    """Paired bootstrap of MoLA's per-row losses against ``ensemble`` and ``default``."""
    for ref, tag in ((ensemble, "ens"), (default, "def")):
        if ref not in losses or MOLA not in losses:
            continue
        mean, lo, hi = paired_bootstrap(losses[MOLA], losses[ref], N_BOOT, seed=seed)
        row.update(
            {
                f"mola_{tag}": ref,
                f"mola_d_{tag}": mean,
                f"mola_d_{tag}_lo": lo,
                f"mola_d_{tag}_hi": hi,
                f"mola_vs_{tag}": "tie" if lo <= 0.0 <= hi else ("better" if hi < 0 else "worse"),
            }
        )


def ensemble_of(workflow) -> str:
    """The deep ensemble MoLA is compared with: in (a) the one made of MoLA's own nets."""
    return ENS_OWN if workflow == "a" else "ensemble"


# ---------------------------------------------------------------- targets and report
def _group(rows, key):
    out = defaultdict(dict)
    for r in rows:
        out[tuple(r[k] for k in key)][r["method"]] = r
    return out


def _cells(rows, key, metric):
    """{cell: {method: mean over seeds of metric}}; ``key`` names the cell (no seed)."""
    acc = defaultdict(list)
    for r in rows:
        if metric in r and np.isfinite(r[metric]):
            acc[(tuple(r[k] for k in key), r["method"])].append(r[metric])
    out = defaultdict(dict)
    for (cell, m), v in acc.items():
        out[cell][m] = float(np.mean(v))
    return out


def clf_targets(rows, run_key, cell_key):
    """{"ll": (rate, n, worst excess), "held": (rate, n, worst gap)} over every workflow."""
    ll, excess = [], []
    for key, by in _group(rows, run_key).items():
        ens = ensemble_of(key[run_key.index("workflow")])
        if MOLA in by and ens in by:
            a, b = by[MOLA]["log_loss"], by[ens]["log_loss"]
            ll.append(a <= b * (1 + LL_TIE))
            excess.append(a / b - 1)
    held, gap = [], []
    for cell, by in _cells(rows, cell_key, "AUROC held-out").items():
        ens = ensemble_of(cell[cell_key.index("workflow")])
        if MOLA in by and ens in by:
            held.append(by[MOLA] > by[ens])
            gap.append(by[MOLA] - by[ens])
    return {
        "ll": (_mean(ll), len(ll), max(excess, default=np.nan)),
        "held": (_mean(held), len(held), min(gap, default=np.nan)),
    }


def reg_targets(rows, cell_key):
    """{"nll": (rate, n, worst excess), "cov": (rate in band, n, (min, max))}."""
    nll_cells = _cells(rows, cell_key, "NLL")
    cov_cells = _cells(rows, cell_key, "coverage90")
    nll, excess, cov = [], [], []
    for cell, by in nll_cells.items():
        ens = ensemble_of(cell[cell_key.index("workflow")])
        if MOLA in by and ens in by:
            nll.append(by[MOLA] <= by[ens])
            excess.append(by[MOLA] - by[ens])
    for cell, by in cov_cells.items():
        if MOLA in by and cell[cell_key.index("workflow")] in "abc":
            cov.append(by[MOLA])
    lo, hi = COVERAGE_BAND
    inside = [lo <= c <= hi for c in cov]
    return {
        "nll": (_mean(nll), len(nll), max(excess, default=np.nan)),
        "cov": (_mean(inside), len(inside), (min(cov, default=np.nan), max(cov, default=np.nan))),
    }


def _mean(flags):
    return float(np.mean(flags)) if flags else np.nan


def _verdict(rate, n, goal):
    if not n:
        return "no runs"
    if rate >= goal:
        return f"{rate:.2f} over {n}: yes (by {rate - goal:.2f})"
    return f"{rate:.2f} over {n}: **no** (short by {goal - rate:.2f})"


def target_lines(real_rows, smoke_rows) -> list[str]:
    """The issue-21 target table: yes/no and by how much, real tasks and smoke row."""
    real_run = ("task", "split", "regime", "seed", "workflow")
    real_cell = ("task", "split", "regime", "workflow")
    smoke_run = ("task", "regime", "seed", "workflow")
    smoke_cell = ("task", "regime", "workflow")
    clf_smoke = [r for r in smoke_rows if r.get("kind") == "classification"]
    reg_smoke = [r for r in smoke_rows if r.get("kind") == "regression"]
    body = []
    for where, rows, run_key, cell_key in (
        ("real tasks", real_rows, real_run, real_cell),
        ("smoke row", clf_smoke, smoke_run, smoke_cell),
    ):
        if not rows:
            continue
        t = clf_targets(rows, run_key, cell_key)
        body.append(
            [f"{where}: log loss <= deep ensemble's (runs, (a)-(d))", f">= {RATE_LL:.2f}",
             _verdict(t["ll"][0], t["ll"][1], RATE_LL),
             f"worst run: {tables.fmt(100 * t['ll'][2], 2)} % above"]
        )  # fmt: skip
        body.append(
            [f"{where}: held-out-class AUROC > deep ensemble's (cells)", f">= {RATE_HELD:.2f}",
             _verdict(t["held"][0], t["held"][1], RATE_HELD),
             f"worst cell: {tables.fmt(t['held'][2])}"]
        )  # fmt: skip
    if reg_smoke:
        t = reg_targets(reg_smoke, smoke_cell)
        body.append(
            ["smoke row: Gaussian NLL <= deep ensemble's (cells, (a)-(d))", f">= {RATE_NLL:.2f}",
             _verdict(t["nll"][0], t["nll"][1], RATE_NLL),
             f"worst cell: {tables.fmt(t['nll'][2])} nats above"]
        )  # fmt: skip
        lo, hi = COVERAGE_BAND
        body.append(
            [f"smoke row: 90 % coverage in [{lo}, {hi}] (cells of (a)-(c))", "every cell",
             _verdict(t["cov"][0], t["cov"][1], 1.0),
             f"range {tables.fmt(t['cov'][2][0])} - {tables.fmt(t['cov'][2][1])}"]
        )  # fmt: skip
    return tables.md_table(["target (issue 21, item 6)", "goal", "MoLA", "margin"], body)


def workflow_lines(rows, run_key, metric, defaults) -> list[str]:
    """Per workflow: MoLA's rate against the deep ensemble and the means of the three;
    ``defaults``: the single-net default's label, or {workflow: label}."""
    body = []
    for w in "abcd":
        ens = ensemble_of(w)
        default = defaults.get(w) if isinstance(defaults, dict) else defaults
        per = [
            by
            for key, by in _group(rows, run_key).items()
            if key[run_key.index("workflow")] == w and MOLA in by and ens in by
        ]
        if not per:
            continue
        # NLL can be negative: a plain comparison (log loss: LL_TIE is a tie)
        tie = 1 + (LL_TIE if metric == "log_loss" else 0.0)
        le = [by[MOLA][metric] <= by[ens][metric] * tie for by in per]
        mean = {m: np.mean([by[m][metric] for by in per if m in by] or [np.nan])
                for m in (MOLA, ens, default)}  # fmt: skip
        held = [by[MOLA]["AUROC held-out"] > by[ens]["AUROC held-out"]
                for by in per if "AUROC held-out" in by[MOLA]]  # fmt: skip
        body.append(
            [f"({w})", ens, default, f"{np.mean(le):.2f} ({sum(le)}/{len(le)})",
             f"{np.mean(held):.2f} ({sum(held)}/{len(held)})" if held else "-",
             mean[MOLA], mean[ens], mean[default]]
        )  # fmt: skip
    head = ["workflow", "deep ensemble compared", "single-net default",
            f"{metric} <= ensemble's (runs)", "held-out AUROC > ensemble's (runs)",
            f"MoLA mean {metric}", "ensemble mean", "default mean"]  # fmt: skip
    return tables.md_table(head, body)


def bootstrap_lines(rows, group_key) -> list[str]:
    """Better / tie / worse counts of MoLA against the ensemble and the single-net default."""
    groups = defaultdict(list)
    for r in rows:
        if r["method"] == MOLA:
            groups[tuple(r[k] for k in group_key)].append(r)
    body = []
    for key, rs in sorted(groups.items()):
        cells = []
        for tag in ("ens", "def"):
            got = [r for r in rs if f"mola_vs_{tag}" in r]
            c = {k: sum(r[f"mola_vs_{tag}"] == k for r in got) for k in ("better", "tie", "worse")}
            med = np.median([r[f"mola_d_{tag}"] for r in got]) if got else np.nan
            cells += [f"{c['better']} / {c['tie']} / {c['worse']}", med]
        body.append([*map(str, key[:-1]), f"({key[-1]})", *cells])
    head = [*group_key[:-1], "workflow", "vs deep ensemble: better / tie / worse",
            "median difference", "vs single-net default: better / tie / worse",
            "median difference"]  # fmt: skip
    return tables.md_table(head, body)


def section(real_rows, smoke_rows, real_default, smoke_defaults) -> list[str]:
    """The MoLA section of the report."""
    L = [
        "## MoLA against the deep ensemble (issue 21, item 6)",
        "",
        "`MoLA` = `LaplaceEnsembleClassifier` / `LaplaceEnsembleRegressor` with the "
        "package's defaults and `random_state` = the seed, on the same five members as the "
        "workflow's deep ensemble (`ensemble`): in (b)-(d) each trained net in "
        "`FrozenEstimator` ((b) on the development rows, the members sharing skorch's split "
        "rows; (c) with `X_val`/`y_val`; (d) without unseen rows), in (a) five unfitted nets "
        f"trained inside `fit`, compared with `{ENS_OWN}`, the deep ensemble of the nets "
        "MoLA's `fit` trained (so the comparison is on the same members). A relative excess "
        f"below {LL_TIE:g} counts as a tie in `<=`. Cells: means over "
        "seeds of (task, split, regime, workflow).",
        "",
        *target_lines(real_rows, smoke_rows),
    ]
    if real_rows:
        run_key = ("task", "split", "regime", "seed", "workflow")
        L += ["### Real tasks, per workflow", "", *workflow_lines(real_rows, run_key,
              "log_loss", real_default)]  # fmt: skip
        L += [
            "### Real tasks: paired bootstrap of MoLA's log loss",
            "",
            "95 % paired bootstrap over the test rows (2,000 resamples) of the mean "
            "difference of per-row log losses, MoLA minus the other (negative: MoLA lower); "
            f"`tie` when the interval holds 0. Single-net default: `{real_default}`.",
            "",
            *bootstrap_lines(real_rows, ("split", "workflow")),
        ]
    for kind, metric in (("classification", "log_loss"), ("regression", "NLL")):
        rows = [r for r in smoke_rows if r.get("kind") == kind]
        if not any(r["method"] == MOLA for r in rows):
            continue
        run_key = ("task", "regime", "seed", "workflow")
        L += [f"### Smoke-row tasks, {kind}, per workflow", ""]
        L += workflow_lines(rows, run_key, metric, smoke_defaults[kind])
        L += [
            f"### Smoke-row tasks, {kind}: paired bootstrap of MoLA's per-row "
            f"{'log loss' if metric == 'log_loss' else 'Gaussian NLL'}",
            "",
            "Single-net defaults: "
            + ", ".join(f"({w}) `{d}`" for w, d in smoke_defaults[kind].items())
            + ".",
            "",
            *bootstrap_lines(rows, ("task", "workflow")),
        ]
    return L
