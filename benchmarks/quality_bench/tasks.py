"""The tasks: small real and generated tabular data sets, split and standardised.

No downloads: every data set is bundled with scikit-learn or generated. Each task is split
60/20/20 into training, validation and test rows; the workflows decide who sees what
(:mod:`quality_bench.workflows`). Inputs are standardised with the mean and std of the
development rows (training + validation), and regression targets likewise (metrics are
computed back in the original units).

Classification tasks carry out-of-distribution (OOD) row sets: classes held out of the
whole task (wine: class 2; digits: 5-9, the net learns 0-4), the test rows scaled by 2, 5
and 10, and the test rows plus N(0, 1) noise on every (standardised) feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_wine,
    make_classification,
    make_friedman1,
    make_moons,
)
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

CLF_TASKS = ("breast_cancer", "wine", "digits", "make_classification", "make_moons")
REG_TASKS = ("diabetes", "heteroscedastic", "toy_cubic", "friedman1")
SCALES = (2, 5, 10)  # the scaled-input shifts


@dataclass
class Task:
    """Rows of one task at one seed (inputs float32, as the nets take them)."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray  # classification: labels; regression: original units (float64)
    ood: dict = field(default_factory=dict)  # classification: OOD name -> rows
    X_far: np.ndarray | None = None  # regression: inputs away from the data
    y_shift: float = 0.0  # regression: y = y_std * y_scale + y_shift
    y_scale: float = 1.0

    @property
    def X_dev(self) -> np.ndarray:
        """The development rows (training + validation): what workflows (a) and (b) fit on."""
        return np.concatenate([self.X_train, self.X_val])

    @property
    def y_dev(self) -> np.ndarray:
        return np.concatenate([self.y_train, self.y_val])

    @property
    def n_classes(self) -> int:
        return int(np.max(self.y_train)) + 1


def _three_way(X, y, seed, stratify=True):
    """60/20/20 training, validation and test rows."""
    X_tr, X_rest, y_tr, y_rest = train_test_split(
        X, y, test_size=0.4, random_state=seed, stratify=y if stratify else None
    )
    X_va, X_te, y_va, y_te = train_test_split(
        X_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest if stratify else None
    )
    return X_tr, y_tr, X_va, y_va, X_te, y_te


def _f32(A) -> np.ndarray:
    return np.asarray(A, dtype=np.float32)


# ---------------------------------------------------------------- classification
def clf_task(name: str, seed: int) -> Task:
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
        raise ValueError(f"unknown classification task {name!r}")
    X_out = None
    if held_out is not None:
        X_out, X, y = X[held_out], X[~held_out], y[~held_out]
    X_tr, y_tr, X_va, y_va, X_te, y_te = _three_way(X, y, seed)
    scaler = StandardScaler().fit(np.concatenate([X_tr, X_va]))

    def f(A):
        return _f32(scaler.transform(A))

    task = Task(name, f(X_tr), y_tr, f(X_va), y_va, f(X_te), y_te)
    if X_out is not None:
        task.ood["held-out classes"] = f(X_out)
    for factor in SCALES:
        task.ood[f"scaled x{factor}"] = task.X_test * factor
    noise = np.random.default_rng(seed).normal(size=task.X_test.shape)
    task.ood["noise"] = task.X_test + _f32(noise)
    return task


# ---------------------------------------------------------------- regression
def _far(rng, low, high, n=200):
    """1-D inputs with |x| in [low, high] (both sides)."""
    return rng.uniform(low, high, size=(n, 1)) * rng.choice([-1, 1], size=(n, 1))


def reg_task(name: str, seed: int) -> Task:
    """Splits of one regression task; targets standardised for training, test y kept raw."""
    rng = np.random.default_rng(seed)
    scale_X = True
    if name == "diabetes":
        X, y = load_diabetes(return_X_y=True)
        X_tr, y_tr, X_va, y_va, X_te, y_te = _three_way(X, y, seed, stratify=False)
    elif name == "friedman1":
        X, y = make_friedman1(n_samples=600, noise=1.0, random_state=seed)
        X_tr, y_tr, X_va, y_va, X_te, y_te = _three_way(X, y, seed, stratify=False)
    elif name == "heteroscedastic":
        x = rng.uniform(-3, 3, size=500)
        y = np.sin(2 * x) + (0.1 + 0.3 * np.abs(x)) * rng.normal(size=500)
        X_tr, y_tr, X_va, y_va, X_te, y_te = _three_way(x[:, None], y, seed, stratify=False)
        X_far, scale_X = _far(rng, 4.5, 6), False
    elif name == "toy_cubic":
        # Ritter et al. (2018): 20 training points, x ~ U[-4, 4], y = x^3 + N(0, 3^2)
        def draw(n):
            x = rng.uniform(-4, 4, size=n)
            return x[:, None], x**3 + 3 * rng.normal(size=n)

        (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = draw(20), draw(20), draw(200)
        X_far, scale_X = _far(rng, 5, 6), False
    else:
        raise ValueError(f"unknown regression task {name!r}")
    if scale_X:  # the tabular tasks: standardise; "far" = the test rows times 5
        scaler = StandardScaler().fit(np.concatenate([X_tr, X_va]))
        X_tr, X_va, X_te = (scaler.transform(A) for A in (X_tr, X_va, X_te))
        X_far = X_te * 5
    y_dev = np.concatenate([y_tr, y_va])
    shift, scale = float(np.mean(y_dev)), float(np.std(y_dev))
    return Task(
        name,
        _f32(X_tr),
        _f32((y_tr - shift) / scale),
        _f32(X_va),
        _f32((y_va - shift) / scale),
        _f32(X_te),
        np.asarray(y_te, dtype=np.float64),
        X_far=_f32(X_far),
        y_shift=shift,
        y_scale=scale,
    )
