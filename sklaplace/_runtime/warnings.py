"""Warnings that point at the user's line, not at sklaplace's.

``warn`` walks up the call stack past sklaplace's own frames and scikit-learn's
method wrappers (``_fit_context``, ``set_output``) and reports the first frame outside
them: the user's ``clf.fit(...)``, or the scikit-learn routine (a ``GridSearchCV``) that
called sklaplace.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings

import sklearn

__all__ = ["InconsistentVersionWarning", "ignoring", "warn"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # sklaplace/
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


class InconsistentVersionWarning(UserWarning):
    """Warning raised when an estimator is unpickled with another version of sklaplace
    than the one that pickled it.

    The fitted state's layout and what it means can change between versions, so the
    loaded estimator may fail or, worse, predict something else. Refit it with the
    installed version, or load it with the version that wrote it.

    Parameters
    ----------
    estimator_name : str
        The estimator's class name.
    current_version : str
        The installed version of sklaplace.
    original_version : str
        The version that pickled the estimator ("pre-0.2" for pickles that carry none).
    """

    def __init__(self, *, estimator_name, current_version, original_version):
        self.estimator_name = estimator_name
        self.current_version = current_version
        self.original_version = original_version

    def __str__(self):
        return (
            f"Trying to unpickle estimator {self.estimator_name} from sklaplace version "
            f"{self.original_version} when using version {self.current_version}. This might "
            "lead to breaking code or invalid results: the fitted state can change between "
            "versions. Refit the estimator with sklaplace "
            f"{self.current_version}, or load it with sklaplace {self.original_version}."
        )


# one of sklaplace's sections that silence a warning at a time, in this process
_FILTERS = threading.RLock()


@contextlib.contextmanager
def ignoring(category: type[Warning]):
    """Ignore ``category`` inside the block, one such block at a time in the process.

    ``warnings.catch_warnings`` saves the process's filter list on entry and restores it on
    exit: two threads inside it at once (members fitted in threads, a threaded grid search)
    restore each other's lists, and one thread's "ignore" can stay behind in the caller's
    process. The lock keeps sklaplace's own blocks from overlapping.
    """
    with _FILTERS, warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        yield
