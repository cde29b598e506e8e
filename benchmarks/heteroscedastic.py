"""Heteroscedastic regression: a net that predicts its own noise, with and without Laplace.

The regression tasks of ``benchmarks/quality.py`` (diabetes, heteroscedastic, toy cubic,
friedman1; the same splits, nets, regimes and seeds, from ``quality_bench``), in the
workflow of a frozen net trained with ``train_split=None`` and fitted with ``X_val``:

* ``MAP``: a one-output net (``MSELoss``), std = RMS of its residuals on the validation
  rows;
* ``LA-all``: that net under ``LaplaceRegressor`` (every layer, kron, prior and sigma
  tuned on the validation rows, Gaussian intervals);
* ``hetero-MAP``: the same MLP with two outputs, mean and log variance, trained with
  ``sklaplace.HeteroscedasticGaussianNLL``; std = ``exp(eta / 2)`` from the net alone;
* ``hetero-LA``: that net under ``LaplaceRegressor`` (every layer, kron, prior tuned on
  the validation rows): std^2 = the mean's posterior variance + the net's noise;
* ``hetero-LA-conformal``: the same with ``interval="conformal"``.

Metrics on the test rows in y's units (``quality_bench.metrics.reg_metrics``): RMSE,
Gaussian NLL, coverage and width of the 90 % interval, and the rank correlation of the
predicted std with the absolute error (does the std follow the noise?).

Run:  python benchmarks/heteroscedastic.py [--quick] [--out FILE]
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
from skorch import NeuralNetRegressor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_bench.methods import LaplacePredictor, MAPRegressor
from quality_bench.metrics import reg_metrics
from quality_bench.nets import REG_NETS, REGIMES, _common, make_regressor, train
from quality_bench.tasks import REG_TASKS, reg_task

from sklaplace import HeteroscedasticGaussianNLL, LaplaceRegressor
from sklaplace.metrics import interval_coverage, interval_width

OUT = Path(__file__).with_name("RESULTS_heteroscedastic.md")
HAND = "## What this says"
METHODS = ("MAP", "LA-all", "hetero-MAP", "hetero-LA", "hetero-LA-conformal")
BAND = (0.88, 0.95)
KEYS = ("RMSE", "NLL", "coverage90", "width90", "std~err")


class HeteroMAP:
    """The heteroscedastic net alone: its mean, and std = exp(eta / 2)."""

    def __init__(self, net):
        self.net = net

    def mean_std(self, X):
        with torch.no_grad():
            out = self.net.forward(X, training=False).to(torch.float64).numpy()
        return out[:, 0], np.exp(out[:, 1] / 2)

    def interval(self, X, confidence):
        from scipy.stats import norm

        mean, std = self.mean_std(X)
        z = norm.ppf(0.5 + confidence / 2)
        return mean - z * std, mean + z * std


def make_hetero(task, epochs: int) -> NeuralNetRegressor:
    """The task's MLP with two outputs (mean, log variance), trained on the Gaussian NLL."""
    kw = _common(REG_NETS[task.name], task.X_train.shape[1], 2, epochs, own_split=False)
    return NeuralNetRegressor(criterion=HeteroscedasticGaussianNLL, **kw)


def laplace(net, seed, **params):
    return LaplaceRegressor(
        FrozenEstimator(net),
        subset_of_weights="all",
        hessian_structure="kron",
        prior_precision="holdout",
        random_state=seed,
        **params,
    )


def _metrics(predictor, task) -> dict:
    """``reg_metrics``, or where a predicted std overflowed to inf (the log-normal noise
    mean ``exp(eta + Var[eta] / 2)`` of a very wide posterior), the same metrics computed
    here with that row's NLL infinite, and ``inf_std`` the number of such rows."""
    mean, std = predictor.mean_std(task.X_test)
    if np.isfinite(std).all():
        return {**reg_metrics(predictor, task), "inf_std": 0}
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
        "inf_std": int(np.isinf(std).sum()),
    }


def run_cell(task, seed, epochs) -> dict:
    """Every method on one (task, seed, regime): name -> metrics."""
    net, _ = train(make_regressor(task, epochs, own_split=False), task.X_train, task.y_train, seed)
    hetero, _ = train(make_hetero(task, epochs), task.X_train, task.y_train, seed)
    val = {"X_val": task.X_val, "y_val": task.y_val}
    fits = {
        "MAP": lambda: MAPRegressor(net, task.X_val, task.y_val),
        "LA-all": lambda: LaplacePredictor(
            laplace(net, seed, sigma_noise="holdout", interval="gaussian").fit(
                task.X_train, task.y_train, **val
            )
        ),
        "hetero-MAP": lambda: HeteroMAP(hetero),
        "hetero-LA": lambda: LaplacePredictor(
            laplace(hetero, seed, interval="gaussian").fit(task.X_train, task.y_train, **val)
        ),
        "hetero-LA-conformal": lambda: LaplacePredictor(
            laplace(hetero, seed, interval="conformal").fit(task.X_train, task.y_train, **val)
        ),
    }
    out = {}
    for name, build in fits.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the quality benchmark reports them
            predictor = build()
            row = _metrics(predictor, task)
            mean, std = predictor.mean_std(task.X_test)
        error = np.abs(np.ravel(mean) * task.y_scale + task.y_shift - task.y_test)
        std = np.ravel(std)  # (a constant std, MAP's, has no rank correlation: NaN)
        row["std~err"] = np.nan if np.ptp(std) == 0 else spearmanr(std, error).statistic
        out[name] = row
    return out


def _fmt(v) -> str:
    return "-" if np.isnan(v) else f"{v:.3f}"


def _table(cells, tasks, regimes) -> list[str]:
    keys = KEYS
    lines = [
        "| task | regime | method | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for task in tasks:
        for regime in regimes:
            for m in METHODS:
                vals = [np.median([c[m][k] for c in cells[task, regime]]) for k in keys]
                lines.append(f"| {task} | {regime} | {m} | " + " | ".join(map(_fmt, vals)) + " |")
    return lines


def _summary(cells) -> list[str]:
    lines = [
        "| method | coverage in [0.88, 0.95] | NLL < MAP's | NLL < LA-all's | "
        "median std~err | runs with an infinite std |",
        "|---|---|---|---|---|---|",
    ]
    med = {
        key: {m: {k: np.median([c[m][k] for c in runs]) for k in KEYS} for m in METHODS}
        for key, runs in cells.items()
    }
    n = len(med)
    for m in METHODS:
        cov = sum(BAND[0] <= v[m]["coverage90"] <= BAND[1] for v in med.values())
        nll_map = sum(v[m]["NLL"] < v["MAP"]["NLL"] for v in med.values())
        nll_la = sum(v[m]["NLL"] < v["LA-all"]["NLL"] for v in med.values())
        corr = np.median([v[m]["std~err"] for v in med.values()])
        inf = sum(r[m]["inf_std"] > 0 for runs in cells.values() for r in runs)
        n_runs = sum(len(runs) for runs in cells.values())
        lines.append(
            f"| {m} | {cov}/{n} | {nll_map}/{n} | {nll_la}/{n} | {_fmt(corr)} | {inf}/{n_runs} |"
        )
    return lines


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, short regime, 2 tasks")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tasks = ("heteroscedastic", "toy_cubic") if args.quick else REG_TASKS
    regimes = {"short": REGIMES["short"]} if args.quick else REGIMES
    seeds = (0,) if args.quick else (0, 1, 2)
    start = time.perf_counter()
    cells = {}
    for task_name in tasks:
        for regime, epochs in regimes.items():
            cells[task_name, regime] = [
                run_cell(reg_task(task_name, seed), seed, epochs) for seed in seeds
            ]
            print(f"{task_name:16s} {regime:5s} {time.perf_counter() - start:6.1f} s", flush=True)
    seconds = time.perf_counter() - start
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "sklaplace"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    lines = [
        "# Heteroscedastic regression: a net that predicts its noise, with and without Laplace",
        "",
        f"`python benchmarks/heteroscedastic.py{' --quick' if args.quick else ''}`; "
        f"{seconds / 60:.1f} min on {platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} (1 thread); sklaplace at commit {commit}"
        f"{' (sklaplace/ modified)' if dirty else ''}. What each method is: the docstring of "
        "`benchmarks/heteroscedastic.py`. Tasks, splits, nets and regimes are those of "
        "`benchmarks/quality.py`; frozen nets trained with `train_split=None`, Laplace fitted "
        f"with `X_val`; {len(seeds)} seed(s); medians over seeds. `std~err`: Spearman "
        "correlation of the predicted std with the absolute error on the test rows.",
        "",
        "Summary over the (task, regime) cells:",
        "",
        *_summary(cells),
        "",
        "Per cell:",
        "",
        *_table(cells, tasks, regimes),
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
