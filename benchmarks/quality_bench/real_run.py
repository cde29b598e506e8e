"""The real tabular tasks, one (task, split, seed) unit at a time, in worker processes.

A unit trains, per regime, the nets of the four workflows (:mod:`quality_bench.workflows`
defines them; here the net is a ``Pipeline``): five nets with skorch's default
``train_split`` on the development rows (workflows (a) and (b): the first is (b)'s frozen
net, all five its ensemble) and five with ``train_split=None`` on the training rows ((c),
(d)). Every baseline of a workflow is fitted on exactly the unseen rows its sklaplace
default used (``validation_indices_`` in (a) and (b), ``X_val`` in (c)). Each sklaplace
row's test log loss is compared with the best calibrator's and the best baseline's of the
same run by a paired bootstrap over the test rows. MoLA (:mod:`quality_bench.mola`) runs on
each workflow's five ensemble nets (in (a): five unfitted nets it trains, and the deep
ensemble of those).
"""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import brier_score_loss, roc_auc_score

from sklaplace import LaplaceClassifier
from sklaplace.metrics import expected_calibration_error

from . import mola as mola_rows
from .calibrators import paired_bootstrap
from .real_methods import (
    BASELINES,
    CALIBRATORS,
    DEFAULT,
    MAP,
    Ensemble,
    Laplace,
    baselines,
    logits64,
    make_pipeline_net,
    own_split_rows,
)
from .real_tasks import real_task

LOG_EPS = np.log(np.finfo(np.float64).eps)
N_BOOT = 2000


def real_metrics(predictor, task):
    """Metrics on the test rows (and the held-out-class rows), and the per-row NLL."""
    sets = {"test": task.X_test, **task.ood}
    parts = {k: np.asarray(predictor.log_proba(X), np.float64) for k, X in sets.items()}
    # log p clipped at float64's eps, as sklearn.metrics.log_loss clips (isotonic
    # regression gives probabilities of exactly 0)
    lp, y = np.clip(parts.pop("test"), LOG_EPS, 0.0), task.y_test
    p = np.exp(lp)
    p /= p.sum(1, keepdims=True)
    nll = -lp[np.arange(len(y)), y]
    labels = np.arange(task.n_classes)
    row = {
        "accuracy": float(np.mean(lp.argmax(1) == y)),
        "log_loss": float(nll.mean()),
        "ECE": float(expected_calibration_error(y, p, labels=labels)),
        "Brier": float(brier_score_loss(y, p, labels=labels)),
    }
    if task.n_classes == 2 and len(np.unique(y)) == 2:
        row["AUROC"] = float(roc_auc_score(y, p[:, 1]))
    if "held-out classes" in parts:
        conf_in = p.max(1)
        conf_out = np.exp(np.clip(parts["held-out classes"], LOG_EPS, 0.0).max(1))
        truth = np.r_[np.ones(len(conf_in)), np.zeros(len(conf_out))]
        row["AUROC held-out"] = float(roc_auc_score(truth, np.r_[conf_in, conf_out]))
    return row, nll


def _member_seed(seed: int, k: int, plain: bool) -> int:
    return 1000 * seed + k + (500 if plain else 0)


def _train(task, epochs, own_split, X, y, seed, cpu):
    pipe = make_pipeline_net(task, epochs, own_split)
    torch.manual_seed(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    pipe.fit(X, y)
    cpu.append(time.process_time() - c0)
    return pipe, time.perf_counter() - t0


class _Unit:
    """What one unit records."""

    def __init__(self):
        self.rows, self.failures, self.notes = [], [], []
        self.warnings = Counter()
        self.train_seconds = []
        self.train_cpu = []  # CPU seconds of each net's training (load-independent)
        self.mola_cpu = []  # CPU seconds of each MoLA fit and scoring (in (a): its training)

    def apply(self, ctx, method, build, task, losses, extra_s=0.0):
        key = (ctx["workflow"], method)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="skorch")
            try:
                t0 = time.perf_counter()
                predictor = build()
                t1 = time.perf_counter()
                metrics, nll = real_metrics(predictor, task)
                t2 = time.perf_counter()
            except Exception as exc:  # listed in the report; the run goes on
                self.failures.append(
                    {**ctx, "method": method, "error": f"{type(exc).__name__}: {exc}"[:400]}
                )
                predictor = None
        for w in caught:
            msg = " ".join(str(w.message).split())[:200]
            self.warnings[(*key, w.category.__name__, msg)] += 1
        if predictor is None:
            return None
        losses[method] = nll
        self.rows.append(
            {
                **ctx,
                "method": method,
                **metrics,
                **predictor.info,
                "fit_s": t1 - t0 + extra_s,
                "predict_s": t2 - t1,
            }
        )
        return predictor


def _compare(unit, ctx, losses, sklaplace_labels, seed):
    """Paired bootstrap of each sklaplace row against the best calibrator and baseline."""
    by_method = {r["method"]: r for r in unit.rows if all(r[k] == v for k, v in ctx.items())}
    for ref_set, tag in ((CALIBRATORS, "cal"), (BASELINES, "base")):
        present = [m for m in ref_set if m in losses]
        if not present:
            continue
        best = min(present, key=lambda m: by_method[m]["log_loss"])
        for label in sklaplace_labels:
            if label not in losses:
                continue
            mean, lo, hi = paired_bootstrap(losses[label], losses[best], N_BOOT, seed=seed)
            by_method[label].update(
                {
                    f"best_{tag}": best,
                    f"d_{tag}": mean,
                    f"d_{tag}_lo": lo,
                    f"d_{tag}_hi": hi,
                    f"vs_{tag}": "tie" if lo <= 0.0 <= hi else ("better" if hi < 0 else "worse"),
                }
            )


def run_unit(name, split, seed, regimes, workflows, rows_cfg, n_members, mola=True):
    """Every regime and workflow of one (task, split, seed); returns what it recorded.
    ``mola``: also the MoLA rows (:mod:`quality_bench.mola`)."""
    torch.set_num_threads(1)
    cpu0 = time.process_time()
    unit = _Unit()
    task = real_task(name, split, seed)
    for regime, epochs in regimes.items():
        _run_regime(unit, task, seed, regime, epochs, workflows, rows_cfg, n_members, mola)
    return {
        "cpu": time.process_time() - cpu0,
        "train_cpu": float(sum(unit.train_cpu)),
        "mola_cpu": float(sum(unit.mola_cpu)),
        "rows": unit.rows,
        "failures": unit.failures,
        "notes": unit.notes,
        "warnings": dict(unit.warnings),
        "train_seconds": unit.train_seconds,
        "pid": os.getpid(),
    }


def _run_regime(unit, task, seed, regime, epochs, workflows, rows_cfg, n_members, mola):
    """The four workflows of one (task, split, seed, regime)."""
    name, split = task.name, task.split
    X_dev, y_dev = task.X_dev, task.y_dev
    labels = list(rows_cfg)
    base = {"task": name, "split": split, "regime": regime, "seed": seed}

    def members(own, X, y):
        out = [
            _train(task, epochs, own, X, y, _member_seed(seed, k, not own), unit.train_cpu)
            for k in range(n_members)
        ]
        unit.train_seconds += [(name, split, regime, s) for _, s in out]
        return [p for p, _ in out], [s for _, s in out]

    own, own_s = members(True, X_dev, y_dev) if set("ab") & set(workflows) else ([], [])
    if set("cd") & set(workflows):
        plain, plain_s = members(False, task.X_train, task.y_train)
    else:
        plain, plain_s = [], []

    def laplace_rows(ctx, estimator, fit_args, fit_kw, losses):
        fitted = {}
        for label, (params, wfs) in rows_cfg.items():
            if ctx["workflow"] not in wfs:
                continue

            def build(params=params):
                model = LaplaceClassifier(estimator(), **params, random_state=seed)
                return Laplace(model.fit(*fit_args, **(fit_kw or {})))

            pred = unit.apply(ctx, label, build, task, losses)
            if pred is not None:
                fitted[label] = pred
        return fitted

    def check_rows(ctx, fitted, expected):
        """The unseen rows every sklaplace row used: the ones skorch's split held out."""
        got = None
        for label, p in fitted.items():
            src, idx = p.model.validation_source_, p.model.validation_indices_
            if src != "train_split" or idx is None or not np.array_equal(idx, expected):
                unit.notes.append(
                    f"({ctx['workflow']}) {name} {split} seed {seed} {regime} {label}: "
                    f"validation_source_={src!r}, {0 if idx is None else len(idx)} rows "
                    f"(skorch's split holds out {len(expected)})"
                )
            got = idx if got is None else got
        return expected if got is None else got

    def run_baselines(ctx, pipe, ens, X_u, y_u, losses, net_s, ens_s):
        for method, build in baselines(pipe, ens, X_u, y_u).items():
            extra = net_s if method == "MAP" else ens_s if method == "ensemble" else 0.0
            unit.apply(ctx, method, build, task, losses, extra)
        _compare(unit, ctx, losses, labels, seed)

    def run_mola(ctx, estimators, fit_args, fit_kw, losses, expected=None):
        """MoLA on ``estimators`` (the workflow's ensemble members), compared by a paired
        bootstrap with the deep ensemble and the single-net default of the same run."""
        if not mola:
            return None
        c0 = time.process_time()

        def build():
            model = mola_rows.mola(estimators, seed).fit(*fit_args, **(fit_kw or {}))
            return mola_rows.MixturePredictor(model)

        pred = unit.apply(ctx, mola_rows.MOLA, build, task, losses)
        where = f"({ctx['workflow']}) {name} {split} seed {seed} {regime}"
        if pred is not None and expected is not None:
            note = mola_rows.shared_rows_note(pred.model, expected, where)
            if note:
                unit.notes.append(note)
        if pred is not None and ctx["workflow"] == "a":  # the deep ensemble of MoLA's nets
            unit.apply(ctx, mola_rows.ENS_OWN, lambda: Ensemble(pred.nets), task, losses)
        unit.mola_cpu.append(time.process_time() - c0)
        if pred is not None:
            row = next(r for r in reversed(unit.rows) if r["method"] == mola_rows.MOLA)
            ens = mola_rows.ensemble_of(ctx["workflow"])
            mola_rows.compare(row, losses, ens, DEFAULT, seed)
        return pred

    if "a" in workflows:
        ctx, losses = {**base, "workflow": "a"}, {}
        unfitted = lambda: make_pipeline_net(task, epochs, True)  # noqa: E731
        fitted = laplace_rows(ctx, unfitted, (X_dev, y_dev), None, losses)
        if fitted:
            nets = [p.model.estimator_ for p in fitted.values()]
            first, ref = nets[0], logits64(nets[0], task.X_test)
            if any(not np.array_equal(logits64(n, task.X_test), ref) for n in nets[1:]):
                unit.notes.append(
                    f"(a) {name} {split} seed {seed} {regime}: the sklaplace rows' nets differ "
                    "(same random_state); the baselines use the first one's"
                )
            rows = check_rows(ctx, fitted, own_split_rows(first, X_dev, y_dev))
            X_u, y_u = X_dev.iloc[rows], y_dev[rows]
            run_baselines(ctx, first, own, X_u, y_u, losses, own_s[0], sum(own_s))
        unfitted_members = [make_pipeline_net(task, epochs, True) for _ in range(n_members)]
        expected = own_split_rows(own[0], X_dev, y_dev) if own else None
        pred = run_mola(ctx, unfitted_members, (X_dev, y_dev), None, losses, expected)
        if pred is not None and fitted:  # member 0 trains as the single default does
            ref = logits64(next(iter(fitted.values())).model.estimator_, task.X_test)
            if not np.array_equal(logits64(pred.nets[0], task.X_test), ref):
                unit.notes.append(
                    f"(a) {name} {split} seed {seed} {regime}: MoLA's first net differs from "
                    "the single-net rows' (same random_state)"
                )
    if "b" in workflows:
        ctx, losses = {**base, "workflow": "b"}, {}
        fitted = laplace_rows(ctx, lambda: FrozenEstimator(own[0]), (X_dev, y_dev), None, losses)
        rows = check_rows(ctx, fitted, own_split_rows(own[0], X_dev, y_dev))
        X_u, y_u = X_dev.iloc[rows], y_dev[rows]
        run_baselines(ctx, own[0], own, X_u, y_u, losses, own_s[0], sum(own_s))
        run_mola(ctx, [FrozenEstimator(p) for p in own], (X_dev, y_dev), None, losses, rows)
    frozen = lambda: FrozenEstimator(plain[0])  # noqa: E731
    train = (task.X_train, task.y_train)
    if "c" in workflows:
        ctx, losses = {**base, "workflow": "c"}, {}
        laplace_rows(ctx, frozen, train, {"X_val": task.X_val, "y_val": task.y_val}, losses)
        run_baselines(
            ctx, plain[0], plain, task.X_val, task.y_val, losses, plain_s[0], sum(plain_s)
        )
        val = {"X_val": task.X_val, "y_val": task.y_val}
        run_mola(ctx, [FrozenEstimator(p) for p in plain], train, val, losses)
    if "d" in workflows:
        ctx, losses = {**base, "workflow": "d"}, {}
        laplace_rows(ctx, frozen, train, None, losses)
        unit.apply(ctx, "MAP", lambda: MAP(plain[0]), task, losses, plain_s[0])
        if mola:  # the deep ensemble needs no unseen rows: MoLA's comparison in (d)
            unit.apply(ctx, "ensemble", lambda: Ensemble(plain), task, losses, sum(plain_s))
            run_mola(ctx, [FrozenEstimator(p) for p in plain], train, None, losses)
