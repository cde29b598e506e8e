"""The regression mixture's split conformal calibration, on the members' shared rows.

Every member of a ``LaplaceEnsembleRegressor`` holds out the same rows (one integer
``random_state``), halves them the same way and keeps the calibration half out of its
tuning; the mixture's normalised scores ``|y - mean| / std`` are computed on that half
with the mixture's mean and std at the tuned hyper-parameters (the guarantee of
:mod:`sklaplace.tuning.conformal` then holds for the mixture). Members whose calibration
rows differ (frozen nets each with its own validation rows) leave the mixture without
conformal calibration: the Gaussian interval of its moments, with a warning ("auto"), or
an error ("conformal").
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from .. import mixture, prediction
from .._runtime.warnings import warn
from ..fitting import steps
from ..tuning.conformal import ConformalScores

__all__ = ["calibrate"]


def calibrate(members, interval: str, predictive: str, n_samples: int):
    """``(interval_, ConformalScores or None)`` of the mixture of fitted ``members``
    (each fitted with ``_keep_calibration_rows``; their rows are dropped here)."""
    rows = [m.__dict__.pop("_calibration_rows", None) for m in members]
    own = [m.__dict__.pop("_calibration_moments", None) for m in members]
    if any(m.interval_ != "conformal" or r is None for m, r in zip(members, rows, strict=True)):
        return "gaussian", None  # (each member said why, or refused interval="conformal")
    X_cal, y_cal = rows[0]
    if not all(_same(r[0], X_cal) and _same(r[1], y_cal) for r in rows[1:]):
        reason = (
            "the members calibrated their intervals on different rows (each frozen net's own "
            "validation rows?), so no rows are unseen by the whole mixture"
        )
        fix = "Pass rows no member trained on with fit(X, y, X_val=..., y_val=...)"
        if interval == "conformal":
            raise ValueError(f"interval='conformal': {reason}. {fix}, or use interval='gaussian'.")
        warn(
            f"{reason}. predict_interval uses the Gaussian interval (interval_='gaussian'). {fix}."
        )
        return "gaussian", None
    moments = [
        _moments(m, kept, X_cal, predictive, n_samples)
        for m, kept in zip(members, own, strict=True)
    ]
    mean, var = mixture.moments([mm[0] for mm in moments], [mm[1] for mm in moments])
    y_cal = np.asarray(y_cal, dtype=np.float64).reshape(mean.shape)
    for m, (m_mean, m_var) in zip(members, moments, strict=True):
        # each member's own scores at its hyper-parameters now (the mixture step may have
        # moved them since its fit calibrated them): its predict_interval stays calibrated
        m._fitted.conformal = ConformalScores(y_cal.reshape(m_mean.shape), m_mean, np.sqrt(m_var))
    return "conformal", ConformalScores(y_cal, mean, np.sqrt(var))


def _moments(member, kept, X_cal, predictive: str, n_samples: int):
    """A member's predictive mean and variance of the calibration rows at its
    hyper-parameters now: the ones its own fit computed while they hold (the mixture step
    not kept: the same rows, state, predictive, draws and seed), else computed again.
    ``kept``: ``(hyper, mean, var)`` from the member's fit, or None."""
    if kept is not None and kept[0] is member._fitted.hyper:
        return kept[1], kept[2]
    return prediction.y_moments(
        member._fitted,
        X_cal,
        member._fitted.hyper,
        predictive=predictive,
        n_samples=n_samples,
        seed=steps.seed(member.random_state),
    )


def _same(a, b) -> bool:
    """Whether two net-ready inputs (arrays, sparse matrices, dicts of arrays) are equal."""
    if a is b:
        return True
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_same(a[k], b[k]) for k in a)
        )
    if scipy.sparse.issparse(a) or scipy.sparse.issparse(b):
        return (
            scipy.sparse.issparse(a)
            and scipy.sparse.issparse(b)
            and a.shape == b.shape
            and (a != b).nnz == 0
        )
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return False
