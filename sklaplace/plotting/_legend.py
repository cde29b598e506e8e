"""The legend of a reliability diagram, placed where it covers no curve.

The lines of a diagram carry a ``gid`` saying what they are: the diagonal (drawn once
per Axes), the curves with their hollow markers (the legend keeps clear of them) and the
legend entries explaining hollow markers (one per threshold, listed last).
"""

import itertools

import numpy as np

_DIAGONAL_GID = "sklaplace-reliability-diagonal"
_CURVE_GID = "sklaplace-reliability-curve"
_NOTE_GID = "sklaplace-reliability-note"
# Stored on a figure made by a display: its width before a legend was put right of the
# diagram.
_FIGURE_WIDTH_ATTR = "_sklaplace_width_without_legend"
# Legend positions tried in turn: the diagonal's upper-left side holds the points of
# underconfident bins only, the lower-right side those of overconfident ones.
_LEGEND_LOCATIONS = (
    "upper left",
    "lower right",
    "center left",
    "upper center",
    "lower center",
    "center right",
    "lower left",
    "upper right",
)


def _update_notes(ax, min_count, count_unit):
    """Add a legend entry saying what hollow markers mean, unless ``min_count`` is None.

    One entry per threshold. The entries stay the last lines of ``ax``, after every
    curve, so that they come last in any legend, also one drawn with ``ax.legend()``.
    """
    from matplotlib.lines import Line2D

    notes = [line for line in ax.get_lines() if line.get_gid() == _NOTE_GID]
    for note in notes:
        note.remove()
    if min_count is None:
        text = None
    elif count_unit == "rows":
        text = f"Hollow: < {min_count:.3g} rows"
    else:
        text = f"Hollow: weight < {min_count:.3g}"
    if text is not None and not any(note.get_label() == text for note in notes):
        notes.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="o",
                markerfacecolor="none",
                markeredgecolor="0.35",
                label=text,
                gid=_NOTE_GID,
            )
        )
    for note in notes:
        ax.add_line(note)


def _segment_hits_box(p0, p1, box):
    """Whether the segment p0-p1 (display coordinates) meets the rectangle ``box``."""
    t0, t1 = 0.0, 1.0
    d = p1 - p0
    for p, q in (
        (-d[0], p0[0] - box.x0),
        (d[0], box.x1 - p0[0]),
        (-d[1], p0[1] - box.y0),
        (d[1], box.y1 - p0[1]),
    ):
        if p == 0.0:
            if q < 0.0:
                return False
        elif p < 0.0:
            t0 = max(t0, q / p)
        else:
            t1 = min(t1, q / p)
        if t0 > t1:
            return False
    return True


def _covers(box, lines, dpi):
    """Whether ``box`` overlaps a marker or a segment of one of the lines."""
    for line in lines:
        points = line.get_transform().transform(np.column_stack(line.get_data()))
        marker = line.get_marker()
        if marker not in (None, "None", "none", "", " "):
            radius = 0.5 * line.get_markersize() * dpi / 72.0 + line.get_markeredgewidth()
            for x, y in points:
                if box.x0 - radius < x < box.x1 + radius and box.y0 - radius < y < box.y1 + radius:
                    return True
        if line.get_linestyle() not in ("None", "none", "", " "):
            for p0, p1 in itertools.pairwise(points):
                if _segment_hits_box(p0, p1, box):
                    return True
    return False


def _place_legend(ax):
    """Draw the legend where it covers no curve: in a free corner or right of the Axes.

    The points and segments of the reliability curves must stay visible; the diagonal is
    avoided too when possible. The legend is placed once the figure's layout is done, so
    it stays right unless the figure is resized afterwards. A figure made by a display
    is widened to hold a legend right of the Axes.
    """
    handles, labels = ax.get_legend_handles_labels()
    # The note on hollow markers goes last, after every curve.
    order = sorted(range(len(handles)), key=lambda i: handles[i].get_gid() == _NOTE_GID)
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    figure = ax.figure.canvas.figure  # the root figure, also for a SubFigure's Axes
    base_width = getattr(figure, _FIGURE_WIDTH_ATTR, None)
    if base_width is not None:
        figure.set_figwidth(base_width)
    ax.legend(handles, labels, loc=_LEGEND_LOCATIONS[0], fontsize="small")
    figure.draw_without_rendering()  # final positions, after the layout engine
    curves = [line for line in ax.get_lines() if line.get_gid() == _CURVE_GID]
    diagonal = [line for line in ax.get_lines() if line.get_gid() == _DIAGONAL_GID]
    for avoid in (curves + diagonal, curves):
        for loc in _LEGEND_LOCATIONS:
            legend = ax.legend(handles, labels, loc=loc, fontsize="small")
            box = legend.get_window_extent().padded(4.0)
            if not _covers(box, avoid, figure.dpi):
                return legend
    # Every corner covers a point: put the legend outside, right of the Axes.
    legend = ax.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small"
    )
    if base_width is not None:
        legend_width = legend.get_window_extent().width / figure.dpi
        figure.set_figwidth(base_width + legend_width + 0.1)
    return legend
