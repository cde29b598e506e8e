"""The cost of a mixture of Laplace approximations (MoLA) against what it is made of (issue 21).

Issue 21, item 5: a ``LaplaceEnsembleClassifier`` / ``LaplaceEnsembleRegressor`` of ``k``
nets should fit in about ``k`` single Laplace fits (the members in parallel with
``n_jobs``, joblib as scikit-learn does) and predict in about ``k`` single predictions;
this script records both, and both against the deep ensemble's own training and
prediction, every baseline measured in the same run.

The workflow: ``k = 5`` small tabular nets, skorch's defaults (SGD, lr 0.01, 10 epochs,
batch 128, the default ``train_split``: 20 % of the rows held out), float32:

* **classifier**: an MLP 30-128-128-2 (ReLU, softmax output, skorch's default
  ``NLLLoss``; the net of ``benchmarks/small_tabular.py``) on 3,000 rows of
  ``make_classification(n_samples=4000, n_features=30, n_informative=10)``, standardised
  on the training rows; the other 1,000 rows are the fresh rows to predict;
* **regressor**: an MLP 30-128-128-1 (ReLU, ``MSELoss``) on 3,000 rows of
  ``make_regression(n_samples=4000, n_features=30, n_informative=10, noise=10)``, X and
  y standardised on the training rows; 1,000 fresh rows.

The modules are ``torch.nn.Sequential`` (classes torch can import in joblib's worker
processes: a module class defined in a script cannot come back from one, see
``n_jobs``). Timed (wall seconds, and CPU seconds of this process and its joblib workers,
read from ``/proc``):

* ``de_train``: the deep ensemble's training, ``k`` nets trained by skorch one after
  the other, net ``i`` initialised after ``torch.manual_seed(i)``: baseline 1 of fits;
* ``de_predict``: its prediction on the 1,000 fresh rows (classifier: the mean of the
  ``k`` nets' ``predict_proba``; regressor: the mean and std of their ``predict``);
* ``single_fit``: ``LaplaceClassifier(FrozenEstimator(net_i)).fit(X, y)`` (all defaults)
  for the ``k`` nets, one after the other: baseline 2 of fits;
* ``single_predict``: the ``k`` fitted singles' ``predict_proba`` (regressor:
  ``predict(X, return_std=True)``; and ``single_interval``: ``predict_interval``) on the
  same fresh rows: baseline 2 of predictions;
* ``mola_fit_1`` / ``mola_fit_2``: ``LaplaceEnsembleClassifier([(name, FrozenEstimator(
  net_i)), ...], n_jobs=1 / 2).fit(X, y)``, defaults otherwise; with ``n_jobs=2`` joblib's
  workers are started before (their pass caches emptied, untimed), as in a session that
  has used them already (the warm-up round ran every call in them); ``mola_fit_2_cold``
  (information, timed once per kind, before the warm-up round): the same with the workers
  shut down before, so that the call starts them (a session's first parallel fit);
* ``mola_predict``: the ensemble's ``predict_proba`` (regressor: ``predict(X,
  return_std=True)``; and ``mola_interval``: ``predict_interval``) on the fresh rows;
* ``from_net_1`` / ``from_net_2``: ``LaplaceEnsembleClassifier.from_net(net,
  n_members=k, random_state=0).fit(X, y)`` with ``n_jobs=1`` / ``2``: the nets trained
  inside fit, against ``de_train + single_fit``.

sklaplace's pass cache is emptied (through the public API) before every timed fit and
prediction, and each prediction gets rows it has never seen (the fresh rows rolled by one
more position per call), so that no timed call reuses another's passes; joblib's workers
empty theirs too. This process runs torch on one thread (``--torch-threads``; the
nets are too small to gain from more, sklaplace runs their passes on one thread anyway,
``pass_threads="auto"``, and on a busy machine OpenMP's waiting threads made skorch's
training several times slower and its CPU time meaningless), joblib's workers on
``cpu_count // n_jobs`` threads (joblib's limit: one each here). The calls are
interleaved: one warm-up round, then ``repeats`` rounds, each running every call once in
an order rotated by one; the tables give medians over the rounds, and every ratio is the
median of the ratios within a round (ours and its baseline measured in the same round).

Ratios and the issue's targets: MoLA fit / ``k`` single fits about 1 (``n_jobs=1``; below
1 with ``n_jobs=2`` on 2 free cores); MoLA predict / ``k`` single predicts about 1;
MoLA fit / deep-ensemble training and MoLA predict / deep-ensemble predict for
information (what the mixture adds to the ensemble a user would train anyway).

``--profile``: a cProfile of one ``mola_fit_1`` and of the ``k`` single fits of the
classifier (cumulative seconds of the functions where they differ), appended to the
report.

Run: ``python benchmarks/ensemble_cost.py [--repeats R] [--profile] [--quick] [--out
PATH]`` (writes ``benchmarks/RESULTS_ensemble_cost.md``; about 3 minutes on a quiet 2-core
machine); ``--quick``: 2 members of small nets on 600 rows, 1 epoch, one round, no
``mola_fit_2_cold``, written to ``--out`` only (the smoke test's mode).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path

import cloudpickle  # (joblib's, to send this file's function to its workers)
import numpy as np
import sklearn
import skorch
import torch
from joblib import Parallel, delayed
from joblib.externals.loky import get_reusable_executor
from sklearn.datasets import make_classification, make_regression
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier, NeuralNetRegressor
from torch import nn

import sklaplace
from sklaplace import (
    LaplaceClassifier,
    LaplaceEnsembleClassifier,
    LaplaceEnsembleRegressor,
    LaplaceRegressor,
)

OUT, FINDINGS = Path(__file__).with_name("RESULTS_ensemble_cost.md"), "## Findings"
# cold: time the first parallel fit of a session (starting joblib's workers takes seconds)
FULL = dict(rows=4000, epochs=10, k=5, repeats=3, cold=True)
QUICK = dict(rows=600, epochs=1, k=2, repeats=1, cold=False)
KINDS = {
    "classifier": dict(single=LaplaceClassifier, ensemble=LaplaceEnsembleClassifier),
    "regressor": dict(single=LaplaceRegressor, ensemble=LaplaceEnsembleRegressor),
}
# (label, ours, baseline(s) summed, target): the ratios of the main table
RATIOS = [
    ("MoLA fit, n_jobs=1 / k single fits", "mola_fit_1", ("single_fit",), "about 1"),
    ("MoLA fit, n_jobs=2 / k single fits", "mola_fit_2", ("single_fit",), "< 1 (2 free cores)"),
    (
        "MoLA fit, n_jobs=2, workers started by the call / k single fits",
        "mola_fit_2_cold",
        ("single_fit",),
        "-",
    ),
    ("MoLA fit, n_jobs=1 / deep-ensemble training", "mola_fit_1", ("de_train",), "-"),
    ("MoLA fit, n_jobs=2 / deep-ensemble training", "mola_fit_2", ("de_train",), "-"),
    (
        "from_net fit, n_jobs=1 / (DE training + k single fits)",
        "from_net_1",
        ("de_train", "single_fit"),
        "about 1",
    ),
    (
        "from_net fit, n_jobs=2 / (DE training + k single fits)",
        "from_net_2",
        ("de_train", "single_fit"),
        "< 1 (2 free cores)",
    ),
    ("MoLA fit, n_jobs=1 / k single fits, CPU", "mola_fit_1:cpu", ("single_fit:cpu",), "about 1"),
    (
        "from_net fit, n_jobs=1 / (DE training + k single fits), CPU",
        "from_net_1:cpu",
        ("de_train:cpu", "single_fit:cpu"),
        "about 1",
    ),
    (
        "MoLA fit, n_jobs=2 / k single fits, CPU (workers included)",
        "mola_fit_2:cpu",
        ("single_fit:cpu",),
        "about 1",
    ),
    (
        "from_net fit, n_jobs=2 / (DE training + k single fits), CPU (workers included)",
        "from_net_2:cpu",
        ("de_train:cpu", "single_fit:cpu"),
        "about 1",
    ),
    ("MoLA predict / k single predicts", "mola_predict", ("single_predict",), "about 1"),
    ("MoLA predict / deep-ensemble predict", "mola_predict", ("de_predict",), "-"),
    (
        "MoLA predict_interval / k single predict_interval",
        "mola_interval",
        ("single_interval",),
        "about 1",
    ),
]


# ------------------------------------------------------------------------- the workflow
def mlp(n_in, n_out, softmax):
    layers = [nn.Linear(n_in, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU()]
    layers.append(nn.Linear(128, n_out))
    return nn.Sequential(*layers, *([nn.Softmax(dim=-1)] if softmax else []))


def make_net(kind, epochs, n_in=30):
    """An unfitted skorch net of the workflow (skorch's defaults but ``max_epochs``)."""
    if kind == "classifier":
        return NeuralNetClassifier(mlp(n_in, 2, True), max_epochs=epochs, verbose=0)
    return NeuralNetRegressor(mlp(n_in, 1, False), max_epochs=epochs, verbose=0)


def make_data(kind, rows):
    """(X_train, y_train, X_new) of the workflow, standardised on the training rows."""
    n_train = rows * 3 // 4
    if kind == "classifier":
        X, y = make_classification(n_samples=rows, n_features=30, n_informative=10, random_state=0)
    else:
        X, y = make_regression(
            n_samples=rows, n_features=30, n_informative=10, noise=10.0, random_state=0
        )
        y = ((y - y[:n_train].mean()) / y[:n_train].std()).astype(np.float32)
    X = StandardScaler().fit(X[:n_train]).transform(X).astype(np.float32)
    return X[:n_train], y[:n_train], X[n_train:]


def skorch_target(kind, y):
    return y if kind == "classifier" else y.reshape(-1, 1)


def train_deep_ensemble(kind, X, y, k, epochs):
    """The deep ensemble: ``k`` nets, net ``i`` initialised after ``torch.manual_seed(i)``."""
    nets = []
    for i in range(k):
        torch.manual_seed(i)
        nets.append(make_net(kind, epochs).fit(X, skorch_target(kind, y)))
    return nets


def de_predict(kind, nets, X):
    if kind == "classifier":
        return np.mean([net.predict_proba(X) for net in nets], axis=0)
    preds = np.stack([net.predict(X) for net in nets])
    return preds.mean(0), preds.std(0)


def frozen_pairs(nets):
    return [(f"net{i}", FrozenEstimator(net)) for i, net in enumerate(nets)]


# ------------------------------------------------------------------------- the plumbing
def clear_cache():
    """Empty sklaplace's pass cache through the public API (lowering the bound evicts)."""
    bound = sklaplace.get_config()["cache_bytes"]
    sklaplace.set_config(cache_bytes=0)
    sklaplace.set_config(cache_bytes=bound)


def _reset_worker(pause):
    """In a joblib worker: empty its pass cache; (pid, torch threads)."""
    clear_cache()
    time.sleep(pause)  # (so that the two calls land on two workers)
    return os.getpid(), torch.get_num_threads()


def reset_workers():
    """Start (or reuse) joblib's 2 workers and empty their pass caches; [(pid, threads)]."""
    clear_cache()
    if __name__ != "__main__":  # imported (the smoke test): workers cannot import this file
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return Parallel(n_jobs=2)(delayed(_reset_worker)(0.2) for _ in range(2))


def stop_workers():
    clear_cache()
    get_reusable_executor().shutdown(wait=True)


def rolled(X):
    """A callable giving X's rows rolled by one more position at each call (new content)."""
    state = {"k": 0}

    def fresh():
        state["k"] += 1
        return np.ascontiguousarray(np.roll(X, state["k"] % len(X), axis=0))

    return fresh


def one_round(tasks, runs, i):
    """Run every task once, in an order rotated by ``i``; append (wall s, CPU s) to runs."""
    names = list(tasks)
    for name in names[i % len(names) :] + names[: i % len(names)]:
        setup, call = tasks[name]
        arg = setup() if setup else None
        runs[name].append(timed(lambda: call(arg)))  # noqa: B023 (called at once)


def kind_tasks(kind, cfg):
    """name -> (untimed setup returning the call's argument, or None; call) for one kind."""
    X, y, X_new = make_data(kind, cfg["rows"])
    k, epochs = cfg["k"], cfg["epochs"]
    single, ensemble = KINDS[kind]["single"], KINDS[kind]["ensemble"]
    nets = train_deep_ensemble(kind, X, y, k, epochs)
    singles = [single(FrozenEstimator(net)).fit(X, y) for net in nets]
    mola = ensemble(frozen_pairs(nets), n_jobs=1).fit(X, y)
    fresh = rolled(X_new)

    def new_rows():
        clear_cache()
        return fresh()

    def fit_all(_):
        return [single(FrozenEstimator(net)).fit(X, y) for net in nets]

    def from_net(n_jobs):
        def call(_):
            net = make_net(kind, epochs)
            return ensemble.from_net(net, n_members=k, random_state=0, n_jobs=n_jobs).fit(X, y)

        return call

    tasks = {
        "de_train": (None, lambda _: train_deep_ensemble(kind, X, y, k, epochs)),
        "de_predict": (None, lambda _: de_predict(kind, nets, X_new)),
        "single_fit": (clear_cache, fit_all),
        "mola_fit_1": (clear_cache, lambda _: ensemble(frozen_pairs(nets), n_jobs=1).fit(X, y)),
        "mola_fit_2": (reset_workers, lambda _: ensemble(frozen_pairs(nets), n_jobs=2).fit(X, y)),
        "from_net_1": (clear_cache, from_net(1)),
        "from_net_2": (reset_workers, from_net(2)),
    }
    if kind == "classifier":
        tasks["single_predict"] = (new_rows, lambda R: [m.predict_proba(R) for m in singles])
        tasks["mola_predict"] = (new_rows, lambda R: mola.predict_proba(R))
    else:
        tasks["single_predict"] = (
            new_rows,
            lambda R: [m.predict(R, return_std=True) for m in singles],
        )
        tasks["mola_predict"] = (new_rows, lambda R: mola.predict(R, return_std=True))
        tasks["single_interval"] = (new_rows, lambda R: [m.predict_interval(R) for m in singles])
        tasks["mola_interval"] = (new_rows, lambda R: mola.predict_interval(R))
    info = dict(n_train=len(X), n_new=len(X_new), subset=mola.estimators_[0].subset_of_weights_)
    cold = lambda: ensemble(frozen_pairs(nets), n_jobs=2).fit(X, y)  # noqa: E731
    return tasks, info, cold


def timed(call):
    """(wall s, CPU s of this process and its joblib workers) of ``call()``."""
    start, start_cpu = time.perf_counter(), tree_cpu()
    call()
    return time.perf_counter() - start, tree_cpu() - start_cpu


def tree_cpu():
    """CPU seconds of this process and of its live child processes (joblib's workers; from
    ``/proc``, Linux; elsewhere this process's alone). A worker started during a call
    counts from zero; one shut down during a call is not counted (none is, in a call)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    tasks = Path(f"/proc/{os.getpid()}/task")
    for task in tasks.iterdir() if tasks.exists() else []:
        for pid in (task / "children").read_text().split():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # (gone)
                continue
            total += (int(stat[11]) + int(stat[12])) / tick  # utime, stime
    return total


def measure(tasks, repeats):
    """``{name: [(wall s, CPU s), ...]}`` of ``repeats`` rounds after a warm-up round."""
    one_round(tasks, {name: [] for name in tasks}, 0)
    runs = {name: [] for name in tasks}
    for i in range(repeats):
        one_round(tasks, runs, i)
    return runs


def ratio_rows(runs):
    """[(label, ours median, baseline median, median (min, max) of per-round ratios,
    target)]; ``name:cpu`` in ``RATIOS``: CPU seconds, else wall seconds."""
    out = []
    for label, ours, bases, target in RATIOS:
        field = 1 if ours.endswith(":cpu") else 0
        ours, bases = ours.split(":")[0], [b.split(":")[0] for b in bases]
        if ours not in runs:
            continue
        n = len(runs[bases[0]])
        base = [sum(runs[b][i][field] for b in bases) for i in range(n)]
        if len(runs[ours]) < n:  # (measured once: against the median round)
            ours_runs, base = runs[ours] * n, [statistics.median(base)] * n
        else:
            ours_runs = runs[ours]
        ratios = [ours_runs[i][field] / base[i] for i in range(n)]
        mid = statistics.median(r[field] for r in ours_runs)
        out.append(
            (
                label,
                mid,
                statistics.median(base),
                statistics.median(ratios),
                min(ratios),
                max(ratios),
                target,
            )
        )
    return out


# ------------------------------------------------------------------------- the profile
def profile_section(cfg):
    """cProfile (CPU time) of one MoLA fit (n_jobs=1) against the k single fits."""
    lines = [
        "## Profile: one MoLA fit (n_jobs=1) against the k single fits",
        "",
        "cProfile with CPU time (`time.process_time`: the machine's load does not count), "
        "one run each after a warm-up, the pass cache emptied before each. The sklaplace "
        "functions whose cumulative CPU differs by more than 3 % of the single fits' total, "
        "or that ran a different number of times (and took over 1 %), largest difference "
        "first (the ensemble's own wrappers around its members' fits left out).",
        "",
    ]
    for kind, est in KINDS.items():
        single, ensemble = est["single"], est["ensemble"]
        X, y, _ = make_data(kind, cfg["rows"])
        nets = train_deep_ensemble(kind, X, y, cfg["k"], cfg["epochs"])
        ensemble(frozen_pairs(nets), n_jobs=1).fit(X, y)  # warm
        stats = {}
        for name, call in (
            ("mola", lambda: ensemble(frozen_pairs(nets), n_jobs=1).fit(X, y)),  # noqa: B023
            ("singles", lambda: [single(FrozenEstimator(n)).fit(X, y) for n in nets]),  # noqa: B023
        ):
            clear_cache()
            prof = cProfile.Profile(time.process_time)
            prof.enable()
            call()
            prof.disable()
            stats[name] = {
                f"{Path(f).parent.name}/{Path(f).name}:{line}({fn})": (v[1], v[3])
                for (f, line, fn), v in pstats.Stats(prof).stats.items()
                if "sklaplace" in f
            }
        total = {n: max(c for _, c in st.values()) for n, st in stats.items()}
        diffs = []
        for key in set(stats["mola"]) | set(stats["singles"]):
            a, b = stats["mola"].get(key, (0, 0.0)), stats["singles"].get(key, (0, 0.0))
            if b[0] == 0 and a[1] > 0.9 * total["mola"]:
                continue  # the ensemble's own wrappers around its members' fits
            big = abs(a[1] - b[1]) > 0.03 * total["singles"]
            if big or (a[0] != b[0] and max(a[1], b[1]) > 0.01 * total["singles"]):
                diffs.append((abs(a[1] - b[1]), key, a, b))
        lines += [
            f"{kind.capitalize()}: MoLA {total['mola']:.2f} s CPU, k single fits "
            f"{total['singles']:.2f} s.",
            "",
            "| function | calls MoLA / singles | cumulative CPU s MoLA / singles |",
            "|---|---|---|",
        ]
        for _, key, a, b in sorted(diffs, reverse=True)[:12]:
            lines.append(f"| `{key}` | {a[0]} / {b[0]} | {a[1]:.3f} / {b[1]:.3f} |")
        if not diffs:
            lines.append("| (none) | - | - |")
        lines.append("")
    return lines


# ------------------------------------------------------------------------- the report
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="the smoke test's mode")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--torch-threads", type=int, default=1, help="this process's")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    cfg = dict(QUICK if args.quick else FULL)
    if args.repeats:
        cfg["repeats"] = args.repeats
    out = args.out or (None if args.quick else OUT)
    start, loads = time.perf_counter(), [os.getloadavg()[0]]
    workers = reset_workers()

    result, sections = {"kinds": {}, "workers": workers}, []
    for kind in KINDS:
        tasks, info, cold = kind_tasks(kind, cfg)
        runs = {}
        if cfg["cold"]:  # a session's first parallel fit: the call starts joblib's workers
            stop_workers()
            runs["mola_fit_2_cold"] = [timed(cold)]
        runs.update(measure(tasks, cfg["repeats"]))
        loads.append(os.getloadavg()[0])
        rows = ratio_rows(runs)
        result["kinds"][kind] = dict(runs=runs, ratios=rows, info=info)
        sections += kind_lines(kind, cfg, info, runs, rows)
    stop_workers()
    prof = profile_section(cfg) if args.profile else []

    command = " ".join(
        ["python benchmarks/ensemble_cost.py", *(sys.argv[1:] if argv is None else argv)]
    )
    threads = ", ".join(str(t) for _, t in workers)
    text = [
        "# The cost of a mixture of Laplace approximations (issue 21, item 5)",
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, sklaplace "
        f"{sklaplace.__version__}; {platform.machine()}, nproc {os.cpu_count()}, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads in this process, {threads} "
        f"in joblib's 2 workers), skorch {skorch.__version__}, scikit-learn "
        f"{sklearn.__version__}; load average (1 min) "
        + " / ".join(f"{x:.1f}" for x in loads)
        + " (before / after the classifier / after the regressor; a shared machine); the "
        f"script ran {time.perf_counter() - start:.0f} s.",
        "",
        f"What is measured, and how: the docstring of `benchmarks/ensemble_cost.py`. k = "
        f"{cfg['k']} nets, {cfg['epochs']} epochs; wall seconds, medians of "
        f"{cfg['repeats']} interleaved rounds after a warm-up round; each ratio is the median "
        "(min-max) of the ratios within a round, ours over the baseline of the same round.",
        "",
        *sections,
    ]
    if prof:
        text += ["", *prof]
    text = "\n".join(text) + "\n"
    print(text)
    if out is not None:
        old = out.read_text() if out.exists() else ""
        out.write_text(text + ("\n" + old[old.index(FINDINGS) :] if FINDINGS in old else ""))
    return result


LABELS = {
    "de_train": "deep ensemble: train k nets (skorch)",
    "de_predict": "deep ensemble: predict (k nets)",
    "single_fit": "k single Laplace fits (frozen nets)",
    "single_predict": "k single Laplace predicts",
    "single_interval": "k single predict_interval",
    "mola_fit_1": "MoLA fit, n_jobs=1",
    "mola_fit_2": "MoLA fit, n_jobs=2",
    "mola_fit_2_cold": "MoLA fit, n_jobs=2, workers started by the call",
    "from_net_1": "from_net(net, n_members=k).fit, n_jobs=1 (trains the nets)",
    "from_net_2": "from_net(net, n_members=k).fit, n_jobs=2 (trains the nets)",
    "mola_predict": "MoLA predict",
    "mola_interval": "MoLA predict_interval",
}


def kind_lines(kind, cfg, info, runs, rows):
    predict = "predict_proba" if kind == "classifier" else "predict(X, return_std=True)"
    lines = [
        f"## {kind.capitalize()}",
        "",
        f"{info['n_train']:,} training rows, predictions on {info['n_new']:,} fresh rows "
        f"(`{predict}`); the members' fitted subset of weights: `{info['subset']}`.",
        "",
        "| ratio | ours (s) | baseline (s) | ratio, median (min-max) | target |",
        "|---|---|---|---|---|",
    ]
    for label, ours, base, ratio, lo, hi, target in rows:
        lines.append(
            f"| {label} | {ours:.3f} | {base:.3f} | {ratio:.2f} ({lo:.2f}-{hi:.2f}) | {target} |"
        )
        print(f"{kind}: {label}: {ours:.3f} s / {base:.3f} s = {ratio:.2f}")
    lines += [
        "",
        "| call | wall s, median (min-max) | CPU s (this process + joblib's workers), median |",
        "|---|---|---|",
    ]
    for name, rs in runs.items():
        walls = [r[0] for r in rs]
        lines.append(
            f"| {LABELS[name]} | {statistics.median(walls):.3f} ({min(walls):.3f}-"
            f"{max(walls):.3f}) | {statistics.median(r[1] for r in rs):.3f} |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    main()
