"""Which rows tune the hyper-parameters: rows the net never trained on.

A hyper-parameter in mode ``"holdout"`` is tuned on the log-likelihood of rows the net did
not fit; rows it memorised show no over-confidence and would send the prior precision to
the top of its range (the net's own predictions). In order:

1. ``X_val``/``y_val`` given to ``fit``: those rows (the curvature uses all of X).
2. An unfitted net, trained in ``fit``: its own ``train_split`` validation rows (recorded
   while it trains), or with ``train_split=None`` a ``validation_fraction`` of the rows
   held out of its training. Never used for the curvature.
3. A fitted net (``FrozenEstimator``) given the rows it was trained on: the rows its own
   ``train_split`` held out, re-derived by calling the split on the same rows and
   **verified**: the net's loss on them, batch by batch, must reproduce the validation
   losses its history recorded in one of its epochs. Used only when that holds.
4. None: the estimator warns, saying why and how to give rows.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils import check_random_state

from .._runtime import skorch as _skorch
from .._runtime.passes import NetView, callers_autocast
from .._runtime.warnings import ignoring
from ..tuning.conformal import rows_needed

__all__ = ["TuningRows", "recover_split", "split_off", "train_net"]

# Seeded training sets torch's global generator, which every thread shares: two seeded
# trainings at once in one process (threads: joblib's threading backend, an ensemble's
# members) would draw each other's numbers. One at a time, so that a seed gives its net.
_SEEDED_TRAINING = threading.RLock()

# Held-out rows scored when tuning (a random subset of them when there are more).
MAX_TUNING_ROWS = 10_000


@dataclass
class TuningRows:
    """The rows that tune, and the rows of X that make the curvature."""

    X: object = None  # the tuning rows (any input the net accepts), or None
    y: np.ndarray | None = None
    w: np.ndarray | None = None  # their sample weights, or None
    curvature_rows: np.ndarray | None = None  # indices into X; None: all rows
    indices: np.ndarray | None = None  # indices into X of the tuning rows (if from X)
    source: str | None = None  # "X_val", "train_split", "validation_fraction" or None
    reason: str | None = None  # why there are none


def complement(rows: np.ndarray, n: int) -> np.ndarray:
    """The indices in range(n) that are not in ``rows`` (sorted)."""
    keep = np.ones(n, dtype=bool)
    keep[rows] = False
    return np.flatnonzero(keep)


def take(X, rows):
    """Rows of any input skorch accepts (arrays, frames, sparse matrices, dicts)."""
    if isinstance(X, dict):
        return {k: take(v, rows) for k, v in X.items()}
    if hasattr(X, "iloc"):
        return X.iloc[rows]
    return X[rows]


def from_indices(X, y, valid: np.ndarray, source: str, random_state, w=None) -> TuningRows:
    """Tuning rows that are rows of X (at most ``MAX_TUNING_ROWS``, a random subset)."""
    tune = valid
    if len(valid) > MAX_TUNING_ROWS:
        rng = check_random_state(random_state)
        tune = np.sort(rng.choice(valid, MAX_TUNING_ROWS, replace=False))
    return TuningRows(
        X=take(X, tune),
        y=y[tune],
        w=None if w is None else w[tune],
        curvature_rows=complement(valid, len(y)),
        indices=valid,
        source=source,
    )


def split_calibration(tuning: TuningRows, tunes: bool, random_state):
    """``(rows that tune, (X_cal, y_cal))``: the conformal guarantee needs calibration rows
    that tuned nothing, so when hyper-parameters are tuned too the unseen rows are halved;
    otherwise they all calibrate. One unseen row cannot be halved: it tunes, and the
    calibration is None (see ``too_few_to_calibrate``)."""
    if not tunes:
        return TuningRows(), (tuning.X, tuning.y)
    if len(tuning.y) < 2:
        return tuning, None
    tune, cal = halves(len(tuning.y), random_state)
    rows = TuningRows(
        X=take(tuning.X, tune),
        y=tuning.y[tune],
        w=None if tuning.w is None else tuning.w[tune],
    )
    return rows, (take(tuning.X, cal), tuning.y[cal])


def too_few_to_calibrate(tuning: TuningRows) -> str:
    """Why ``split_calibration`` left no calibration rows, and how many it needs."""
    n, ninety, ninety_five = len(tuning.y), rows_needed(0.9), rows_needed(0.95)
    return (
        f"{n} unseen row ({tuning.source}) is too few for a conformal interval: split "
        "conformal calibrates on rows that tuned nothing, so fit keeps half of the unseen "
        "rows for the calibration when hyper-parameters are tuned on them ('holdout'), and "
        f"{n} row leaves none. A 90% interval needs at least {ninety} calibration rows (95%: "
        f"{ninety_five}), so about {2 * ninety} unseen rows; with fewer, the conformal "
        "interval is infinite. Pass more unseen rows (X_val and y_val), give the "
        "hyper-parameters as numbers (then every unseen row calibrates), or use "
        "interval='gaussian'"
    )


def curvature_part(X, y, w, rows):
    """``(X, y, w)`` restricted to the curvature's rows (all when ``rows`` is None), at
    most ``MAX_TUNING_ROWS`` of them (a random subset, seeded): the rows of the
    leave-one-out noise estimate when there are no unseen rows."""
    if rows is not None:
        X, y, w = take(X, rows), y[rows], None if w is None else w[rows]
    n = len(y)
    if n > MAX_TUNING_ROWS:
        rows = np.sort(np.random.default_rng(0).choice(n, MAX_TUNING_ROWS, replace=False))
        X, y, w = take(X, rows), y[rows], None if w is None else w[rows]
    return X, y, w


def halves(n: int, random_state) -> tuple[np.ndarray, np.ndarray]:
    """A random split of ``range(n)`` into two sorted halves (the first the larger)."""
    order = check_random_state(random_state).permutation(n)
    first = (n + 1) // 2
    return np.sort(order[:first]), np.sort(order[first:])


def split_off(y: np.ndarray, fraction: float, stratify: bool, random_state) -> np.ndarray:
    """Indices of ``fraction`` of the rows (stratified by ``y`` when asked and possible)."""
    n = len(y)
    n_valid = int(np.ceil(fraction * n))
    if n_valid < 1 or n - n_valid < 1:
        raise ValueError(
            f"Tuning on held-out rows ('holdout') with validation_fraction={fraction} leaves "
            f"no rows for tuning or for the curvature out of {n} sample"
            f"{'s' if n != 1 else ''} (n_samples={n}); pass more rows, pass X_val and "
            "y_val, change validation_fraction, or give the hyper-parameters as numbers."
        )
    rng = check_random_state(random_state)
    if stratify:
        classes, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and n_valid >= len(classes):
            # each class gives its share of the n_valid rows (largest remainders round),
            # drawn without replacement: O(n) memory, no n-sized permutation per class
            share = counts * n_valid / n
            k = np.floor(share).astype(int)
            k[np.argsort(k - share)[: n_valid - k.sum()]] += 1
            parts = [
                rng.choice(np.flatnonzero(y == c), kc, replace=False)
                for c, kc in zip(classes, k, strict=True)
            ]
            return np.sort(np.concatenate(parts))
    return np.sort(rng.choice(n, n_valid, replace=False))


def train_net(
    net,
    X,
    y,
    *,
    hold_out: bool,
    fraction: float,
    stratify: bool,
    random_state,
    n_outputs,
    seed=None,
):
    """Clone and train an unfitted net; with ``hold_out``, keep rows it never trains on.

    ``seed``: the torch seed of its initialisation and training (None: drawn from
    ``random_state``, or torch's global generator when that is None too).

    Returns ``(fitted net, valid indices or None, source)``.
    """
    net = clone(net)
    train_rows, recorder, valid, source = slice(None), None, None, None
    if hold_out:
        if net.train_split:
            recorder = _skorch.RecordingSplit(net.train_split)
            net.set_params(train_split=recorder)
            source = "train_split"
        else:
            valid = split_off(y, fraction, stratify, random_state)
            train_rows = complement(valid, len(y))
            source = "validation_fraction"
    own_seed = seed is not None  # an ensemble member's own seed: its own initial weights
    if seed is None and random_state is not None:
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    # with a seed, training leaves the global torch RNG as it was; without, it uses it
    seeded = _SEEDED_TRAINING if seed is not None else nullcontext()
    with seeded, torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        net.initialize()
        if own_seed and isinstance(net.module, torch.nn.Module):
            reinitialize(net.module_)
        X_fit = X if isinstance(train_rows, slice) else take(X, train_rows)
        X_fit = _skorch.training_input(net, X_fit)
        try:
            with callers_autocast():  # the caller's mixed precision, if any, trains the net
                net.fit(X_fit, y[train_rows])
        except IndexError as exc:  # torch's "Target 3 is out of bounds." from the loss
            if "out of bounds" not in str(exc):
                raise
            raise ValueError(
                f"Training the {type(net).__name__} failed ({exc}): its output layer has "
                f"fewer units than y has classes ({n_outputs}). Give the output layer one "
                "unit per class (for example through a module__ parameter of the net)."
            ) from exc
    if recorder is not None:
        valid = recorder.valid_indices
        net.set_params(train_split=recorder.split)
        if valid is None:
            raise ValueError(
                "The net's train_split "
                f"({recorder.split!r}) does not say which rows it held out, so they cannot "
                "tune the hyper-parameters; use skorch's ValidSplit, train_split=None (then "
                "sklaplace holds out validation_fraction of the rows), or pass X_val and "
                "y_val."
            )
    return net, valid, source


def reinitialize(module: torch.nn.Module) -> None:
    """Draw new initial weights for a module given to skorch as an instance (a clone
    copies its weights, so copies of one net would all start from them): every submodule
    with ``reset_parameters`` resets them, from the global torch generator."""
    for sub in module.modules():
        if callable(getattr(sub, "reset_parameters", None)):
            sub.reset_parameters()


# ---------------------------------------------------------------- a fitted net's split
def recover_split(net, X, y) -> tuple[np.ndarray | None, str | None]:
    """The rows a fitted net's ``train_split`` held out of ``(X, y)``, verified.

    Returns ``(indices, None)`` when the net's loss on the re-derived rows reproduces, batch
    by batch, the validation losses its history recorded in one of its epochs (within a
    relative ``sqrt(eps)`` of the net's dtype: round-off of a re-run differs by a few
    ``eps``, another row by far more); else ``(None, reason)``.
    """
    split = net.train_split
    if not split:
        return None, "the net was trained with train_split=None, so it held out no rows"
    recorded = _recorded_valid_batches(net)
    if not recorded:
        return None, "the net's history records no validation loss (valid_loss)"
    try:
        _, ds_valid = split(net.get_dataset(X, y), y)
    except Exception as exc:
        return None, f"calling the net's train_split on these rows failed ({exc})"
    valid = getattr(ds_valid, "indices", None)
    if valid is None:
        return None, f"its train_split ({split!r}) does not say which rows it held out"
    valid = np.asarray(valid)
    sizes = [s for s, _ in recorded[-1]]
    if len(valid) != sum(sizes):
        return None, (
            f"its train_split holds out {len(valid)} of these rows, but the net validated on "
            f"{sum(sizes)} rows while training: fit did not receive the rows the net was "
            "trained on"
        )
    got = _batch_losses(net, X, y, valid, sizes[0])
    if _reproduces(net, recorded, got):
        return np.sort(valid), None
    if y.ndim == 2 and y.shape[1] == 1:
        with ignoring(UserWarning):  # torch's warning about the broadcast
            flat = _batch_losses(net, X, y[:, 0], valid, sizes[0])
        if _reproduces(net, recorded, flat):
            raise ValueError(
                "The net was trained on a 1-D y: its output has shape (n, 1) and its "
                "targets had shape (n,), so its loss broadcast them to (n, n) and compared "
                "every prediction with every target (torch warned: 'Using a target size "
                "that is different to the input size'); such a net learns about the mean of "
                "y, not y. Its validation loss is reproduced only with the targets "
                "flattened. Train the net on y.reshape(-1, 1) (one column per output), then "
                "wrap it and fit again."
            )
    last = np.average([v for _, v in recorded[-1]], weights=sizes)
    now = np.average([v for _, v in got], weights=[s for s, _ in got])
    random = (
        getattr(split, "random_state", 0) is None
        and not float(getattr(split, "cv", 5)).is_integer()
    )
    return None, (
        f"the net's loss on the rows its train_split holds out of these rows ({now:.6g}) is "
        f"not the validation loss its history recorded ({last:.6g}): "
        + (
            "its split is random (a float cv with random_state=None), so it holds out "
            "other rows at every call"
            if random
            else "fit did not receive the rows (and targets) the net was trained on"
        )
    )


def n_net_outputs(net, X) -> int:
    """The number of outputs of the net (its output on the first row of X)."""
    view = NetView(net, 1)
    with torch.no_grad():
        Xi, _ = next(iter(view.batches(take(X, np.arange(1)))))
        out = view.forward(Xi)
    out = out[0] if isinstance(out, tuple | list) else out
    return int(out.shape[-1]) if out.dim() > 1 else 1


def _reproduces(net, recorded, got) -> bool:
    """Whether the batch losses ``got`` are those of one of the recorded epochs."""
    rtol = float(np.sqrt(torch.finfo(_skorch.net_dtype(net)).eps))
    for epoch in reversed(recorded):
        if [s for s, _ in epoch] != [s for s, _ in got]:
            continue
        want = np.array([v for _, v in epoch])
        if np.allclose([v for _, v in got], want, rtol=rtol, atol=rtol * 1e-3):
            return True
    return False


def _recorded_valid_batches(net) -> list[list[tuple[int, float]]]:
    """Per epoch, the (batch size, mean loss) of each validation batch in the history."""
    epochs = []
    for epoch in net.history:
        batches = [
            (int(b["valid_batch_size"]), float(b["valid_loss"]))
            for b in epoch.get("batches", [])
            if "valid_loss" in b and "valid_batch_size" in b
        ]
        if batches:
            epochs.append(batches)
    return epochs


def _batch_losses(net, X, y, rows, batch_size) -> list[tuple[int, float]]:
    """The net's criterion on ``rows``, batch by batch as its validation ran."""
    view = NetView(net, batch_size)
    out = []
    with torch.no_grad():
        for Xi, yi in view.batches(X, y, rows):
            loss = net.get_loss(view.forward(Xi), yi, X=Xi, training=False)
            out.append((len(yi), float(loss)))
    return out
