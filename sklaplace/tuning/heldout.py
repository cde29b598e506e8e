"""Tuning on held-out rows: the prior precision, the noise, the temperature and the head.

:func:`_tune_on_heldout` maximises the held-out log-likelihood (``Objectives.heldout``,
:mod:`sklaplace.tuning.objectives`) by coordinate ascent, each coordinate on a log-spaced
grid refined between the best point's neighbours (:func:`~sklaplace.tuning.optimize.
maximize_on_grid`); the prior precision's grid is evaluated at once where the objectives
offer it (``Objectives.heldout_grid``). It warns when the optimum sits at an edge of a
grid in a way that says something about the net or its rows.
"""

from __future__ import annotations

import numpy as np

from .._runtime.warnings import warn
from . import recalibration as _recalibration
from .optimize import maximize_on_grid

__all__ = ["MEANINGFUL_GAIN", "PRIOR_GRID", "TEMPERATURE_GRID"]

PRIOR_GRID = np.logspace(-4, 6, 31)
TEMPERATURE_GRID = np.logspace(-3, 3, 25)


def _tune_on_heldout(obj, fixed, sigma, tune_sigma, temperature, tune_t, head, kind):
    """``(prior, sigma, temperature, head)`` maximising the held-out log-likelihood.

    Coordinate ascent on the one objective, one coordinate at a time at the others'
    current values, so no step can decrease it: one round when one value is tuned, three
    otherwise. A recalibration head (``kind`` not None) is tuned with the prior precision
    as one coordinate (:func:`sklaplace.tuning.recalibration.tune`: the head profiled out at each
    prior precision, so the pair is tuned jointly); ``head`` is a fixed head otherwise.
    """
    evaluate = obj.heldout
    on_grid = getattr(obj, "heldout_grid", None)  # the prior's grid at once
    n_blocks = len(obj.names)
    if tune_sigma:
        sigma = obj.heldout_rms()
        sigma_grid = sigma * np.logspace(-1.5, 1.5, 31)
    prior = fixed
    coordinates = (fixed is None or kind is not None) + tune_sigma + tune_t
    rounds = 1 if coordinates == 1 else 3
    tau_edge = None
    for _ in range(rounds):
        if kind is not None:
            prior, head = _recalibration.tune(
                obj.head_rows, kind, temperature, fixed, n_blocks, PRIOR_GRID, start=head
            )
            if fixed is None:
                tau_edge = _edge(prior[0])
        elif fixed is None:
            tau, tau_edge = _maximize_prior(
                lambda t, s=sigma, T=temperature, h=head: evaluate(t, s, T, h),
                None
                if on_grid is None
                else lambda g, s=sigma, T=temperature, h=head: on_grid(g, s, T, h),
            )
            prior = np.full(n_blocks, tau)
        if tune_sigma:
            sigma, _ = maximize_on_grid(
                lambda s, p=prior, T=temperature, h=head: evaluate(p, s, T, h), sigma_grid
            )
        if tune_t:
            temperature, _ = maximize_on_grid(
                lambda T, p=prior, s=sigma, h=head: evaluate(p, s, T, h), TEMPERATURE_GRID
            )
    if tau_edge == "bottom":
        # what the widest posterior alone gains over the net's own predictions (the head
        # left out of both: a head that sharpens says nothing about the net being wrong)
        top = np.full(n_blocks, PRIOR_GRID[-1])
        gain = evaluate(prior, sigma, temperature, None)
        gain -= evaluate(top, sigma, temperature, None)
        _warn_prior_edge(gain / obj.heldout_rows if obj.heldout_rows > 0 else gain)
    if tune_t:
        _warn_temperature_edge(temperature, fixed is not None)
    return prior, sigma, temperature, head


def _edge(tau: float) -> str | None:
    if tau >= PRIOR_GRID[-1] * 0.999:
        return "top"
    if tau <= PRIOR_GRID[0] * 1.001:
        return "bottom"
    return None


def _maximize_prior(objective, on_grid=None) -> tuple[float, str | None]:
    """The best prior on ``PRIOR_GRID`` (refined), and "top"/"bottom" if at an end;
    ``on_grid`` evaluates the whole grid at once (see ``maximize_on_grid``)."""
    best, _ = maximize_on_grid(objective, PRIOR_GRID, on_grid=on_grid)
    return best, _edge(best)


# Held-out log-likelihood gained per row by the smallest prior over the net's own
# predictions (the largest prior) above which the bottom edge means something: what a
# Gaussian gains per row, on average, by widening its std 1.5 times when the errors are
# 1.5 times what it says, k^2 / 2 - 1 / 2 - log k with k = 1.5 (about 0.22 nats).
WIDER = 1.5
MEANINGFUL_GAIN = WIDER**2 / 2 - 0.5 - float(np.log(WIDER))


def _warn_prior_edge(gain: float) -> None:
    """Warn when the held-out rows are fitted best at the bottom of the prior's range and
    that gains more than ``MEANINGFUL_GAIN`` nats per row over the net's own predictions.

    At the bottom the held-out rows ask for more uncertainty than the prior allows; that
    says something when the widest posterior predicts them much better than the net
    itself, by more than errors 1.5 times larger than the net says would give: the net is
    wrong on them by more than it says (for a regressor, more than ``sigma_noise``
    allows). When the gain is small, the held-out likelihood is flat in the
    prior there (a well-fitted net whose posterior is set by its data, not by the prior;
    the last layer of a regressor with many rows is the common case): any small prior
    gives the same predictions, and there is nothing to warn about. (At the top the rows
    show no over-confidence: the net's own predictions are then the answer.)
    """
    if not gain > MEANINGFUL_GAIN:
        return
    grid = f"[{PRIOR_GRID[0]:.0e}, {PRIOR_GRID[-1]:.0e}]"
    warn(
        f"The held-out rows are fitted best at the smallest prior precision searched "
        f"({PRIOR_GRID[0]:.0e}, range {grid}), {gain:.3g} nats per row better than the "
        "net's own predictions: they ask for more uncertainty than the prior allows, so "
        "the net is wrong on them by more than it says. Check its error on them: if they "
        "come from another distribution than its training rows (a shift, other units, "
        "shuffled or mislabelled targets), fix the rows or retrain the net on data like "
        "them; the tuned posterior is as wide as the prior lets it be. To choose the width "
        "yourself, give prior_precision as a number."
    )


def _warn_temperature_edge(temperature: float, prior_fixed: bool) -> None:
    grid = TEMPERATURE_GRID
    if grid[0] * 1.001 < temperature < grid[-1] * 0.999:
        return
    if temperature > 1:
        warn(
            f"The held-out rows are fitted best at temperature={temperature:.3g}, the top of "
            f"the searched range [{grid[0]:.0e}, {grid[-1]:.0e}]: the posterior is then close "
            "to the prior, so the prior precision alone sets the uncertainty"
            + ("; tune it too (prior_precision='holdout')." if prior_fixed else ".")
        )
    else:
        warn(
            f"The held-out rows are fitted best at temperature={temperature:.3g}, the bottom "
            f"of the searched range [{grid[0]:.0e}, {grid[-1]:.0e}]: the predictions are "
            "then the net's own, as when the held-out rows show no over-confidence."
        )
