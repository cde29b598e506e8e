"""The report's diagnostics: what the run cost, and what failed or warned."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from . import tables


def cost_section(rows, sink, runtime, cfg):
    L = ["## Cost", ""]
    by = defaultdict(list)
    for kind, _, regime, s in sink.train_seconds:
        by[(kind, regime)].append(s)
    L += [
        f"Whole run {runtime / 60:.1f} min wall-clock, {cfg['cpu'] / 60:.1f} min CPU (the "
        "machine is shared: wall-clock time depends on the load). One net's training, "
        "median (max): "
        + "; ".join(
            f"{k} {r} {np.median(v):.2f} s ({np.max(v):.2f} s)" for (k, r), v in by.items()
        )
        + ". Median seconds to build each method (Laplace: `fit`, which in (a) trains the "
        "net; ensemble: training its members; TS: its fit) and to predict the test and "
        "OOD rows:",
        "",
    ]
    groups = defaultdict(list)
    for r in rows:
        groups[(r["kind"], r["method"], r["workflow"])].append((r["fit_s"], r["predict_s"]))
    body = []
    for kind in ("classification", "regression"):
        for m in dict.fromkeys(k[1] for k in groups if k[0] == kind):
            cell = []
            for w in "abcd":
                v = groups.get((kind, m, w))
                cell.append(
                    f"{np.median([a for a, _ in v]):.3f} / {np.median([b for _, b in v]):.3f}"
                    if v
                    else "-"
                )
            body.append([kind, m, *cell])
    L += tables.md_table(["kind", "method", "(a) fit / predict", "(b)", "(c)", "(d)"], body)
    return L + laplace_cost(rows)


def laplace_cost(rows):
    """A frozen net's Laplace fit in training epochs of that net (tuning included), and its
    prediction of the test and OOD rows against MAP's, medians over the runs."""
    maps = {_run(r): r["predict_s"] for r in rows if r["method"] == "MAP"}
    groups = defaultdict(list)
    for r in rows:
        if r["method"].startswith("LA-") and r["workflow"] in "bcd" and _run(r) in maps:
            ratio = r["predict_s"] / max(maps[_run(r)], 1e-9)
            groups[(r["kind"], r["method"], r["workflow"])].append(
                (r["fit_s"] / r["epoch_s"], ratio)
            )
    body = []
    for (kind, m, w), v in groups.items():
        body.append(
            [kind, m, f"({w})", np.median([a for a, _ in v]), np.median([b for _, b in v])]
        )
    return [
        "Laplace on a frozen net in units of that net (the cost targets of "
        "`benchmarks/all_layers.py` are a fit of at most 2 epochs for the all-layer Kronecker "
        "posterior with a fixed prior, and a GLM prediction of at most 10 x MAP's; here the "
        "fit includes the tuning on the unseen rows, and these nets are small enough for "
        "fixed costs to dominate):",
        "",
        *tables.md_table(["kind", "method", "workflow", "fit / epoch", "predict / MAP"], body),
    ]


def _run(r):
    return (r["kind"], r["workflow"], r["task"], r["regime"], r["seed"])


def problems_section(sink):
    L = ["## Failures, warnings and consistency checks", ""]
    if sink.failures:
        L += [f"{len(sink.failures)} method fit(s) failed (caught; no row):", ""]
        L += [
            f"* ({f['workflow']}) {f['kind']} {f['task']} seed {f['seed']} {f['regime']} "
            f"`{f['method']}`: `{f['error'][:300]}`"
            for f in sink.failures
        ]
        L += [""]
    else:
        L += ["No method failed.", ""]
    if sink.warnings:
        L += ["Warnings raised while building or predicting, with counts:", ""]
        body = [
            [n, f"({w})", k, m, c, f"`{msg}`"] for (k, w, m, c, msg), n in sink.warnings.items()
        ]
        L += tables.md_table(["count", "workflow", "kind", "method", "category", "message"], body)
    L += (
        ["Consistency checks that failed:", "", *[f"* {n}" for n in sink.notes], ""]
        if sink.notes
        else [
            "Consistency checks passed: in (a) and (b) every Laplace fit reported "
            "`validation_source_ == 'train_split'` with exactly the rows skorch's split holds "
            "out, and in (a) the candidates' nets (same `random_state`) were identical.",
            "",
        ]
    )
    return L
