"""Plots for predictive uncertainty, in scikit-learn's Display style.

matplotlib is an optional dependency, imported only when something is drawn; install it
with ``pip install sklaplace[plot]``.
"""

from .reliability import ReliabilityDisplay

__all__ = ["ReliabilityDisplay"]
