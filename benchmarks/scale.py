"""Cost at scale: per-call overhead on a big net, and many classes (issue 12's targets).

1. **Per-call overhead.** An MLP 64-2048x7-10 (ReLU, 25.3M parameters; skorch
   ``NeuralNetClassifier`` + ``CrossEntropyLoss``) trained one epoch on 512 generated rows,
   as ``LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0)`` (last layer, kron):
   one-row ``predict_proba`` with the pass cache at its default bound and off
   (``sklaplace.config_context(cache_bytes=0)``), against the net's own one-row
   ``predict_proba``. For information: ``subset_of_weights="all"`` on a 64-1024x4-10 net
   (3.2M parameters) and on the 25.3M net.
2. **Many classes.** An MLP 64-256-1000 trained 5 epochs on 5,000 generated rows (every
   class present): ``predict_proba`` (probit) on 1,000 unseen rows against the net's own;
   ``fit`` with ``prior_precision=1.0`` (one curvature pass) and with the defaults plus
   ``X_val, y_val`` (1,000 unseen rows: the tuning), against one epoch (``partial_fit`` of
   one more epoch of a copy of the net on the same rows). Memory: the peak resident size a
   call adds above the resident size just before it (Linux ``VmHWM``, reset through
   ``/proc/self/clear_refs``), one fresh process per call, one-time costs (first calls into
   torch, skorch, sklaplace) paid beforehand on a tiny net, glibc's mmap threshold fixed
   (``MALLOC_MMAP_THRESHOLD_``) so that memory freed earlier is not silently reused.

Calls are interleaved (each repeat runs every call once, in an order rotated by one at each
repeat, the pass cache emptied before every call) after warm-up calls; medians of the
repeats, by wall clock and by CPU time. One torch thread (``torch.set_num_threads(1)``): on
this shared machine OpenMP's waiting threads make multi-thread timings swing.

3. **A wide first layer** (issue 19): one-hot columns of a 2,996-category feature and 4
   numeric ones (3,000 columns) into an MLP 3000-8-8-2 (``Linear(3000, 8)`` first), trained
   5 epochs on 5,000 generated rows. ``fit`` (``prior_precision=1.0``) with the default
   ``subset_of_weights="auto"`` against one training epoch (target: the all-layer fit
   target of ``benchmarks/RESULTS_all_layers.md``, at most 2 epochs); for reference, the
   all-layer Kronecker fit (``subset_of_weights="all"``, one repeat: it is slow) and the
   all-layer diagonal one. Also the size of each fitted estimator's pickle against the
   net's, and the peak resident memory each fit adds (in this process, ``VmHWM`` reset
   before each call).

Run: ``python benchmarks/scale.py [--quick] [--threads N]`` (writes
``benchmarks/RESULTS_scale.md``; ``--quick``: small sizes, prints only); ``--wide``: only
part 3, whose section of the results file it replaces. One memory measurement: ``python
benchmarks/scale.py --worker CALL NET_PICKLE``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import sklearn
import skorch
import torch
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetClassifier
from torch import nn

import sklaplace
from sklaplace import LaplaceClassifier
from sklaplace._runtime.cache import get_cache

# big: hidden layers of the overhead net; all: (hidden layers, repeats) of the all-layer nets;
# repeats: of the many-class predictions, and of the fits
FULL = dict(big=(2048,) * 7, reps=200, all=[((1024,) * 4, 200), ((2048,) * 7, 20)],
            classes=1000, hidden=256, rows=5000, new_rows=1000, repeats=(30, 5))  # fmt: skip
QUICK = dict(big=(512,) * 3, reps=30, all=[((256,) * 3, 10)],
             classes=200, hidden=64, rows=1000, new_rows=200, repeats=(5, 2))  # fmt: skip
N_FEATURES, BIG_ROWS, MiB = 64, 512, 2**20
OUT, FINDINGS = Path(__file__).with_name("RESULTS_scale.md"), "## Findings"
MEMORY = {  # call: (label, baseline call, what issue 12 reported before the redesign)
    "map": ("net.predict_proba", None, "-"),
    "epoch": ("one epoch (partial_fit)", None, "-"),
    "predict": ("predict_proba, cache default", "map", "+2 GiB"),
    "predict_off": ("predict_proba, cache off", "map", "-"),
    "fit": ("fit, prior_precision=1.0, cache default", "epoch", "+1.5 GiB"),
    "fit_off": ("fit, prior_precision=1.0, cache off", "epoch", "-"),
    "tuned": ("fit, defaults + X_val, cache default", "epoch", "-"),
}


def trained_net(widths, n_classes, X, y, epochs):
    torch.manual_seed(0)
    layers, d = [], X.shape[1]
    for width in widths:
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    module = nn.Sequential(*layers, nn.Linear(d, n_classes))
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
                              lr=1e-3, max_epochs=epochs, train_split=None, verbose=0)  # fmt: skip
    return net.fit(X, y)


def class_data(cfg):
    """Training rows (every class present), then unseen test rows and validation rows."""
    rng = np.random.default_rng(0)
    c, n, m = cfg["classes"], cfg["rows"], cfg["new_rows"]
    y = np.concatenate([rng.permutation(np.arange(n) % c), rng.integers(0, c, 2 * m)])
    X = rng.standard_normal((c, N_FEATURES))[y] + rng.standard_normal((len(y), N_FEATURES))
    X = X.astype(np.float32)
    return X[:n], y[:n], X[n : n + m], X[n + m :], y[n + m :]


def laplace(net, **params):
    return LaplaceClassifier(FrozenEstimator(net), **{"prior_precision": 1.0, **params})


def cache_off(fn):
    def call():
        with sklaplace.config_context(cache_bytes=0):
            return fn()

    return call


def interleaved(tasks, reps, warmup):
    """``{name: (median wall s, median CPU s)}`` (see the module docstring)."""
    for _ in range(warmup):
        for fn in tasks.values():
            fn()
    names, runs = list(tasks), {name: [] for name in tasks}
    for i in range(reps):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            get_cache().clear()
            start, start_cpu = time.perf_counter(), time.process_time()
            tasks[name]()
            runs[name].append((time.perf_counter() - start, time.process_time() - start_cpu))
    return {n: tuple(statistics.median(r[k] for r in runs[n]) for k in (0, 1)) for n in names}


def row(label, t, ours, base, target=None, before="-"):
    """A table row (and a printed line): times in ms, wall / CPU, and their ratios."""
    (w, c), (bw, bc) = t[ours], t[base]
    met = " / ".join("yes" if r <= target else "no" for r in (w / bw, c / bc)) if target else "-"
    print(f"{label}: {w * 1e3:.1f} ms against {bw * 1e3:.1f} ms, ratio {w / bw:.2f}", flush=True)
    return (f"| {label} | {w * 1e3:.1f} / {c * 1e3:.1f} | {bw * 1e3:.1f} / {bc * 1e3:.1f} | "
            f"{w / bw:.2f} / {c / bc:.2f} | {f'<= {target:g}' if target else '-'} | {met} | "
            f"{before} |")  # fmt: skip


def overhead(cfg):
    """Target 1: one-row predict_proba on a big net, last layer; all layers for information."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((BIG_ROWS, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, 10, BIG_ROWS)
    one, nets, labels = X[:1], {}, {}
    for widths in [cfg["big"], *(widths for widths, _ in cfg["all"])]:
        if widths not in nets:
            nets[widths] = trained_net(widths, 10, X, y, epochs=1)
            n_params = sum(p.numel() for p in nets[widths].module_.parameters())
            labels[widths] = f"MLP 64-{widths[0]}x{len(widths)}-10 ({n_params / 1e6:.1f}M)"
    net = nets[cfg["big"]]
    clf = laplace(net).fit(X, y)
    tasks = {"net": lambda: net.predict_proba(one), "on": lambda: clf.predict_proba(one)}
    tasks["off"] = cache_off(tasks["on"])
    t = interleaved(tasks, cfg["reps"], warmup=20)
    big = labels[cfg["big"]]
    rows = [row(f"{big}, last layer, cache default", t, "on", "net", 1.5, "110 / 4.3 ms"),
            row(f"{big}, last layer, cache off", t, "off", "net", 1.5)]  # fmt: skip
    for widths, reps in cfg["all"]:
        start = time.perf_counter()
        every = laplace(nets[widths], subset_of_weights="all").fit(X, y)
        fit_s = time.perf_counter() - start
        tasks = {"net": partial(nets[widths].predict_proba, one),
                 "on": partial(every.predict_proba, one)}  # fmt: skip
        t = interleaved(tasks, reps, warmup=3)
        label = f"{labels[widths]}, all layers, cache default ({reps} repeats; fit {fit_s:.0f} s)"
        rows.append(row(label, t, "on", "net"))
    return rows


def class_calls(cfg, net, fitted=None):
    """The many-class calls by name; ``fitted``: the Laplace estimator that predicts."""
    X, y, X_test, X_val, y_val = class_data(cfg)
    trainer = copy.deepcopy(net).set_params(max_epochs=1)
    calls = {
        "map": lambda: net.predict_proba(X_test),
        "epoch": lambda: trainer.partial_fit(X, y),
        "predict": lambda: fitted.predict_proba(X_test),
        "fit": lambda: laplace(net).fit(X, y),
        "tuned": lambda: LaplaceClassifier(FrozenEstimator(net)).fit(
            X, y, X_val=X_val, y_val=y_val
        ),
    }
    calls.update(predict_off=cache_off(calls["predict"]), fit_off=cache_off(calls["fit"]))
    return calls


def many_classes(cfg, net):
    """Target 2: predict_proba and fit with many classes, against MAP and epochs."""
    X, y = class_data(cfg)[:2]
    calls = class_calls(cfg, net, laplace(net).fit(X, y))
    groups = [("map", "predict", "predict_off"), ("epoch", "fit", "fit_off", "tuned")]
    t = {}
    for names, reps in zip(groups, cfg["repeats"], strict=True):
        t.update(interleaved({name: calls[name] for name in names}, reps, warmup=1))
    c, m, n = cfg["classes"], cfg["new_rows"], cfg["rows"]
    pred, fit = f"predict_proba, {m} rows, {c} classes", f"fit, prior_precision=1.0, {n} rows"
    return [
        row(f"{pred}, cache default", t, "predict", "map", 5.0, "28.7 s / 0.01 s"),
        row(f"{pred}, cache off", t, "predict_off", "map", 5.0),
        row(f"{fit}, cache default", t, "fit", "epoch", 3.0, "9.5 s"),
        row(f"{fit}, cache off", t, "fit_off", "epoch", 3.0),
        row(f"fit, defaults + X_val ({m} rows): the tuning, cache default", t, "tuned", "epoch"),
    ]


def worker(call, net_path, cfg):
    """Peak MiB that one call adds above the resident size just before it."""
    net = pickle.loads(Path(net_path).read_bytes())
    X, y, X_test = class_data(cfg)[:3]
    tiny = trained_net((8,), 3, X[:64], y[:64] % 3, epochs=1)  # one-time costs, not measured
    laplace(tiny).fit(X[:64], y[:64] % 3).predict_proba(X_test[:2])
    net.predict_proba(X_test[:2])
    fitted = laplace(net).fit(X, y) if call.startswith("predict") else None
    fn = class_calls(cfg, net, fitted)[call]
    get_cache().clear()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the resident size
    before = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    fn()
    status = Path("/proc/self/status").read_text().splitlines()
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    return (peak - before) / MiB


def memory(cfg, net, args):
    """Table rows: one fresh process per call (``--worker``), the net pickled for them."""
    peak = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.pkl"
        path.write_bytes(pickle.dumps(net))
        flags = ["--quick"] * args.quick + ["--threads", str(args.threads)]
        # a fixed mmap threshold: freed large blocks go back to the system at once, so the
        # peak is what the call holds, not what glibc kept from earlier calls (stable runs)
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        for call, (label, _, _) in MEMORY.items():
            cmd = [sys.executable, __file__, "--worker", call, str(path), *flags]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            peak[call] = float(out.strip().splitlines()[-1])
            print(f"memory, {label}: +{peak[call]:.1f} MiB", flush=True)
    return [f"| {label} | +{peak[k]:.1f} | {f'+{peak[base]:.1f} ({base})' if base else '-'} | "
            f"{before} |" for k, (label, base, before) in MEMORY.items()]  # fmt: skip


WIDE, WIDE_SECTION = 3000, "## A wide first layer"


def wide_net(n_rows=5000, seed=0):
    """One-hot columns of a high-cardinality feature (and 4 numeric ones): MLP 3000-8-8-2."""
    rng = np.random.default_rng(seed)
    cats = WIDE - 4
    code = rng.integers(0, cats, n_rows)
    X = np.zeros((n_rows, WIDE), dtype=np.float32)
    X[np.arange(n_rows), code] = 1.0
    X[:, cats:] = rng.standard_normal((n_rows, 4))
    effect = rng.standard_normal(cats)
    y = effect[code] + X[:, cats] * X[:, cats + 1] + 0.7 * rng.standard_normal(n_rows) > 0
    torch.manual_seed(seed)
    module = nn.Sequential(nn.Linear(WIDE, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                           nn.Linear(8, 2))  # fmt: skip
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
                              lr=1e-2, max_epochs=5, train_split=None, verbose=0)  # fmt: skip
    return X, y.astype(np.int64), net.fit(X, y.astype(np.int64))


def _peak_call(fn):
    """``(result, wall s, CPU s, peak MiB added)``: VmHWM reset just before the call."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    status = Path("/proc/self/status").read_text().splitlines()
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    return out, wall, cpu, (peak - before) / MiB


def wide(repeats=3):
    """Part 3: the rows of the wide-net table (fits against an epoch, pickles, memory)."""
    X, y, net = wide_net()
    trainer = copy.deepcopy(net).set_params(max_epochs=1)
    fits = {
        "auto": lambda: laplace(net).fit(X, y),
        "last_layer": lambda: laplace(net, subset_of_weights="last_layer").fit(X, y),
        "all, diag": lambda: laplace(net, subset_of_weights="all", hessian_structure="diag").fit(
            X, y
        ),
    }
    runs = {name: [] for name in ["epoch", *fits]}
    fitted, peaks = {}, {}
    with sklaplace.config_context(cache_bytes=0):  # every fit runs its pass
        _peak_call(lambda: trainer.partial_fit(X, y))  # warm-up
        for i in range(repeats):
            names = list(runs)[i % len(runs) :] + list(runs)[: i % len(runs)]
            for name in names:
                fn = (lambda: trainer.partial_fit(X, y)) if name == "epoch" else fits[name]
                out, wall, cpu, peak = _peak_call(fn)
                runs[name].append((wall, cpu))
                peaks[name] = max(peaks.get(name, 0.0), peak)
                fitted[name] = out
        out, wall, cpu, peak = _peak_call(lambda: laplace(net, subset_of_weights="all").fit(X, y))
        runs["all, kron"], peaks["all, kron"], fitted["all, kron"] = [(wall, cpu)], peak, out
    t = {name: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
         for name, r in runs.items()}  # fmt: skip
    net_bytes = len(pickle.dumps(net))
    resolved = fitted["auto"].subset_of_weights_
    rows = []
    for name in ["auto", "last_layer", "all, diag", "all, kron"]:
        (w, c), (bw, bc) = t[name], t["epoch"]
        label = f"fit, {name}" + (f" (resolves to {resolved!r})" if name == "auto" else "")
        target = 2.0 if name == "auto" else None
        met = " / ".join("yes" if r <= 2.0 else "no" for r in (w / bw, c / bc)) if target else "-"
        size = len(pickle.dumps(fitted[name])) / net_bytes
        reps = len(runs[name])
        rows.append(
            f"| {label} | {w:.2f} / {c:.2f} | {bw:.2f} / {bc:.2f} | {w / bw:.2f} / {c / bc:.2f} "
            f"| {'<= 2' if target else '-'} | {met} | {size:.1f} x | +{peaks[name]:.0f} "
            f"(epoch +{peaks['epoch']:.0f}) | {reps} |"
        )
        print(rows[-1], flush=True)
    return rows, net_bytes


def wide_section(args) -> str:
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    rows, net_bytes = wide()
    command = " ".join(["python benchmarks/scale.py", *sys.argv[1:]])
    return "\n".join([
        WIDE_SECTION + " (issue 19): the cost of `subset_of_weights=\"auto\"`",
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d')}; {platform.machine()}, nproc "
        f"{os.cpu_count()}, {torch.get_num_threads()} torch thread(s), torch "
        f"{torch.__version__}; load average {load_before:.1f} before / "
        f"{os.getloadavg()[0]:.1f} after (a shared machine); the part ran "
        f"{time.perf_counter() - start:.0f} s.",
        "",
        f"MLP {WIDE}-8-8-2 (`Linear({WIDE}, 8)` first: one-hot columns of a {WIDE - 4:,}-"
        "category feature and 4 numeric ones), 5,000 rows, trained 5 epochs; "
        "`LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0, ...)`, cache off. "
        "Times in s, wall / CPU, medians of interleaved repeats (the all-layer Kronecker fit: "
        "one run); baseline: one training epoch (`partial_fit`) in the same run. *pickle*: "
        f"the fitted estimator's pickle over the net's ({net_bytes / MiB:.2f} MiB). *peak*: "
        "the resident memory the call added (MiB, in this process).",
        "",
        "| fit | ours (s) | epoch (s) | ratio (epochs) | target | met | pickle | peak (MiB) "
        "| repeats |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])  # fmt: skip


def write_wide(section: str) -> None:
    """Replace the wide-net section of the results file (or add it before the findings)."""
    old = OUT.read_text()
    if WIDE_SECTION in old:
        start = old.index(WIDE_SECTION)
        end = old.index("\n## ", start + 1) + 1 if "\n## " in old[start + 1 :] else len(old)
        OUT.write_text(old[:start] + section + "\n" + old[end:])
    elif FINDINGS in old:
        i = old.index(FINDINGS)
        OUT.write_text(old[:i] + section + "\n" + old[i:])
    else:
        OUT.write_text(old + "\n" + section)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, prints only")
    parser.add_argument("--wide", action="store_true", help="only the wide first layer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", nargs=2, metavar=("CALL", "NET_PICKLE"))
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    if args.worker:
        print(worker(*args.worker, cfg))
        return
    if args.wide:
        section = wide_section(args)
        print(section)
        if not args.quick:
            write_wide(section)
        return
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    timing = overhead(cfg)
    X, y = class_data(cfg)[:2]
    net = trained_net((cfg["hidden"],), cfg["classes"], X, y, epochs=5)
    timing += many_classes(cfg, net)
    mem = memory(cfg, net, args)
    command = " ".join(["python benchmarks/scale.py", *sys.argv[1:]])
    text = "\n".join([
        "# Cost at scale: per-call overhead on a big net, many classes (issue 12)",
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d')}; {platform.machine()}, nproc {os.cpu_count()}, "
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}, skorch "
        f"{skorch.__version__}, scikit-learn {sklearn.__version__}; load average "
        f"{load_before:.1f} before / {os.getloadavg()[0]:.1f} after (a shared machine); the "
        f"script ran {time.perf_counter() - start:.0f} s.",
        "",
        "What is measured, and how: the docstring of `benchmarks/scale.py`. Times in ms, "
        f"wall / CPU, medians of interleaved repeats ({cfg['reps']} for the one-row calls "
        f"unless the row says otherwise; {cfg['repeats'][0]} for the many-class predictions, "
        f"{cfg['repeats'][1]} for the fits); ratio: "
        "ours over the baseline (the net's own `predict_proba` for predictions, one training "
        "epoch for fits); met: wall / CPU. *before*: what issue 12 reported before the "
        "redesign (ours / the net's).",
        "",
        "| measurement | ours (ms) | baseline (ms) | ratio | target | met | before |",
        "|---|---|---|---|---|---|---|",
        *timing,
        "",
        f"Peak memory a call adds above the resident size just before it (MiB; one fresh "
        f"process per call; {cfg['classes']} classes, predictions on {cfg['new_rows']} rows, "
        f"fits on {cfg['rows']} rows):",
        "",
        "| call | peak (MiB) | baseline peak (MiB) | before |",
        "|---|---|---|---|",
        *mem,
        "",
    ])  # fmt: skip
    print(text)
    if not args.quick:  # hand-written findings below the tables survive a re-run
        old = OUT.read_text() if OUT.exists() else ""
        OUT.write_text(text + ("\n" + old[old.index(FINDINGS) :] if FINDINGS in old else ""))
        write_wide(wide_section(args))


if __name__ == "__main__":
    main()
