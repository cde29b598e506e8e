"""Uncertainty quality of sklaplace on small real and generated tabular tasks.

One trained net per (task, seed, training regime); every method is applied to that same
net (``FrozenEstimator``), so the comparison isolates what each post-hoc method does.

Classification (breast cancer, wine, digits, make_classification, make_moons):
in-distribution accuracy, log loss, ECE and Brier score; out-of-distribution (OOD) rows
are held-out classes (digits: train on 0-4, OOD = 5-9; wine: class 2 held out), test rows
scaled by 2, 5 and 10 after standardisation, and test rows plus N(0, 1) feature noise.
OOD metrics: AUROC of the max-probability separating in-distribution test rows (positives)
from OOD rows, and the mean max-probability on OOD rows.

Regression (diabetes, a heteroscedastic 1-D task, the toy y = x^3 + N(0, 3^2) of Ritter
et al. 2018): RMSE, Gaussian NLL, 90% interval coverage and width, and std growth away
from the data (mean predictive std far from the data / on the test rows).

Methods: MAP (the net), temperature scaling (``CalibratedClassifierCV(method=
"temperature")`` on the validation rows), and last-layer Laplace with diag / kron / full
curvature and prior precision from the evidence ("marglik"), from a grid scored on the
validation rows ("val": ``GridSearchCV`` + ``PredefinedSplit``, curvature on the training
rows), "holdout" as implemented (fit on the training rows, which the frozen net has seen),
"weight_decay" (nets trained with weight decay only) and a fixed 1.0; probit and MC links.
All-layer Laplace (``subset_of_weights="all"``, diag and kron, the same prior modes; kron
also with the MC link; regression too) is included when it works at run time (probed first).

Run:  python benchmarks/quality.py [--quick] [--seeds N] [--out-dir DIR]
The full run writes benchmarks/RESULTS_quality.md and the plots in docs/_static/quality/;
with --out-dir both go to DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_wine,
    make_classification,
    make_moons,
)
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import GridSearchCV, PredefinedSplit, train_test_split
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier, NeuralNetRegressor
from torch import nn

from sklaplace import LaplaceClassifier, LaplaceRegressor
from sklaplace.metrics import (
    expected_calibration_error,
    gaussian_nll,
    interval_coverage,
    interval_width,
    neg_gaussian_nll,
)

ROOT = Path(__file__).resolve().parent.parent
_PRIORS = np.logspace(-4, 4, 17)
_SIGMAS = np.logspace(-1.5, 0.5, 11)  # regression targets are standardised
PRIOR_GRID, SIGMA_GRID = _PRIORS, _SIGMAS
MAP_GRID_POINTS = 161  # per axis of the make_moons confidence map
STRUCTURES = ("diag", "kron", "full")

# name -> (max_epochs, weight_decay)
REGIMES = {
    "short": (30, 0.0),
    "short+wd": (30, 1e-3),
    "long": (300, 0.0),
    "long+wd": (300, 1e-3),
}
QUICK_REGIMES = {"short+wd": (30, 1e-3)}


# ======================================================================== nets
class MLP(nn.Module):
    """n_in -> hidden -> hidden -> n_out with ReLU (tanh for the 1-D regression toys)."""

    def __init__(self, n_in=2, n_out=2, hidden=100, act="relu"):
        super().__init__()
        act_cls = {"relu": nn.ReLU, "tanh": nn.Tanh}[act]
        self.body = nn.Sequential(
            nn.Linear(n_in, hidden), act_cls(), nn.Linear(hidden, hidden), act_cls()
        )
        self.out = nn.Linear(hidden, n_out)

    def forward(self, X):
        return self.out(self.body(X))


def train_classifier(X, y, n_out, epochs, wd, seed, hidden=100):
    torch.manual_seed(seed)
    net = NeuralNetClassifier(
        MLP,
        module__n_in=X.shape[1],
        module__n_out=n_out,
        module__hidden=hidden,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        optimizer__weight_decay=wd,
        lr=1e-3,
        max_epochs=epochs,
        batch_size=64,
        train_split=None,
        verbose=0,
    )
    return net.fit(X, y)


def train_regressor(X, y, epochs, wd, seed, hidden=50, act="relu", lr=1e-2):
    torch.manual_seed(seed)
    net = NeuralNetRegressor(
        MLP,
        module__n_in=X.shape[1],
        module__n_out=1,
        module__hidden=hidden,
        module__act=act,
        criterion=nn.MSELoss,
        optimizer=torch.optim.Adam,
        optimizer__weight_decay=wd,
        lr=lr,
        max_epochs=epochs,
        batch_size=64,
        train_split=None,
        verbose=0,
    )
    return net.fit(X, y.reshape(-1, 1))


# ======================================================================== data
@dataclass
class ClfSplit:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    ood: dict = field(default_factory=dict)  # name -> rows


def _three_way(X, y, seed, stratify=True):
    strat = y if stratify else None
    X_tr, X_rest, y_tr, y_rest = train_test_split(
        X, y, test_size=0.4, random_state=seed, stratify=strat
    )
    strat = y_rest if stratify else None
    X_va, X_te, y_va, y_te = train_test_split(
        X_rest, y_rest, test_size=0.5, random_state=seed, stratify=strat
    )
    return X_tr, y_tr, X_va, y_va, X_te, y_te


def clf_task(name, seed):
    """Standardised splits and OOD rows of one classification task."""
    held_out = None
    if name == "breast_cancer":
        X, y = load_breast_cancer(return_X_y=True)
    elif name == "wine":
        X, y = load_wine(return_X_y=True)
        held_out = y == 2
    elif name == "digits":
        X, y = load_digits(return_X_y=True)
        held_out = y >= 5
    elif name == "make_classification":
        X, y = make_classification(
            n_samples=1000,
            n_features=10,
            n_informative=6,
            n_classes=3,
            class_sep=1.0,
            random_state=seed,
        )
    elif name == "make_moons":
        X, y = make_moons(n_samples=600, noise=0.2, random_state=seed)
    else:
        raise ValueError(name)
    X_out = None
    if held_out is not None:
        X_out, X, y = X[held_out], X[~held_out], y[~held_out]
    X_tr, y_tr, X_va, y_va, X_te, y_te = _three_way(X, y, seed)
    scaler = StandardScaler().fit(X_tr)
    f = lambda A: scaler.transform(A).astype(np.float32)  # noqa: E731
    split = ClfSplit(f(X_tr), y_tr, f(X_va), y_va, f(X_te), y_te)
    if X_out is not None:
        split.ood["held-out classes"] = f(X_out)
    rng = np.random.default_rng(seed)
    for factor in (2, 5, 10):
        split.ood[f"scaled x{factor}"] = split.X_test * factor
    noise = rng.normal(size=split.X_test.shape).astype(np.float32)
    split.ood["noise"] = split.X_test + noise
    return split


@dataclass
class RegSplit:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    X_far: np.ndarray  # inputs away from the data (for the std growth)
    y_scale: float  # targets are divided by this for training; metrics in original units
    y_shift: float


def reg_task(name, seed):
    rng = np.random.default_rng(seed)
    if name == "diabetes":
        X, y = load_diabetes(return_X_y=True)
        X_tr, y_tr, X_va, y_va, X_te, y_te = _three_way(X, y, seed, stratify=False)
        scaler = StandardScaler().fit(X_tr)
        X_tr, X_va, X_te = (scaler.transform(A) for A in (X_tr, X_va, X_te))
        X_far = X_te * 5
    elif name == "heteroscedastic":
        n = 500
        x = rng.uniform(-3, 3, size=n)
        y = np.sin(2 * x) + (0.1 + 0.3 * np.abs(x)) * rng.normal(size=n)
        X_tr, y_tr, X_va, y_va, X_te, y_te = _three_way(x[:, None], y, seed, stratify=False)
        X_far = rng.uniform(4.5, 6, size=(200, 1)) * rng.choice([-1, 1], size=(200, 1))
    elif name == "toy_cubic":
        # Ritter et al. (2018): 20 training points, x ~ U[-4, 4], y = x^3 + N(0, 3^2)
        def draw(n):
            x = rng.uniform(-4, 4, size=n)
            return x[:, None], x**3 + 3 * rng.normal(size=n)

        X_tr, y_tr = draw(20)
        X_va, y_va = draw(20)
        X_te, y_te = draw(200)
        X_far = rng.uniform(5, 6, size=(200, 1)) * rng.choice([-1, 1], size=(200, 1))
    else:
        raise ValueError(name)
    shift, scale = float(np.mean(y_tr)), float(np.std(y_tr))
    f32 = lambda A: np.asarray(A, dtype=np.float32)  # noqa: E731
    return RegSplit(
        f32(X_tr),
        f32((y_tr - shift) / scale),
        f32(X_va),
        f32((y_va - shift) / scale),
        f32(X_te),
        np.asarray(y_te, dtype=np.float64),
        f32(X_far),
        scale,
        shift,
    )


# ======================================================================== methods
def _val_search(base, X_tr, y_tr, X_va, y_va, scoring, grid):
    """GridSearchCV with a PredefinedSplit: curvature on train rows, score on val rows."""
    fold = np.r_[np.full(len(y_tr), -1), np.zeros(len(y_va))]
    search = GridSearchCV(
        base, grid, scoring=scoring, cv=PredefinedSplit(fold), refit=False, error_score="raise"
    )
    search.fit(np.r_[X_tr, X_va], np.r_[y_tr, y_va])
    return clone(base).set_params(**search.best_params_).fit(X_tr, y_tr)


def laplace_variants(wd, all_layers):
    """(name, kwargs) of the Laplace settings to run on a net trained with weight decay wd."""
    out = []
    for subset, structures in (("last_layer", STRUCTURES), ("all", all_layers)):
        tag = "LL" if subset == "last_layer" else "all"
        for s in structures:
            priors = ["marglik", "val", "holdout", 1.0] + (["weight_decay"] if wd > 0 else [])
            for p in priors:
                links = ("probit", "mc") if s == "kron" else ("probit",)
                for link in links:
                    pname = "prior1" if p == 1.0 else p
                    name = f"{tag}-{s}-{pname}" + ("-mc" if link == "mc" else "")
                    out.append(
                        (
                            name,
                            dict(
                                subset_of_weights=subset,
                                hessian_structure=s,
                                prior_precision=p,
                                link_approx=link,
                            ),
                        )
                    )
    return out


def fit_laplace_clf(net, kw, d: ClfSplit):
    kw = dict(kw)
    prior = kw.pop("prior_precision")
    base = LaplaceClassifier(FrozenEstimator(net), random_state=0, n_samples=100, **kw)
    if prior == "val":
        return _val_search(
            base,
            d.X_train,
            d.y_train,
            d.X_val,
            d.y_val,
            "neg_log_loss",
            {"prior_precision": PRIOR_GRID},
        )
    return base.set_params(prior_precision=prior).fit(d.X_train, d.y_train)


def probe_all_layers():
    """Structures for which subset_of_weights='all' fits here; and the error otherwise."""
    X, y = make_moons(n_samples=60, noise=0.2, random_state=0)
    X = X.astype(np.float32)
    net = train_classifier(X, y, 2, 2, 0.0, 0, hidden=8)
    ok, errors = [], {}
    for s in ("diag", "kron"):
        try:
            clf = LaplaceClassifier(
                FrozenEstimator(net), subset_of_weights="all", hessian_structure=s
            ).fit(X, y)
            clf.predict_proba(X[:3])
            ok.append(s)
        except Exception as exc:  # any failure is reported in the results
            errors[s] = f"{type(exc).__name__}: {exc}"
    return ok, errors


# ======================================================================== metrics
def clf_metrics(proba_test, y_test, classes, proba_ood):
    row = {
        "accuracy": accuracy_score(y_test, classes[proba_test.argmax(1)]),
        "log_loss": log_loss(y_test, proba_test, labels=classes),
        "ECE": expected_calibration_error(y_test, proba_test, labels=classes),
        "Brier": brier_score_loss(y_test, proba_test, labels=classes),
    }
    conf_in = proba_test.max(1)
    for name, p in proba_ood.items():
        conf_out = p.max(1)
        labels = np.r_[np.ones(len(conf_in)), np.zeros(len(conf_out))]
        row[f"AUROC[{name}]"] = roc_auc_score(labels, np.r_[conf_in, conf_out])
        row[f"conf[{name}]"] = float(conf_out.mean())
    return row


def reg_metrics(mean, std, y, std_far):
    lo, hi = mean - norm.ppf(0.95) * std, mean + norm.ppf(0.95) * std
    return {
        "RMSE": float(np.sqrt(np.mean((mean - y) ** 2))),
        "NLL": gaussian_nll(y, mean, std),
        "coverage90": interval_coverage(y, lo, hi),
        "width90": interval_width(lo, hi),
        "std_growth": float(np.mean(std_far) / np.mean(std)),
    }


# ======================================================================== runs
def run_classification(tasks, regimes, seeds, all_layers, ensemble, log, keep=None):
    """Rows of (task, regime, seed, method, metric...); ``keep`` stores predictions for plots."""
    rows = []
    for task in tasks:
        for seed in range(seeds):
            d = clf_task(task, seed)
            classes = np.unique(d.y_train)
            n_ood = {k: len(v) for k, v in d.ood.items()}
            X_all = np.concatenate([d.X_test, *d.ood.values()])

            def split_proba(p, n_ood=n_ood, n_test=d.X_test.shape[0]):
                out, start = {}, n_test
                for k, n in n_ood.items():
                    out[k] = p[start : start + n]
                    start += n
                return p[:n_test], out

            for regime, (epochs, wd) in regimes.items():
                t0 = time.perf_counter()
                net = train_classifier(d.X_train, d.y_train, len(classes), epochs, wd, seed)
                t_train = time.perf_counter() - t0
                methods = {"MAP": lambda net=net: net}
                methods["temperature"] = lambda net=net, d=d: CalibratedClassifierCV(
                    FrozenEstimator(net), method="temperature"
                ).fit(d.X_val, d.y_val)
                for name, kw in laplace_variants(wd, all_layers):
                    methods[name] = lambda net=net, kw=kw, d=d: fit_laplace_clf(net, kw, d)
                if ensemble:
                    members = [net] + [
                        train_classifier(
                            d.X_train, d.y_train, len(classes), epochs, wd, 1000 * (k + 1) + seed
                        )
                        for k in range(ensemble - 1)
                    ]
                    methods[f"ensemble-{ensemble}"] = lambda m=members: _Ensemble(m)
                for mname, make in methods.items():
                    t1 = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model = make()
                        p = model.predict_proba(X_all)
                    p = np.asarray(p, dtype=np.float64)
                    p /= p.sum(1, keepdims=True)  # float32 nets sum to 1 +- 1e-7
                    p_test, p_ood = split_proba(p)
                    row = {"task": task, "regime": regime, "seed": seed, "method": mname}
                    row.update(clf_metrics(p_test, d.y_test, classes, p_ood))
                    pp = getattr(model, "prior_precision_", None)
                    row["prior"] = float(np.ravel(pp)[0]) if pp is not None else np.nan
                    row["seconds"] = time.perf_counter() - t1
                    rows.append(row)
                    if keep is not None and (task, regime, seed) in keep:
                        keep[(task, regime, seed)][mname] = (model, d)
                log(
                    f"  {task:20s} seed {seed} {regime:9s} trained {t_train:5.1f}s, "
                    f"methods {time.perf_counter() - t0 - t_train:5.1f}s"
                )
    return rows


class _Ensemble:
    def __init__(self, members):
        self.members = members

    def predict_proba(self, X):
        return np.mean([m.predict_proba(X) for m in self.members], axis=0)


def reg_methods(wd, all_layers=()):
    out = [("MAP+val-sigma", None)]
    for subset, structures in (("last_layer", STRUCTURES), ("all", all_layers)):
        tag = "LL" if subset == "last_layer" else "all"
        for s in structures:
            for p in ["marglik", "val", "holdout", 1.0] + (["weight_decay"] if wd > 0 else []):
                out.append(
                    (
                        f"{tag}-{s}-{'prior1' if p == 1.0 else p}",
                        dict(subset_of_weights=subset, hessian_structure=s, prior_precision=p),
                    )
                )
    return out


def fit_reg(net, kw, d: RegSplit):
    """A fitted object with predict(X, return_std=True), in the training (scaled) units."""
    if kw is None:  # MAP with a homoscedastic sigma estimated on the validation rows
        resid = net.predict(d.X_val).ravel() - d.y_val
        return _MapSigma(net, float(np.sqrt(np.mean(resid**2))))
    kw = dict(kw)
    prior = kw.pop("prior_precision")
    base = LaplaceRegressor(FrozenEstimator(net), sigma_noise="marglik", random_state=0, **kw)
    if prior == "val":
        # the GridSearchCV + PredefinedSplit route over prior_precision x sigma_noise,
        # written as a loop: set_params after one fit costs no data pass (same result)
        model = base.set_params(prior_precision=1.0, sigma_noise=1.0).fit(d.X_train, d.y_train)
        best = max(
            ((p, s) for p in PRIOR_GRID for s in SIGMA_GRID),
            key=lambda ps: neg_gaussian_nll(
                model.set_params(prior_precision=ps[0], sigma_noise=ps[1]), d.X_val, d.y_val
            ),
        )
        return model.set_params(prior_precision=best[0], sigma_noise=best[1]).fit(
            d.X_train, d.y_train
        )
    return base.set_params(prior_precision=prior).fit(d.X_train, d.y_train)


class _MapSigma:
    def __init__(self, net, sigma):
        self.net, self.sigma = net, sigma

    def predict(self, X, return_std=False):
        mean = self.net.predict(X).ravel()
        return (mean, np.full_like(mean, self.sigma)) if return_std else mean


REG_NETS = {  # task -> (hidden, activation, lr)
    "diabetes": (50, "relu", 1e-3),
    "heteroscedastic": (50, "tanh", 1e-2),
    "toy_cubic": (7, "relu", 1e-2),
}


def run_regression(tasks, regimes, seeds, log, keep=None, all_layers=()):
    rows = []
    for task in tasks:
        hidden, act, lr = REG_NETS[task]
        for seed in range(seeds):
            d = reg_task(task, seed)
            for regime, (epochs, wd) in regimes.items():
                t0 = time.perf_counter()
                net = train_regressor(d.X_train, d.y_train, epochs, wd, seed, hidden, act, lr)
                for mname, kw in reg_methods(wd, all_layers):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model = fit_reg(net, kw, d)
                        mean, std = model.predict(d.X_test, return_std=True)
                        _, std_far = model.predict(d.X_far, return_std=True)
                    mean = np.ravel(mean) * d.y_scale + d.y_shift
                    std, std_far = np.ravel(std) * d.y_scale, np.ravel(std_far) * d.y_scale
                    row = {"task": task, "regime": regime, "seed": seed, "method": mname}
                    row.update(reg_metrics(mean, std, d.y_test, std_far))
                    pp = getattr(model, "prior_precision_", None)
                    row["prior"] = float(np.ravel(pp)[0]) if pp is not None else np.nan
                    row["sigma"] = getattr(model, "sigma_noise_", getattr(model, "sigma", 0))
                    row["sigma"] *= d.y_scale
                    rows.append(row)
                    if keep is not None and (task, regime, seed) in keep:
                        keep[(task, regime, seed)][mname] = (model, d)
                log(f"  {task:20s} seed {seed} {regime:9s} {time.perf_counter() - t0:5.1f}s")
    return rows


# ======================================================================== aggregation
def _median_table(rows, keys=("task", "regime", "method")):
    """{key tuple: {metric: median over seeds}} keeping first-seen order."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = {}
    for k, rs in groups.items():
        metrics = [m for m in rs[0] if m not in (*keys, "seed")]
        with warnings.catch_warnings():  # all-NaN columns (no prior for MAP) stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            out[k] = {m: float(np.nanmedian([r[m] for r in rs])) for m in metrics}
        out[k]["n_seeds"] = len(rs)
    return out


def _add_ood_means(table):
    for v in table.values():
        aur = [x for m, x in v.items() if m.startswith("AUROC[")]
        conf = [x for m, x in v.items() if m.startswith("conf[")]
        v["AUROC"] = float(np.mean(aur))
        v["OOD conf"] = float(np.mean(conf))
    return table


LL_TOL = 0.01  # "no worse than MAP": log loss at most 1% above MAP's


def clf_summary(table):
    """Per method: win-rates over (task, regime) cells against MAP and temperature."""
    cells = sorted({(t, r) for t, r, _ in table}, key=lambda c: c)
    methods = list(dict.fromkeys(m for _, _, m in table))
    out = {}
    for m in methods:
        w = {k: [] for k in ("ll", "ece", "auc_map", "auc_temp", "conf", "all", "no_ece")}
        ll_ratio, ranks, d_auc, d_ece = [], [], [], []
        for c in cells:
            if (*c, m) not in table:
                continue
            v, mp, tp = table[(*c, m)], table[(*c, "MAP")], table[(*c, "temperature")]
            ll = v["log_loss"] <= mp["log_loss"] * (1 + LL_TOL)
            ece = v["ECE"] < mp["ECE"]
            am, at = v["AUROC"] > mp["AUROC"], v["AUROC"] > tp["AUROC"]
            conf = v["OOD conf"] < min(mp["OOD conf"], tp["OOD conf"])
            for k, b in zip(
                w,
                (
                    ll,
                    ece,
                    am,
                    at,
                    conf,
                    ll and ece and am and at and conf,
                    ll and am and at and conf,
                ),
                strict=True,
            ):
                w[k].append(b)
            ll_ratio.append(v["log_loss"] / mp["log_loss"])
            d_ece.append(v["ECE"] - mp["ECE"])
            d_auc.append(v["AUROC"] - mp["AUROC"])
            lls = sorted(table[(*c, mm)]["log_loss"] for mm in methods if (*c, mm) in table)
            ranks.append(1 + lls.index(v["log_loss"]))
        out[m] = {
            "cells": len(ll_ratio),
            **{k: float(np.mean(b)) for k, b in w.items()},
            "ll_ratio": float(np.median(ll_ratio)),
            "ll_rank": float(np.median(ranks)),
            "d_auc": float(np.median(d_auc)),
            "d_ece": float(np.median(d_ece)),
        }
    return out


def reg_summary(table):
    cells = sorted({(t, r) for t, r, _ in table})
    methods = list(dict.fromkeys(m for _, _, m in table))
    out = {}
    for m in methods:
        nll, cov, grow, ratio, covv, growv = [], [], [], [], [], []
        for c in cells:
            if (*c, m) not in table:
                continue
            v, mp = table[(*c, m)], table[(*c, "MAP+val-sigma")]
            nll.append(v["NLL"] <= mp["NLL"])
            cov.append(abs(v["coverage90"] - 0.9) <= abs(mp["coverage90"] - 0.9))
            grow.append(v["std_growth"] > 1.5)
            ratio.append(v["NLL"] - mp["NLL"])
            covv.append(v["coverage90"])
            growv.append(v["std_growth"])
        out[m] = {
            "cells": len(nll),
            "nll": float(np.mean(nll)),
            "cov": float(np.mean(cov)),
            "grow": float(np.mean(grow)),
            "d_nll": float(np.median(ratio)),
            "coverage": float(np.median(covv)),
            "std_growth": float(np.median(growv)),
        }
    return out


# ======================================================================== report
def _fmt(x, nd=3):
    if isinstance(x, str):
        return x
    if x is None or not np.isfinite(x):
        return "-"
    if abs(x) >= 1e4 or (0 < abs(x) < 1e-3):
        return f"{x:.2g}"
    return f"{x:.{nd}f}"


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


HAND_MARK = "<!-- hand-written below: kept when the script rewrites this file -->"


def write_report(path, args, clf_rows, reg_rows, all_layers, all_errors, runtime, plots):
    ctab = _add_ood_means(_median_table(clf_rows)) if clf_rows else {}
    rtab = _median_table(reg_rows) if reg_rows else {}
    L = ["# Uncertainty quality: sklaplace against MAP and temperature scaling", ""]
    cmd = "python benchmarks/quality.py" + (" --quick" if args.quick else "")
    cmd += f" --seeds {args.seeds}" if args.seeds != 3 else ""
    L += [
        f"Command: `{cmd}`. Runtime {runtime / 60:.1f} min on {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other jobs, torch {torch.__version__} (1 thread), "
        f"Python {platform.python_version()}; load average at the end "
        f"{os.getloadavg()[0]:.1f}.",
        "",
        "Every number is the median over seeds (data split, net initialisation and, for the "
        "generated tasks, the data) of a metric computed on held-out test rows. Within one "
        "(task, seed, training regime) every method uses the same trained net "
        "(`FrozenEstimator`). Nets: MLP in-100-100-out (ReLU), skorch, Adam lr 1e-3, batch 64, "
        "`CrossEntropyLoss`; regimes: "
        + ", ".join(
            f"`{k}` = {e} epochs, weight decay {w:g}" for k, (e, w) in _regimes(args).items()
        )
        + ". Splits 60/20/20 train/val/test, standardised on the training rows.",
        "",
        "Methods: `MAP` = the net; `temperature` = `CalibratedClassifierCV(FrozenEstimator(net),"
        ' method="temperature")` fitted on the validation rows; `LL-<structure>-<prior>` = '
        "`LaplaceClassifier(FrozenEstimator(net), hessian_structure=<structure>)` on the "
        'last layer, probit link (`-mc`: `link_approx="mc"`, 100 draws) with prior '
        "precision: `marglik` (evidence), `val` (`GridSearchCV` over "
        f"{len(PRIOR_GRID)} values in [1e-4, 1e4], `PredefinedSplit`: curvature on the "
        "training rows, `neg_log_loss` on the validation rows; then fitted on the training "
        "rows), `holdout` (as implemented, `fit` on the training rows: it holds out 20% of "
        "rows the frozen net was trained on), `weight_decay` (weight-decay regimes only) "
        'and `prior1` (the fixed 1.0, the default before `"holdout"`). `all-<structure>-<prior>`: '
        "the same "
        'with `subset_of_weights="all"` (every layer; diag and kron, kron also with `-mc`; '
        "with several layers `marglik` fits one prior precision per layer and the `prior` "
        "column shows the first layer's).",
        "",
    ]
    if all_errors:
        L += [
            "All-layer Laplace was skipped for: "
            + "; ".join(f"{s} (`{e}`)" for s, e in all_errors.items())
            + ".",
            "",
        ]
    if ctab:
        L += _clf_report(ctab)
    if rtab:
        L += _reg_report(rtab)
    if plots:
        L += ["## Plots", ""]
        for p, caption in plots:
            L += [f"![{caption}]({p})", "", caption, ""]
    text = "\n".join(L) + "\n"
    if path.exists():
        old = path.read_text()
        if HAND_MARK in old:
            text += "\n" + HAND_MARK + old.split(HAND_MARK, 1)[1]
    path.write_text(text)
    return ctab, rtab


def _regimes(args):
    return QUICK_REGIMES if args.quick else REGIMES


def _clf_report(ctab):
    L = ["## Classification: summary", ""]
    summ = clf_summary(ctab)
    L += [
        "Win-rates over the (task, training regime) cells (medians over seeds first). "
        f"`LL<=MAP`: log loss at most {LL_TOL:.0%} above MAP's; `ECE<MAP`; `AUROC>MAP`, "
        "`AUROC>temp`: OOD AUROC of the max-probability, averaged over the task's OOD sets; "
        "`conf<both`: mean OOD max-probability below both MAP's and temperature scaling's; "
        "`all`: all five at once; `all but ECE`: the other four. `LL/MAP`: median log-loss "
        "ratio to MAP; `dECE`: median ECE minus MAP's (0.000: a tie, which `ECE<MAP` counts "
        "as a loss); `rank`: median rank "
        "of the log loss among all methods (1 = best); `dAUROC`: median AUROC minus MAP's.",
        "",
    ]
    rows = [
        [
            m,
            str(s["cells"]),
            s["ll"],
            s["ece"],
            s["auc_map"],
            s["auc_temp"],
            s["conf"],
            s["all"],
            s["no_ece"],
            s["ll_ratio"],
            s["d_ece"],
            _fmt(s["ll_rank"], 1),
            s["d_auc"],
        ]
        for m, s in summ.items()
    ]
    L += _md_table(
        [
            "method",
            "cells",
            "LL<=MAP",
            "ECE<MAP",
            "AUROC>MAP",
            "AUROC>temp",
            "conf<both",
            "all",
            "all but ECE",
            "LL/MAP",
            "dECE",
            "rank",
            "dAUROC",
        ],
        rows,
    )
    # the same by regime, for the main settings
    L += ["", "### `all` (and `LL<=MAP` / `AUROC>temp`) by training regime", ""]
    regimes = list(dict.fromkeys(r for _, r, _ in ctab))
    per = {r: clf_summary({k: v for k, v in ctab.items() if k[1] == r}) for r in regimes}
    rows = []
    for m in summ:
        rows.append(
            [m]
            + [
                f"{per[r][m]['all']:.2f} ({per[r][m]['ll']:.2f}/{per[r][m]['auc_temp']:.2f})"
                if m in per[r]
                else "-"
                for r in regimes
            ]
        )
    L += _md_table(["method", *regimes], rows)
    # AUROC by OOD kind
    kinds = list(
        dict.fromkeys(m[6:-1] for v in ctab.values() for m in v if m.startswith("AUROC["))
    )
    methods = list(summ)
    L += [
        "",
        "### OOD AUROC and mean OOD max-probability by kind of shift "
        "(median over tasks and regimes)",
        "",
    ]
    rows = []
    for m in methods:
        row = [m]
        for k in kinds:
            a = [v[f"AUROC[{k}]"] for key, v in ctab.items() if key[2] == m and f"AUROC[{k}]" in v]
            c = [v[f"conf[{k}]"] for key, v in ctab.items() if key[2] == m and f"conf[{k}]" in v]
            row.append(f"{np.median(a):.3f} / {np.median(c):.3f}" if a else "-")
        rows.append(row)
    L += _md_table(["method", *kinds], rows)
    L += ["", "## Classification: per task", ""]
    tasks = list(dict.fromkeys(t for t, _, _ in ctab))
    for t in tasks:
        for r in regimes:
            keys = [k for k in ctab if k[0] == t and k[1] == r]
            if not keys:
                continue
            kinds_t = [m[6:-1] for m in ctab[keys[0]] if m.startswith("AUROC[")]
            L += [f"### {t}, {r}", ""]
            rows = []
            for k in keys:
                v = ctab[k]
                rows.append(
                    [
                        k[2],
                        v["accuracy"],
                        v["log_loss"],
                        v["ECE"],
                        v["Brier"],
                        v["AUROC"],
                        *[v[f"AUROC[{x}]"] for x in kinds_t],
                        v["OOD conf"],
                        v["prior"],
                    ]
                )
            L += _md_table(
                [
                    "method",
                    "acc",
                    "log loss",
                    "ECE",
                    "Brier",
                    "AUROC",
                    *[f"AUROC {x}" for x in kinds_t],
                    "OOD conf",
                    "prior",
                ],
                rows,
            )
            L += [""]
    return L


def _reg_report(rtab):
    L = ["## Regression: summary", ""]
    summ = reg_summary(rtab)
    L += [
        "Win-rates over the (task, regime) cells against `MAP+val-sigma` (the net's "
        "prediction with a constant std: the RMSE of its validation residuals). `NLL<=MAP`; "
        "`cov closer`: 90%-interval coverage at least as close to 0.9 as MAP's; "
        "`growth>1.5`: mean predictive std far from the data over that on the test rows "
        "above 1.5 (diabetes: test rows x5; 1-D tasks: |x| in [4.5, 6] resp. [5, 6]). "
        'Laplace regressors use `sigma_noise="marglik"` except `val`, which tunes '
        f"prior_precision ({len(PRIOR_GRID)} values) x sigma_noise ({len(SIGMA_GRID)} values) "
        "on the validation rows with `sklaplace.metrics.neg_gaussian_nll` (a loop of "
        "`set_params` on one fit: the same as `GridSearchCV` with a `PredefinedSplit`). "
        "`sigma` in the tables is the noise std in the units of y. Medians: `dNLL` "
        "(minus MAP's), coverage, std growth.",
        "",
    ]
    L += _md_table(
        [
            "method",
            "cells",
            "NLL<=MAP",
            "cov closer",
            "growth>1.5",
            "dNLL",
            "coverage90",
            "std growth",
        ],
        [
            [
                m,
                str(s["cells"]),
                s["nll"],
                s["cov"],
                s["grow"],
                s["d_nll"],
                s["coverage"],
                s["std_growth"],
            ]
            for m, s in summ.items()
        ],
    )
    L += ["", "## Regression: per task", ""]
    for t in dict.fromkeys(t for t, _, _ in rtab):
        for r in dict.fromkeys(r for _, r, _ in rtab):
            keys = [k for k in rtab if k[0] == t and k[1] == r]
            if not keys:
                continue
            L += [f"### {t}, {r}", ""]
            L += _md_table(
                ["method", "RMSE", "NLL", "coverage90", "width90", "std growth", "prior", "sigma"],
                [
                    [
                        k[2],
                        *(
                            rtab[k][m]
                            for m in (
                                "RMSE",
                                "NLL",
                                "coverage90",
                                "width90",
                                "std_growth",
                                "prior",
                                "sigma",
                            )
                        ),
                    ]
                    for k in keys
                ],
            )
            L += [""]
    return L


# ======================================================================== main
CLF_TASKS = ("breast_cancer", "wine", "digits", "make_classification", "make_moons")
REG_TASKS = ("diabetes", "heteroscedastic", "toy_cubic")
PLOT_REGIME = "long"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run (< 60 s)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 3; quick 1)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="write the results and plots here instead of the repository",
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        default=0,
        help="also a deep ensemble of this many members (0: none)",
    )
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    global PRIOR_GRID, SIGMA_GRID, MAP_GRID_POINTS
    if args.quick:  # coarser grids: a smoke run, not a measurement
        PRIOR_GRID, SIGMA_GRID, MAP_GRID_POINTS = _PRIORS[::2], _SIGMAS[::2], 61
    else:
        PRIOR_GRID, SIGMA_GRID, MAP_GRID_POINTS = _PRIORS, _SIGMAS, 161
    torch.set_num_threads(1)
    if args.out_dir is None:
        results, plot_dir = (
            ROOT / "benchmarks" / "RESULTS_quality.md",
            ROOT / "docs/_static/quality",
        )
    else:
        results, plot_dir = args.out_dir / "RESULTS_quality.md", args.out_dir
    plot_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log = lambda s: print(s, flush=True)  # noqa: E731
    all_layers, all_errors = probe_all_layers()
    log(f"all-layer Laplace available for: {all_layers or 'none'} {all_errors or ''}")
    regimes = _regimes(args)
    plot_regime = PLOT_REGIME if PLOT_REGIME in regimes else next(iter(regimes))
    quick_tasks = ("wine", "make_moons", "digits", "make_classification")
    clf_tasks = quick_tasks if args.quick else CLF_TASKS
    reg_tasks = ("toy_cubic",) if args.quick else REG_TASKS
    plotted = ("make_classification", "digits", "make_moons", "toy_cubic")
    keep = {(t, plot_regime, 0): {} for t in plotted}
    if args.no_plots:
        keep = None
    clf_rows = run_classification(
        clf_tasks, regimes, args.seeds, all_layers, args.ensemble, log, keep
    )
    reg_rows = run_regression(reg_tasks, regimes, args.seeds, log, keep, all_layers)
    plots = [] if args.no_plots else make_plots(keep, plot_regime, plot_dir, results.parent)
    runtime = time.perf_counter() - t0
    if args.out_dir is not None:  # raw per-seed rows, for inspection
        rows = {"classification": clf_rows, "regression": reg_rows}
        (results.parent / "quality_rows.json").write_text(json.dumps(rows))
    ctab, rtab = write_report(
        results, args, clf_rows, reg_rows, all_layers, all_errors, runtime, plots
    )
    log(f"wrote {results} in {runtime:.0f} s")
    return {"classification": ctab, "regression": rtab, "results": results, "plots": plots}


PLOT_CLF = ("MAP", "temperature", "LL-kron-val-mc", "LL-kron-marglik-mc", "all-kron-val")
PLOT_REG = ("MAP+val-sigma", "LL-kron-val", "LL-kron-marglik")
COLORS = {
    "MAP": "tab:red",
    "temperature": "tab:orange",
    "LL-kron-val-mc": "tab:blue",
    "LL-kron-marglik-mc": "tab:green",
    "all-kron-val": "tab:purple",
    "MAP+val-sigma": "tab:red",
}


def make_plots(keep, regime, plot_dir, results_dir):
    """Four PNGs from the seed-0 nets of one regime; returns (relative path, caption)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sklaplace.plotting import ReliabilityDisplay

    out = []
    # all-layer methods are absent when subset_of_weights="all" failed at run time
    shown = lambda models: [m for m in PLOT_CLF if m in models]  # noqa: E731

    def save(fig, name, caption):
        path = plot_dir / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out.append((os.path.relpath(path, results_dir), caption))

    def proba(model, X):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = np.asarray(model.predict_proba(X), dtype=np.float64)
        return p / p.sum(1, keepdims=True)

    # 1. reliability diagram on make_classification (3 classes, test rows)
    models = keep.get(("make_classification", regime, 0), {})
    if models:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for m in shown(models):
            model, d = models[m]
            ReliabilityDisplay.from_predictions(
                d.y_test,
                proba(model, d.X_test),
                n_bins=10,
                labels=np.unique(d.y_train),
                name=m,
                ax=ax,
                color=COLORS[m],
            )
        ax.set_title(f"make_classification, test rows ({regime} training, seed 0)")
        save(
            fig,
            "reliability_make_classification.png",
            f"Reliability diagram, make_classification (3 classes) test rows, {regime} "
            "regime, seed 0 (10 bins).",
        )

    models = keep.get(("digits", regime, 0), {})
    if models:
        # 2. ECDF of the max-probability on digits 0-4 (in) and 5-9 (OOD)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for m in shown(models):
            model, d = models[m]
            for ax, X, title in (
                (axes[0], d.X_test, "in-distribution: digits 0-4"),
                (axes[1], d.ood["held-out classes"], "OOD: digits 5-9"),
            ):
                c = np.sort(proba(model, X).max(1))
                ax.step(
                    c, np.arange(1, len(c) + 1) / len(c), where="post", label=m, color=COLORS[m]
                )
                ax.set(title=title, xlabel="max predicted probability", xlim=(0.2, 1.01))
        axes[0].set_ylabel("fraction of rows with confidence <= x")
        axes[1].legend(loc="upper left")
        save(
            fig,
            "ood_ecdf_digits.png",
            "ECDF of the max-probability on digits 0-4 (test) and 5-9 (never trained on), "
            f"{regime} regime, seed 0: a curve further up-left on the right panel means "
            "lower confidence on OOD rows.",
        )

    # 3. confidence map on make_moons
    models = keep.get(("make_moons", regime, 0), {})
    if models:
        g = np.linspace(-6, 6, MAP_GRID_POINTS)
        xx, yy = np.meshgrid(g, g)
        grid = np.c_[xx.ravel(), yy.ravel()].astype(np.float32)
        ms = shown(models)
        fig, axes = plt.subplots(1, len(ms), figsize=(4.2 * len(ms), 4), sharey=True)
        for ax, m in zip(axes, ms, strict=True):
            model, d = models[m]
            conf = proba(model, grid).max(1).reshape(xx.shape)
            cs = ax.contourf(xx, yy, conf, levels=np.linspace(0.5, 1, 11), cmap="viridis")
            ax.scatter(*d.X_train.T, c=d.y_train, cmap="coolwarm", s=6, edgecolors="none")
            ax.set(title=m, xlabel="x1 (standardised)")
        axes[0].set_ylabel("x2 (standardised)")
        fig.colorbar(cs, ax=axes, label="max predicted probability", shrink=0.9)
        save(
            fig,
            "moons_confidence.png",
            f"make_moons, {regime} regime, seed 0: confidence (max-probability) over the "
            "plane; training points on top.",
        )

    # 4. toy regression with 1- and 2-std bands
    models = keep.get(("toy_cubic", regime, 0), {})
    if models:
        x = np.linspace(-7, 7, 400)[:, None].astype(np.float32)
        fig, axes = plt.subplots(1, len(PLOT_REG), figsize=(4.5 * len(PLOT_REG), 4), sharey=True)
        for ax, m in zip(axes, PLOT_REG, strict=True):
            model, d = models[m]
            mean, std = model.predict(x, return_std=True)
            mean = np.ravel(mean) * d.y_scale + d.y_shift
            std = np.ravel(std) * d.y_scale
            for k, alpha in ((2, 0.2), (1, 0.35)):
                ax.fill_between(
                    x[:, 0],
                    mean - k * std,
                    mean + k * std,
                    alpha=alpha,
                    color="tab:blue",
                    lw=0,
                    label=f"+-{k} std",
                )
            ax.plot(x[:, 0], x[:, 0] ** 3, "k--", lw=1, label="x^3")
            ax.plot(x[:, 0], mean, color="tab:blue", label="mean")
            ax.scatter(
                d.X_train[:, 0],
                d.y_train * d.y_scale + d.y_shift,
                c="k",
                s=12,
                zorder=3,
                label="train",
            )
            ax.axvspan(-4, 4, color="0.9", zorder=0)
            ax.set(title=m, xlabel="x", ylim=(-250, 250))
        axes[0].set_ylabel("y")
        axes[0].legend(loc="upper left", fontsize=8)
        save(
            fig,
            "toy_regression.png",
            f"Toy regression of Ritter et al. (y = x^3 + N(0, 3^2), 20 points, x in [-4, 4] "
            f"shaded), {regime} regime, seed 0: mean with 1- and 2-std bands.",
        )
    return out


if __name__ == "__main__":
    main()
