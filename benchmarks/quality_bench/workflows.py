"""The four workflows users run, applied to one (task, seed, regime) cell.

(a) ``Laplace*(net).fit(X_dev, y_dev)``: an unfitted net with skorch's default
    ``train_split``, trained inside ``fit``; its validation rows tune.
(b) ``Laplace*(FrozenEstimator(net)).fit(X_dev, y_dev)``: the net was trained on the same
    rows with the default ``train_split``; ``fit`` recovers (and verifies) its rows.
(c) ``Laplace*(FrozenEstimator(net)).fit(X_train, y_train, X_val=X_val, y_val=y_val)``:
    the net was trained on X_train with ``train_split=None``.
(d) as (c) without ``X_val``: no rows the net has not seen.

X_dev is training + validation rows, so (a)-(c) have the same data budget. The baselines of
a workflow use exactly the unseen rows its Laplace uses (in (a) and (b) the rows in
``validation_indices_``), and its ensemble's members are trained like its net: in (a) and
(b) the same five nets (default ``train_split`` on X_dev; (b)'s net is the first).
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from sklearn.frozen import FrozenEstimator

from . import mola as mola_rows
from .methods import SMOKE_DEFAULTS, EnsembleClassifier, EnsembleRegressor, LaplacePredictor
from .metrics import clf_metrics, reg_metrics
from .nets import outputs64, own_split_rows, train

WORKFLOWS = {
    "a": "unfitted net trained inside fit (skorch's default train_split)",
    "b": "FrozenEstimator, net trained with the default train_split, fit on the same rows",
    "c": "FrozenEstimator, net trained with train_split=None, fit with X_val/y_val",
    "d": "FrozenEstimator, net trained with train_split=None, fit on its training rows only",
}


@dataclass
class Sink:
    """Everything a run records."""

    rows: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    warnings: Counter = field(default_factory=Counter)
    notes: list = field(default_factory=list)  # consistency checks that failed
    train_seconds: list = field(default_factory=list)  # (kind, task, regime, seconds)
    keep: dict = field(default_factory=dict)  # (task, workflow) -> {method: (predictor, task)}
    plotted: tuple = ()  # (task, regime) pairs whose seed-0 predictors are kept


def _short(message: str) -> str:
    return " ".join(str(message).split())[:220]


def _apply(sink, ctx, method, build, evaluate, task, train_s=None):
    """Build a predictor and score it; a failure or warning is recorded, not raised."""
    key = (ctx["kind"], ctx["workflow"], method)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="skorch")
        try:
            t0 = time.perf_counter()
            predictor = build()
            t1 = time.perf_counter()
            metrics = evaluate(predictor, task)
            t2 = time.perf_counter()
        except Exception as exc:  # listed in the report; the run goes on
            sink.failures.append(
                {**ctx, "method": method, "error": f"{type(exc).__name__}: {exc}"}
            )
            predictor = None
    for w in caught:
        sink.warnings[(*key, w.category.__name__, _short(w.message))] += 1
    if predictor is None:
        return None
    fit_s = (t1 - t0) + (train_s or 0.0)
    sink.rows.append(
        {
            **ctx,
            "method": method,
            **metrics,
            **predictor.info,
            "fit_s": fit_s,
            "predict_s": t2 - t1,
        }
    )
    if (ctx["task"], ctx["regime"]) in sink.plotted and ctx["seed"] == 0:
        sink.keep.setdefault((ctx["task"], ctx["workflow"]), {})[method] = (predictor, task)
    return predictor


def _member_seed(seed: int, k: int, plain: bool) -> int:
    return 100 * seed + k + (50 if plain else 0)


def run_cell(kind, task, seed, regime, epochs, n_members, sink, mola=True):
    """All methods of all four workflows on one (task, seed, regime); ``mola``: with the
    MoLA rows of :mod:`.mola` on the workflow's ensemble members."""
    evaluate = clf_metrics if kind.name == "classification" else reg_metrics
    base = {"kind": kind.name, "task": task.name, "seed": seed, "regime": regime}
    X_dev, y_dev = task.X_dev, task.y_dev

    def members(own_split, X, y):
        out = [
            train(
                kind.make_net(task, epochs, own_split), X, y, _member_seed(seed, k, not own_split)
            )
            for k in range(n_members)
        ]
        sink.train_seconds += [(kind.name, task.name, regime, s) for _, s in out]
        return [n for n, _ in out], float(sum(s for _, s in out)), out[0][1]

    own, own_cost, own_s = members(True, X_dev, y_dev)
    plain, plain_cost, plain_s = members(False, task.X_train, task.y_train)
    expected = own_split_rows(own[0], X_dev, y_dev)
    # one training epoch of the workflow's net: the unit of the Laplace cost in the report
    epoch_s = {"a": own_s / epochs, "b": own_s / epochs, "c": plain_s / epochs}
    epoch_s["d"] = epoch_s["c"]

    def context(workflow):
        return {**base, "workflow": workflow, "epoch_s": epoch_s[workflow]}

    def candidates(workflow, names, estimator, fit_args, fit_kw=None, train_s=None):
        ctx = context(workflow)
        out = {}
        for name in names:

            def build(name=name):
                model = kind.laplace(estimator(), name, seed).fit(*fit_args, **(fit_kw or {}))
                return LaplacePredictor(model)

            pred = _apply(sink, ctx, name, build, evaluate, task, train_s)
            if pred is not None:
                out[name] = pred
        return out

    def baselines(workflow, net, ens, rows, train_s, ens_cost):
        ctx = context(workflow)
        X_u, y_u = rows
        out = {}
        for name, build in kind.baselines(net, ens, X_u, y_u).items():
            cost = train_s if name == "MAP" else ens_cost if name == "ensemble" else None
            out[name] = _apply(sink, ctx, name, build, evaluate, task, cost)
        return out

    regression = kind.name == "regression"

    def run_mola(workflow, estimators, fit_args, fit_kw, fitted, expected=None):
        """MoLA on the workflow's ensemble members; in (a) also the deep ensemble of the
        nets its fit trained; paired bootstrap against the ensemble and the default."""
        if not mola:
            return
        ctx = context(workflow)

        def build():
            model = mola_rows.mola(estimators, seed, regression)
            return mola_rows.MixturePredictor(model.fit(*fit_args, **(fit_kw or {})))

        pred = _apply(sink, ctx, mola_rows.MOLA, build, evaluate, task)
        if pred is None:
            return
        where = f"({workflow}) {kind.name} {task.name} seed {seed} {regime}"
        if expected is not None:
            note = mola_rows.shared_rows_note(pred.model, expected, where)
            if note:
                sink.notes.append(note)
        fitted = {**fitted, mola_rows.MOLA: pred}
        first = next((p for n, p in fitted.items() if n.startswith("LA-")), None)
        if workflow == "a" and first is not None:  # member 0 trains as the single one does
            ref = outputs64(first.model.estimator_, task.X_test)
            if not np.array_equal(outputs64(pred.nets[0], task.X_test), ref):
                sink.notes.append(f"{where}: MoLA's first net differs from the candidates'")
        if workflow == "a":
            X_u, y_u = (task.X_train, task.y_train) if expected is None else (
                X_dev[expected], y_dev[expected])  # fmt: skip
            build_ens = kind.baselines(None, pred.nets, X_u, y_u)["ensemble"]
            fitted[mola_rows.ENS_OWN] = _apply(
                sink, ctx, mola_rows.ENS_OWN, build_ens, evaluate, task
            )
        ens, default = mola_rows.ensemble_of(workflow), SMOKE_DEFAULTS[kind.name][workflow]
        losses = {
            m: mola_rows.row_losses(fitted[m], task, regression)
            for m in (mola_rows.MOLA, ens, default)
            if fitted.get(m) is not None
        }
        row = next(r for r in reversed(sink.rows) if r["method"] == mola_rows.MOLA)
        mola_rows.compare(row, losses, ens, default, seed)

    def check_rows(workflow, fitted):
        """The unseen rows the Laplace fits used (the baselines get the same): they should
        be the same for every candidate, and the rows skorch's train_split holds out."""
        got = [
            (n, p.model.validation_source_, p.model.validation_indices_) for n, p in fitted.items()
        ]
        for name, source, idx in got:
            if source != "train_split" or idx is None or not np.array_equal(idx, expected):
                sink.notes.append(
                    f"({workflow}) {kind.name} {task.name} seed {seed} {regime} {name}: "
                    f"validation_source_={source!r}, {0 if idx is None else len(idx)} rows "
                    f"(skorch's split holds out {len(expected)})"
                )
        return got[0][2] if got[0][2] is not None else expected

    # (a) an unfitted net trained inside fit
    fitted_a = fitted = candidates(
        "a", kind.candidates, lambda: kind.make_net(task, epochs, True), (X_dev, y_dev)
    )
    if fitted:
        rows = check_rows("a", fitted)
        nets = [p.model.estimator_ for p in fitted.values()]
        ref = outputs64(nets[0], task.X_test)
        if any(not np.array_equal(outputs64(n, task.X_test), ref) for n in nets[1:]):
            sink.notes.append(
                f"(a) {kind.name} {task.name} seed {seed} {regime}: the candidates' nets "
                "differ (same random_state); MAP and TS use the first one's"
            )
        fitted_a = {**fitted, **baselines("a", nets[0], own, (X_dev[rows], y_dev[rows]), own_s,
                                          own_cost)}  # fmt: skip
    unfitted = [kind.make_net(task, epochs, True) for _ in range(n_members)]
    run_mola("a", unfitted, (X_dev, y_dev), None, fitted_a, expected)

    # (b) a frozen net trained with the default train_split, fit on the same rows
    fitted = candidates("b", kind.candidates, lambda: FrozenEstimator(own[0]), (X_dev, y_dev))
    rows = check_rows("b", fitted) if fitted else expected
    fitted.update(baselines("b", own[0], own, (X_dev[rows], y_dev[rows]), own_s, own_cost))
    run_mola("b", [FrozenEstimator(n) for n in own], (X_dev, y_dev), None, fitted, expected)

    # (c) a frozen net trained with train_split=None, fit with X_val / y_val
    frozen = lambda: FrozenEstimator(plain[0])  # noqa: E731
    val = {"X_val": task.X_val, "y_val": task.y_val}
    fitted = candidates("c", kind.candidates, frozen, (task.X_train, task.y_train), val)
    fitted.update(baselines("c", plain[0], plain, (task.X_val, task.y_val), plain_s, plain_cost))
    train_rows = (task.X_train, task.y_train)
    run_mola("c", [FrozenEstimator(n) for n in plain], train_rows, val, fitted)

    # (d) the same net and rows, no X_val: no rows the net has not seen
    fitted = candidates("d", kind.no_rows_candidates, frozen, (task.X_train, task.y_train))
    ctx = context("d")
    for name, build in kind.no_rows_baselines(plain[0], task).items():
        _apply(sink, ctx, name, build, evaluate, task, plain_s)
    if mola:  # MoLA's comparison in (d): the ensemble (regression: noise from X_train)
        ens = (
            (lambda: EnsembleRegressor(plain, *train_rows))
            if regression
            else (lambda: EnsembleClassifier(plain))
        )
        fitted["ensemble"] = _apply(sink, ctx, "ensemble", ens, evaluate, task, plain_cost)
        run_mola("d", [FrozenEstimator(n) for n in plain], train_rows, None, fitted)
