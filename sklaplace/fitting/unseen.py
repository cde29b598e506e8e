"""Fit's second step: the trained net, and the rows it never trained on.

Which rows those are, in order of preference, is told in :mod:`sklaplace.fitting.holdout`
(which also trains an unfitted net and recovers a fitted net's split); this module decides
between them from the estimator's plan (:class:`sklaplace.fitting.steps.FitPlan`) and says
so when there are none.
"""

from __future__ import annotations

import numpy as np

from .._runtime import skorch as _skorch
from .._runtime.warnings import warn
from ..tuning.resolve import CALIBRATION_MODES
from . import holdout

__all__ = ["net_and_unseen_rows"]


def net_and_unseen_rows(plan, data) -> tuple[object, holdout.TuningRows]:
    """The trained net and the rows that tune (``plan``: a
    :class:`~sklaplace.fitting.steps.FitPlan`, ``data`` its
    :class:`~sklaplace.fitting.steps.FitData`)."""
    X, y, X_val = data.X, data.y, data.X_val
    needs = plan.tunes or plan.calibrates
    given = X_val is not None
    est = plan.model.net
    if plan.model.frozen:
        net = est
        _skorch.check_fitted_net(net)
        if given or not needs:
            source = "X_val" if given else None
            return net, holdout.TuningRows(X=X_val, y=data.y_val, w=data.w_val, source=source)
        try:
            valid, reason = holdout.recover_split(net, X, y)
        except IndexError as exc:  # torch's "Target 2 is out of bounds." from the loss
            if "out of bounds" not in str(exc):
                raise
            raise ValueError(_missing_outputs(net, X, y, exc, plan.classes)) from exc
        if valid is not None:
            rows = holdout.from_indices(X, y, valid, "train_split", plan.random_state, data.w)
            return net, rows
        if plan.holdout_params or plan.head_mode in CALIBRATION_MODES[:-1]:
            # (a calibration alone, or calibration="auto", falls back without a word)
            _warn_no_rows(plan, reason)
        return net, holdout.TuningRows(reason=reason)
    if getattr(est, "initialized_", False) and len(getattr(est, "history_", [])):
        name = plan.estimator_name
        warn(
            f"The {type(est).__name__} given to {name} is already fitted; "
            "fit clones it and trains the clone from scratch. To keep the trained net, "
            f"wrap the fitted model: {name}(FrozenEstimator(model)) (the "
            "net, or the Pipeline that ends in it)."
        )
    hold_out = needs and not given
    if hold_out and not est.train_split and plan.auto_head_only:
        # calibration="auto" uses unseen rows where there are some; it does not take
        # rows out of the net's training for itself (the net's own split holds them out)
        hold_out = False
    net, valid, source = holdout.train_net(
        est,
        X,
        y,
        hold_out=hold_out,
        fraction=plan.validation_fraction,
        stratify=plan.likelihood.is_classifier,
        random_state=plan.random_state,
        n_outputs=plan.n_outputs,
        seed=plan.net_seed,
    )
    if given:
        return net, holdout.TuningRows(X=X_val, y=data.y_val, w=data.w_val, source="X_val")
    if valid is None:
        return net, holdout.TuningRows()
    return net, holdout.from_indices(X, y, valid, source, plan.random_state, data.w)


def _missing_outputs(net, X, y, exc, classes) -> str:
    """The message for targets the frozen net has no output for (classes)."""
    n_out = holdout.n_net_outputs(net, X)
    codes = np.unique(np.asarray(y))
    missing = codes[codes >= n_out].astype(np.int64)
    labels = (classes[missing] if classes is not None else missing).tolist()
    n = len(classes) if classes is not None else int(codes.max()) + 1
    return (
        f"y has labels the net has no output for: {labels[:10]} ({exc}). The net was "
        f"trained with fewer classes: it has {n_out} output(s), and y has {n} classes. "
        "Fit on rows whose labels the net was trained with, or train the net with one "
        "output per class (for example through a module__ parameter of the net)."
    )


def _warn_no_rows(plan, reason: str) -> None:
    likelihood = plan.likelihood
    tuned = [p for p in plan.holdout_params if p != "sigma_noise" or likelihood.has_noise]
    modes = [f"{p}='holdout'" for p in tuned if p != "logit_temperature"]
    if plan.head_mode in CALIBRATION_MODES[:-1]:
        modes.append(f"calibration={plan.head_mode!r}")
    if not modes:  # sigma_noise alone, for a net that predicts its noise: nothing to tune
        return
    modes = ", ".join(modes)
    warn(
        f"No rows the net has not seen, so {modes} cannot be tuned: {reason}. "
        f"{likelihood.without_heldout} Pass rows the net was not trained on with "
        "fit(X, y, X_val=..., y_val=...), or train the net with a train_split (skorch's "
        "default ValidSplit) and fit on the rows it was trained on.",
    )
