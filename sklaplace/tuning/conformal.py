"""Normalised split conformal intervals: Laplace's per-row widths, coverage guaranteed.

On calibration rows the net never trained on, the scores ``s_i = |y_i - mean_i| / std_i``
(``std`` the Laplace predictive std, observation noise included) are sorted once, in
``fit``. For a new row the interval is ``mean +- q std`` with ``q`` the
``k = ceil((n + 1) * confidence)``-th smallest of the ``n`` scores: if the calibration
rows and the new row are exchangeable, the new row's score is below ``q`` with
probability at least ``confidence`` (and below ``confidence + 1 / (n + 1)``), whatever
the net, the posterior or the noise (Vovk et al. 2005; Lei et al. 2018; the normalised
score keeps the width's dependence on the row). With ``k > n`` no finite interval has
that guarantee: the interval is infinite.

The guarantee needs scores computed with everything fixed before the calibration rows
are seen; ``fit`` therefore splits the unseen rows in two: one half tunes the
hyper-parameters, the other calibrates.
"""

from __future__ import annotations

import math

import numpy as np

from .._runtime.warnings import warn

__all__ = ["ConformalScores", "rows_needed"]


def rows_needed(confidence: float) -> int:
    """The fewest calibration rows with a finite interval at ``confidence``: the least
    ``n`` with ``ceil((n + 1) * confidence) <= n`` (9 for 0.9, 19 for 0.95)."""
    return math.ceil((confidence - 1e-12) / (1 - confidence))


class ConformalScores:
    """Sorted normalised scores of calibration rows, one column per output.

    Parameters
    ----------
    y : ndarray of shape (n, K)
    mean, std : ndarray of shape (n, K)
        The predictive mean and std (noise included) of the calibration rows.

    Examples
    --------
    >>> import numpy as np
    >>> scores = ConformalScores(np.arange(9.0)[:, None], np.zeros((9, 1)), np.ones((9, 1)))
    >>> float(scores.quantile(0.8)[0])  # k = ceil(10 * 0.8) = 8: the 8th smallest, 7.0
    7.0
    """

    def __init__(self, y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.abs(y - mean) / std
        self.scores = np.sort(np.nan_to_num(scores, nan=np.inf), axis=0)

    @property
    def n(self) -> int:
        return self.scores.shape[0]

    def quantile(self, confidence: float) -> np.ndarray:
        """``q`` per output: the ``ceil((n + 1) * confidence)``-th smallest score."""
        # (the 1e-12 keeps (n + 1) * c from rounding above an integer it equals)
        k = math.ceil((self.n + 1) * confidence - 1e-12)
        if k > self.n:  # the least n with k <= n, by the same rule
            needed = rows_needed(confidence)
            warn(
                f"{self.n} calibration rows are too few for {confidence:.3g} confidence: "
                f"split conformal needs at least {needed} "
                "of them, so the interval is infinite. Pass more unseen rows (X_val), or "
                "use interval='gaussian'."
            )
            return np.full(self.scores.shape[1], np.inf)
        return self.scores[k - 1]

    def interval(self, mean: np.ndarray, std: np.ndarray, confidence: float):
        """``(lower, upper)`` = ``mean -+ q * std`` (shapes of ``mean``: (m, K))."""
        q = self.quantile(confidence)
        return mean - q * std, mean + q * std
