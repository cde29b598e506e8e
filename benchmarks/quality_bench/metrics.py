"""Metrics of one predictor on one task's test and OOD rows, all in float64.

Classification: accuracy; log loss, the mean of ``-log p(y)`` from the predictor's float64
log-probabilities with p clipped below at float64's eps (as ``sklearn.metrics.log_loss``
clips float64 input; skorch's float32 probabilities would clip at float32's); ECE (15
equal-width bins, ``sklaplace.metrics``); Brier score; and per OOD set the AUROC of the
max-probability separating the test rows (positives) from that set, and the mean
max-probability on it. ``AUROC held-out`` is the held-out-class set; ``AUROC scaled`` the
mean over the x2, x5 and x10 scaled inputs.

Regression (original units of y): RMSE, Gaussian NLL, coverage and mean width of the
predictor's 90% interval, and std growth (mean predictive std on inputs away from the data
over that on the test rows).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, roc_auc_score

from sklaplace.metrics import (
    expected_calibration_error,
    gaussian_nll,
    interval_coverage,
    interval_width,
)

from .tasks import SCALES

CLF_METRICS = ("accuracy", "log_loss", "ECE", "Brier", "AUROC held-out", "AUROC scaled")
REG_METRICS = ("RMSE", "NLL", "coverage90", "width90", "std_growth")
LOG_EPS = np.log(np.finfo(np.float64).eps)


def clf_metrics(predictor, task) -> dict:
    sets = {"test": task.X_test, **task.ood}
    log_p = np.asarray(predictor.log_proba(np.concatenate(list(sets.values()))), np.float64)
    parts, start = {}, 0
    for name, X in sets.items():
        parts[name], start = log_p[start : start + len(X)], start + len(X)
    # an average of probabilities (the ensemble) can exceed 1 by a rounding error, which
    # the metrics refuse: log p in [log eps, 0]
    lp, y = np.clip(parts.pop("test"), LOG_EPS, 0.0), task.y_test
    p = np.exp(lp)
    labels = np.arange(task.n_classes)
    row = {
        "accuracy": float(np.mean(lp.argmax(1) == y)),
        "log_loss": float(-np.mean(lp[np.arange(len(y)), y])),
        "ECE": expected_calibration_error(y, p, labels=labels),
        "Brier": float(brier_score_loss(y, p, labels=labels)),
    }
    conf_in = p.max(1)
    for name, lp_out in parts.items():
        conf_out = np.exp(lp_out.max(1))
        truth = np.r_[np.ones(len(conf_in)), np.zeros(len(conf_out))]
        row[f"AUROC[{name}]"] = float(roc_auc_score(truth, np.r_[conf_in, conf_out]))
        row[f"conf[{name}]"] = float(conf_out.mean())
    if "AUROC[held-out classes]" in row:
        row["AUROC held-out"] = row["AUROC[held-out classes]"]
    row["AUROC scaled"] = float(np.mean([row[f"AUROC[scaled x{s}]"] for s in SCALES]))
    return row


def reg_metrics(predictor, task) -> dict:
    def original(*arrays):
        return [np.ravel(a).astype(np.float64) * task.y_scale for a in arrays]

    mean, std = predictor.mean_std(task.X_test)
    mean, std = original(mean, std)
    mean = mean + task.y_shift
    lo, hi = original(*predictor.interval(task.X_test, 0.9))
    lo, hi = lo + task.y_shift, hi + task.y_shift
    (std_far,) = original(predictor.mean_std(task.X_far)[1])
    y = task.y_test
    # (a conformal interval is infinite when too few rows calibrate it)
    coverage, width = interval_coverage(y, lo, hi), interval_width(lo, hi)
    return {
        "RMSE": float(np.sqrt(np.mean((mean - y) ** 2))),
        "NLL": float(gaussian_nll(y, mean, std)),
        "coverage90": float(coverage),
        "width90": float(width),
        "std_growth": float(np.mean(std_far) / np.mean(std)),
    }
