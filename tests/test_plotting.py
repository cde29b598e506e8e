import re
import sys

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split

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

    assert disp.ax_.get_xlabel().startswith("Confidence")
    assert disp.ax_.get_ylabel().startswith("Accuracy")
    assert disp.figure_ is disp.ax_.figure
    (diagonal,) = _diagonals(disp.ax_)
    np.testing.assert_array_equal(diagonal.get_xdata(), [0, 1])
    np.testing.assert_array_equal(diagonal.get_ydata(), [0, 1])
    legend_texts = [text.get_text() for text in disp.ax_.get_legend().get_texts()]
    assert legend_texts == ["Perfectly calibrated", disp.line_.get_label()]


def test_two_displays_share_one_ax(pyplot, iris_split):
    X_train, X_test, y_train, y_test = iris_split
    sharp = LogisticRegression(C=100, max_iter=1000).fit(X_train, y_train)
    flat = LogisticRegression(C=0.01, max_iter=1000).fit(X_train, y_train)
    first = ReliabilityDisplay.from_estimator(sharp, X_test, y_test, name="MAP")
    second = ReliabilityDisplay.from_estimator(flat, X_test, y_test, name="Laplace", ax=first.ax_)

    assert second.ax_ is first.ax_
    assert second.figure_ is first.figure_
    assert len(first.figure_.axes) == 1
    assert len(_diagonals(first.ax_)) == 1  # drawn once
    assert len(first.ax_.get_lines()) == 3
    labels = [text.get_text() for text in first.ax_.get_legend().get_texts()]
    assert labels == ["Perfectly calibrated", first.line_.get_label(), second.line_.get_label()]
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


def test_direct_construction_and_plot_options(pyplot):
    disp = ReliabilityDisplay([0.55, 0.75], [0.5, 0.9], [10, 30], estimator_name="A")
    disp.plot(ref_line=False, name="B")
    # ECE from the arrays: (10 * 0.05 + 30 * 0.15) / 40.
    assert disp.ece is None
    assert disp.line_.get_label() == "B (ECE = 0.125)"
    assert _diagonals(disp.ax_) == []
    _, ax = pyplot.subplots()
    assert disp.plot(ax).ax_ is ax


def test_saves_png(pyplot, iris_split, tmp_path):
    X_train, X_test, y_train, y_test = iris_split
    clf = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    disp = ReliabilityDisplay.from_estimator(clf, X_test, y_test)
    path = tmp_path / "reliability.png"
    disp.figure_.savefig(path)
    assert path.stat().st_size > 0


def test_shape_mismatch_error():
    with pytest.raises(ValueError, match=r"outputs of sklaplace\.metrics\.reliability_curve"):
        ReliabilityDisplay([0.5, 0.7], [0.5], [1, 1])


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
