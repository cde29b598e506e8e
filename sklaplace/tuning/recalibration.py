"""The recalibration head: an affine map of the logits, tuned with the prior on unseen rows.

The head maps the GLM logits ``f ~ N(mean, Sigma)`` to ``a f + b ~ N(a mean + b, a^2
Sigma)`` before the link (:func:`sklaplace.links.affine`): ``a = 1 / T`` with ``b = 0``
is temperature scaling; with a bias per logit it is bias-corrected temperature scaling
(Alexandari et al. 2020), and on one logit Platt scaling. See :ref:`calibration-head`.

Pure functions of the held-out rows' moments and log-likelihood
(:class:`~sklaplace.tuning.resolve.HeldOutRows`); nothing here knows the likelihood.

* :func:`fit_head`: the head at fixed moments, maximising the held-out log-likelihood
  plus a weak Gaussian prior on ``log a`` and ``b`` (shrinkage towards the identity map):
  on many rows the log-likelihood dominates and the fit is the classical calibrator's; on
  a few rows, or rows the net gets all right (which ask for ever sharper probabilities),
  the prior keeps ``a`` and ``b`` near the identity instead of at the edge of a range.
* :func:`tune`: the prior precision and the head jointly (the head profiled out at each
  prior precision of the grid).
* :func:`choose`: "auto", the candidate (no head, temperature, temperature and biases)
  whose held-out log-likelihood, cross-fitted over folds of the unseen rows, is best,
  by the one-standard-error rule: the simplest candidate within one standard error of the
  best, so that a head appears only where it helps on rows it was not tuned on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils import check_random_state

from .newton import _BOX, _coarse_start, _newton
from .optimize import maximize_on_grid

__all__ = ["KINDS", "choose", "fit_head", "tune"]

KINDS = ("temperature", "bias_temperature")
# Prior standard deviations of the head's parameters: log a (a factor e per std) and each
# bias (in logits). Worth about one row each: negligible against hundreds of unseen rows,
# decisive on a few, or on rows that hold no errors.
SCALE_STD = 1.0
BIAS_STD = 1.0
N_FOLDS = 5
# Bytes of held-out variances kept across prior precisions while tuning the head.
_CACHE_BYTES = 256 * 2**20
# Link values (rows x logits x grid points) evaluated at once when searching the grid.
_BATCH_ELEMENTS = 2**22
# Rounds of coordinate ascent between the prior precision and the head.
_ROUNDS = 5
# "auto" keeps the simplest candidate within this many standard errors of the best.
SE_FACTOR = 1.0
# Fewer unseen rows than this: "auto" keeps no head (too few to cross-fit).
MIN_ROWS_AUTO = 4 * N_FOLDS
# Fewer unseen rows that the net gets wrong than this (its probability of the true label
# below one half): "auto" keeps no head. How sharp probabilities should be is learnt from
# the rows a net gets wrong; on rows it gets all right every fold asks for sharper ones,
# and cross-fitting agrees with itself (an over-fitted net made sharper still).
MIN_ERRORS_AUTO = 10
# Most logits a bias head takes: its Newton steps need the exact Hessian over 1 + n_outputs
# parameters, computed by autograd through every held-out row and logit at once (1,000
# classes: tens of GB). "auto" does not consider biases beyond; asked for, they raise.
MAX_BIAS_OUTPUTS = 64


class Head:
    """The recalibration head ``f -> scale * f + bias`` (bias None: a temperature only).

    Parameters
    ----------
    scale : float
    bias : ndarray of shape (n_outputs,) or None
    kind : {"temperature", "bias_temperature"}
    """

    def __init__(self, scale: float, bias: np.ndarray | None, kind: str) -> None:
        self.scale = float(scale)
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float64)
        self.kind = kind

    def tensors(self, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(scale, bias)`` as float64 tensors on ``device`` (bias None: no bias)."""
        scale = torch.tensor(self.scale, dtype=torch.float64, device=device)
        if self.bias is None:
            return scale, None
        return scale, torch.as_tensor(self.bias, dtype=torch.float64, device=device)

    def __repr__(self) -> str:
        return f"Head(scale={self.scale!r}, bias={self.bias!r}, kind={self.kind!r})"


def _unpack(x: torch.Tensor, kind: str):
    return x[0].exp(), (x[1:] if kind == "bias_temperature" else None)


def log_prior(x: torch.Tensor) -> torch.Tensor:
    """The head's log prior (up to a constant) at ``x = (log a, b...)``."""
    return -0.5 * (x[0] / SCALE_STD) ** 2 - 0.5 * (x[1:] ** 2).sum() / BIAS_STD**2


def fit_head(
    log_likelihood,
    n_outputs: int,
    kind: str,
    start: Head | None = None,
    shrink: bool = True,
) -> tuple[Head, float]:
    """The head maximising ``log_likelihood(scale, bias) + log prior``, and that maximum.

    ``log_likelihood`` takes a 0-d tensor and a (n_outputs,) tensor or None and returns the
    summed held-out log-likelihood as a differentiable 0-d tensor. ``shrink=False`` drops
    the prior (the classical calibrators, for the tests against them). Damped Newton steps
    in ``(log a, b)`` with the exact gradient and Hessian from autograd, so the maximum is
    reached to float64 round-off in a few steps (the parameters are few: 1 + n_outputs).
    Raises ``ValueError`` for biases over more than ``MAX_BIAS_OUTPUTS`` logits.
    """
    if kind == "bias_temperature" and n_outputs > MAX_BIAS_OUTPUTS:
        raise ValueError(
            f"calibration='bias_temperature' fits one bias per class, and the net has "
            f"{n_outputs} outputs: its exact Newton steps would take a Hessian over "
            f"{n_outputs + 1} parameters through every unseen row and class, at a memory "
            f"cost far above the posterior's. It is offered up to {MAX_BIAS_OUTPUTS} "
            "outputs; use calibration='temperature', or 'auto' (which considers biases only "
            f"up to {MAX_BIAS_OUTPUTS} outputs)."
        )
    n = 1 + (n_outputs if kind == "bias_temperature" else 0)
    x0 = torch.zeros(n, dtype=torch.float64)
    if start is not None:
        x0[0] = math.log(start.scale)
        if kind == "bias_temperature" and start.bias is not None:
            x0[1:] = torch.as_tensor(start.bias)

    def negative(x: torch.Tensor) -> torch.Tensor:
        value = log_likelihood(*_unpack(x, kind))
        return -(value + log_prior(x)) if shrink else -value

    if start is None:
        x0 = _coarse_start(negative, x0)
    x, value = _newton(negative, x0.clamp(*_BOX))
    if not math.isfinite(value):
        x = torch.zeros(n, dtype=torch.float64)
        value = float(negative(x))
    head = Head(math.exp(float(x[0])), x[1:].numpy().copy() if n > 1 else None, kind)
    return head, -value


class _Moments:
    """The held-out rows' moments per (prior precision, temperature), computed once.

    Kept in ``rows.cache`` (shared by the cross-fitting of "auto" and the final tuning)
    while they fit in ``_CACHE_BYTES``; beyond, computed again when asked for. The GLM
    mean does not depend on the hyper-parameters: one tensor serves every entry."""

    def __init__(self, rows, temperature: float) -> None:
        self.rows, self.temperature = rows, float(temperature)
        self.cache = rows.cache.setdefault(self.temperature, {})

    def __call__(self, prior: np.ndarray):
        key = tuple(np.asarray(prior, dtype=np.float64).tolist())
        if key in self.cache:
            return self.cache[key]
        mean, var = self.rows.moments(prior, self.temperature)
        if self.cache:
            mean = next(iter(self.cache.values()))[0]
        if (len(self.cache) + 2) * var.numel() * var.element_size() <= _CACHE_BYTES:
            self.cache[key] = (mean, var)
        return mean, var

    def grid(self, grid: np.ndarray, n_blocks: int):
        """``(mean, variances (T, m, c))`` at every prior precision of ``grid`` (shared by
        the blocks), all computed in one call where the rows offer it; None if they do
        not, or would not fit in ``_CACHE_BYTES``. Kept with the rows."""
        key = ("grid", self.temperature, tuple(np.asarray(grid, dtype=np.float64).tolist()))
        if key in self.rows.cache:
            return self.rows.cache[key]
        if self.rows.moments_grid is None:
            return None
        mean, var = self(np.full(n_blocks, grid[-1]))
        if (len(grid) + 2) * var.numel() * var.element_size() > _CACHE_BYTES:
            return None
        pair = (mean, self.rows.moments_grid(grid, self.temperature))
        self.rows.cache[key] = pair
        return pair


def _head_at(moments, rows, prior, kind, subset, start):
    """``(head or None, penalised log-likelihood)`` at one prior precision."""
    mean, var = moments(prior)
    if subset is not None:
        mean, var = mean[subset], var[subset]
    if kind is None:
        return None, float(rows.row_log_likelihood(mean, var, None, subset).sum())

    def log_likelihood(scale, bias):
        return rows.row_log_likelihood(mean, var, (scale, bias), subset).sum()

    return fit_head(log_likelihood, rows.n_outputs, kind, start)


def _value(moments, rows, prior, head, subset) -> float:
    """The held-out log-likelihood at a prior precision and a fixed head (the head's prior,
    a constant at a fixed head, is left out: it does not move the prior's optimum)."""
    mean, var = moments(prior)
    if subset is not None:
        mean, var = mean[subset], var[subset]
    head_t = None if head is None else head.tensors(mean.device)
    with torch.no_grad():
        return float(rows.row_log_likelihood(mean, var, head_t, subset).sum())


def _best_on_grid(moments, rows, n_blocks, grid, head, subset) -> float:
    """The grid point with the largest held-out log-likelihood at a fixed head (the first
    if tied; non-finite values lose)."""
    values = _grid_values(moments, rows, n_blocks, grid, head, subset)
    values[~np.isfinite(values)] = -np.inf
    if not np.isfinite(values).any():
        raise FloatingPointError(
            "The held-out log-likelihood is not finite at any prior precision searched; "
            "check the net's outputs for NaN or inf."
        )
    return float(grid[int(np.argmax(values))])


def _grid_values(moments, rows, n_blocks, grid, head, subset) -> np.ndarray:
    """The held-out log-likelihood at every point of ``grid`` at a fixed head, evaluated
    for many grid points in one call: the GLM mean does not depend on the prior, only the
    variances do (all computed together where the rows offer it, ``_Moments.grid``)."""
    grid = np.asarray(grid, dtype=np.float64)
    at_once = moments.grid(grid, n_blocks) if hasattr(moments, "grid") else None
    if at_once is None:
        variances = [moments(np.full(n_blocks, t))[1] for t in grid]
        mean = moments(np.full(n_blocks, grid[0]))[0]
    else:
        mean, variances = at_once
    idx = np.arange(len(mean)) if subset is None else np.asarray(subset)
    if head is None and at_once is not None:
        # without a head, each row's value does not depend on the subset: every fold of
        # "auto" reads its rows off one table
        key = ("grid rows", moments.temperature, tuple(grid.tolist()))
        if key not in rows.cache:
            rows.cache[key] = _row_values(rows, mean, variances, None, np.arange(len(mean)))
        return rows.cache[key][:, idx].sum(1).cpu().numpy()
    return _row_values(rows, mean[idx], variances, head, idx).sum(1).cpu().numpy()


def _row_values(rows, mean, variances, head, idx) -> torch.Tensor:
    """(T, rows) held-out log-likelihoods of the rows ``idx`` (``mean`` of those rows) at
    each of the grid's variances, many grid points per call."""
    head_t = None if head is None else head.tensors(mean.device)
    per = max(1, _BATCH_ELEMENTS // max(1, mean.numel()))  # grid points per call
    values = []
    with torch.no_grad():
        for s in range(0, len(variances), per):
            var = torch.cat([v[idx] for v in variances[s : s + per]])
            k = len(var) // len(idx)
            ll = rows.row_log_likelihood(mean.repeat(k, 1), var, head_t, np.tile(idx, k))
            values.append(ll.reshape(k, len(idx)))
    return torch.cat(values)


def tune(
    rows,
    kind: str | None,
    temperature: float,
    prior: np.ndarray | None,
    n_blocks: int,
    grid: np.ndarray,
    *,
    subset: np.ndarray | None = None,
    start: Head | None = None,
    refine: bool = True,
    moments=None,
) -> tuple[np.ndarray, Head | None]:
    """The prior precision (``prior`` if given, else one value on ``grid``, shared by the
    blocks) and the head of ``kind`` maximising the penalised held-out log-likelihood of
    ``subset`` of the rows (all: None).

    Coordinate ascent on the one objective, so no step decreases it: the prior precision
    on the grid at the current head (cheap: the moments at each grid point are computed
    once), then the head at that prior precision, until the prior stays on its grid point
    (at most ``_ROUNDS`` rounds); then, with ``refine``, the prior precision is refined
    between its grid neighbours as :func:`~sklaplace.tuning.optimize.maximize_on_grid` refines,
    and the head fitted there once more. Coordinate ascent from the identity head can stop
    at a local optimum; the result is compared with the classical calibrator (the head
    alone at the top of the grid, where the predictions are the net's own) and the better
    one kept, so the joint tuning never does worse than the calibrator on these rows.
    """
    moments = moments or _Moments(rows, temperature)
    if prior is not None:
        head, _ = _head_at(moments, rows, prior, kind, subset, start)
        return prior, head
    head, tau = start if kind is not None else None, None
    for _ in range(_ROUNDS):
        best = _best_on_grid(moments, rows, n_blocks, grid, head, subset)
        if kind is None or best == tau:
            tau = best
            break
        tau = best
        head, _ = _head_at(moments, rows, np.full(n_blocks, tau), kind, subset, head)
    if refine:
        tau, _ = maximize_on_grid(
            lambda t: _value(moments, rows, np.full(n_blocks, t), head, subset),
            grid,
            on_grid=lambda g: _grid_values(moments, rows, n_blocks, g, head, subset),
        )
    if kind is not None:
        head, value = _head_at(moments, rows, np.full(n_blocks, tau), kind, subset, head)
        top = float(grid[-1])
        if tau != top:  # the classical calibrator: the net's own predictions and the head
            top_head, top_value = _head_at(
                moments, rows, np.full(n_blocks, top), kind, subset, start
            )
            if top_value > value:
                tau, head = top, top_head
    return np.full(n_blocks, tau), head


def choose(
    rows, temperature: float, prior: np.ndarray | None, n_blocks: int, grid, random_state
) -> str | None:
    """ "auto": the candidate (None, "temperature", "bias_temperature") chosen by
    cross-fitting on the unseen rows.

    ``N_FOLDS`` folds (stratified by label when every label has that many rows), drawn
    from ``random_state``: each candidate is tuned (prior precision on ``grid`` unless
    ``prior`` is given, and its head) on the other folds and scores the rows of the
    held-out fold; every row is scored once. The choice is the simplest candidate whose
    summed score is within one standard error (of the paired per-row differences) of the
    best one's. Fewer than ``MIN_ROWS_AUTO`` rows, or fewer than ``MIN_ERRORS_AUTO`` rows
    the net gets wrong: None.
    """
    labels = rows.labels
    m = len(labels)
    if m < MIN_ROWS_AUTO:
        return None
    moments = _Moments(rows, temperature)
    top = np.full(n_blocks, grid[-1]) if prior is None else prior  # any prior: same mean
    mean, var = moments(top)
    own = rows.row_log_likelihood(mean, torch.zeros_like(var), None, None)  # the net's
    if int((own < math.log(0.5)).sum()) < MIN_ERRORS_AUTO:
        return None
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    _, counts = np.unique(labels, return_counts=True)
    if counts.min() >= N_FOLDS:
        folds = StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed).split(labels, labels)
    else:
        folds = KFold(N_FOLDS, shuffle=True, random_state=seed).split(labels)
    folds = list(folds)
    candidates = (None, *KINDS)
    if rows.n_outputs > MAX_BIAS_OUTPUTS:  # see MAX_BIAS_OUTPUTS
        candidates = (None, "temperature")
    scores = {kind: np.zeros(m) for kind in candidates}
    for kind in candidates:
        for train, test in folds:
            tuned, head = tune(
                rows,
                kind,
                temperature,
                prior,
                n_blocks,
                grid,
                subset=train,
                refine=False,
                moments=moments,
            )
            mean, var = moments(tuned)
            head_t = None if head is None else head.tensors(mean.device)
            ll = rows.row_log_likelihood(mean[test], var[test], head_t, test)
            scores[kind][test] = ll.detach().cpu().numpy()
    totals = {kind: float(s.sum()) for kind, s in scores.items()}
    best = max(candidates, key=lambda k: totals[k])
    for kind in candidates:  # the simplest first
        diff = scores[best] - scores[kind]
        se = math.sqrt(m) * float(np.std(diff, ddof=1))
        if totals[best] - totals[kind] <= SE_FACTOR * se:
            return kind
    return best
