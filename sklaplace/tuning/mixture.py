"""Tuning for a mixture of Laplace approximations: shared factors on the members' tuned
hyper-parameters, chosen for the mixture's held-out log-likelihood.

Each member of an ensemble tunes its prior precision (and noise, and head) on the unseen
rows for its own held-out likelihood, as a single estimator would: each is calibrated
alone. The mixture ``p(y | x) = (1 / k) sum_i p_i(y | x)`` adds the spread between the
members to their own uncertainty, so a mixture of members calibrated alone tends to be
under-confident. On the unseen rows all the members share, this module maximises the
mixture's held-out log-likelihood::

    L(c, d) = sum_n w_n log((1 / k) sum_i p_i(y_n | x_n; c tau_i, d sigma_i))

over one factor ``c`` shared by every member's tuned prior precision ``tau_i`` and, for a
regressor whose noise was tuned on the rows, one factor ``d`` shared by every member's
noise std ``sigma_i`` (members' heads and temperatures held at their fits). Two scalars at
most, whatever ``k``: little to over-fit on a few unseen rows. Each factor is searched on
a log-spaced grid that holds 1 (the members' own values), every member's per-row
log-likelihoods at every grid point computed at once (the GLM means do not depend on the
prior; the variances of all grid points in one product per block), then refined between
the best point's grid neighbours; a point replaces the current value only if it is
better by more than the sums' round-off, so the mixture's held-out likelihood is never
below the members' own tuning, and a flat objective keeps the members' values.

Two numbers can still fit the noise of a few unseen rows: :func:`choose` keeps the step
only when its gain shows on rows that did not choose it (cross-fitting over folds, the
one-standard-error rule of ``calibration="auto"``, :mod:`sklaplace.tuning.recalibration`);
otherwise every member keeps its own tuning. See the user guide's section on ensembles.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from sklearn.model_selection import KFold
from sklearn.utils import check_random_state

from .heldout import PRIOR_GRID as _HELDOUT_GRID
from .kept import Kept
from .objectives import GRID_ELEMENTS
from .resolve import Hyper, check_numerics

__all__ = [
    "NOISE_GRID",
    "PRIOR_GRID",
    "MemberRows",
    "choose",
    "mixture_values",
    "shifted",
    "step",
    "tune",
]

# The factors searched on the members' prior precisions (quarter-decade steps, three
# decades each way) and noise stds (tenth-decade steps, one decade each way); both grids
# hold 1.0 exactly.
PRIOR_GRID = np.logspace(-3, 3, 25)
NOISE_GRID = np.logspace(-1, 1, 21)
# The prior precisions a factor may reach: the range the members' own tuning searched
# (sklaplace.tuning.heldout.PRIOR_GRID; at its top the predictions are the nets' own);
# each member's shifted prior is clipped to it.
TAU_RANGE = (float(_HELDOUT_GRID[0]), float(_HELDOUT_GRID[-1]))
# The refinement's tolerance on the log of a factor (as tuning.optimize's).
XATOL = 1e-3
# The cross-fitting of choose (as recalibration's "auto"): folds, the fewest rows, and
# the standard errors of the per-row gains the step must exceed.
N_FOLDS = 5
MIN_ROWS = 4 * N_FOLDS
SE_FACTOR = 1.0
# Whether the folds' tuning refines between grid points (the final tuning always does):
# the folds only show whether the step's gain holds on rows that did not choose it; on the
# grids' points alone they share their points, so that each member's per-row values are
# computed once for all the folds (issue 21, item 5: the step costs little beside the
# members' fits).
REFINE_FOLDS = False
# Rounds of coordinate ascent (prior factor, then noise factor) when both are tuned.
_ROUNDS = 2


class MemberRows:
    """One fitted member's per-row held-out log-likelihoods on the shared unseen rows.

    The rows are projected once (:class:`~sklaplace.tuning.kept.Kept`); ``values(c, d)``
    gives ``log p_i(y_n | x_n)`` (unweighted) for the member at prior precisions
    ``c_g tau_i`` (one row per factor ``c_g``) and noise std ``d sigma_i``, (G, m) float64.

    Parameters
    ----------
    fitted : FittedLaplace
        The member's fitted state; its ``hyper`` holds its own tuned values.
    X, y
        The unseen rows (net-ready) and the net's targets for them.
    """

    def __init__(self, fitted, X, y) -> None:
        self.fitted, self.hyper = fitted, fitted.hyper
        self.projections = Kept(fitted, X)
        device = fitted.posterior.means[0].device
        self.y = torch.as_tensor(np.asarray(y)).to(device)
        self.device = device
        self.width = max(max(block.shape) for block in fitted.posterior.blocks)
        self.cache: dict = {}
        self.calls = 0  # calls of pairs: the cost the tests pin

    def values(self, factors, noise_factor: float = 1.0) -> torch.Tensor:
        """``(G, m)``: each row's log predictive density at each prior factor."""
        fitted, hyper = self.fitted, self.hyper
        factors = np.asarray(factors, dtype=np.float64).reshape(-1)
        taus = shifted(hyper.prior_precision, factors[:, None])
        taus = torch.tensor(taus, dtype=torch.float64, device=self.device)
        sigma = float(hyper.sigma_noise) * float(noise_factor)
        _, scale = fitted.tensors(Hyper(hyper.prior_precision, sigma, hyper.temperature))
        head = None if hyper.head is None else hyper.head.tensors(self.device)
        lik, approx = fitted.likelihood, fitted.approximation
        out, bounds = [], self.projections.bounds
        with torch.no_grad():
            for proj, lo, hi in zip(self.projections, bounds[:-1], bounds[1:], strict=True):
                per = max(1, GRID_ELEMENTS // max(1, len(proj.mean) * self.width))
                var = torch.cat(
                    [
                        approx.moments_grid(proj, taus[s : s + per], scale, torch.float64)
                        for s in range(0, len(taus), per)
                    ]
                )
                g, m, c = var.shape
                target = self.y[lo:hi]
                ll = lik.heldout_row_log_likelihood(
                    proj.mean.double().repeat(g, 1),
                    var.reshape(g * m, c),
                    target.repeat(g, *([1] * (target.dim() - 1))),
                    sigma,
                    head,
                )
                out.append(ll.reshape(g, m))
        return torch.cat(out, dim=1)

    def pairs(self, pairs) -> np.ndarray:
        """``(G, m)`` float64: each row's log predictive density at each ``(c, d)`` of
        ``pairs`` (prior factor, noise factor), all the points in one ``moments_grid``
        contraction per block.

        A noise factor only rescales the curvature: with ``s(d)`` the curvature scale at
        noise ``d sigma`` and ``r = s(1) / s(d)``, each eigenvalue of the posterior's
        precision is ``s(d) lam + tau = (s(1) lam + r tau) / r``, so the variances at
        ``(tau, d sigma)`` are ``r`` times those at ``(r tau, sigma)`` (exactly, in exact
        arithmetic; ``r = d^2`` for a Gaussian noise). ``tau`` is the member's prior
        already shifted and clipped to ``TAU_RANGE`` (:func:`shifted`), so the clipping is
        the one of :meth:`values`; only the scaled ``r tau`` leaves the range, as a
        precision, never as a tuned value.
        """
        fitted, hyper = self.fitted, self.hyper
        pairs = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
        sigma0 = float(hyper.sigma_noise)
        _, scale = fitted.tensors(Hyper(hyper.prior_precision, sigma0, hyper.temperature))
        ratios, sigmas = np.empty(len(pairs)), []
        for g, d in enumerate(pairs[:, 1]):
            sigma = sigma0 * float(d)
            _, s = fitted.tensors(Hyper(hyper.prior_precision, sigma, hyper.temperature))
            ratios[g] = float(scale) / float(s) if d != 1.0 else 1.0
            sigmas.append(sigma)
        taus = shifted(hyper.prior_precision, pairs[:, :1]) * ratios[:, None]
        taus = torch.tensor(taus, dtype=torch.float64, device=self.device)
        r = torch.tensor(ratios, dtype=torch.float64, device=self.device)
        head = None if hyper.head is None else hyper.head.tensors(self.device)
        lik, approx = fitted.likelihood, fitted.approximation
        out, bounds = [], self.projections.bounds
        with torch.no_grad():
            for proj, lo, hi in zip(self.projections, bounds[:-1], bounds[1:], strict=True):
                per = max(1, GRID_ELEMENTS // max(1, len(proj.mean) * self.width))
                var = (
                    torch.cat(
                        [
                            approx.moments_grid(proj, taus[s : s + per], scale, torch.float64)
                            for s in range(0, len(taus), per)
                        ]
                    )
                    * r[:, None, None]
                )
                target, mean = self.y[lo:hi], proj.mean.double()
                rows = torch.empty((len(pairs), hi - lo), dtype=torch.float64)
                for d in np.unique(pairs[:, 1]):  # one call per noise std
                    at = np.flatnonzero(pairs[:, 1] == d)
                    g, m, c = len(at), var.shape[1], var.shape[2]
                    ll = lik.heldout_row_log_likelihood(
                        mean.repeat(g, 1),
                        var[torch.as_tensor(at, device=var.device)].reshape(g * m, c),
                        target.repeat(g, *([1] * (target.dim() - 1))),
                        sigmas[at[0]],
                        head,
                    )
                    rows[torch.as_tensor(at)] = ll.reshape(g, m).cpu()
                out.append(rows)
        return torch.cat(out, dim=1).numpy()

    def table(self, factors, noise_factor: float = 1.0) -> np.ndarray:
        """:meth:`pairs` at ``(c, noise_factor)`` for each ``c`` of ``factors``."""
        factors = np.asarray(factors, dtype=np.float64).reshape(-1)
        return self.points([(float(c), float(noise_factor)) for c in factors])

    def points(self, points) -> np.ndarray:
        """:meth:`pairs`, each point's rows kept: the folds of :func:`choose` and the
        final tuning reach the same points (the grids from the same factors), and only
        the points not seen yet are computed, in one call."""
        missing = list(dict.fromkeys(p for p in points if p not in self.cache))
        if missing:
            self.calls += 1
            for p, rows in zip(missing, self.pairs(missing), strict=True):
                self.cache[p] = rows
        return np.stack([self.cache[p] for p in points])


def shifted(prior, factor) -> np.ndarray:
    """A member's prior precisions times ``factor``, kept within ``TAU_RANGE`` (a member
    already at the top, the net's own predictions, stays there as the others move)."""
    return np.clip(np.asarray(prior, dtype=np.float64) * factor, *TAU_RANGE)


def mixture_values(per_member, w=None) -> np.ndarray:
    """The mixture's held-out log-likelihood at each grid point, (G,): ``per_member`` is
    k arrays (G, m) of the members' per-row log densities, mixed uniformly in log space and
    summed over the rows (weighted by ``w``)."""
    stacked = np.stack([np.asarray(v, dtype=np.float64) for v in per_member])
    rows = logsumexp(stacked, axis=0) - math.log(len(stacked))  # (G, m)
    rows = np.where(np.isfinite(rows), rows, -np.inf)
    return rows.sum(1) if w is None else rows @ np.asarray(w, dtype=np.float64)


def _round_off(per_member, w) -> float:
    """A bound on float64's round-off of one mixture value: ``m`` additions of terms
    as large as the sum of their magnitudes, each to relative ``eps`` (and the
    logsumexp's few operations per row, within the same bound)."""
    stacked = np.stack([np.asarray(v, dtype=np.float64) for v in per_member])
    rows = np.abs(logsumexp(stacked, axis=0))
    if w is not None:
        rows = rows * np.abs(np.asarray(w, dtype=np.float64))
    finite = rows[np.isfinite(rows)]
    return float((finite.size + 4) * np.finfo(np.float64).eps * finite.sum())


def _search(objective, on_grid, grid, current: float, refine: bool = True):
    """``(factor, value)`` maximising ``objective`` (a scalar factor -> value) over ``grid``
    (``on_grid(grid)``: the values and their round-off) then, if ``refine``, refined
    between the best point's neighbours; ``current`` (a point of ``grid``) is kept unless
    another point (or the refinement) is better by more than the sums' round-off ``tol``."""
    values, tol = on_grid(grid)
    values = np.where(np.isfinite(values), values, -np.inf)
    best = int(np.argmin(np.abs(np.log(grid) - math.log(current))))
    top = int(np.argmax(values))
    if values[top] > values[best] + tol:
        best = top
    if len(grid) < 2 or not refine:
        return float(grid[best]), float(values[best])
    lo, hi = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, len(grid) - 1)])
    res = minimize_scalar(
        lambda t: -objective(math.exp(t)),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": XATOL},
    )
    if np.isfinite(res.fun) and -res.fun > values[best] + tol:
        return float(math.exp(res.x)), float(-res.fun)
    return float(grid[best]), float(values[best])


def step(states, X, y, w, prior: bool, noise: bool, random_state) -> tuple[float, float]:
    """The mixture step on fitted states ``states`` (each ``hyper`` its member's own tuning)
    sharing the unseen rows ``X, y, w``: the factors of :func:`choose`, set on every
    state's ``hyper``; ``(1.0, 1.0)`` and the states untouched when the step is not kept or
    a factor takes some member out of float64's range (``check_numerics``)."""
    c, d = choose(
        [MemberRows(s, X, y) for s in states], w, prior=prior, noise=noise,
        random_state=random_state,
    )  # fmt: skip
    if c == 1.0 and d == 1.0:
        return 1.0, 1.0
    tuned = []
    for s in states:
        own = s.hyper
        hyper = Hyper(
            shifted(own.prior_precision, c), own.sigma_noise * d, own.temperature, own.head
        )
        try:
            check_numerics(s.posterior, hyper, s.likelihood.noise_variance(hyper.sigma_noise))
        except ValueError:
            return 1.0, 1.0
        tuned.append(hyper)
    for s, hyper in zip(states, tuned, strict=True):
        s.hyper = hyper
    return c, d


def tune(
    members: list[MemberRows], w=None, *, prior: bool, noise: bool, subset=None,
    refine: bool = True,
):  # fmt: skip
    """``(prior factor, noise factor, value)`` maximising the mixture's held-out
    log-likelihood (module docstring) on ``subset`` of the rows (None: all); a factor not
    tuned stays 1.0. ``refine=False``: the grids' points only (the folds of
    :func:`choose`: their points are shared, each member's rows computed once).

    Coordinate ascent on the one objective (the prior factor, then the noise factor,
    ``_ROUNDS`` rounds when both are tuned), each step from the current value, which its
    grid holds: no step decreases the objective.
    """
    c, d, value = 1.0, 1.0, None
    for _ in range(_ROUNDS if (prior and noise) else 1):
        if prior:
            c, value = _coordinate(members, w, "prior", c, d, subset, refine)
        if noise:
            d, value = _coordinate(members, w, "noise", c, d, subset, refine)
    if value is None:
        value = float(mixture_values(*_part([m.table([c], d) for m in members], w, subset))[0])
    return c, d, value


def choose(members: list[MemberRows], w=None, *, prior: bool, noise: bool, random_state):
    """``(prior factor, noise factor)``: :func:`tune` on all the rows if the step earns
    its place on rows it was not tuned on, else ``(1.0, 1.0)`` (the members' own tuning).

    Cross-fitting, as ``calibration="auto"`` chooses its head: ``N_FOLDS`` folds drawn from
    ``random_state``; the factors tuned on the other folds score each fold's rows against
    the members' own tuning; the step is kept when its summed gain exceeds ``SE_FACTOR``
    standard errors of the per-row gains. On a few unseen rows one or two factors can fit
    their noise; the gain must then show on rows that did not choose them. Fewer than
    ``MIN_ROWS`` rows: no step.
    """
    n = len(members[0].y)
    if n < MIN_ROWS:
        return 1.0, 1.0
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    weights = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    own = _rows([m.table([1.0], 1.0) for m in members])
    gain = np.zeros(n)
    for train, test in KFold(N_FOLDS, shuffle=True, random_state=seed).split(np.arange(n)):
        c, d, _ = tune(members, w, prior=prior, noise=noise, subset=train, refine=REFINE_FOLDS)
        if (c, d) != (1.0, 1.0):
            step = _rows([m.table([c], d) for m in members])
            gain[test] = weights[test] * (step[test] - own[test])
    se = math.sqrt(n) * float(np.std(gain, ddof=1))
    if not (np.isfinite(gain).all() and gain.sum() > SE_FACTOR * se):
        return 1.0, 1.0
    c, d, _ = tune(members, w, prior=prior, noise=noise)
    return c, d


def _rows(per_member) -> np.ndarray:
    """The mixture's per-row log density at one grid point, (m,)."""
    stacked = np.stack([np.asarray(v, dtype=np.float64)[0] for v in per_member])
    return logsumexp(stacked, axis=0) - math.log(len(stacked))


def _part(per_member, w, subset):
    """``(per_member, w)`` restricted to the rows of ``subset`` (None: all)."""
    if subset is None:
        return per_member, w
    return [v[:, subset] for v in per_member], None if w is None else np.asarray(w)[subset]


def _coordinate(members, w, which: str, c: float, d: float, subset=None, refine=True):
    """One coordinate's search, ``(factor, value)``: the prior factor ``c`` (on
    ``PRIOR_GRID`` times the current ``c``) or the noise factor ``d`` (on ``NOISE_GRID``
    times the current ``d``), on ``subset`` of the rows."""

    def per_member(factors):
        if which == "prior":
            per = [m.table(factors, d) for m in members]
        else:
            per = [m.points([(float(c), float(f)) for f in factors]) for m in members]
        return _part(per, w, subset)

    def on_grid(grid):
        per, weights = per_member(grid)
        return mixture_values(per, weights), _round_off(per, weights)

    def objective(f):
        return float(mixture_values(*per_member([f]))[0])

    current = c if which == "prior" else d
    grid = current * (PRIOR_GRID if which == "prior" else NOISE_GRID)
    if which == "prior":  # factors that move some member's prior within TAU_RANGE
        taus = np.concatenate([np.asarray(m.hyper.prior_precision) for m in members])
        low, high = TAU_RANGE[0] / taus.max(), TAU_RANGE[1] / taus.min()
        grid = grid[((grid >= low) & (grid <= high)) | (grid == current)]
    return _search(objective, on_grid, grid, current, refine)
