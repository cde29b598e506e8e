"""The command line: the real tabular tasks, then the smoke row; the report and plots.

The real tasks (:mod:`.real_tasks`) run as (task, split, seed) units, in ``--jobs``
worker processes; the smoke row is issue 11's small scikit-learn tasks (:mod:`.tasks`) at
one seed and the short regime, in this process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shlex
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import torch

from . import mola as mola_rows
from .methods import CLASSIFICATION, REGRESSION, SMOKE_DEFAULTS
from .nets import QUICK_REGIMES, REGIMES
from .plots import PLOTTED, make_plots
from .real_methods import DEFAULT, REAL_REGIMES, SKLAPLACE_ROWS, available_rows
from .real_report import print_targets, real_section
from .real_run import run_unit
from .real_tasks import REAL_TASKS, SPLITS, real_task
from .report import provenance, write_report
from .summary import median_table
from .tasks import CLF_TASKS, REG_TASKS, clf_task, reg_task
from .workflows import Sink, run_cell

ROOT = Path(__file__).resolve().parents[2]
ENSEMBLE_SIZE = 5
QUICK_CLF_TASKS = ("wine", "digits", "make_classification", "make_moons")
QUICK_REG_TASKS = ("heteroscedastic", "toy_cubic")
QUICK_REAL_TASKS = ("chile_vote", "default")  # multiclass + held-out class; rare positives
QUICK_REAL_REGIMES = {"short": 20}
SMOKE_CPU_MINUTES = 6.0  # one seed of the smoke row (issue 11's run: 18 CPU min, 3 seeds)
SMOKE_MOLA_FACTOR = 1.6  # with MoLA: x1.69 CPU measured on the short regime (digits, toy_cubic)
ENSEMBLE_RESULTS = "RESULTS_ensemble_quality.md"  # where --only-rows writes


def parse(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/quality.py",
        description="Uncertainty quality of sklaplace in the workflows users run.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: one seed, two real tasks, the short regime, the quick smoke row",
    )
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 3; quick 1)")
    parser.add_argument(
        "--tasks",
        default=None,
        help="comma-separated task names (real and/or smoke-row tasks); default: all",
    )
    parser.add_argument(
        "--workflows", default="abcd", help="real tasks: workflows to run (default abcd)"
    )
    parser.add_argument("--splits", default="iid,shift", help="real tasks: iid and/or shift")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes for the real tasks (1 thread each)"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="write the results, raw rows and plots here instead of the repository",
    )
    parser.add_argument(
        "--rows", type=Path, default=None, help="also write the raw per-seed rows (JSON) here"
    )
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--only-rows",
        default=None,
        help="real tasks: comma-separated sklaplace rows to run (e.g. 'sklaplace default'); "
        "the baselines and MoLA always run. Writes benchmarks/RESULTS_ensemble_quality.md "
        "(not RESULTS_quality.md) and no plots, unless --out-dir is given",
    )
    parser.add_argument(
        "--no-mola", action="store_true", help="leave out the MoLA rows (issue 21, item 6)"
    )
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    if not set(args.workflows) <= set("abcd"):
        parser.error(f"--workflows takes letters of 'abcd'; got {args.workflows!r}")
    args.splits = tuple(s for s in args.splits.split(",") if s)
    if not set(args.splits) <= set(SPLITS):
        parser.error(f"--splits takes {SPLITS}; got {args.splits!r}")
    if args.only_rows is not None:
        args.only_rows = [r.strip() for r in args.only_rows.split(",") if r.strip()]
        unknown = sorted(set(args.only_rows) - set(SKLAPLACE_ROWS))
        if unknown or not args.only_rows:
            parser.error(f"--only-rows: unknown row(s) {unknown}; known: {list(SKLAPLACE_ROWS)}")
    known = {*REAL_TASKS, *CLF_TASKS, *REG_TASKS}
    args.task_set = None
    if args.tasks is not None:
        args.task_set = {t for t in args.tasks.split(",") if t}
        if not args.task_set <= known:
            parser.error(
                f"unknown task(s) {sorted(args.task_set - known)}; known: {sorted(known)}"
            )
    return args


def _pick(names, task_set):
    return tuple(n for n in names if task_set is None or n in task_set)


def run_real(cfg, rows_cfg, jobs, meanwhile=None, mola=True):
    """Every (task, split, seed) unit of the real tasks, largest first, on ``jobs`` worker
    processes; ``meanwhile()`` (the smoke row) runs in this process while they work."""
    units = [
        (name, split, seed)
        for name in cfg["real_tasks"]
        for split in cfg["splits"]
        for seed in range(cfg["seeds"])
    ]
    sizes = {(n, s): len(real_task(n, s, 0).y_dev) for n in cfg["real_tasks"] for s in SPLITS}
    order = sorted(units, key=lambda u: -sizes[u[:2]])
    args = (cfg["real_regimes"], cfg["workflows"], rows_cfg, ENSEMBLE_SIZE, mola)
    results, t0 = {}, time.perf_counter()

    def done(u, out, seconds):
        out["seconds"] = seconds
        out["row_epochs"] = sizes[u[:2]] * sum(cfg["real_regimes"].values())
        out["row_regimes"] = sizes[u[:2]] * len(cfg["real_regimes"])
        results[u] = out
        print(
            f"  real  {u[0]:18s} {u[1]:5s} seed {u[2]} {seconds:6.1f} s ({out['cpu']:.0f} s CPU) "
            f"(total {time.perf_counter() - t0:6.0f} s, {len(results)}/{len(units)})",
            flush=True,
        )

    if jobs <= 1 or not units:
        for u in order:
            t1 = time.perf_counter()
            done(u, run_unit(*u, *args), time.perf_counter() - t1)
        if meanwhile is not None:
            meanwhile()
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_timed_unit, u, args): u for u in order}
            for f, u in futures.items():
                f.add_done_callback(lambda f, u=u: f.exception() is None and done(u, *f.result()))
            if meanwhile is not None:
                meanwhile()
            wait(futures)
        for f in futures:
            f.result()  # a worker's exception surfaces here
    return [results[u] for u in units], sizes


def _timed_unit(u, args):
    t0 = time.perf_counter()
    out = run_unit(*u, *args)
    return out, time.perf_counter() - t0


def expected_full_minutes(results, sizes, rows_cfg, jobs=2, full_rows=None):
    """The full run's real-task wall-clock on ``jobs`` free cores, from the measured units'
    CPU time (which the machine's load does not inflate as it does wall-clock time).

    Training CPU is taken to scale with development rows x epochs x nets trained (10 per
    regime, plus one per sklaplace row of workflow (a), which trains its own net), the rest
    (Laplace fits, calibrators, predictions) with development rows x regimes; the full
    configuration runs every row of ``full_rows`` (default ``SKLAPLACE_ROWS``, the rows
    skipped here included). MoLA's CPU (in (a) its five nets' training too) is measured
    apart and scaled with development rows x epochs. Plus the smoke row: one seed of issue
    11's full run, about 6 CPU minutes (more with MoLA: ``SMOKE_MOLA_FACTOR``).
    """
    full_rows = SKLAPLACE_ROWS if full_rows is None else full_rows
    nets_now = 2 * ENSEMBLE_SIZE + sum("a" in w for _, w in rows_cfg.values())
    nets_full = 2 * ENSEMBLE_SIZE + sum("a" in w for _, w in full_rows.values())
    train = sum(r["train_cpu"] * nets_now / (2 * ENSEMBLE_SIZE) for r in results)
    mola = sum(r.get("mola_cpu", 0.0) for r in results)
    other = sum(r["cpu"] for r in results) - train - mola
    epochs = sum(r["row_epochs"] for r in results)
    regimes = sum(r["row_regimes"] for r in results)
    if not epochs:
        return np.nan
    dev = [sizes.get((n, s)) or len(real_task(n, s, 0).y_dev) for n in REAL_TASKS for s in SPLITS]
    full_epochs = 3 * sum(dev) * sum(REAL_REGIMES.values())
    full_regimes = 3 * sum(dev) * len(REAL_REGIMES)
    fits = len(full_rows) / max(len(rows_cfg), 1)  # more Laplace fits per workflow
    cpu = train / epochs * full_epochs * nets_full / nets_now + other / regimes * full_regimes * (
        1 + 0.5 * (fits - 1)
    )
    cpu += mola / epochs * full_epochs
    smoke = SMOKE_CPU_MINUTES * (SMOKE_MOLA_FACTOR if mola else 1.0)
    return (cpu / 60 + smoke) / jobs


def main(argv=None):
    args = parse(argv)
    torch.set_num_threads(1)
    name = "RESULTS_quality.md" if args.only_rows is None else ENSEMBLE_RESULTS
    if args.out_dir is None:
        results, plot_dir = ROOT / "benchmarks" / name, ROOT / "docs/_static/quality"
        if args.only_rows is not None:  # never over the full run's plots
            args.no_plots = True
    else:
        results, plot_dir = args.out_dir / name, args.out_dir
    plot_dir.mkdir(parents=True, exist_ok=True)
    # the smoke row (issue 11's small tasks): one seed (seed 0, the plots' seed); both
    # regimes in the full run (the plots show the long one), the short one with --quick
    regimes = QUICK_REGIMES if args.quick else REGIMES
    plot_regime = "long" if "long" in regimes else next(iter(regimes))
    # quoted as a shell takes it (--only-rows "sklaplace default")
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python benchmarks/quality.py", *map(shlex.quote, given)])
    rows_cfg, skipped = available_rows()
    if args.only_rows is not None:
        rows_cfg = {k: v for k, v in rows_cfg.items() if k in args.only_rows}
    mola = not args.no_mola
    cfg = {
        "provenance": provenance(),  # before the run: the code it imports
        "command": command.replace(" --out-dir " + str(args.out_dir), ""),
        "real_tasks": _pick(QUICK_REAL_TASKS if args.quick else tuple(REAL_TASKS), args.task_set),
        "splits": args.splits,
        "workflows": args.workflows,
        "real_regimes": QUICK_REAL_REGIMES if args.quick else REAL_REGIMES,
        "sklaplace_rows": rows_cfg,
        "clf_tasks": _pick(QUICK_CLF_TASKS if args.quick else CLF_TASKS, args.task_set),
        "reg_tasks": _pick(QUICK_REG_TASKS if args.quick else REG_TASKS, args.task_set),
        "regimes": regimes,
        "seeds": args.seeds,
        "smoke_seeds": 1,
        "members": ENSEMBLE_SIZE,
        "jobs": args.jobs,
        "mola": mola,
    }
    for label, why in skipped.items():
        print(f"  skipped sklaplace row {label!r}: {why}", flush=True)
    t0, cpu0 = time.perf_counter(), time.process_time()
    sink = Sink(plotted=() if args.no_plots else tuple((t, plot_regime) for t in PLOTTED))

    def smoke_row():
        for kind, names, make in (
            (CLASSIFICATION, cfg["clf_tasks"], clf_task),
            (REGRESSION, cfg["reg_tasks"], reg_task),
        ):
            for name in names:
                for seed in range(cfg["smoke_seeds"]):
                    task = make(name, seed)
                    for regime, epochs in regimes.items():
                        t1 = time.perf_counter()
                        run_cell(kind, task, seed, regime, epochs, ENSEMBLE_SIZE, sink, mola)
                        t2 = time.perf_counter()
                        print(
                            f"  smoke {kind.name:14s} {name:20s} seed {seed} {regime:5s} "
                            f"{t2 - t1:6.1f} s (total {t2 - t0:6.0f} s)",
                            flush=True,
                        )

    real, sizes = [], {}
    if cfg["real_tasks"]:
        real, sizes = run_real(cfg, rows_cfg, args.jobs, meanwhile=smoke_row, mola=mola)
    else:
        smoke_row()
    real_rows = [r for u in real for r in u["rows"]]
    real_failures = [f for u in real for f in u["failures"]]
    real_notes = [n for u in real for n in u["notes"]]
    real_warnings = Counter()
    for u in real:
        real_warnings.update(u["warnings"])
    labels = list(rows_cfg)
    lead = []
    if real:
        print_targets(real_rows, labels)
        lead = real_section(
            cfg, real_rows, real_failures, real_notes, real_warnings,
            [u["seconds"] for u in real], skipped, labels,
        )  # fmt: skip
        complete = set(cfg["workflows"]) == set("abcd") and set(cfg["splits"]) == set(SPLITS)
        minutes = expected_full_minutes(real, sizes, rows_cfg) if complete else np.nan
        only = expected_full_minutes(real, sizes, rows_cfg, full_rows=rows_cfg)
        only = only if complete else np.nan
        print(
            f"expected full run (python benchmarks/quality.py --jobs 2): {minutes:.0f} min "
            "wall-clock on 2 free cores, extrapolated from these units' CPU time; with "
            f"only this run's sklaplace rows ({', '.join(rows_cfg)}): {only:.0f} min",
            flush=True,
        )
        lead += [
            f"Expected full run (`--jobs 2`, 2 free cores), extrapolated from this run's CPU "
            f"time: {minutes:.0f} min (only this run's sklaplace rows: {only:.0f} min).",
            "",
        ]
    table = median_table(sink.rows)
    plots = []
    smoke = bool(cfg["clf_tasks"] or cfg["reg_tasks"])
    if smoke and not args.no_plots:
        plots = make_plots(sink.keep, plot_regime, plot_dir, results.parent, 61)
    runtime = time.perf_counter() - t0
    cfg["cpu"] = time.process_time() - cpu0
    if args.jobs > 1:  # the workers' CPU time too
        cfg["cpu"] += sum(u["cpu"] for u in real)
    raw = args.rows or (args.out_dir and args.out_dir / "quality_rows.json")
    if raw:  # the per-seed rows, for inspection
        raw.write_text(json.dumps({"real": real_rows, "smoke": sink.rows}, default=str))
    if mola:
        lead = list(lead) + mola_rows.section(real_rows, sink.rows, DEFAULT, SMOKE_DEFAULTS)
    write_report(results, cfg, table, sink.rows, sink, runtime, plots, lead=lead, smoke=smoke)
    print(f"wrote {results} in {runtime:.0f} s", flush=True)
    return {
        "table": table,
        "rows": sink.rows,
        "failures": sink.failures,
        "warnings": sink.warnings,
        "notes": sink.notes,
        "real": {
            "rows": real_rows,
            "failures": real_failures,
            "notes": real_notes,
            "warnings": real_warnings,
            "skipped": skipped,
            "labels": labels,
            "seconds": [u["seconds"] for u in real],
        },
        "results": results,
        "plots": plots,
        "config": cfg,
    }
