"""From per-seed rows to the tables of the report: medians over seeds, win-rates, targets.

A *cell* is a (task, regime) pair of one workflow, its metrics the medians over seeds. The
targets (issue 11, item 8) for a Laplace candidate in workflows (a)-(c):

* classification: log loss <= MAP's and <= temperature scaling's (TS) on >= 80% of cells;
  held-out-class OOD AUROC above both on >= 80% of the cells that have held-out classes;
  ECE below MAP's on >= 80% of cells;
* regression: 90% interval coverage in [0.88, 0.95] in every cell, and Gaussian NLL at or
  below the deep ensemble's in at least half of the cells;
* workflow (d): log loss never above 1.1 x MAP's (every task, regime and seed).
"""

from __future__ import annotations

import warnings

import numpy as np

TARGET_RATE = 0.8
COVERAGE_BAND = (0.88, 0.95)
NO_ROWS_MAX_RATIO = 1.1
# "log loss <= another's" counts a relative excess below LL_TIE as a tie: at the top of the
# prior range Laplace returns the net's predictions up to rounding, which must not decide.
LL_TIE = 1e-4
KEYS = ("kind", "workflow", "task", "regime", "method")


def median_table(rows) -> dict:
    """{(kind, workflow, task, regime, method): {metric: median over seeds}}, in order."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in KEYS), []).append(r)
    out = {}
    for key, rs in groups.items():
        names = dict.fromkeys(m for r in rs for m, v in r.items() if _numeric(m, v))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: stays NaN
            out[key] = {m: float(np.nanmedian([r.get(m, np.nan) for r in rs])) for m in names}
        out[key]["n_seeds"] = len(rs)
    return out


def _numeric(name, value) -> bool:
    return name not in (*KEYS, "seed") and isinstance(value, int | float)


def cells(table, kind, workflow):
    """{(task, regime): {method: metrics}} of one kind and workflow."""
    out = {}
    for (k, w, t, r, m), v in table.items():
        if k == kind and w == workflow:
            out.setdefault((t, r), {})[m] = v
    return out


def _rate(flags):
    flags = [f for f in flags if f is not None]
    return (float(np.mean(flags)) if flags else np.nan), len(flags)


def clf_rates(cell_list, method) -> dict:
    """Win-rates of ``method`` against MAP and TS over a list of {method: metrics}."""
    ll_map, ll_ts, ece, held, scaled = [], [], [], [], []
    for c in cell_list:
        if method not in c or "MAP" not in c or "TS" not in c:
            continue
        v, mp, ts = c[method], c["MAP"], c["TS"]
        ll_map.append(v["log_loss"] <= mp["log_loss"] * (1 + LL_TIE))
        ll_ts.append(v["log_loss"] <= ts["log_loss"] * (1 + LL_TIE))
        ece.append(v["ECE"] < mp["ECE"])
        if "AUROC held-out" in v:
            held.append(v["AUROC held-out"] > max(mp["AUROC held-out"], ts["AUROC held-out"]))
        scaled.append(v["AUROC scaled"] > max(mp["AUROC scaled"], ts["AUROC scaled"]))
    both = [a and b for a, b in zip(ll_map, ll_ts, strict=True)]
    out = {
        "ll_both": _rate(both),
        "ll_map": _rate(ll_map),
        "ll_ts": _rate(ll_ts),
        "ece": _rate(ece),
        "held": _rate(held),
        "scaled": _rate(scaled),
    }
    out["meets"] = all(out[k][0] >= TARGET_RATE for k in ("ll_both", "held", "ece"))
    return out


def clf_summary(table, rows, workflow, methods) -> dict:
    """Per method: win-rates on the cells and on the per-seed cells, and medians."""
    cs = cells(table, "classification", workflow)
    per_seed = {}
    for r in rows:
        if r["kind"] == "classification" and r["workflow"] == workflow:
            per_seed.setdefault((r["task"], r["regime"], r["seed"]), {})[r["method"]] = r
    out = {}
    for m in methods:
        vals = [c[m] for c in cs.values() if m in c]
        if not vals:
            continue
        ratio = [c[m]["log_loss"] / c["MAP"]["log_loss"] for c in cs.values() if m in c]

        def med(metric, vals=vals):
            x = [v[metric] for v in vals if metric in v]
            return float(np.median(x)) if x else np.nan

        out[m] = {
            "cells": len(vals),
            "rates": clf_rates(list(cs.values()), m),
            "seed_rates": clf_rates(list(per_seed.values()), m),
            "ll_ratio": float(np.median(ratio)),
            "ll_gmean": float(np.exp(np.mean(np.log(ratio)))),
            "ll_max": float(np.max(ratio)),
            **{k: med(k) for k in ("accuracy", "log_loss", "ECE", "Brier")},
            "AUROC held-out": med("AUROC held-out"),
            "AUROC scaled": med("AUROC scaled"),
            "AUROC[noise]": med("AUROC[noise]"),
            "fit_s": med("fit_s"),
            "predict_s": med("predict_s"),
        }
    return out


def no_rows_summary(rows, kind, methods) -> dict:
    """Workflow (d): the metric ratio to MAP's per (task, regime, seed); max and median."""
    metric = "log_loss" if kind == "classification" else "NLL"
    per = {}
    for r in rows:
        if r["kind"] == kind and r["workflow"] == "d":
            per.setdefault((r["task"], r["regime"], r["seed"]), {})[r["method"]] = r
    out = {}
    for m in methods:
        pairs = [(k, c[m][metric], c["MAP"][metric]) for k, c in per.items() if m in c]
        if not pairs:
            continue
        if kind == "classification":
            ratios = [(k, a / b) for k, a, b in pairs]
        else:  # NLL can be negative: the difference instead
            ratios = [(k, a - b) for k, a, b in pairs]
        worst = max(ratios, key=lambda kr: kr[1])
        out[m] = {
            "n": len(ratios),
            "median": float(np.median([x for _, x in ratios])),
            "max": worst[1],
            "worst": worst[0],
            "over": int(sum(x > NO_ROWS_MAX_RATIO for _, x in ratios)),
        }
    return out


def reg_summary(table, workflow, methods) -> dict:
    """Per method: coverage in the band and NLL <= the ensemble's, over the cells."""
    cs = cells(table, "regression", workflow)
    lo, hi = COVERAGE_BAND
    out = {}
    for m in methods:
        vals = [(key, c) for key, c in cs.items() if m in c]
        if not vals:
            continue
        cov = [lo <= c[m]["coverage90"] <= hi for _, c in vals]
        nll = [c[m]["NLL"] <= c["ensemble"]["NLL"] for _, c in vals if "ensemble" in c]
        out[m] = {
            "cells": len(vals),
            "cov_ok": _rate(cov),
            "nll_le_ens": _rate(nll),
            "meets": all(cov) and bool(nll) and np.mean(nll) >= 0.5,
            "coverage": float(np.median([c[m]["coverage90"] for _, c in vals])),
            "cov_range": (
                min(c[m]["coverage90"] for _, c in vals),
                max(c[m]["coverage90"] for _, c in vals),
            ),
            "fit_s": float(np.median([c[m]["fit_s"] for _, c in vals])),
        }
    return out
