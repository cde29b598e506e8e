"""The command line: run every cell, then write the report and the plots."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .methods import CLASSIFICATION, REGRESSION
from .nets import QUICK_REGIMES, REGIMES
from .plots import PLOTTED, make_plots
from .report import provenance, write_report
from .summary import median_table
from .tasks import CLF_TASKS, REG_TASKS, clf_task, reg_task
from .workflows import Sink, run_cell

ROOT = Path(__file__).resolve().parents[2]
ENSEMBLE_SIZE = 5
QUICK_CLF_TASKS = ("wine", "digits", "make_classification", "make_moons")
QUICK_REG_TASKS = ("heteroscedastic", "toy_cubic")


def parse(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/quality.py",
        description="Uncertainty quality of sklaplace in the workflows users run.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke run: fewer tasks, short regime only"
    )
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 3; quick 1)")
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
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    return args


def main(argv=None):
    args = parse(argv)
    torch.set_num_threads(1)
    if args.out_dir is None:
        results, plot_dir = (
            ROOT / "benchmarks" / "RESULTS_quality.md",
            ROOT / "docs/_static/quality",
        )
    else:
        results, plot_dir = args.out_dir / "RESULTS_quality.md", args.out_dir
    plot_dir.mkdir(parents=True, exist_ok=True)
    regimes = QUICK_REGIMES if args.quick else REGIMES
    plot_regime = "long" if "long" in regimes else next(iter(regimes))
    command = "python benchmarks/quality.py" + (" --quick" if args.quick else "")
    cfg = {
        "provenance": provenance(),  # before the run: the code it imports
        "command": command
        + (f" --seeds {args.seeds}" if args.seeds != (1 if args.quick else 3) else ""),
        "clf_tasks": QUICK_CLF_TASKS if args.quick else CLF_TASKS,
        "reg_tasks": QUICK_REG_TASKS if args.quick else REG_TASKS,
        "regimes": regimes,
        "seeds": args.seeds,
        "members": ENSEMBLE_SIZE,
    }
    sink = Sink(plotted=() if args.no_plots else tuple((t, plot_regime) for t in PLOTTED))
    t0, cpu0 = time.perf_counter(), time.process_time()
    for kind, names, make in (
        (CLASSIFICATION, cfg["clf_tasks"], clf_task),
        (REGRESSION, cfg["reg_tasks"], reg_task),
    ):
        for name in names:
            for seed in range(args.seeds):
                task = make(name, seed)
                for regime, epochs in regimes.items():
                    t1 = time.perf_counter()
                    run_cell(kind, task, seed, regime, epochs, ENSEMBLE_SIZE, sink)
                    t2 = time.perf_counter()
                    print(
                        f"  {kind.name:14s} {name:20s} seed {seed} {regime:5s} "
                        f"{t2 - t1:6.1f} s (total {t2 - t0:6.0f} s)",
                        flush=True,
                    )
    table = median_table(sink.rows)
    plots = []
    if not args.no_plots:
        grid = 61 if args.quick else 161
        plots = make_plots(sink.keep, plot_regime, plot_dir, results.parent, grid)
    runtime = time.perf_counter() - t0
    cfg["cpu"] = time.process_time() - cpu0
    raw = args.rows or (args.out_dir and args.out_dir / "quality_rows.json")
    if raw:  # the per-seed rows, for inspection
        raw.write_text(json.dumps(sink.rows, default=str))
    write_report(results, cfg, table, sink.rows, sink, runtime, plots)
    print(f"wrote {results} in {runtime:.0f} s", flush=True)
    return {
        "table": table,
        "rows": sink.rows,
        "failures": sink.failures,
        "warnings": sink.warnings,
        "notes": sink.notes,
        "results": results,
        "plots": plots,
        "config": cfg,
    }
