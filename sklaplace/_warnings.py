"""Warnings that point at the user's line, not at sklaplace's.

``warn`` walks up the call stack past sklaplace's own frames and scikit-learn's
method wrappers (``_fit_context``, ``set_output``) and reports the first frame outside
them: the user's ``clf.fit(...)``, or the scikit-learn routine (a ``GridSearchCV``) that
called sklaplace.
"""

from __future__ import annotations

import os
import sys
import warnings

import sklearn

__all__ = ["warn"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_SKLEARN_WRAPPERS = tuple(
    os.path.join(os.path.dirname(os.path.abspath(sklearn.__file__)), *parts)
    for parts in (("base.py",), ("utils", "_set_output.py"))
)


def _internal(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path.startswith(_PACKAGE + os.sep) or path in _SKLEARN_WRAPPERS


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the stack level of the first frame outside sklaplace."""
    frame = sys._getframe(1)
    level = 2
    while frame is not None and _internal(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
