"""Heteroscedastic regression: a net that predicts its own noise, with and without Laplace.

The regression tasks of ``benchmarks/quality.py`` (diabetes, heteroscedastic, toy cubic,
friedman1: the same 60/20/20 splits, MLPs, learning rates, regimes and seeds, imported from
``quality_bench``), in its workflow (c): a frozen net trained with ``train_split=None`` on
the training rows, ``LaplaceRegressor`` fitted on the training rows with ``X_val`` /
``y_val`` the validation rows.

* ``MAP``: the one-output net (``MSELoss``), std = RMS of its residuals on the validation
  rows (``quality_bench.methods.MAPRegressor``);
* ``LA-all``: that net under ``LaplaceRegressor`` as the quality benchmark's ``LA-all``
  (every layer, kron, prior precision and ``sigma_noise`` tuned on the validation rows,
  Gaussian intervals);
* ``hetero-MAP``: the same MLP with two outputs, mean and log variance ``eta``, trained
  with ``sklaplace.HeteroscedasticGaussianNLL`` (same lr and epochs); std =
  ``exp(eta / 2)`` from the net alone, Gaussian intervals;
* ``hetero-LA``: that net under ``LaplaceRegressor`` (every layer, kron, prior precision
  tuned on the validation rows, Gaussian intervals). ``sigma_noise`` does not apply: the
  net predicts the noise (``fit`` sets ``sigma_noise_`` to 1, unused) and the predictive
  variance is ``Var[mu] + exp(eta + Var[eta] / 2)``;
* ``hetero-LA-conformal``: the same with ``interval="conformal"`` (``fit`` then tunes the
  prior on half of the validation rows and calibrates on the other half).

Metrics on the test rows in y's units, from float64 outputs: RMSE, Gaussian NLL, coverage
and mean width of the 90 % interval (``quality_bench.metrics.reg_metrics``), and
``std~err``, the Spearman correlation of the predicted std with the absolute error (does
the std follow the noise? a constant std has none). The report also shows how the
two-output nets trained (is the task's learning rate stable for the Gaussian NLL?).

Run:  python benchmarks/heteroscedastic.py [--quick] [--out FILE] [--hetero-lr-scale F]
(writes ``benchmarks/RESULTS_heteroscedastic.md``, keeping its hand-written section).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.frozen import FrozenEstimator

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_bench.methods import (
    REGRESSION,
    LaplacePredictor,
    MAPRegressor,
    _gaussian_interval,
)
from quality_bench.metrics import reg_metrics
from quality_bench.nets import QUICK_REGIMES, REGIMES, make_regressor, outputs64, train
from quality_bench.tasks import REG_TASKS, reg_task

import sklaplace
from sklaplace import HeteroscedasticGaussianNLL, LaplaceRegressor
from sklaplace.metrics import interval_coverage, interval_width

OUT = Path(__file__).with_name("RESULTS_heteroscedastic.md")
HAND = "## What this says"
METHODS = ("MAP", "LA-all", "hetero-MAP", "hetero-LA", "hetero-LA-conformal")
BAND = (0.88, 0.95)
KEYS = ("RMSE", "NLL", "coverage90", "width90", "std~err", "prior")
QUICK_TASKS = ("heteroscedastic", "toy_cubic")
SPIKE = 0.5  # a rise of the training loss between two epochs that counts as a spike


class HeteroMAP:
    """The two-output net alone: its mean, and std = ``exp(eta / 2)``.

    Parameters
    ----------
    net : skorch.NeuralNetRegressor
        A fitted net whose module outputs ``[mean, log variance]``.
    """

    def __init__(self, net):
        self.net, self.info = net, {}

    def mean_std(self, X):
        """Predictive mean and std of each row (float64, standardised units)."""
        out = outputs64(self.net, X)
        return out[:, 0], np.exp(out[:, 1] / 2)

    def interval(self, X, confidence):
        """The Gaussian central interval of the net's own predictive."""
        return _gaussian_interval(*self.mean_std(X), confidence)


def make_hetero(task, epochs: int, lr_scale: float = 1.0):
    """The quality benchmark's regressor net for ``task`` with two outputs (mean, log
    variance) and the Gaussian NLL as criterion; its lr times ``lr_scale``.

    Parameters
    ----------
    task : quality_bench.tasks.Task
    epochs : int
    lr_scale : float, default=1.0

    Returns
    -------
    skorch.NeuralNetRegressor
        Unfitted, with ``train_split=None``.
    """
    net = make_regressor(task, epochs, own_split=False)
    return net.set_params(
        module__n_out=2, criterion=HeteroscedasticGaussianNLL, lr=net.lr * lr_scale
    )


def hetero_laplace(net, seed: int, interval: str) -> LaplaceRegressor:
    """``LaplaceRegressor`` on a frozen two-output net: every layer, kron, prior tuned on
    the held-out rows; no ``sigma_noise`` (the net predicts the noise)."""
    return LaplaceRegressor(
        FrozenEstimator(net),
        subset_of_weights="all",
        hessian_structure="kron",
        prior_precision="holdout",
        interval=interval,
        random_state=seed,
    )


def _with_infinite_std(predictor, task, mean, std) -> dict:
    """``reg_metrics``' RMSE, NLL, coverage and width where some predicted stds overflowed
    to inf (``sklaplace.metrics.gaussian_nll`` refuses them): those rows' NLL is inf."""
    mean = np.ravel(mean) * task.y_scale + task.y_shift
    std = np.ravel(std) * task.y_scale
    lo, hi = (
        np.ravel(b) * task.y_scale + task.y_shift for b in predictor.interval(task.X_test, 0.9)
    )
    with np.errstate(invalid="ignore"):
        z = np.where(np.isinf(std), 0.0, (task.y_test - mean) / std)
    nll = 0.5 * np.log(2 * np.pi) + np.log(std) + 0.5 * z**2
    return {
        "RMSE": float(np.sqrt(np.mean((mean - task.y_test) ** 2))),
        "NLL": float(np.mean(nll)),
        "coverage90": interval_coverage(task.y_test, lo, hi),
        "width90": interval_width(lo, hi),
    }


def score(predictor, task) -> dict:
    """The metrics of one predictor on the test rows of ``task``.

    Parameters
    ----------
    predictor : object
        With ``mean_std(X)``, ``interval(X, confidence)`` and ``info``, as in
        ``quality_bench.methods``.
    task : quality_bench.tasks.Task

    Returns
    -------
    dict
        ``KEYS``, plus ``inf_std``, the number of test rows whose predicted std is inf.
    """
    mean, std = predictor.mean_std(task.X_test)
    n_inf = int(np.isinf(std).sum())
    if n_inf:
        row = _with_infinite_std(predictor, task, mean, std)
    else:
        row = reg_metrics(predictor, task)
    error = np.abs(np.ravel(mean) * task.y_scale + task.y_shift - task.y_test)
    std = np.ravel(std)
    row["std~err"] = np.nan if np.ptp(std) == 0 else float(spearmanr(std, error).statistic)
    row["prior"] = predictor.info.get("prior", np.nan)
    row["inf_std"] = n_inf
    return row


def training_record(net) -> dict:
    """How a net's training loss went: finite throughout, first, last and lowest value,
    and the spikes (rises above ``SPIKE`` between consecutive epochs)."""
    loss = np.asarray(net.history[:, "train_loss"], dtype=np.float64)
    rises = np.diff(loss)
    return {
        "finite": bool(np.isfinite(loss).all()),
        "first": float(loss[0]),
        "last": float(loss[-1]),
        "lowest": float(np.min(loss)),
        "spikes": int(np.sum(rises > SPIKE)),
        "largest_rise": float(max(rises.max(initial=0.0), 0.0)),
    }


def run_cell(task, seed: int, epochs: int, lr_scale: float = 1.0) -> dict:
    """Every method on one (task, seed, regime).

    Returns
    -------
    dict
        Method name -> metrics (see :func:`score`), and ``"training"`` -> the training
        record of the two-output net (see :func:`training_record`).
    """
    net, _ = train(make_regressor(task, epochs, own_split=False), task.X_train, task.y_train, seed)
    hetero, _ = train(make_hetero(task, epochs, lr_scale), task.X_train, task.y_train, seed)
    rows = (task.X_train, task.y_train)
    val = {"X_val": task.X_val, "y_val": task.y_val}
    builds = {
        "MAP": lambda: MAPRegressor(net, task.X_val, task.y_val),
        "LA-all": lambda: LaplacePredictor(
            REGRESSION.laplace(FrozenEstimator(net), "LA-all", seed).fit(*rows, **val)
        ),
        "hetero-MAP": lambda: HeteroMAP(hetero),
        "hetero-LA": lambda: LaplacePredictor(
            hetero_laplace(hetero, seed, "gaussian").fit(*rows, **val)
        ),
        "hetero-LA-conformal": lambda: LaplacePredictor(
            hetero_laplace(hetero, seed, "conformal").fit(*rows, **val)
        ),
    }
    out = {}
    for name, build in builds.items():
        with warnings.catch_warnings():
            # the prior at the bottom of its range and overflows on far rows: the report
            # shows the tuned priors and counts the infinite stds
            warnings.simplefilter("ignore")
            predictor = build()
            out[name] = score(predictor, task)
        if name.startswith("hetero-LA") and predictor.info["sigma"] != 1.0:
            raise AssertionError(f"{name}: sigma_noise_ should be unused (1.0)")
    out["training"] = training_record(hetero)
    return out


def _fmt(v) -> str:
    v = float(v)
    if np.isnan(v):
        return "-"
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
        return f"{v:.0e}"
    return f"{v:.3f}"


def _medians(runs, method) -> dict:
    return {k: float(np.median([r[method][k] for r in runs])) for k in KEYS}


def cell_table(runs) -> list[str]:
    """Markdown table of one (task, regime): medians over seeds, one row per method."""
    lines = ["| method | " + " | ".join(KEYS) + " |", "|---|" + "---|" * len(KEYS)]
    for m in METHODS:
        vals = _medians(runs, m)
        lines.append(f"| {m} | " + " | ".join(_fmt(vals[k]) for k in KEYS) + " |")
    return lines


def summary_table(cells) -> list[str]:
    """Markdown counts over the (task, regime) cells, from the medians over seeds."""
    lines = [
        "| method | coverage in [0.88, 0.95] | NLL < MAP's | NLL < LA-all's | "
        "median std~err | runs with an infinite std |",
        "|---|---|---|---|---|---|",
    ]
    med = {key: {m: _medians(runs, m) for m in METHODS} for key, runs in cells.items()}
    n = len(med)
    n_runs = sum(len(runs) for runs in cells.values())
    for m in METHODS:
        cov = sum(BAND[0] <= v[m]["coverage90"] <= BAND[1] for v in med.values())
        nll_map = sum(v[m]["NLL"] < v["MAP"]["NLL"] for v in med.values())
        nll_la = sum(v[m]["NLL"] < v["LA-all"]["NLL"] for v in med.values())
        corr = np.median([v[m]["std~err"] for v in med.values()])
        inf = sum(r[m]["inf_std"] > 0 for runs in cells.values() for r in runs)
        lines.append(
            f"| {m} | {cov}/{n} | {nll_map}/{n} | {nll_la}/{n} | {_fmt(corr)} | {inf}/{n_runs} |"
        )
    return lines


def training_table(cells) -> list[str]:
    """Markdown table of the two-output nets' training, per (task, regime)."""
    lines = [
        "| task | regime | runs finite | loss: first | last | lowest | spikes | largest rise |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (task, regime), runs in cells.items():
        rec = [r["training"] for r in runs]
        finite = sum(r["finite"] for r in rec)

        def med(key, rec=rec):
            return _fmt(np.median([r[key] for r in rec]))

        spikes = sum(r["spikes"] for r in rec)
        rise = _fmt(max(r["largest_rise"] for r in rec))
        lines.append(
            f"| {task} | {regime} | {finite}/{len(rec)} | {med('first')} | {med('last')} | "
            f"{med('lowest')} | {spikes} | {rise} |"
        )
    return lines


def _git(*args) -> str:
    here = Path(__file__).resolve().parent
    done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=here)
    return done.stdout.strip()


def provenance() -> str:
    """Commit, tree state and where sklaplace was imported from, for the report."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [line[3:] for line in _git("status", "--porcelain").splitlines()]
    imported = Path(sklaplace.__file__).resolve().parent
    in_tree = imported == Path(__file__).resolve().parent.parent / "sklaplace"
    used = (
        ("sklaplace/", "benchmarks/quality_bench/") if in_tree else ("benchmarks/quality_bench/",)
    )
    relevant = [p for p in changed if p.startswith(used)]
    state = f"{len(changed)} paths modified or untracked" if changed else "clean tree"
    text = f"commit {commit}, {state}"
    if relevant:
        text += " (of which ones that can change these numbers: " + ", ".join(relevant) + ")"
    if not in_tree:
        text += f"; sklaplace {sklaplace.__version__} imported from {imported}, not this tree"
    return text


def main(argv=None) -> dict:
    """Run the benchmark, print the tables and write the report.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (``--quick``, ``--out FILE``, ``--hetero-lr-scale F``).

    Returns
    -------
    dict
        ``cells``: (task, regime) -> one :func:`run_cell` result per seed; ``seconds``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, short regime, 2 tasks")
    parser.add_argument("--out", type=Path, default=OUT, help="the report (markdown)")
    parser.add_argument(
        "--hetero-lr-scale",
        type=float,
        default=1.0,
        help="the two-output nets' lr is the task's times this (default 1)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tasks = QUICK_TASKS if args.quick else REG_TASKS
    regimes = QUICK_REGIMES if args.quick else REGIMES
    seeds = (0,) if args.quick else (0, 1, 2)
    start = time.perf_counter()
    cells = {}
    for task_name in tasks:
        for regime, epochs in regimes.items():
            cells[task_name, regime] = [
                run_cell(reg_task(task_name, seed), seed, epochs, args.hetero_lr_scale)
                for seed in seeds
            ]
            print(f"{task_name:16s} {regime:5s} {time.perf_counter() - start:6.1f} s", flush=True)
    seconds = time.perf_counter() - start
    command = " ".join(["python benchmarks/heteroscedastic.py", *(argv or sys.argv[1:])])
    lines = [
        "# Heteroscedastic regression: a net that predicts its noise, with and without Laplace",
        "",
        f"`{command}`: {seconds / 60:.1f} min on {platform.machine()} with "
        f"{os.cpu_count()} cores (shared with other jobs), Python "
        f"{platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} thread: `torch.set_num_threads(1)`); {provenance()}.",
        "",
        "What each method is: the docstring of `benchmarks/heteroscedastic.py`. Tasks, "
        "splits, nets, learning rates and regimes are those of `benchmarks/quality.py` "
        f"(two-output nets: lr x {args.hetero_lr_scale:g}); nets trained with "
        "`train_split=None` on the training rows, Laplace fitted on them with `X_val` = the "
        f"validation rows; metrics on the test rows in y's units; {len(seeds)} seed(s), "
        "medians over seeds. `std~err`: Spearman correlation of the predicted std with the "
        "absolute error; `prior`: the tuned prior precision (searched in [1e-4, 1e6]).",
        "",
        "## Summary over the (task, regime) cells",
        "",
        *summary_table(cells),
        "",
        "## Per task and regime",
        "",
    ]
    for (task_name, regime), runs in cells.items():
        lines += [f"### {task_name}, {regime} ({regimes[regime]} epochs)", ""]
        lines += [*cell_table(runs), ""]
    lines += [
        "## Training of the two-output nets",
        "",
        f"Training loss (the Gaussian NLL, per row, standardised units; medians over seeds). "
        f"`spikes`: rises above {SPIKE} between consecutive epochs, over all seeds.",
        "",
        *training_table(cells),
        "",
    ]
    text = "\n".join(lines)
    if args.out.exists() and HAND in (old := args.out.read_text()):
        text += "\n" + old[old.index(HAND) :]
    args.out.write_text(text)
    print(text)
    return {"cells": cells, "seconds": seconds}


if __name__ == "__main__":
    main()
