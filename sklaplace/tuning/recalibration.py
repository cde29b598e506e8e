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

from .newton import _BOX, _by_autograd, _coarse_start, _newton
from .optimize import maximize_on_grid

__all__ = ["KINDS", "HeadLikelihood", "choose", "fit_head", "identity_grid_values", "tune"]

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
# Most logits a bias head takes: each of its Newton steps forms the exact Hessian over
# 1 + n_outputs parameters from every held-out row (rows x n_outputs^2 operations, in
# closed form since autograd took tens of GB at 1,000 classes), and the cross-fitting of
# "auto" tunes 15 such heads. "auto" does not consider biases beyond; asked for, they raise.
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


def _log_prior_derivatives(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient and (diagonal) Hessian of :func:`log_prior` at ``x``."""
    precision = torch.full_like(x, 1.0 / BIAS_STD**2)
    precision[0] = 1.0 / SCALE_STD**2
    return -precision * x, torch.diag(-precision)


class HeadLikelihood:
    """The summed held-out log-likelihood of a head at fixed moments, with its gradient and
    Hessian in ``(log a, b)`` in closed form (:ref:`calibration-head`).

    A row's logits ``f ~ N(m, v)`` go through the head and the probit approximation to
    ``z = kappa (a m + b)`` with ``kappa = (1 + q)^(-1/2)``, ``q = pi/8 a^2 v`` (per logit;
    the ops of :func:`sklaplace.links.affine` and :func:`sklaplace.links.probit_logits`, so
    the values are theirs to the bit), and the link gives ``ll(z)`` with its gradient ``g``
    and negative Hessian ``diag(d) - r r^T`` in ``z`` (``link_derivatives(z)``, the
    likelihood's). With ``s = log a`` and ``rho = q / (1 + q)``, ``z`` has

    * ``dz/ds = kappa (a m - rho mu)`` (``mu = a m + b``),
    * ``d2z/ds2 = kappa (a m (1 - 2 rho) + rho mu (3 rho - 2))``,
    * ``dz_k/db_k = kappa_k``, ``d2z_k/(ds db_k) = -kappa_k rho_k``, ``d2z/db2 = 0``,

    and the chain rule gives the gradient ``sum_n J_n^T g_n`` and the Hessian
    ``sum_n (-J_n^T Lambda_n J_n + sum_k g_nk d2z_nk)``: a few sums over the rows per
    Newton step, where autograd through every row and logit took a backward pass per
    parameter. ``tests/test_recalibration.py`` checks them against autograd in float64.
    """

    def __init__(self, mean: torch.Tensor, var: torch.Tensor, link_derivatives) -> None:
        self.mean, self.var, self.link = mean, var, link_derivatives

    def __call__(self, x: torch.Tensor, kind: str):
        """``(ll, derivatives)`` at ``x = (log a, b...)``: the summed log-likelihood (a
        float) and a callable giving its gradient and Hessian in ``x`` (on ``x``'s
        device)."""
        bias = kind == "bias_temperature"
        scale = x[0].exp()
        am = self.mean * scale
        mean = am + x[1:].to(am.device) if bias else am
        q = math.pi / 8.0 * (self.var * scale**2)
        kappa = torch.rsqrt(1.0 + q)
        ll, g, d, r = self.link(mean * kappa)

        def derivatives() -> tuple[torch.Tensor, torch.Tensor]:
            rho = q * kappa * kappa  # q / (1 + q)
            u = kappa * (am - rho * mean)  # dz / ds
            u2 = kappa * (am * (1.0 - 2.0 * rho) + rho * mean * (3.0 * rho - 2.0))
            lam_u = d * u if r is None else d * u - r * (r * u).sum(1, keepdim=True)
            h_ss = ((g * u2).sum() - (u * lam_u).sum()).reshape(1, 1)
            grad = (g * u).sum().reshape(1)
            if bias:
                h_sb = (-(lam_u + g * rho) * kappa).sum(0)[None]
                h_bb = -torch.diag((d * kappa * kappa).sum(0))
                if r is not None:
                    rk = r * kappa
                    h_bb = h_bb + rk.T @ rk
                grad = torch.cat([grad, (g * kappa).sum(0)])
                hess = torch.cat([torch.cat([h_ss, h_sb], 1), torch.cat([h_sb.T, h_bb], 1)])
            else:
                hess = h_ss
            return grad.to(x.device), hess.to(x.device)

        return float(ll.sum()), derivatives


def _closed_form(likelihood: HeadLikelihood, kind: str, shrink: bool):
    """``x -> (value, derivatives)`` of the negative (log posterior) from ``likelihood``."""

    def objective(x):
        ll, derivatives = likelihood(x, kind)
        if not shrink:
            return -ll, lambda: tuple(-t for t in derivatives())
        log_a, *b = x.tolist()
        prior = -0.5 * (log_a / SCALE_STD) ** 2 - 0.5 * sum(v * v for v in b) / BIAS_STD**2

        def both():
            grad, hess = derivatives()
            prior_grad, prior_hess = _log_prior_derivatives(x)
            return -(grad + prior_grad), -(hess + prior_hess)

        return -(ll + prior), both

    return objective


def fit_head(
    log_likelihood,
    n_outputs: int,
    kind: str,
    start: Head | None = None,
    shrink: bool = True,
) -> tuple[Head, float]:
    """The head maximising ``log_likelihood(scale, bias) + log prior``, and that maximum.

    ``log_likelihood`` is a :class:`HeadLikelihood` (derivatives in closed form), or takes a
    0-d tensor and a (n_outputs,) tensor or None and returns the summed held-out
    log-likelihood as a differentiable 0-d tensor (derivatives by autograd).
    ``shrink=False`` drops the prior (the classical calibrators, for the tests against
    them). Damped Newton steps in ``(log a, b)`` with the exact gradient and Hessian, so
    the maximum is reached to float64 round-off in a few steps (the parameters are few:
    1 + n_outputs); without ``start``, from the best of a few scales
    (:func:`~sklaplace.tuning.newton._coarse_start`). Raises ``ValueError`` for biases
    over more than ``MAX_BIAS_OUTPUTS`` logits.
    """
    if kind == "bias_temperature" and n_outputs > MAX_BIAS_OUTPUTS:
        raise ValueError(
            f"calibration='bias_temperature' fits one bias per class, and the net has "
            f"{n_outputs} outputs: each of its exact Newton steps would form a Hessian over "
            f"{n_outputs + 1} parameters from every unseen row and class, at a cost growing "
            f"with the square of the classes. It is offered up to {MAX_BIAS_OUTPUTS} "
            "outputs; use calibration='temperature', or 'auto' (which considers biases only "
            f"up to {MAX_BIAS_OUTPUTS} outputs)."
        )
    n = 1 + (n_outputs if kind == "bias_temperature" else 0)
    x0 = torch.zeros(n, dtype=torch.float64)
    if start is not None:
        x0[0] = math.log(start.scale)
        if kind == "bias_temperature" and start.bias is not None:
            x0[1:] = torch.as_tensor(start.bias)

    if isinstance(log_likelihood, HeadLikelihood):
        objective = _closed_form(log_likelihood, kind, shrink)
    else:

        def negative(x: torch.Tensor) -> torch.Tensor:
            value = log_likelihood(*_unpack(x, kind))
            return -(value + log_prior(x)) if shrink else -value

        objective = _by_autograd(negative)

    if start is None:
        x0 = _coarse_start(objective, x0)
    x, value = _newton(objective, x0.clamp(*_BOX))
    if not math.isfinite(value):
        x = torch.zeros(n, dtype=torch.float64)
        value = objective(x)[0]
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
        # every row's log-likelihood under no head at each point of a grid (grid -> (G, m)):
        # the same for every fold and candidate of "auto", and the final tuning
        self.identity_on_grid = rows.cache.setdefault(("identity", self.temperature), {})
        # the last head fitted at each (kind, prior), any subset: where Newton starts the next
        # fit there or nearby (the folds' optima are close to one another and to all rows')
        self.warm = rows.cache.setdefault(("warm", self.temperature), {})

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
    """``(head or None, penalised log-likelihood)`` at one prior precision; Newton starts
    from ``start``, or without one from the last head fitted at the nearest prior (if
    any)."""
    mean, var = moments(prior)
    if subset is not None:
        mean, var = mean[subset], var[subset]
    if kind is None:
        return None, float(rows.row_log_likelihood(mean, var, None, subset).sum())
    key = (kind, *np.asarray(prior, dtype=np.float64).tolist())
    if start is None:
        start = _nearest(moments.warm, key)
    if rows.link_derivatives is not None:
        likelihood = HeadLikelihood(mean, var, rows.link_derivatives(subset))
    else:

        def likelihood(scale, bias):
            return rows.row_log_likelihood(mean, var, (scale, bias), subset).sum()

    head, value = fit_head(likelihood, rows.n_outputs, kind, start)
    moments.warm[key] = head
    return head, value


def _nearest(warm: dict, key: tuple) -> Head | None:
    """The head last fitted at ``key`` = (kind, prior...), else at the nearest prior (in
    log) where a head of that kind was fitted; None before the first."""
    if key in warm:
        return warm[key]
    here = np.log(key[1:])
    near = [(float(np.abs(np.log(k[1:]) - here).max()), k) for k in warm if k[0] == key[0]]
    return warm[min(near)[1]] if near else None


def _value(moments, rows, prior, head, subset) -> float:
    """The held-out log-likelihood at a prior precision and a fixed head (the head's prior,
    a constant at a fixed head, is left out: it does not move the prior's optimum)."""
    mean, var = moments(prior)
    if subset is not None:
        mean, var = mean[subset], var[subset]
    head_t = None if head is None else head.tensors(mean.device)
    with torch.no_grad():
        return float(rows.row_log_likelihood(mean, var, head_t, subset).sum())


def _rows_on_grid(moments, rows, n_blocks, grid, head, idx) -> torch.Tensor:
    """The held-out log-likelihood of rows ``idx`` at each point of ``grid`` at a fixed
    head, (len(grid), len(idx)), evaluated for many grid points in one call: the GLM mean
    does not depend on the prior, only the variances do (all computed together where the
    rows offer it, ``_Moments.grid``)."""
    at_once = moments.grid(grid, n_blocks)
    if at_once is None:
        variances = [moments(np.full(n_blocks, t))[1] for t in grid]
        mean = moments(np.full(n_blocks, grid[0]))[0][idx]
    else:
        mean, variances = at_once
        mean = mean[idx]
    head_t = None if head is None else head.tensors(mean.device)
    per = max(1, _BATCH_ELEMENTS // max(1, mean.numel()))  # grid points per call
    out = []
    with torch.no_grad():
        for s in range(0, len(grid), per):
            if at_once is None:
                var = torch.cat([v[idx] for v in variances[s : s + per]])
            else:  # (k, m, c): the rows of every grid point in one indexing
                var = variances[s : s + per][:, idx].reshape(-1, mean.shape[1])
            k = len(var) // len(idx)
            ll = rows.row_log_likelihood(mean.repeat(k, 1), var, head_t, np.tile(idx, k))
            out.append(ll.reshape(k, len(idx)))
    return torch.cat(out)


def _grid_values(moments, rows, n_blocks, grid, head, subset) -> np.ndarray:
    """The held-out log-likelihood of ``subset`` at each point of ``grid`` at a fixed head
    (non-finite values as computed). Under no head, every row's values are computed once
    per grid (``_Moments.identity_on_grid``) and summed over each subset."""
    grid = np.asarray(grid, dtype=np.float64)
    if head is None:
        key = tuple(grid.tolist())
        per_row = moments.identity_on_grid.get(key)
        if per_row is None:
            m = len(moments(np.full(n_blocks, grid[0]))[0])
            per_row = _rows_on_grid(moments, rows, n_blocks, grid, None, np.arange(m))
            moments.identity_on_grid[key] = per_row
        values = (per_row if subset is None else per_row[:, np.asarray(subset)]).sum(1)
    else:
        m = len(moments(np.full(n_blocks, grid[0]))[0])
        idx = np.arange(m) if subset is None else np.asarray(subset)
        values = _rows_on_grid(moments, rows, n_blocks, grid, head, idx).sum(1)
    return values.cpu().numpy()


def identity_grid_values(rows, temperature: float, grid) -> np.ndarray | None:
    """The held-out log-likelihood of all of ``rows`` under no head at each point of
    ``grid``, if the cross-fitting of "auto" computed it (its table of every row's values),
    else None: the final tuning without a head then evaluates no grid again."""
    tables = rows.cache.get(("identity", float(temperature)), {})
    table = tables.get(tuple(np.asarray(grid, dtype=np.float64).tolist()))
    return None if table is None else table.sum(1).cpu().numpy()


def _best_on_grid(moments, rows, n_blocks, grid, head, subset) -> tuple[float, np.ndarray]:
    """The grid point with the largest held-out log-likelihood at a fixed head (the first
    if tied; non-finite values lose), and the values at every grid point."""
    values = _grid_values(moments, rows, n_blocks, grid, head, subset)
    finite = np.where(np.isfinite(values), values, -np.inf)
    if not np.isfinite(finite).any():
        raise FloatingPointError(
            "The held-out log-likelihood is not finite at any prior precision searched; "
            "check the net's outputs for NaN or inf."
        )
    return float(np.asarray(grid, dtype=np.float64)[int(np.argmax(finite))]), values


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
    once, and under no head every row's values once for all subsets), then the head at
    that prior precision, until the prior stays on its grid point (at most ``_ROUNDS``
    rounds); then, with ``refine``, the prior precision is refined between its grid
    neighbours as :func:`~sklaplace.tuning.optimize.maximize_on_grid` refines (the grid's
    values at the head known from the last round), and the head fitted there once more if
    the prior moved. Coordinate ascent from the identity head can stop
    at a local optimum; the result is compared with the classical calibrator (the head
    alone at the top of the grid, where the predictions are the net's own) and the better
    one kept, so the joint tuning never does worse than the calibrator on these rows.
    """
    moments = moments or _Moments(rows, temperature)
    if prior is not None:
        head, _ = _head_at(moments, rows, prior, kind, subset, start)
        return prior, head
    head, tau = start if kind is not None else None, None
    fitted = None  # (prior, penalised log-likelihood) of the last head fitted
    for _ in range(_ROUNDS):
        best, values = _best_on_grid(moments, rows, n_blocks, grid, head, subset)
        if kind is None or best == tau:
            tau = best
            break
        tau, values = best, None  # values: the grid's at the current head, if known
        head, value = _head_at(moments, rows, np.full(n_blocks, tau), kind, subset, head)
        fitted = (tau, value)
    if refine:

        def on_grid(g):  # the last round's values if they are this grid's at this head
            if values is not None and np.array_equal(g, grid):
                return values
            return _grid_values(moments, rows, n_blocks, g, head, subset)

        tau, _ = maximize_on_grid(
            lambda t: _value(moments, rows, np.full(n_blocks, t), head, subset),
            grid,
            on_grid=on_grid,
        )
    if kind is not None:
        if fitted is not None and fitted[0] == tau:  # the head is this prior's already
            value = fitted[1]
        else:
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
