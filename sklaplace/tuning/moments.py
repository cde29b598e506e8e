"""The held-out rows' moments and log-likelihood on the prior's grid, for the head's tuning.

:class:`_Moments` computes the GLM moments of the held-out rows once per prior precision
(and the whole grid at once where the rows offer it) and keeps them with the rows, shared
by every fold and candidate of ``calibration="auto"`` and the final tuning
(:mod:`sklaplace.tuning.recalibration`); the grid's values under no head are computed once
for all of them (:func:`identity_grid_values`).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["identity_grid_values"]

# Bytes of held-out variances kept across prior precisions while tuning the head.
_CACHE_BYTES = 256 * 2**20
# Link values (rows x logits x grid points) evaluated at once when searching the grid.
_BATCH_ELEMENTS = 2**22


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
