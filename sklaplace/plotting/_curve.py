"""The diagram part of a reliability diagram: its inputs checked, its Axes (new or given),
the diagonal and the curve (hollow markers on the bins holding fewer than ``min_count`` rows).

matplotlib is imported only here and only when something is drawn.
"""

import numpy as np

from ._counts import _counts_axes, _counts_below, _setup_counts_axes
from ._legend import _CURVE_GID, _DIAGONAL_GID, _FIGURE_WIDTH_ATTR


def _import_pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib, which is not installed. Install it with "
            "`pip install sklaplace[plot]` (or `pip install matplotlib`)."
        ) from exc
    return plt


def _check_curve(confidence, accuracy, counts, bin_edges):
    """The outputs of ``reliability_curve`` as arrays, checked to belong together."""
    confidence = np.asarray(confidence, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    counts = np.asarray(counts)
    if not confidence.shape == accuracy.shape == counts.shape:
        raise ValueError(
            "confidence, accuracy and counts must have the same shape, got "
            f"{confidence.shape}, {accuracy.shape} and {counts.shape}. "
            "Pass the three outputs of sklaplace.metrics.reliability_curve."
        )
    if bin_edges is not None:
        bin_edges = np.asarray(bin_edges, dtype=np.float64)
        if bin_edges.shape != (*confidence.shape, 2):
            raise ValueError(
                f"bin_edges must have shape (n_nonempty_bins, 2) = "
                f"{(*confidence.shape, 2)}, got {bin_edges.shape}. Pass the last "
                "output of reliability_curve(..., return_bin_edges=True)."
            )
    return confidence, accuracy, counts, bin_edges


def _new_figure(show_counts, count_unit):
    """``(ax, hist_ax)`` of a new figure: the diagram, with the histogram under it (or
    None)."""
    plt = _import_pyplot()
    hist_ax = None
    if show_counts:
        figure, (ax, hist_ax) = plt.subplots(
            2,
            1,
            sharex=True,
            height_ratios=[3, 1],
            figsize=(6.0, 6.4),
            layout="constrained",
        )
        _setup_counts_axes(ax, hist_ax, count_unit)
    else:
        figure, ax = plt.subplots(figsize=(6.0, 5.0), layout="constrained")
    setattr(figure, _FIGURE_WIDTH_ATTR, figure.get_figwidth())
    return ax, hist_ax


def _diagram_axes(ax, hist_ax, show_counts, count_unit):
    """``(ax, hist_ax, below)``: the Axes of the diagram and of its histogram (None
    without ``show_counts``), in a new figure if ``ax`` is None; ``below`` says whether
    the histogram sits right under the diagram (then the x-axis is labelled only there)."""
    if ax is None and hist_ax is not None:
        raise ValueError(
            "hist_ax was given without ax: pass the Axes of the diagram as ax too (or "
            "neither, for a new figure with both)."
        )
    if ax is None:
        ax, hist_ax = _new_figure(show_counts, count_unit)
    below = _counts_below(ax)
    if not show_counts:
        return ax, None, below
    hist_ax, below = _counts_axes(ax, hist_ax, count_unit)
    return ax, hist_ax, below


def _draw_diagonal(ax):
    """The diagonal of perfect calibration, unless ``ax`` has it already."""
    if any(line.get_gid() == _DIAGONAL_GID for line in ax.get_lines()):
        return
    ax.plot(
        [0, 1],
        [0, 1],
        linestyle=":",
        color="black",
        linewidth=1,
        label="Perfectly calibrated",
        gid=_DIAGONAL_GID,
    )


def _draw_curve(ax, confidence, accuracy, sparse, label, kwargs):
    """``(line, hollow_markers)``: the curve, its markers filled on the bins that are not
    ``sparse``, and hollow markers on top of the sparse ones (None if there are none)."""
    line_kwargs = {"marker": "o", "label": label, **kwargs, "gid": _CURVE_GID}
    if sparse.any():
        line_kwargs.setdefault("markevery", (~sparse).tolist())
    (line,) = ax.plot(confidence, accuracy, **line_kwargs)
    if not sparse.any():
        return line, None
    (hollow,) = ax.plot(
        confidence[sparse],
        accuracy[sparse],
        linestyle="none",
        marker=line.get_marker(),
        markersize=line.get_markersize(),
        markeredgewidth=line.get_markeredgewidth(),
        markeredgecolor=line.get_color(),
        markerfacecolor="none",
        zorder=line.get_zorder(),
        label="_nolegend_",
        gid=_CURVE_GID,
    )
    return line, hollow
