import re
import sys

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklaplace.metrics import expected_calibration_error, reliability_curve
from sklaplace.plotting import ReliabilityDisplay


@pytest.fixture
def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend; closes figures afterwards."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


@pytest.fixture
def iris_split():
    X, y = load_iris(return_X_y=True)
    return train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)


def _legend_ece(label):
    match = re.search(r"\(ECE = (\d\.\d{3})\)$", label)
    assert match, label
    return float(match.group(1))


def _diagonals(ax):
    return [line for line in ax.get_lines() if line.get_label() == "Perfectly calibrated"]


def _legend_texts(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


def _binary_probabilities(counts, seed=0):
    """1-D positive-class probabilities with ``counts[k]`` rows in bin k of 10 bins.

    The top-label confidence max(p, 1 - p) is at least 0.5, so only bins 5-9 can hold
    rows; labels are drawn from the probabilities.
    """
    rng = np.random.default_rng(seed)
    confidence = np.concatenate(
        [rng.uniform(0.1 * k + 0.01, 0.1 * k + 0.09, size=n) for k, n in counts.items()]
    )
    y = (rng.random(len(confidence)) < confidence).astype(int)
    return y, confidence


def _marker_boxes(ax, dpi):
    """Display-coordinate boxes of every drawn marker of every curve on ``ax``."""
    from matplotlib.transforms import Bbox

    boxes = []
    for line in ax.get_lines():
        x, y = (np.asarray(a, dtype=float) for a in line.get_data())
        if line.get_marker() in ("None", "none", "", " ", None) or x.size == 0:
            continue
        every = line.get_markevery()
        shown = np.ones(len(x), bool) if every is None else np.asarray(every, bool)
        radius = 0.5 * line.get_markersize() * dpi / 72 + line.get_markeredgewidth()
        for px, py in ax.transData.transform(np.column_stack([x, y])[shown]):
            boxes.append(Bbox([[px - radius, py - radius], [px + radius, py + radius]]))
    return boxes


def _curve_points(ax, per_segment=200):
    """Display-coordinate points along every segment of every curve (not the diagonal)."""
    points = []
    for line in ax.get_lines():
        x, y = (np.asarray(a, dtype=float) for a in line.get_data())
        if line.get_label() == "Perfectly calibrated" or line.get_linestyle() == "None":
            continue
        xy = ax.transData.transform(np.column_stack([x, y]))
        t = np.linspace(0, 1, per_segment)[:, None, None]
        points.append((xy[:-1] + t * (xy[1:] - xy[:-1])).reshape(-1, 2))
    return np.concatenate(points) if points else np.empty((0, 2))


def _assert_legend_clear_of_data(display):
    figure = display.figure_
    figure.canvas.draw()
    box = display.ax_.get_legend().get_window_extent()
    markers = _marker_boxes(display.ax_, figure.dpi)
    assert markers, "no marker found: the check would pass vacuously"
    assert not any(box.overlaps(marker) for marker in markers)
    points = _curve_points(display.ax_)
    inside = (
        (points[:, 0] > box.x0)
        & (points[:, 0] < box.x1)
        & (points[:, 1] > box.y0)
        & (points[:, 1] < box.y1)
    )
    assert not inside.any()
    return box


# --------------------------------------------------------------------------------------
# The diagram
# --------------------------------------------------------------------------------------


def test_from_estimator(pyplot, iris_split):
    X_train, X_test, y_train, y_test = iris_split
    clf = LogisticRegression(C=0.05, max_iter=1000).fit(X_train, y_train)
    disp = ReliabilityDisplay.from_estimator(clf, X_test, y_test, n_bins=10)

    confidence, accuracy, counts = reliability_curve(y_test, clf.predict_proba(X_test), n_bins=10)
    np.testing.assert_allclose(disp.line_.get_xdata(), confidence)
    np.testing.assert_allclose(disp.line_.get_ydata(), accuracy)
    np.testing.assert_array_equal(disp.counts, counts)

    ece = expected_calibration_error(y_test, clf.predict_proba(X_test), n_bins=10)
    assert disp.ece == pytest.approx(ece)
    assert disp.line_.get_label() == f"LogisticRegression (ECE = {ece:.3f})"
    assert _legend_ece(disp.line_.get_label()) == pytest.approx(ece, abs=5e-4)

    # The diagram on top, the histogram under it holds the x-axis label.
    assert disp.hist_ax_.get_xlabel().startswith("Confidence")
    assert disp.ax_.get_xlabel() == ""
    assert disp.ax_.get_ylabel().startswith("Accuracy")
    assert disp.hist_ax_.get_ylabel() == "Rows"
    assert disp.figure_ is disp.ax_.figure is disp.hist_ax_.figure
    (diagonal,) = _diagonals(disp.ax_)
    np.testing.assert_array_equal(diagonal.get_xdata(), [0, 1])
    np.testing.assert_array_equal(diagonal.get_ydata(), [0, 1])
    # 75 rows: "auto" marks the bins of fewer than 5 rows (the legend says so if any).
    assert disp.min_count_ == 5.0
    np.testing.assert_array_equal(disp.sparse_bins_, counts < 5)
    note = ["Hollow: < 5 rows"] if disp.sparse_bins_.any() else []
    assert _legend_texts(disp.ax_) == ["Perfectly calibrated", disp.line_.get_label(), *note]


def test_histogram_bars_are_the_counts_over_their_bins(pyplot, iris_split):
    X_train, X_test, y_train, y_test = iris_split
    clf = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    disp = ReliabilityDisplay.from_estimator(clf, X_test, y_test, n_bins=8)
    proba = clf.predict_proba(X_test)
    _, _, counts, edges = reliability_curve(y_test, proba, n_bins=8, return_bin_edges=True)

    bars = list(disp.bars_)
    assert len(bars) == len(counts)
    np.testing.assert_array_equal([bar.get_height() for bar in bars], counts)
    assert sum(bar.get_height() for bar in bars) == len(y_test)
    # Each bar spans its bin [k / 8, (k + 1) / 8) and holds the rows whose top-label
    # probability falls there.
    np.testing.assert_allclose([bar.get_x() for bar in bars], edges[:, 0])
    np.testing.assert_allclose([bar.get_width() for bar in bars], 1 / 8)
    top = proba.max(axis=1)
    for bar in bars:
        in_bin = (top >= bar.get_x() - 1e-12) & (top < bar.get_x() + bar.get_width() - 1e-12)
        assert bar.get_height() == in_bin.sum()
    # The histogram shares the diagram's x-axis, has a log scale, and is below it.
    assert disp.hist_ax_ in disp.ax_.get_shared_x_axes().get_siblings(disp.ax_)
    assert disp.hist_ax_.get_yscale() == "log"
    disp.figure_.canvas.draw()
    assert disp.hist_ax_.get_position().y1 <= disp.ax_.get_position().y0


def test_near_empty_bins_are_hollow_and_still_counted(pyplot):
    # Bins [0.5, 0.6), [0.7, 0.8), [0.9, 1.0] with 200, 3 and 120 rows.
    y, p = _binary_probabilities({5: 200, 7: 3, 9: 120})
    disp = ReliabilityDisplay.from_predictions(y, p, n_bins=10, color="tab:green")

    np.testing.assert_array_equal(disp.counts, [200, 3, 120])
    assert disp.min_count_ == 5.0  # max(5, 1% of 323 rows)
    np.testing.assert_array_equal(disp.sparse_bins_, [False, True, False])
    # The curve still goes through every bin, with filled markers on the full ones only;
    # the sparse bin has a hollow marker of the curve's color.
    assert len(disp.line_.get_xdata()) == 3
    assert list(disp.line_.get_markevery()) == [True, False, True]
    np.testing.assert_allclose(disp.hollow_markers_.get_xdata(), disp.line_.get_xdata()[[1]])
    np.testing.assert_allclose(disp.hollow_markers_.get_ydata(), disp.line_.get_ydata()[[1]])
    assert disp.hollow_markers_.get_markerfacecolor() == "none"
    assert disp.hollow_markers_.get_markeredgecolor() == "tab:green"
    # Its bar is hollow too, and the threshold is a line in the histogram.
    assert [bar.get_fill() for bar in disp.bars_] == [True, False, True]
    assert any(
        np.allclose(line.get_ydata(), 5.0) and line.get_linestyle() == ":"
        for line in disp.hist_ax_.get_lines()
    )
    # ...and the sparse bin still counts in the ECE.
    assert disp.ece == pytest.approx(expected_calibration_error(y, p, n_bins=10))
    assert _legend_texts(disp.ax_)[-1] == "Hollow: < 5 rows"


def test_min_count_threshold(pyplot):
    # 1000 rows: "auto" is 1% of them (10), above the floor of 5.
    y, p = _binary_probabilities({5: 500, 6: 8, 8: 492}, seed=1)
    disp = ReliabilityDisplay.from_predictions(y, p, n_bins=10)
    assert disp.min_count_ == pytest.approx(10.0)
    np.testing.assert_array_equal(disp.sparse_bins_, [False, True, False])

    none = ReliabilityDisplay.from_predictions(y, p, n_bins=10, min_count=0)
    assert not none.sparse_bins_.any()
    assert none.hollow_markers_ is None
    assert none.line_.get_markevery() is None
    assert all(bar.get_fill() for bar in none.bars_)
    assert not any(text.startswith("Hollow") for text in _legend_texts(none.ax_))

    every = ReliabilityDisplay.from_predictions(y, p, n_bins=10, min_count=600)
    assert every.sparse_bins_.all()
    assert len(every.hollow_markers_.get_xdata()) == 3
    assert _legend_texts(every.ax_)[-1] == "Hollow: < 600 rows"


def test_min_count_is_a_whole_number_of_rows(pyplot):
    # 540 rows: 1% is 5.4, but bins hold whole rows. A bin of 5 rows is hollow, one of 6
    # is not, and the legend states the threshold a reader can check: "< 6 rows".
    disp = ReliabilityDisplay([0.35, 0.55, 0.95], [0.4, 0.5, 0.9], [5, 6, 529]).plot()
    assert disp.min_count_ == 6.0
    np.testing.assert_array_equal(disp.sparse_bins_, [True, False, False])
    assert _legend_texts(disp.ax_)[-1] == "Hollow: < 6 rows"
    # a threshold given with a fraction is rounded up the same way
    given = ReliabilityDisplay([0.35, 0.55], [0.4, 0.5], [5, 6]).plot(min_count=5.5)
    assert given.min_count_ == 6.0
    assert _legend_texts(given.ax_)[-1] == "Hollow: < 6 rows"
    # weights are not whole rows: the threshold stays as computed
    y, p = _binary_probabilities({5: 300, 9: 240}, seed=4)
    weighted = ReliabilityDisplay.from_predictions(
        y, p, n_bins=10, sample_weight=np.full(len(y), 0.5), min_count=5.4
    )
    assert weighted.min_count_ == pytest.approx(5.4)


@pytest.mark.parametrize("min_count", [-1, "many", True, np.nan])
def test_min_count_errors(pyplot, min_count):
    disp = ReliabilityDisplay([0.5], [0.5], [1])
    with pytest.raises(ValueError, match='min_count must be "auto" or a number >= 0'):
        disp.plot(min_count=min_count)


def test_sample_weight_counts_rows_that_many_times(pyplot):
    y, p = _binary_probabilities({5: 30, 7: 20, 9: 40}, seed=2)
    weights = np.random.default_rng(3).integers(0, 4, size=len(y))
    weighted = ReliabilityDisplay.from_predictions(y, p, n_bins=10, sample_weight=weights)
    repeated = ReliabilityDisplay.from_predictions(
        np.repeat(y, weights), np.repeat(p, weights), n_bins=10
    )
    np.testing.assert_allclose(weighted.line_.get_xdata(), repeated.line_.get_xdata())
    np.testing.assert_allclose(weighted.line_.get_ydata(), repeated.line_.get_ydata())
    np.testing.assert_allclose(
        [bar.get_height() for bar in weighted.bars_], [bar.get_height() for bar in repeated.bars_]
    )
    assert weighted.ece == pytest.approx(repeated.ece)
    assert weighted.hist_ax_.get_ylabel() == "Weight"
    heavy = ReliabilityDisplay.from_predictions(
        y, p, n_bins=10, sample_weight=weights, min_count=40
    )
    np.testing.assert_array_equal(heavy.sparse_bins_, heavy.counts < 40)
    assert _legend_texts(heavy.ax_)[-1] == "Hollow: weight < 40"


def test_two_displays_share_one_ax_and_one_histogram(pyplot, iris_split):
    X_train, X_test, y_train, y_test = iris_split
    sharp = LogisticRegression(C=100, max_iter=1000).fit(X_train, y_train)
    flat = LogisticRegression(C=0.01, max_iter=1000).fit(X_train, y_train)
    first = ReliabilityDisplay.from_estimator(sharp, X_test, y_test, name="MAP")
    second = ReliabilityDisplay.from_estimator(flat, X_test, y_test, name="Laplace", ax=first.ax_)

    assert second.ax_ is first.ax_
    assert second.hist_ax_ is first.hist_ax_
    assert second.figure_ is first.figure_
    assert len(first.figure_.axes) == 2  # the diagram and one histogram
    assert len(_diagonals(first.ax_)) == 1  # drawn once
    assert first.ax_.get_xlabel() == ""  # still labelled under the histogram only
    # Both models' bars, in their curves' colors.
    assert len(first.hist_ax_.patches) == len(first.counts) + len(second.counts)
    assert {bar.get_edgecolor() for bar in second.bars_} != {
        bar.get_edgecolor() for bar in first.bars_
    }
    labels = _legend_texts(first.ax_)
    assert labels[:3] == [
        "Perfectly calibrated",
        first.line_.get_label(),
        second.line_.get_label(),
    ]
    assert labels[3:] in ([], ["Hollow: < 5 rows"])  # the note comes once, last
    # ...also in a legend drawn by the user, in the order of the lines.
    user_labels = [text.get_text() for text in first.ax_.legend().get_texts()]
    assert user_labels == labels
    for disp, model in ((first, sharp), (second, flat)):
        ece = expected_calibration_error(y_test, model.predict_proba(X_test))
        assert _legend_ece(disp.line_.get_label()) == pytest.approx(ece, abs=5e-4)
    assert first.line_.get_label().startswith("MAP (ECE = ")
    assert second.line_.get_label().startswith("Laplace (ECE = ")


def test_from_predictions_with_string_labels(pyplot):
    y_true = np.array(["cat", "dog", "dog", "emu"])
    y_prob = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.55, 0.35, 0.1], [0.1, 0.05, 0.85]])
    disp = ReliabilityDisplay.from_predictions(
        y_true, y_prob, n_bins=5, labels=["cat", "dog", "emu"], color="tab:red"
    )
    assert disp.line_.get_label() == "ECE = 0.275"
    assert disp.line_.get_color() == "tab:red"
    np.testing.assert_allclose(disp.line_.get_xdata(), [0.55, 0.7, 0.875])
    np.testing.assert_allclose(disp.line_.get_ydata(), [0.0, 1.0, 1.0])


def test_from_estimator_with_a_pipeline(pyplot, iris_split):
    X_train, X_test, y_train, y_test = iris_split
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pipe.fit(X_train, y_train)
    disp = ReliabilityDisplay.from_estimator(pipe, X_test, y_test)
    assert disp.line_.get_label().startswith("Pipeline (ECE = ")
    assert disp.ece == pytest.approx(
        expected_calibration_error(y_test, pipe.predict_proba(X_test), labels=pipe.classes_)
    )


def test_direct_construction_and_plot_options(pyplot):
    disp = ReliabilityDisplay([0.55, 0.75], [0.5, 0.9], [10, 30], estimator_name="A")
    disp.plot(ref_line=False, name="B", show_counts=False)
    # ECE from the arrays: (10 * 0.05 + 30 * 0.15) / 40.
    assert disp.ece is None
    assert disp.line_.get_label() == "B (ECE = 0.125)"
    assert _diagonals(disp.ax_) == []
    assert disp.hist_ax_ is None and disp.bars_ is None
    assert len(disp.figure_.axes) == 1
    assert disp.ax_.get_xlabel().startswith("Confidence")

    # Without bin edges, narrow bars stand at the bins' mean confidences.
    _, ax = pyplot.subplots()
    assert disp.plot(ax).ax_ is ax
    centres = [bar.get_x() + bar.get_width() / 2 for bar in disp.bars_]
    np.testing.assert_allclose(centres, [0.55, 0.75])
    assert all(bar.get_width() < 0.05 for bar in disp.bars_)
    np.testing.assert_array_equal([bar.get_height() for bar in disp.bars_], [10, 30])

    # With them, the bars span the bins.
    edged = ReliabilityDisplay(
        [0.55, 0.75], [0.5, 0.9], [10, 30], bin_edges=[[0.5, 0.6], [0.7, 0.8]]
    )
    edged.plot()
    np.testing.assert_allclose([bar.get_x() for bar in edged.bars_], [0.5, 0.7])
    np.testing.assert_allclose([bar.get_width() for bar in edged.bars_], [0.1, 0.1])


def test_histogram_on_a_given_axes(pyplot):
    fig, (ax, counts_ax) = pyplot.subplots(1, 2)
    first = ReliabilityDisplay([0.55, 0.75], [0.5, 0.9], [10, 30]).plot(ax, hist_ax=counts_ax)
    assert first.hist_ax_ is counts_ax
    assert len(counts_ax.patches) == 2
    # A second display on the same diagram reuses that histogram without being told.
    second = ReliabilityDisplay([0.65], [0.6], [7]).plot(ax)
    assert second.hist_ax_ is counts_ax
    assert len(counts_ax.patches) == 3
    assert len(fig.axes) == 2
    # The histogram is beside the diagram, so the diagram keeps its x-axis label.
    assert ax.get_xlabel().startswith("Confidence")
    with pytest.raises(ValueError, match="hist_ax was given without ax"):
        ReliabilityDisplay([0.5], [0.5], [1]).plot(hist_ax=counts_ax)


@pytest.mark.parametrize("layout", [None, "constrained", "tight"])
def test_histogram_under_a_given_axes_stays_in_the_figure(pyplot, layout):
    fig, (ax, other) = pyplot.subplots(1, 2, figsize=(8, 4), layout=layout)
    y, p = _binary_probabilities({5: 50, 6: 60, 8: 40, 9: 70})
    disp = ReliabilityDisplay.from_predictions(y, p, n_bins=10, ax=ax)
    fig.canvas.draw()
    figure_box = fig.bbox
    diagram, counts = ax.get_window_extent(), disp.hist_ax_.get_window_extent()
    # Under the diagram, as wide, and inside the figure with its x-axis label.
    assert counts.y1 <= diagram.y0 + 1
    assert counts.x0 == pytest.approx(diagram.x0, abs=1) and counts.x1 == pytest.approx(
        diagram.x1, abs=1
    )
    label = disp.hist_ax_.xaxis.label.get_window_extent()
    assert figure_box.x0 <= label.x0 and label.y0 >= figure_box.y0 - 1
    assert not counts.overlaps(other.get_window_extent())


def test_shape_mismatch_errors():
    with pytest.raises(ValueError, match=r"outputs of sklaplace\.metrics\.reliability_curve"):
        ReliabilityDisplay([0.5, 0.7], [0.5], [1, 1])
    with pytest.raises(ValueError, match=r"bin_edges must have shape \(n_nonempty_bins, 2\)"):
        ReliabilityDisplay([0.5, 0.7], [0.5, 0.6], [1, 1], bin_edges=[0.4, 0.6, 0.8])


def test_from_estimator_errors(pyplot, iris_split):
    X_train, X_test, y_train, y_test = iris_split
    with pytest.raises(TypeError, match="LinearRegression has no predict_proba"):
        ReliabilityDisplay.from_estimator(LinearRegression().fit(X_train, y_train), X_test, y_test)
    with pytest.raises(NotFittedError):
        ReliabilityDisplay.from_estimator(LogisticRegression(), X_test, y_test)


def test_missing_matplotlib_error(monkeypatch):
    disp = ReliabilityDisplay([0.5], [0.5], [1])
    # A None entry in sys.modules makes `import matplotlib.pyplot` raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install sklaplace\[plot\]"):
        disp.plot()


# --------------------------------------------------------------------------------------
# The legend keeps off the data
# --------------------------------------------------------------------------------------


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def ten_class_logits():
    """Logits of 2000 rows of 10 classes and labels drawn from their softmax."""
    rng = np.random.default_rng(0)
    logits = 3 * rng.normal(size=(2000, 10))
    probabilities = _softmax(logits)
    u = rng.random(len(logits))[:, None]
    y = np.minimum((u > np.cumsum(probabilities, axis=1)).sum(axis=1), 9)
    return logits, y


@pytest.mark.parametrize(
    "sharpness",
    [
        (2.5,),  # overconfident: points below the diagonal
        (0.4,),  # underconfident: points above it, in the upper left
        (1.0,),  # calibrated: along the diagonal
        (2.5, 0.4),  # both, on one Axes
        (2.5, 1.0, 0.4),
    ],
    ids=["over", "under", "calibrated", "over+under", "three"],
)
def test_legend_does_not_cover_the_curves(pyplot, ten_class_logits, sharpness):
    logits, y = ten_class_logits
    disp = None
    for s in sharpness:
        ax = None if disp is None else disp.ax_
        disp = ReliabilityDisplay.from_predictions(
            y, _softmax(s * logits), name=f"temperature 1/{s}", ax=ax
        )
    box = _assert_legend_clear_of_data(disp)
    if len(sharpness) == 1:
        # One curve always leaves a corner free: the legend stays inside the diagram.
        assert disp.ax_.get_window_extent().contains(box.x0, box.y0)
        assert disp.ax_.get_window_extent().contains(box.x1, box.y1)


def test_legend_keeps_clear_of_the_markers_not_only_of_their_centres(pyplot):
    # A curve in the lower right leaves the upper left free for the legend...
    confidence, accuracy = np.array([0.7, 0.8, 0.9]), np.array([0.1, 0.2, 0.3])
    first = ReliabilityDisplay(confidence, accuracy, [50, 50, 50], ece=0.5).plot()
    box = first.ax_.get_legend().get_window_extent()
    assert first.ax_.get_legend().get_window_extent().x0 < first.ax_.bbox.x0 + 20
    # ...until a point sits 3 pixels right of it: its centre is outside, its marker not.
    centre = first.ax_.transData.inverted().transform([box.x1 + 3, (box.y0 + box.y1) / 2])
    second = ReliabilityDisplay(
        np.r_[centre[0], confidence], np.r_[centre[1], accuracy], [50] * 4, ece=0.5
    ).plot()
    _assert_legend_clear_of_data(second)


def test_legend_goes_right_of_the_diagram_when_no_corner_is_free(pyplot):
    # A curve snaking through a 7 x 7 grid of points: no room inside.
    grid = np.linspace(0.02, 0.98, 7)
    confidence = np.repeat(grid, 7)
    accuracy = np.concatenate([grid if k % 2 == 0 else grid[::-1] for k in range(7)])
    counts = np.full(49, 50)
    disp = ReliabilityDisplay(confidence, accuracy, counts, estimator_name="zigzag")
    width = 6.0
    disp.plot()
    box = _assert_legend_clear_of_data(disp)
    assert box.x0 >= disp.ax_.get_window_extent().x1
    # The display made the figure, so it widens it to keep the diagram's size.
    assert disp.figure_.get_figwidth() > width
    assert box.x1 <= disp.figure_.bbox.x1


def test_saves_png(pyplot, ten_class_logits, tmp_path):
    logits, y = ten_class_logits
    disp = ReliabilityDisplay.from_predictions(y, _softmax(2.5 * logits), name="MAP")
    ReliabilityDisplay.from_predictions(y, _softmax(0.4 * logits), name="Laplace", ax=disp.ax_)
    path = tmp_path / "reliability.png"
    disp.figure_.savefig(path, dpi=80)
    from matplotlib.image import imread

    image = imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05, "the picture is (nearly) blank"
