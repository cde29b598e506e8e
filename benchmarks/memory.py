"""Peak memory and time of last-layer kron ``fit`` + ``predict_proba`` as the rows grow.

A small MLP 20-32-32-3 is trained once (skorch ``NeuralNetClassifier``, ``CrossEntropyLoss``,
fixed seed) on 5,000 rows of a synthetic 20-feature, 3-class task and frozen. Each
configuration then runs in a fresh Python process: the process builds the same net, generates
``n`` rows of the task in chunks of 50,000 straight into one preallocated array (so the data
are the only O(n) memory it holds), and measures

* ``map``: the net's own ``net.predict_proba(X)`` (the baseline);
* ``laplace``: ``LaplaceClassifier(FrozenEstimator(net)).fit(X, y)`` then
  ``predict_proba(X)``, with sklaplace's pass cache on (default ``cache_bytes``) or off
  (``sklaplace.set_config(cache_bytes=0)``).

Memory is the peak resident set size (Linux ``VmHWM``, reset through
``/proc/self/clear_refs`` just before each call; ``ru_maxrss`` where that is unavailable)
minus the resident size just before the call: what the call itself added on top of the
interpreter, torch, the net and the data. Times are wall-clock seconds of one call.

**Covariance across rows** (issue 19; ``--cov``): a regression MLP 20-64-64-1
(``NeuralNetRegressor``, ``MSELoss``, trained 5 epochs on 5,000 rows of a smooth teacher),
``LaplaceRegressor(FrozenEstimator(net), prior_precision=1.0, sigma_noise=0.5)`` (the
default ``subset_of_weights="auto"``: every layer), fitted on those rows; then, on ``n``
new rows, in a fresh process each, ``predict(X, return_std=True)`` (the baseline),
``predict(X, return_cov=True)`` and ``sample_y(X, n_samples=10)``. Memory as above; the
target: the covariance call adds at most 4 times the size of the covariance it returns
(``n^2`` float64 numbers).

Run: ``python benchmarks/memory.py [--rows 10000 100000 1000000] [--dtype float32 float64]``
(writes ``benchmarks/RESULTS_memory.md``); ``python benchmarks/memory.py --cov [--cov-rows
1000 3000]`` runs only the covariance part and replaces its section of the file. One
worker: ``python benchmarks/memory.py --worker N CONFIG DTYPE`` (or ``--cov-worker N
CALL``) prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_FEATURES, N_CLASSES, HIDDEN, CHUNK, BATCH, THREADS = 20, 3, 32, 50_000, 1024, 1
OUT = Path(__file__).with_name("RESULTS_memory.md")
FINDINGS = "## Findings"
CONFIGS = ("map", "laplace", "laplace-cache0", "laplace-cache512")
MiB = 2**20


# ---------------------------------------------------------------- the task and the net
def make_rows(n: int, seed: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of the task, generated chunk by chunk into preallocated arrays."""
    teacher = np.random.default_rng(12345).normal(size=(N_FEATURES, N_CLASSES))
    X = np.empty((n, N_FEATURES), dtype=dtype)
    y = np.empty(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        block = rng.standard_normal((stop - start, N_FEATURES))
        logits = np.tanh(block) @ teacher + rng.gumbel(size=(stop - start, N_CLASSES))
        X[start:stop] = block
        y[start:stop] = logits.argmax(1)
    return X, y


def make_net():
    """The frozen net: the same weights in every process (seeded training on 5,000 rows)."""
    import torch
    from skorch import NeuralNetClassifier
    from torch import nn

    module = nn.Sequential(
        nn.Linear(N_FEATURES, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, N_CLASSES),
    )
    X, y = make_rows(5000, seed=0, dtype=np.float32)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        module,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.01,
        max_epochs=5,
        batch_size=BATCH,
        train_split=None,
        verbose=0,
    )
    return net.fit(X, y)


# ---------------------------------------------------------------- measuring one call
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak(resettable: bool) -> int:
    if resettable:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(fn):
    """``(result, seconds, peak MiB added above the RSS at the call)``."""
    import gc

    gc.collect()
    resettable = _reset_peak()
    before = _rss()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    return out, seconds, (_peak(resettable) - before) / MiB


def worker(n: int, config: str, dtype: str) -> dict:
    import torch
    from sklearn.frozen import FrozenEstimator

    import sklaplace
    from sklaplace import LaplaceClassifier
    from sklaplace._runtime.cache import get_cache

    torch.set_num_threads(THREADS)
    net = make_net()
    X, y = make_rows(n, seed=1, dtype=np.dtype(dtype))
    row = {
        "n": n,
        "config": config,
        "dtype": dtype,
        "data_mib": (X.nbytes + y.nbytes) / MiB,
        "threads": torch.get_num_threads(),
    }
    if config == "map":
        # skorch feeds X to the module as is: a float32 net needs float32 X (a copy of float64 X)
        proba, row["predict_s"], row["predict_mib"] = measure(
            lambda: net.predict_proba(X if X.dtype == np.float32 else X.astype(np.float32))
        )
    else:
        if config.startswith("laplace-cache"):  # laplace-cacheN: cache_bytes = N MiB
            sklaplace.set_config(cache_bytes=int(config.removeprefix("laplace-cache")) * MiB)
        row["cache_max_mib"] = sklaplace.get_config()["cache_bytes"] / MiB
        clf = LaplaceClassifier(FrozenEstimator(net), hessian_structure="kron")
        _, row["fit_s"], row["fit_mib"] = measure(lambda: clf.fit(X, y))
        proba, row["predict_s"], row["predict_mib"] = measure(lambda: clf.predict_proba(X))
        row["cache_mib"] = get_cache().nbytes / MiB
    row["output_mib"] = proba.nbytes / MiB
    row["rss_end_mib"] = _rss() / MiB
    return row


# ---------------------------------------------------------------- covariance across rows
COV_HIDDEN, COV_CALLS, COV_TARGET = 64, ("std", "cov", "sample"), 4.0
COV_SECTION = "## Covariance across rows"


def cov_worker(n: int, call: str) -> dict:
    """One call on ``n`` new rows of the regression task (see the module docstring)."""
    import torch
    from sklearn.frozen import FrozenEstimator
    from skorch import NeuralNetRegressor
    from torch import nn

    from sklaplace import LaplaceRegressor

    torch.set_num_threads(THREADS)
    X, _ = make_rows(5000 + n, seed=2, dtype=np.float32)
    teacher = np.random.default_rng(7).normal(size=N_FEATURES)
    y = np.sin(X @ teacher / 3) + 0.1 * np.random.default_rng(8).normal(size=len(X))
    y = y.astype(np.float32)[:, None]
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(N_FEATURES, COV_HIDDEN), nn.Tanh(),
                           nn.Linear(COV_HIDDEN, COV_HIDDEN), nn.Tanh(),
                           nn.Linear(COV_HIDDEN, 1))  # fmt: skip
    net = NeuralNetRegressor(module, optimizer=torch.optim.Adam, lr=0.01, max_epochs=5,
                             batch_size=BATCH, train_split=None, verbose=0)  # fmt: skip
    net.fit(X[:5000], y[:5000])
    reg = LaplaceRegressor(FrozenEstimator(net), prior_precision=1.0, sigma_noise=0.5)
    reg.fit(X[:5000], y[:5000, 0])
    X_new = X[5000:]
    reg.predict(X_new[:10], return_cov=True)  # one-time costs, not measured
    reg.sample_y(X_new[:10])
    fn = {
        "std": lambda: reg.predict(X_new, return_std=True),
        "cov": lambda: reg.predict(X_new, return_cov=True),
        "sample": lambda: reg.sample_y(X_new, n_samples=10),
    }[call]
    out, seconds, peak = measure(fn)
    return {
        "n": n,
        "call": call,
        "subset": reg.subset_of_weights_,
        "s": seconds,
        "peak_mib": peak,
        "cov_mib": 8 * n * n / MiB,
        "output_mib": sum(a.nbytes for a in (out if isinstance(out, tuple) else (out,))) / MiB,
        "threads": torch.get_num_threads(),
    }


def cov_section(rows_list: list[int], repeats: int) -> str:
    """The covariance part: one fresh process per call and repeat (largest peak kept)."""
    load = os.getloadavg()[0]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # freed blocks go back at once
    results = []
    for n in rows_list:
        for call in COV_CALLS:
            runs = []
            for _ in range(repeats):
                cmd = [sys.executable, __file__, "--cov-worker", str(n), call]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            row = dict(runs[0], s=min(r["s"] for r in runs),
                       peak_mib=max(r["peak_mib"] for r in runs))  # fmt: skip
            results.append(row)
            print(json.dumps(row), flush=True)
    lines = [
        COV_SECTION + " (issue 19)",
        "",
        f"`python benchmarks/memory.py --cov`; {platform.machine()}, {results[0]['threads']} "
        f"torch thread(s); load average {load:.1f} before / {os.getloadavg()[0]:.1f} after; "
        f"{repeats} fresh process(es) per row (largest peak, fastest time).",
        "",
        f"Regression MLP {N_FEATURES}-{COV_HIDDEN}-{COV_HIDDEN}-1, "
        "`LaplaceRegressor(FrozenEstimator(net), prior_precision=1.0, sigma_noise=0.5)` "
        f'(`subset_of_weights="auto"` resolved to `{results[0]["subset"]!r}`). *peak*: '
        "the resident memory the call added; *covariance*: the size of the `(n, n)` float64 "
        "covariance that `return_cov` returns (and `sample_y` builds); the baseline is "
        "`return_std` on the same rows, in the same run. Target: `return_cov` adds at most "
        f"{COV_TARGET:g} times its covariance.",
        "",
        "| rows | call | s | peak MiB | covariance MiB | peak / covariance | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = r["peak_mib"] / r["cov_mib"]
        target = r["call"] == "cov"
        lines.append(
            f"| {r['n']:,} | {r['call']} | {r['s']:.2f} | {r['peak_mib']:.1f} | "
            f"{r['cov_mib']:.1f} | {ratio:.2f} | {f'<= {COV_TARGET:g}' if target else '-'} | "
            f"{('yes' if ratio <= COV_TARGET else 'no') if target else '-'} |"
        )
    return "\n".join(lines) + "\n"


def write_cov(section: str, out: Path) -> None:
    """Replace the covariance section of the results file (or add it before the findings)."""
    old = out.read_text() if out.exists() else ""
    if COV_SECTION in old:
        start = old.index(COV_SECTION)
        rest = old[start + 1 :]
        end = start + 1 + rest.index("\n## ") + 1 if "\n## " in rest else len(old)
        out.write_text(old[:start] + section + "\n" + old[end:])
    elif FINDINGS in old:
        i = old.index(FINDINGS)
        out.write_text(old[:i] + section + "\n" + old[i:])
    else:
        out.write_text(old + "\n" + section)


# ---------------------------------------------------------------- the report
def run(n: int, config: str, dtype: str, repeats: int) -> dict:
    """The worker in ``repeats`` fresh processes: fastest time and largest peak of each call."""
    cmd = [sys.executable, __file__, "--worker", str(n), config, dtype]
    runs = []
    for _ in range(repeats):
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    row = runs[0]
    for key in row:
        if key.endswith("_s"):
            row[key] = min(r[key] for r in runs)
        elif key.endswith("_mib") and key != "data_mib":
            row[key] = max(r[key] for r in runs)
    return row


def _fmt(row, key, digits=1):
    return f"{row[key]:.{digits}f}" if key in row else "-"


def report(rows: list[dict], load: tuple[float, float]) -> str:
    import sklearn
    import skorch
    import torch

    lines = [
        "# Memory and time against the number of rows",
        "",
        f"`python benchmarks/memory.py`; {platform.machine()}, {rows[0]['threads']} torch "
        f"threads, torch {torch.__version__}, skorch {skorch.__version__}, scikit-learn "
        f"{sklearn.__version__}; load average {load[0]:.1f} before / {load[1]:.1f} after.",
        "",
        f"Frozen MLP {N_FEATURES}-{HIDDEN}-{HIDDEN}-{N_CLASSES} (skorch `NeuralNetClassifier`, "
        f"batch size {BATCH}); `LaplaceClassifier(FrozenEstimator(net))` with "
        '`hessian_structure="kron"`, `link_approx="probit"`; `fit(X, y)` then '
        "`predict_proba(X)` on the same rows. Each row of the table is one fresh process. "
        "*data* is the size of X and y; *peak* is the largest resident memory a call added "
        "above what the process held just before it (data included in that baseline); "
        "*output* is the size of the returned probabilities.",
        "",
        "| rows | X dtype | config | data MiB | fit s | fit peak MiB | predict s | "
        "predict peak MiB | output MiB | cache held MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['dtype']} | {r['config']} | {r['data_mib']:.1f} | "
            f"{_fmt(r, 'fit_s', 2)} | {_fmt(r, 'fit_mib')} | {r['predict_s']:.2f} | "
            f"{r['predict_mib']:.1f} | {r['output_mib']:.1f} | {_fmt(r, 'cache_mib')} |"
        )
    lines += ["", *growth(rows), "", *CONFIG_NOTES]
    return "\n".join(lines) + "\n"


CONFIG_NOTES = [
    "Configurations: `map` is the net's own `predict_proba` (on float64 data it needs "
    "`X.astype(np.float32)`, a copy, included in its peak); `laplace` uses the pass cache "
    "at its default bound; `laplace-cacheN` sets `sklaplace.set_config(cache_bytes=N MiB)` "
    "(`laplace-cache0`: cache off, streaming only; `laplace-cache512`: half the default, "
    "whose quarter (128 MiB) streams the 10^5-row pass).",
]


def growth(rows: list[dict]) -> list[str]:
    """Per configuration: how time and added memory grow from the smallest to the largest n."""
    out = [
        "Growth from the smallest to the largest number of rows (time ratio against the rows "
        "ratio: 1.0 is linear; memory: extra MiB a call added at the largest n over the "
        "smallest, against the extra MiB of the data and of the returned array):",
        "",
        "| X dtype | config | rows ratio | fit time ratio | predict time ratio | "
        "fit peak +MiB | predict peak +MiB | data +MiB | output +MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["dtype"], r["config"]) for r in rows}, key=str)
    for dtype, config in keys:
        sel = sorted((r for r in rows if (r["dtype"], r["config"]) == (dtype, config)),
                     key=lambda r: r["n"])  # fmt: skip
        if len(sel) < 2:
            continue
        lo, hi = sel[0], sel[-1]
        ratio = hi["n"] / lo["n"]

        def rel(key, lo=lo, hi=hi, ratio=ratio):
            return f"{hi[key] / lo[key] / ratio:.2f}" if key in lo else "-"

        def diff(key, lo=lo, hi=hi):
            return f"{hi[key] - lo[key]:+.1f}" if key in lo else "-"

        out.append(
            f"| {dtype} | {config} | {ratio:,.0f} | {rel('fit_s')} | {rel('predict_s')} | "
            f"{diff('fit_mib')} | {diff('predict_mib')} | {diff('data_mib')} | "
            f"{diff('output_mib')} |"
        )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=3, metavar=("N", "CONFIG", "DTYPE"))
    parser.add_argument("--rows", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--cov", action="store_true", help="only the covariance part")
    parser.add_argument("--cov-rows", nargs="+", type=int, default=[1000, 3000])
    parser.add_argument("--cov-worker", nargs=2, metavar=("N", "CALL"))
    args = parser.parse_args(argv)
    if args.worker:
        n, config, dtype = args.worker
        print(json.dumps(worker(int(n), config, dtype)))
        return
    if args.cov_worker:
        n, call = args.cov_worker
        print(json.dumps(cov_worker(int(n), call)))
        return
    if args.cov:
        section = cov_section(args.cov_rows, 1)
        print(section)
        write_cov(section, args.out)
        return
    load_before = os.getloadavg()[0]
    rows = []
    for dtype in args.dtype:
        for n in args.rows:
            for config in args.configs:
                rows.append(run(n, config, dtype, args.repeats))
                print(json.dumps(rows[-1]), flush=True)
    text = report(rows, (load_before, os.getloadavg()[0]))
    # the hand-written findings below the tables survive a re-run (re-read them, though)
    old = args.out.read_text() if args.out.exists() else ""
    if FINDINGS in old:
        text += "\n" + old[old.index(FINDINGS) :]
    args.out.write_text(text)
    print(text)
    write_cov(cov_section(args.cov_rows, 1), args.out)


if __name__ == "__main__":
    main()
