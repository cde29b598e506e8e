"""Plots for predictive uncertainty, in scikit-learn's Display style.

matplotlib is an optional dependency, imported only when something is drawn; install it
with ``pip install sklaplace[plot]``.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .metrics import _ece_from_curve, reliability_curve

__all__ = ["ReliabilityDisplay"]

# Marks the diagonal so that several displays drawn on one Axes add it only once.
_DIAGONAL_GID = "sklaplace-reliability-diagonal"


def _import_pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib, which is not installed. Install it with "
            "`pip install sklaplace[plot]` (or `pip install matplotlib`)."
        ) from exc
    return plt


class ReliabilityDisplay:
    """Top-label reliability diagram: accuracy against confidence, with the ECE.

    Each point is one equal-width confidence bin: its mean top-label confidence (the
    largest predicted probability) on the x-axis and the fraction of correct predictions
    on the y-axis. Points on the dotted diagonal are calibrated, points below it
    overconfident and points above it underconfident. The legend shows the expected
    calibration error (ECE).

    Build it with :meth:`from_estimator` or :meth:`from_predictions`. Several displays can
    be drawn on one Axes (pass ``ax=``) to compare models, e.g. a network's MAP
    prediction with its Laplace-approximated predictive.

    Parameters
    ----------
    confidence : ndarray of shape (n_nonempty_bins,)
        Mean top-label confidence per bin, as returned by
        :func:`~sklaplace.metrics.reliability_curve`.
    accuracy : ndarray of shape (n_nonempty_bins,)
        Accuracy per bin.
    counts : ndarray of shape (n_nonempty_bins,)
        Number of samples per bin.
    ece : float, default=None
        Expected calibration error shown in the legend. By default it is computed from
        the three arrays, which gives the value of
        :func:`~sklaplace.metrics.expected_calibration_error`.
    estimator_name : str, default=None
        Name shown in the legend; nothing but the ECE is shown if None.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The reliability curve.
    ax_ : matplotlib Axes
        The Axes it is drawn on.
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
    >>> plt.close(disp.figure_)
    """

    def __init__(self, confidence, accuracy, counts, *, ece=None, estimator_name=None):
        self.confidence = np.asarray(confidence, dtype=np.float64)
        self.accuracy = np.asarray(accuracy, dtype=np.float64)
        self.counts = np.asarray(counts)
        if not self.confidence.shape == self.accuracy.shape == self.counts.shape:
            raise ValueError(
                "confidence, accuracy and counts must have the same shape, got "
                f"{self.confidence.shape}, {self.accuracy.shape} and {self.counts.shape}. "
                "Pass the three outputs of sklaplace.metrics.reliability_curve."
            )
        self.ece = ece
        self.estimator_name = estimator_name

    def plot(self, ax=None, *, name=None, ref_line=True, **kwargs):
        """Draw the reliability diagram.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created if None. Pass the ``ax_`` of another
            display to draw both curves on one plot.
        name : str, default=None
            Name for the legend, overriding ``estimator_name``.
        ref_line : bool, default=True
            Whether to draw the diagonal of perfect calibration (drawn only once per
            Axes).
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot` for the curve, e.g. ``color=``.

        Returns
        -------
        display : ReliabilityDisplay
            This object, with ``line_``, ``ax_`` and ``figure_`` set.

        Examples
        --------
        >>> import matplotlib.pyplot as plt
        >>> from sklaplace.plotting import ReliabilityDisplay
        >>> disp = ReliabilityDisplay([0.55, 0.75], [0.5, 0.9], [10, 30], estimator_name="A")
        >>> disp = disp.plot()
        >>> disp.line_.get_label()
        'A (ECE = 0.125)'
        >>> plt.close(disp.figure_)
        """
        plt = _import_pyplot()
        if ax is None:
            _, ax = plt.subplots()

        ece = self.ece
        if ece is None:
            ece = _ece_from_curve(self.confidence, self.accuracy, self.counts)
        name = self.estimator_name if name is None else name
        label = f"ECE = {ece:.3f}" if name is None else f"{name} (ECE = {ece:.3f})"

        if ref_line and not any(line.get_gid() == _DIAGONAL_GID for line in ax.get_lines()):
            ax.plot(
                [0, 1],
                [0, 1],
                linestyle=":",
                color="black",
                linewidth=1,
                label="Perfectly calibrated",
                gid=_DIAGONAL_GID,
            )

        line_kwargs = {"marker": "o", "label": label, **kwargs}
        (self.line_,) = ax.plot(self.confidence, self.accuracy, **line_kwargs)
        ax.set(
            xlim=(-0.02, 1.02),
            ylim=(-0.02, 1.02),
            xlabel="Confidence (mean top-label probability in bin)",
            ylabel="Accuracy in bin",
        )
        ax.legend(loc="upper left")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_estimator(
        cls, estimator, X, y, *, n_bins=15, name=None, ax=None, ref_line=True, **kwargs
    ):
        """Reliability diagram of a fitted classifier's ``predict_proba`` on ``X``.

        Parameters
        ----------
        estimator : fitted classifier
            Must have ``predict_proba``; its ``classes_`` give the class of each column.
        X : array-like of shape (n_samples, n_features)
            Input data, preferably not the training data.
        y : array-like of shape (n_samples,)
            True class labels.
        n_bins : int, default=15
            Number of equal-width confidence bins on [0, 1].
        name : str, default=None
            Name for the legend; the estimator's class name if None.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created if None.
        ref_line : bool, default=True
            Whether to draw the diagonal of perfect calibration.
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
        >>> len(first.ax_.get_legend().get_texts())  # diagonal + two curves
        3
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
            name=name,
            ax=ax,
            ref_line=ref_line,
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
        name=None,
        ax=None,
        ref_line=True,
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
        name : str, default=None
            Name for the legend.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created if None.
        ref_line : bool, default=True
            Whether to draw the diagonal of perfect calibration.
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
        >>> plt.close(disp.figure_)
        """
        confidence, accuracy, counts = reliability_curve(
            y_true, y_prob, n_bins=n_bins, labels=labels
        )
        display = cls(
            confidence,
            accuracy,
            counts,
            ece=_ece_from_curve(confidence, accuracy, counts),
            estimator_name=name,
        )
        return display.plot(ax=ax, ref_line=ref_line, **kwargs)
