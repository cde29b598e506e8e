"""benchmarks/RESULTS_quality.md: setup, targets, what they say, tables, cost, problems."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from . import diagnostics, tables
from .methods import CLF_BASE, CLF_LAPLACE, REG_BASE, REG_LAPLACE
from .summary import (
    LL_TIE,
    NO_ROWS_MAX_RATIO,
    TARGET_RATE,
    clf_summary,
    no_rows_summary,
    reg_summary,
)
from .workflows import WORKFLOWS

HAND_MARK = "<!-- hand-written below: kept when the script rewrites this file -->"


def _params(d):
    return ", ".join(f"{k}={v!r}" for k, v in d.items())


def provenance() -> str:
    """Which sklaplace ran: version, and the commit of its git checkout (if any)."""
    import sklaplace

    where = Path(sklaplace.__file__).resolve().parent

    def git(*cmd):
        return subprocess.run(
            ["git", "-C", str(where), *cmd], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", ".")
    except (OSError, subprocess.CalledProcessError):
        return f"sklaplace {sklaplace.__version__} from {where} (not a git checkout)"
    state = "with uncommitted changes in sklaplace/" if dirty else "clean"
    return f"sklaplace {sklaplace.__version__} at commit {commit} ({state})"


def header(cfg, runtime):
    regimes = ", ".join(f"`{k}` = {e} epochs" for k, e in cfg["regimes"].items())
    return [
        "# Uncertainty quality: sklaplace in the workflows users run",
        "",
        f"Command: `{cfg['command']}`. Runtime {runtime / 60:.1f} min wall-clock "
        f"({cfg['cpu'] / 60:.1f} min CPU) on {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other jobs, torch {torch.__version__} (1 thread), "
        f"Python {platform.python_version()}; load average at the end "
        f"{os.getloadavg()[0]:.1f}; {cfg['provenance']} at the start of the run.",
        "",
        f"Tasks: classification {', '.join(cfg['clf_tasks'])}; regression "
        f"{', '.join(cfg['reg_tasks'])}. {cfg.get('smoke_seeds', cfg['seeds'])} seed(s) "
        "(data split, net "
        "initialisation and, for generated tasks, the data); 60/20/20 training/validation/"
        "test rows. Nets: MLPs trained with skorch, Adam, batch 64, no weight decay "
        f"(classification in-100-100-out ReLU, lr 1e-3); regimes {regimes} (`long` "
        "over-fits). Every number is computed on the test rows (and OOD rows) from float64 "
        "probabilities or means: the nets' logits are taken in float64 (skorch's float32 "
        "`predict_proba` would clip the log loss at float32 precision and flatter "
        "over-fitted nets); log loss clips p at float64's eps, as scikit-learn does.",
        "",
        "Workflows: " + "; ".join(f"({k}) {v}" for k, v in WORKFLOWS.items()) + ". (a) and "
        "(b) fit on the training + validation rows (the net's own `ValidSplit(5)` holds a "
        "fifth of them out); (c) and (d) on the training rows.",
        "",
        "Methods: `MAP` (the net; regression: with a constant std, the RMS of its residuals "
        "on the unseen rows); `split-conformal` (regression: plain split conformal on the net, "
        "`mean +- q` with q the finite-sample quantile of `|y - mean|` on the unseen rows, one "
        "width for every row); `TS` = `CalibratedClassifierCV(FrozenEstimator(net), "
        'method="temperature", cv=2)` on exactly the unseen rows the workflow\'s Laplace '
        "uses (scikit-learn takes skorch's float32 probabilities as `log(p + eps32)`); "
        "`TS-logits`: the same temperature fitted on the float64 logits (reference); "
        f"`ensemble`: {cfg['members']} independently initialised nets trained like the "
        "workflow's net (classification: mean probabilities; regression: mixture mean and "
        "variance, the members' spread plus a noise variance fitted on the unseen rows). "
        f"Laplace classifiers: `{_params(CLF_BASE)}` and "
        + "; ".join(f"`{k}`: {_params(v)}" for k, v in CLF_LAPLACE.items())
        + f". Laplace regressors: `{_params(REG_BASE)}` and "
        + "; ".join(f"`{k}`: {_params(v)}" for k, v in REG_LAPLACE.items())
        + ". `random_state` = the seed.",
        "",
    ]


def _miss(r, target):
    value, n = r
    if not n:
        return "no cells"
    if value >= target:
        return f"{value:.2f}"
    return f"**{value:.2f}** (target {target:.2f}, {target - value:.2f} short)"


def targets(table, rows, cfg):
    """The target table and the generated 'what this says' sentences."""
    L = [
        "## Targets (issue 11, item 8) and what they say",
        "",
        "A hand-written reading of the numbers (why the targets are met or missed, and the "
        "default it suggests) is at the end of this file, under *What this says*.",
        "",
    ]
    clf_refs, reg_refs = ("ensemble", "TS-logits"), ("MAP", "split-conformal")
    clf = {w: clf_summary(table, rows, w, [*CLF_LAPLACE, *clf_refs]) for w in "abc"}
    reg = {w: reg_summary(table, w, [*REG_LAPLACE, *reg_refs, "ensemble"]) for w in "abc"}
    head = ["candidate"] + [f"({w}) LL<=both / held / ECE" for w in "abc"] + ["meets in"]
    body = []
    for m in [*CLF_LAPLACE, *clf_refs]:
        got = [clf[w].get(m) for w in "abc"]
        cells = [
            " / ".join(f"{g['rates'][k][0]:.2f}" for k in ("ll_both", "held", "ece")) if g else "-"
            for g in got
        ]
        met = [w for w, g in zip("abc", got, strict=True) if g and g["rates"]["meets"]]
        label = m if m in CLF_LAPLACE else f"{m} (reference)"
        body.append([label, *cells, ", ".join(met) or "none"])
    L += [
        f"Classification (target: each rate >= {TARGET_RATE:.2f}; cells = (task, regime), "
        "medians over seeds; held-out-class AUROC only on wine and digits; the reference "
        "rows apply the same test to methods that are not candidates):",
        "",
        *tables.md_table(head, body),
    ]
    text = []
    for m in CLF_LAPLACE:
        parts = []
        for w in "abc":
            g = clf[w].get(m)
            if g is None:
                continue
            r = g["rates"]
            misses = [
                f"{lab} {_miss(r[k], TARGET_RATE)}"
                for k, lab in (("ll_both", "LL<=both"), ("held", "held AUROC"), ("ece", "ECE"))
                if r[k][0] < TARGET_RATE
            ]
            parts.append(f"({w}) " + ("meets all" if not misses else "; ".join(misses)))
        text.append(f"* `{m}`: " + ". ".join(parts) + ".")
    L += ["What the classification targets say:", "", *text, ""]
    head = ["candidate"] + [f"({w}) coverage ok / NLL<=ens" for w in "abc"] + ["meets in"]
    body = []
    for m in [*REG_LAPLACE, *reg_refs]:
        got = [reg[w].get(m) for w in "abc"]
        cells = [
            f"{tables.rate(g['cov_ok'])} / {tables.rate(g['nll_le_ens'])}" if g else "-"
            for g in got
        ]
        met = [w for w, g in zip("abc", got, strict=True) if g and g["meets"]]
        body.append(
            [m if m in REG_LAPLACE else f"{m} (reference)", *cells, ", ".join(met) or "none"]
        )
    L += [
        "Regression (target: coverage of the 90% interval in [0.88, 0.95] in every cell, "
        "Gaussian NLL <= the ensemble's in at least half):",
        "",
        *tables.md_table(head, body),
    ]
    L += ["No unseen rows, workflow (d) (target: log loss never above 1.1 x MAP's):", ""]
    d = no_rows_summary(rows, "classification", CLF_LAPLACE)
    L += [
        f"* `{m}`: median {v['median']:.3f} x MAP, max {v['max']:.3f} x "
        f"({' '.join(map(str, v['worst']))}); {v['over']} of {v['n']} runs above "
        f"{NO_ROWS_MAX_RATIO}."
        for m, v in d.items()
    ]
    return [*L, ""]


def write_report(path, cfg, table, rows, sink, runtime, plots, lead=(), smoke=True):
    """The whole file: the title and command, ``lead`` (the real tabular tasks), then the
    smoke row (the small scikit-learn tasks) unless ``smoke`` is false."""
    from .methods import CLASSIFICATION, REGRESSION

    regimes = list(cfg["regimes"])
    head = header(cfg, runtime)
    L = head[:4] + list(lead)
    if smoke:
        L += ["# Smoke row: the small scikit-learn tasks (issue 11's benchmark)", ""]
        L += head[4:] + targets(table, rows, cfg)
    else:
        L += ["(No smoke-row task was selected.)", ""]
        return _write(path, L)
    L += ["## Classification: summary per workflow", ""]
    L += [
        "Rates over the (task, regime) cells (medians over seeds first); `*`: below the "
        "target. `LL<=both`: log loss <= MAP's and <= TS's (a relative excess below "
        f"{LL_TIE:g} counts as a tie: at the top of the prior range Laplace returns the net's "
        "predictions up to rounding); `AUROC held>both`: OOD AUROC on "
        "held-out classes above both (wine, digits only); `AUROC scaled>both`: the mean over "
        "the x2/x5/x10 scaled inputs, above both; `per seed`: the three target rates over "
        "(task, regime, seed) cells. Then medians over the cells.",
        "",
    ]
    L += tables.clf_summary_tables(table, rows, CLASSIFICATION.methods)
    L += ["## Workflow (d): no rows the net has not seen", ""]
    L += tables.no_rows_tables(rows, table, "classification", CLF_LAPLACE, regimes)
    L += tables.no_rows_tables(rows, table, "regression", REG_LAPLACE, regimes)
    L += ["## Regression: summary per workflow", ""]
    L += tables.reg_summary_tables(table, REGRESSION.methods)
    L += diagnostics.cost_section(rows, sink, runtime, cfg)
    L += diagnostics.problems_section(sink)
    L += ["## Classification: per task", ""]
    L += tables.clf_task_tables(table, CLASSIFICATION.methods, regimes)
    L += ["## Regression: per task", ""]
    L += tables.reg_task_tables(table, REGRESSION.methods, regimes)
    if plots:
        L += ["## Plots", ""]
        for p, caption in plots:
            L += [f"![{caption}]({p})", "", caption, ""]
    return _write(path, L)


def _write(path, L):
    text = "\n".join(L).rstrip() + "\n"
    if path.exists() and HAND_MARK in (old := path.read_text()):
        text += "\n" + HAND_MARK + old.split(HAND_MARK, 1)[1]
    path.write_text(text)
