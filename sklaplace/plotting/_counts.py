"""The histogram of the rows per bin that a reliability diagram draws under it.

Its bars are drawn on a log scale in the colour of their curve, hollow for the bins that
hold fewer than ``min_count`` rows (a dotted line marks that threshold). Several displays
drawn on one diagram share one histogram: the diagram's Axes records it.
"""

import math
from numbers import Real

import numpy as np

# Stored on a diagram Axes: the histogram Axes of its counts and whether that one sits
# right under it (then the x-axis is labelled only there), so that the next display drawn
# on the same diagram adds its bars to the same histogram.
_COUNTS_AXES_ATTR = "_sklaplace_counts_axes"
_XLABEL = "Confidence (mean top-label probability in bin)"


def _check_min_count(min_count, counts, count_unit="rows"):
    """The count below which a bin is drawn hollow.

    Counts of rows are whole numbers, so a threshold on them is rounded up to a whole
    number of rows: "fewer than 5.4 rows" and "fewer than 6 rows" select the same bins,
    and only the second is what a reader can check. Weighted counts keep the threshold.
    """
    if isinstance(min_count, str) and min_count == "auto":
        min_count = max(5.0, 0.01 * float(np.sum(counts)))
    elif isinstance(min_count, bool) or not isinstance(min_count, Real) or not min_count >= 0:
        raise ValueError(
            f'min_count must be "auto" or a number >= 0, got {min_count!r}. Pass 0 to draw '
            "every bin alike."
        )
    counts = np.asarray(counts)
    whole = count_unit == "rows" and np.all(counts == np.round(counts))
    if whole and np.isfinite(min_count):
        return float(math.ceil(min_count))
    return float(min_count)


def _counts_axes_below(ax):
    """A new Axes under ``ax``, sharing its x-axis, for the histogram of the counts."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    figure = ax.get_figure()
    if isinstance(figure.get_layout_engine(), ConstrainedLayoutEngine):
        # The constrained layout makes room for a child Axes hanging below its parent.
        return ax.inset_axes([0.0, -0.38, 1.0, 0.3], sharex=ax)
    # Otherwise carve the room out of ax itself, so that nothing falls off the figure.
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    return make_axes_locatable(ax).append_axes("bottom", size="30%", pad=0.1, sharex=ax)


def _setup_counts_axes(ax, hist_ax, count_unit):
    """Label a new histogram Axes right under ``ax``, and register it on ``ax``."""
    setattr(ax, _COUNTS_AXES_ATTR, (hist_ax, True))
    hist_ax.set_yscale("log")
    hist_ax.set_ylabel(count_unit.capitalize())
    hist_ax.set_xlabel(_XLABEL)
    ax.set_xlabel("")
    ax.tick_params(labelbottom=False)


def _counts_below(ax):
    """Whether the histogram registered on ``ax`` sits right under it."""
    return getattr(ax, _COUNTS_AXES_ATTR, (None, False))[1]


def _counts_axes(ax, hist_ax, count_unit):
    """The histogram Axes for a display drawn on ``ax``, and whether it sits under ``ax``.

    ``hist_ax=None`` means the one registered on ``ax`` by an earlier display, else a new
    one made under ``ax``; a given ``hist_ax`` is registered on ``ax`` for later displays.
    """
    registered, below = getattr(ax, _COUNTS_AXES_ATTR, (None, False))
    if hist_ax is None:
        hist_ax = registered
        if hist_ax is None:
            hist_ax = _counts_axes_below(ax)
            _setup_counts_axes(ax, hist_ax, count_unit)
            below = True
    elif hist_ax is not registered:
        setattr(ax, _COUNTS_AXES_ATTR, (hist_ax, False))
        below = False
        if not hist_ax.get_ylabel():
            hist_ax.set_ylabel(count_unit.capitalize())
    return hist_ax, below


def _draw_counts(hist_ax, confidence, counts, bin_edges, color, sparse, min_count):
    """The bars of the counts (spanning their bins if ``bin_edges`` is given)."""
    if bin_edges is not None:
        left, width = bin_edges[:, 0], np.diff(bin_edges, axis=1)[:, 0]
    else:
        width = np.full(confidence.shape, 0.03)
        left = confidence - width / 2
    bars = hist_ax.bar(
        left,
        counts,
        width=width,
        align="edge",
        color=color,
        alpha=0.45,
        edgecolor=color,
        linewidth=1.0,
    )
    for bar, is_sparse in zip(bars, sparse, strict=True):
        if is_sparse:  # hollow, like the bin's marker
            bar.set_fill(False)
            bar.set_alpha(1.0)
    if min_count > 0:
        hist_ax.axhline(min_count, color=color, linestyle=":", linewidth=1)
    return bars


def _fit_log_axis(hist_ax):
    """Show every bar of a log-scaled histogram, with labels on whole decades only."""
    from matplotlib.ticker import NullFormatter

    heights = [bar.get_height() for bar in hist_ax.patches if bar.get_height() > 0]
    if heights:
        # From half the smallest bar (half a row at most), so that 1 and 10 are in view.
        hist_ax.set_ylim(bottom=0.5 * min(1.0, *heights))
    hist_ax.yaxis.set_minor_formatter(NullFormatter())
