"""Markdown tables of the report: summaries per workflow and per-task details."""

from __future__ import annotations

import numpy as np

from .summary import (
    COVERAGE_BAND,
    TARGET_RATE,
    cells,
    clf_summary,
    no_rows_summary,
    reg_summary,
)
from .workflows import WORKFLOWS


def fmt(x, nd=3):
    if isinstance(x, str):
        return x
    if isinstance(x, float) and np.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if abs(x) >= 1e4 or (0 < abs(x) < 1e-3):
        return f"{x:.2g}"
    return f"{x:.{nd}f}"


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def rate(r, target=None):
    """'0.80 (8/10)', with a star when below ``target``."""
    value, n = r
    if not n:
        return "-"
    star = "*" if target is not None and value < target else ""
    return f"{value:.2f} ({round(value * n)}/{n}){star}"


CLF_HEAD = [
    "method", "cells", "LL<=both", "LL<=MAP", "LL<=TS", "ECE<MAP", "AUROC held>both",
    "AUROC scaled>both", "per seed: LL<=both / held / ECE", "LL/MAP median / gmean / max",
    "acc", "log loss", "ECE",
    "Brier", "AUROC held", "AUROC scaled", "AUROC noise",
]  # fmt: skip


def clf_summary_tables(table, rows, methods):
    L = []
    for w in "abc":
        s = clf_summary(table, rows, w, methods)
        L += [f"### Workflow ({w}): {WORKFLOWS[w]}", ""]
        body = []
        for m, v in s.items():
            r, sr = v["rates"], v["seed_rates"]
            body.append(
                [
                    m,
                    v["cells"],
                    rate(r["ll_both"], TARGET_RATE),
                    rate(r["ll_map"]),
                    rate(r["ll_ts"]),
                    rate(r["ece"], TARGET_RATE),
                    rate(r["held"], TARGET_RATE),
                    rate(r["scaled"]),
                    " / ".join(f"{sr[k][0]:.2f}" for k in ("ll_both", "held", "ece")),
                    f"{v['ll_ratio']:.3f} / {v['ll_gmean']:.3f} / {v['ll_max']:.2f}",
                    v["accuracy"],
                    v["log_loss"],
                    v["ECE"],
                    v["Brier"],
                    v["AUROC held-out"],
                    v["AUROC scaled"],
                    v["AUROC[noise]"],
                ]
            )
        L += md_table(CLF_HEAD, body)
    return L


def clf_task_tables(table, methods, regimes):
    L = []
    for w in "abc":
        cs = cells(table, "classification", w)
        for t in dict.fromkeys(t for t, _ in cs):
            kinds = [k for k in next(iter(cs[(t, regimes[0])].values())) if k.startswith("AUROC[")]
            L += [f"### ({w}) {t}", ""]
            body = []
            for r in regimes:
                for m in methods:
                    v = cs.get((t, r), {}).get(m)
                    if v is None:
                        continue
                    body.append(
                        [m, r, v["accuracy"], v["log_loss"], v["ECE"], v["Brier"]]
                        + [v.get(k, np.nan) for k in kinds]
                        + [v.get("prior", np.nan), v.get("logit_T", np.nan)]
                    )
            head = ["method", "regime", "acc", "log loss", "ECE", "Brier"]
            head += [k[6:-1] for k in kinds] + ["prior", "logit T"]
            L += md_table(head, body)
    return L


def no_rows_tables(rows, table, kind, methods, regimes):
    """Workflow (d): ratio (classification) or difference (regression) to MAP."""
    s = no_rows_summary(rows, kind, methods)
    clf = kind == "classification"
    what = "log loss / MAP's" if clf else "NLL - MAP's (MAP's std: training residuals)"
    head = ["method", "runs", f"median {what}", "max", "worst run"]
    head += ["runs > 1.1"] if clf else []
    body = []
    for m, v in s.items():
        row = [m, v["n"], v["median"], v["max"], " ".join(map(str, v["worst"]))]
        body.append(row + ([v["over"]] if clf else []))
    L = md_table(head, body)
    metrics = ("log_loss", "ECE", "AUROC held-out") if clf else ("NLL", "coverage90", "width90")
    cs = cells(table, kind, "d")
    body = []
    for (t, r), c in cs.items():
        for m in c:
            body.append([t, r, m, *[c[m].get(x, np.nan) for x in metrics], c[m].get("prior")])
    L += md_table(["task", "regime", "method", *metrics, "prior"], body)
    return L


REG_HEAD = [
    "method", "cells", f"coverage in {list(COVERAGE_BAND)}", "NLL<=ensemble", "median coverage",
    "coverage range", "median fit s",
]  # fmt: skip


def reg_summary_tables(table, methods):
    L = []
    for w in "abc":
        s = reg_summary(table, w, methods)
        L += [f"### Workflow ({w}): {WORKFLOWS[w]}", ""]
        body = [
            [
                m,
                v["cells"],
                rate(v["cov_ok"], 1.0),
                rate(v["nll_le_ens"], 0.5) if m != "ensemble" else "-",
                v["coverage"],
                f"{v['cov_range'][0]:.3f}-{v['cov_range'][1]:.3f}",
                v["fit_s"],
            ]
            for m, v in s.items()
        ]
        L += md_table(REG_HEAD, body)
    return L


def reg_task_tables(table, methods, regimes):
    L = []
    for w in "abc":
        cs = cells(table, "regression", w)
        for t in dict.fromkeys(t for t, _ in cs):
            L += [f"### ({w}) {t}", ""]
            body = []
            for r in regimes:
                for m in methods:
                    v = cs.get((t, r), {}).get(m)
                    if v is None:
                        continue
                    body.append(
                        [m, r]
                        + [v[k] for k in ("RMSE", "NLL", "coverage90", "width90", "std_growth")]
                        + [v.get("prior", np.nan), v.get("sigma", np.nan)]
                    )
            head = ["method", "regime", "RMSE", "NLL", "coverage90", "width90", "std growth"]
            L += md_table([*head, "prior", "sigma (std units)"], body)
    return L
