"""ReliabilityDisplay: a top-label reliability diagram, in scikit-learn's Display style.

What it draws is in ``_curve.py`` (the diagram), ``_counts.py`` (the histogram under it)
and ``_legend.py`` (the legend); matplotlib is imported only when something is drawn.
"""

from sklearn.utils.validation import check_is_fitted

from ..metrics import reliability_curve
from ..metrics._calibration import _ece_from_curve
from ._counts import _XLABEL, _check_min_count, _draw_counts, _fit_log_axis
from ._curve import _check_curve, _diagram_axes, _draw_curve, _draw_diagonal, _import_pyplot
from ._legend import _place_legend, _update_notes

__all__ = ["ReliabilityDisplay"]


class ReliabilityDisplay:
    """Top-label reliability diagram with the ECE and the number of rows per bin.

    Each point is one equal-width confidence bin: its mean top-label confidence (the
    largest predicted probability) on the x-axis and the fraction of correct predictions
    on the y-axis. Points on the dotted diagonal are calibrated, points below it
    overconfident and points above it underconfident. The legend shows the expected
    calibration error (ECE). A histogram under the diagram shows how many rows each bin
    holds, on a log scale: a bin of a few rows has a noisy accuracy, so bins holding fewer
    than ``min_count`` rows (a dotted line in the histogram) have hollow markers and
    bars; they still count in the curve and the ECE. The legend goes where it covers no
    point or segment of a curve: into a free corner, else right of the diagram.

    Build it with :meth:`from_estimator` or :meth:`from_predictions`. Several displays can
    be drawn on one Axes (pass ``ax=``) to compare models, e.g. a network's MAP
    prediction with its Laplace-approximated predictive; their histograms share one
    Axes under it.

    Parameters
    ----------
    confidence : ndarray of shape (n_nonempty_bins,)
        Mean top-label confidence per bin, as returned by
        :func:`~sklaplace.metrics.reliability_curve`.
    accuracy : ndarray of shape (n_nonempty_bins,)
        Accuracy per bin.
    counts : ndarray of shape (n_nonempty_bins,)
        Number of samples (or their total weight) per bin.
    ece : float, default=None
        Expected calibration error shown in the legend. By default it is computed from
        the three arrays, which gives the value of
        :func:`~sklaplace.metrics.expected_calibration_error`.
    estimator_name : str, default=None
        Name shown in the legend; nothing but the ECE is shown if None.
    bin_edges : ndarray of shape (n_nonempty_bins, 2), default=None
        Lower and upper edge of each bin, from
        ``reliability_curve(..., return_bin_edges=True)``: the histogram bars then span
        their bins. If None, each bar is a narrow bar at the bin's mean confidence.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The reliability curve.
    hollow_markers_ : matplotlib Line2D or None
        The hollow markers of the bins holding fewer than ``min_count`` rows, or None if
        there are none.
    sparse_bins_ : ndarray of bool of shape (n_nonempty_bins,)
        Which bins are drawn hollow.
    min_count_ : float
        The count below which a bin is drawn hollow.
    bars_ : matplotlib BarContainer or None
        The bars of the histogram of the counts (None with ``show_counts=False``).
    ax_ : matplotlib Axes
        The Axes the diagram is drawn on.
    hist_ax_ : matplotlib Axes or None
        The Axes of the histogram of the counts (None with ``show_counts=False``).
    figure_ : matplotlib Figure
        The figure holding the Axes.

    See Also
    --------
    sklaplace.metrics.reliability_curve : The data of the plot.
    sklaplace.metrics.expected_calibration_error : The number in the legend.
    sklearn.calibration.CalibrationDisplay : The binary, positive-class counterpart.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklaplace.plotting import ReliabilityDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LogisticRegression(C=0.05, max_iter=1000).fit(X, y)
    >>> disp = ReliabilityDisplay.from_estimator(clf, X, y, n_bins=10, name="LogReg")
    >>> disp.line_.get_label()
    'LogReg (ECE = 0.235)'
    >>> [int(bar.get_height()) for bar in disp.bars_]  # rows per non-empty bin
    [8, 39, 29, 16, 54, 4]
    >>> disp.sparse_bins_.tolist()  # the last bin holds < 5 rows: drawn hollow
    [False, False, False, False, False, True]
    >>> plt.close(disp.figure_)
    """

    def __init__(
        self, confidence, accuracy, counts, *, ece=None, estimator_name=None, bin_edges=None
    ):
        self.confidence, self.accuracy, self.counts, self.bin_edges = _check_curve(
            confidence, accuracy, counts, bin_edges
        )
        self.ece = ece
        self.estimator_name = estimator_name
        self._count_unit = "rows"

    def plot(
        self,
        ax=None,
        *,
        name=None,
        ref_line=True,
        show_counts=True,
        hist_ax=None,
        min_count="auto",
        **kwargs,
    ):
        """Draw the reliability diagram and, under it, the histogram of the counts.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw the diagram on; a new figure (with the histogram under the
            diagram) is created if None. Pass the ``ax_`` of another display to draw
            both curves on one plot: the bars go to the same histogram.
        name : str, default=None
            Name for the legend, overriding ``estimator_name``.
        ref_line : bool, default=True
            Whether to draw the diagonal of perfect calibration (drawn only once per
            Axes).
        show_counts : bool, default=True
            Whether to draw the histogram of the counts.
        hist_ax : matplotlib Axes, default=None
            Axes for the histogram. If None, the one of an earlier display on ``ax`` is
            reused, or a new Axes is made under ``ax`` (taking room from it, or below it
            in a figure with the constrained layout).
        min_count : "auto" or float, default="auto"
            Bins holding fewer rows than this (total weight, with sample weights) get a
            hollow marker and bar; a dotted line marks it in the histogram. "auto": 5
            rows or 1 % of all rows, whichever is more. 0 draws every bin alike. Bins hold
            whole rows: with unweighted counts the threshold is rounded up to a whole
            number of rows (1 % of 540 rows: fewer than 6 rows, the same bins as fewer than
            5.4), which ``min_count_`` and the legend show.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot` for the curve, e.g. ``color=``.

        Returns
        -------
        display : ReliabilityDisplay
            This object, with ``line_``, ``hollow_markers_``, ``sparse_bins_``,
            ``min_count_``, ``bars_``, ``ax_``, ``hist_ax_`` and ``figure_`` set.

        Examples
        --------
        >>> import matplotlib.pyplot as plt
        >>> from sklaplace.plotting import ReliabilityDisplay
        >>> disp = ReliabilityDisplay([0.55, 0.75], [0.5, 0.9], [10, 30], estimator_name="A")
        >>> disp = disp.plot()
        >>> disp.line_.get_label()
        'A (ECE = 0.125)'
        >>> disp.hist_ax_.get_ylabel()
        'Rows'
        >>> plt.close(disp.figure_)
        """
        _import_pyplot()  # the error message comes before any other
        min_count = _check_min_count(min_count, self.counts, self._count_unit)
        ax, hist_ax, below = _diagram_axes(ax, hist_ax, show_counts, self._count_unit)
        ece = self.ece
        if ece is None:
            ece = _ece_from_curve(self.confidence, self.accuracy, self.counts)
        name = self.estimator_name if name is None else name
        label = f"ECE = {ece:.3f}" if name is None else f"{name} (ECE = {ece:.3f})"
        if ref_line:
            _draw_diagonal(ax)
        sparse = self.counts < min_count
        self.line_, self.hollow_markers_ = _draw_curve(
            ax, self.confidence, self.accuracy, sparse, label, kwargs
        )
        _update_notes(ax, min_count if sparse.any() else None, self._count_unit)
        self.sparse_bins_ = sparse
        self.min_count_ = min_count

        self.bars_ = None
        if show_counts:
            self.bars_ = _draw_counts(
                hist_ax,
                self.confidence,
                self.counts,
                self.bin_edges,
                self.line_.get_color(),
                sparse,
                min_count,
            )
            if below:
                _fit_log_axis(hist_ax)
        if not below:
            ax.set_xlabel(_XLABEL)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), ylabel="Accuracy in bin")
        self.ax_ = ax
        self.hist_ax_ = hist_ax
        self.figure_ = ax.figure
        _place_legend(ax)
        return self

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        n_bins=15,
        sample_weight=None,
        name=None,
        ax=None,
        ref_line=True,
        show_counts=True,
        hist_ax=None,
        min_count="auto",
        **kwargs,
    ):
        """Reliability diagram of a fitted classifier's ``predict_proba`` on ``X``.

        Parameters
        ----------
        estimator : fitted classifier
            Must have ``predict_proba`` (a Pipeline ending in a classifier has it); its
            ``classes_`` give the class of each column.
        X : array-like of shape (n_samples, n_features)
            Input data, preferably not the training data.
        y : array-like of shape (n_samples,)
            True class labels.
        n_bins : int, default=15
            Number of equal-width confidence bins on [0, 1].
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples: the curve, ECE and counts are weighted (see
            :func:`~sklaplace.metrics.reliability_curve`).
        name : str, default=None
            Name for the legend; the estimator's class name if None.
        ax : matplotlib Axes, default=None
            Axes to draw the diagram on; a new figure is created if None.
        ref_line : bool, default=True
            Whether to draw the diagonal of perfect calibration.
        show_counts : bool, default=True
            Whether to draw the histogram of the counts under the diagram.
        hist_ax : matplotlib Axes, default=None
            Axes for the histogram; see :meth:`plot`.
        min_count : "auto" or float, default="auto"
            Bins with fewer rows are drawn hollow; see :meth:`plot`.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot` for the curve.

        Returns
        -------
        display : ReliabilityDisplay

        Examples
        --------
        >>> import matplotlib.pyplot as plt
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.linear_model import LogisticRegression
        >>> from sklaplace.plotting import ReliabilityDisplay
        >>> X, y = load_iris(return_X_y=True)
        >>> sharp = LogisticRegression(C=100, max_iter=1000).fit(X, y)
        >>> smooth = LogisticRegression(C=0.05, max_iter=1000).fit(X, y)
        >>> first = ReliabilityDisplay.from_estimator(sharp, X, y, name="C=100")
        >>> second = ReliabilityDisplay.from_estimator(smooth, X, y, name="C=0.05",
        ...                                            ax=first.ax_)
        >>> second.hist_ax_ is first.hist_ax_  # one histogram, bars of both models
        True
        >>> for text in first.ax_.get_legend().get_texts():
        ...     print(text.get_text())
        Perfectly calibrated
        C=100 (ECE = 0.023)
        C=0.05 (ECE = 0.235)
        Hollow: < 5 rows
        >>> plt.close(first.figure_)
        """
        if not hasattr(estimator, "predict_proba"):
            raise TypeError(
                f"{type(estimator).__name__} has no predict_proba method; a reliability "
                "diagram needs predicted class probabilities. Use a probabilistic "
                "classifier, or from_predictions with probabilities you computed."
            )
        check_is_fitted(estimator)
        y_prob = estimator.predict_proba(X)
        name = type(estimator).__name__ if name is None else name
        return cls.from_predictions(
            y,
            y_prob,
            n_bins=n_bins,
            labels=getattr(estimator, "classes_", None),
            sample_weight=sample_weight,
            name=name,
            ax=ax,
            ref_line=ref_line,
            show_counts=show_counts,
            hist_ax=hist_ax,
            min_count=min_count,
            **kwargs,
        )

    @classmethod
    def from_predictions(
        cls,
        y_true,
        y_prob,
        *,
        n_bins=15,
        labels=None,
        sample_weight=None,
        name=None,
        ax=None,
        ref_line=True,
        show_counts=True,
        hist_ax=None,
        min_count="auto",
        **kwargs,
    ):
        """Reliability diagram of predicted class probabilities.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            True class labels, of any type.
        y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
            Predicted class probabilities; a 1-D array holds the positive-class
            probabilities of a binary problem.
        n_bins : int, default=15
            Number of equal-width confidence bins on [0, 1].
        labels : array-like of shape (n_classes,), default=None
            The class of each column of ``y_prob``, in column order; see
            :func:`~sklaplace.metrics.reliability_curve`.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples: the curve, ECE and counts are weighted (see
            :func:`~sklaplace.metrics.reliability_curve`).
        name : str, default=None
            Name for the legend.
        ax : matplotlib Axes, default=None
            Axes to draw the diagram on; a new figure is created if None.
        ref_line : bool, default=True
            Whether to draw the diagonal of perfect calibration.
        show_counts : bool, default=True
            Whether to draw the histogram of the counts under the diagram.
        hist_ax : matplotlib Axes, default=None
            Axes for the histogram; see :meth:`plot`.
        min_count : "auto" or float, default="auto"
            Bins with fewer rows are drawn hollow; see :meth:`plot`.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot` for the curve.

        Returns
        -------
        display : ReliabilityDisplay

        Examples
        --------
        >>> import matplotlib.pyplot as plt
        >>> from sklaplace.plotting import ReliabilityDisplay
        >>> y_true = ["cat", "dog", "dog", "emu"]
        >>> y_prob = [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.55, 0.35, 0.1], [0.1, 0.05, 0.85]]
        >>> disp = ReliabilityDisplay.from_predictions(y_true, y_prob, n_bins=5, name="MAP")
        >>> disp.line_.get_label()
        'MAP (ECE = 0.275)'
        >>> [round(float(bar.get_x()), 2) for bar in disp.bars_]  # the bins' lower edges
        [0.4, 0.6, 0.8]
        >>> [int(bar.get_height()) for bar in disp.bars_]  # rows in each bin
        [1, 1, 2]
        >>> plt.close(disp.figure_)
        """
        confidence, accuracy, counts, bin_edges = reliability_curve(
            y_true,
            y_prob,
            n_bins=n_bins,
            labels=labels,
            sample_weight=sample_weight,
            return_bin_edges=True,
        )
        display = cls(
            confidence,
            accuracy,
            counts,
            ece=_ece_from_curve(confidence, accuracy, counts),
            estimator_name=name,
            bin_edges=bin_edges,
        )
        if sample_weight is not None:
            display._count_unit = "weight"
        return display.plot(
            ax=ax,
            ref_line=ref_line,
            show_counts=show_counts,
            hist_ax=hist_ax,
            min_count=min_count,
            **kwargs,
        )
