"""Package-wide settings, in scikit-learn's style: ``set_config``, ``get_config``,
``config_context``.

Four settings: ``cache_bytes``, the bound on the memory that sklaplace's pass cache may
hold, ``cache_admission``, which passes it stores, ``pass_threads``, the torch threads its
passes run on (see :doc:`/scaling`), and ``max_result_bytes``, the bound on the covariance
across rows that ``predict(X, return_cov=True)`` and ``sample_y`` may build. As in scikit-learn,
the settings are per thread: a thread starts from the global values, ``set_config``
changes the calling thread's values and the global defaults, and ``config_context``
changes the calling thread's values inside a ``with`` block only. Worker processes
(joblib's loky, dask) start from the defaults.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from numbers import Integral

__all__ = ["config_context", "get_config", "set_config"]

_DEFAULT_CACHE_BYTES = 2**30
_global_config = {
    "cache_bytes": _DEFAULT_CACHE_BYTES,
    "cache_admission": "reuse",
    "pass_threads": "auto",
    "max_result_bytes": "available",
}
_ADMISSIONS = ("reuse", "always")
_local = threading.local()
# Called with the new settings after set_config (the cache evicts down to a lower bound).
_listeners: list = []


def add_listener(listener) -> None:
    """Call ``listener(settings)`` after every ``set_config``."""
    _listeners.append(listener)


def _thread_config() -> dict:
    if not hasattr(_local, "config"):
        _local.config = dict(_global_config)
    return _local.config


def get_config() -> dict:
    """The current values of sklaplace's settings (a copy).

    Returns
    -------
    dict
        ``{"cache_bytes": int, "cache_admission": str, "pass_threads": "auto", "torch" or
        int, "max_result_bytes": int or "available"}``.

    See Also
    --------
    set_config : Change the settings.
    config_context : Change the settings inside a ``with`` block.

    Examples
    --------
    >>> import sklaplace
    >>> sklaplace.get_config()["cache_bytes"] == 2**30
    True
    """
    return dict(_thread_config())


def _check_cache_bytes(value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(
            f"cache_bytes must be a non-negative int (bytes; 0 turns the cache off), got "
            f"{value!r}."
        )
    return int(value)


def _check_admission(value) -> str:
    if not isinstance(value, str) or value not in _ADMISSIONS:
        raise ValueError(
            f"cache_admission must be 'reuse' (store a pass when it is likely to be used "
            f"again) or 'always' (store every pass that fits), got {value!r}."
        )
    return value


def _check_pass_threads(value) -> int | str:
    if isinstance(value, str) and value in ("auto", "torch"):
        return value
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(
            f"pass_threads must be 'auto', 'torch' or a positive int (torch threads for "
            f"sklaplace's passes), got {value!r}."
        )
    return int(value)


def _check_result_bytes(value) -> int | str:
    if isinstance(value, str) and value == "available":
        return value
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(
            f"max_result_bytes must be a non-negative int (bytes) or 'available' (the memory "
            f"the system reports available), got {value!r}."
        )
    return int(value)


def set_config(
    cache_bytes: int | None = None,
    max_result_bytes=None,
    cache_admission: str | None = None,
    pass_threads=None,
) -> None:
    """Change sklaplace's settings.

    Parameters
    ----------
    cache_bytes : int, default=None
        Bound, in bytes, on what the pass cache holds: the forward passes, curvatures and
        projected passes that a grid search over a frozen net reuses (1 GiB unless
        changed; one entry takes at most a quarter of it). ``0`` turns the cache off:
        nothing is stored or looked up, and no input or net is fingerprinted. Lowering
        the bound evicts the least recently used entries at once. ``None`` leaves the
        setting as it is.
    max_result_bytes : int or "available", default=None
        Bound, in bytes, on the covariance across rows that ``predict(X,
        return_cov=True)`` and ``sample_y`` build (``n_rows^2 * n_targets`` float64
        numbers; ``sample_y`` one ``(n_rows, n_rows)`` matrix more): beyond it they raise
        ``MemoryError`` before any pass over X, with the size they would need. "available"
        (the initial value): the memory the system reports available (Linux; no bound
        where it is unknown). ``None`` leaves the setting as it is.
    cache_admission : {"reuse", "always"}, default=None
        Which passes the cache stores (see :doc:`/scaling`). "reuse" (the initial value):
        a pass that is likely to be used again, that is, asked for a second time (the same
        net, rows and settings) or run inside scikit-learn's model selection
        (``GridSearchCV``, ``cross_val_score`` and the like); a single prediction on new
        rows then costs neither fingerprints nor a copy into the cache. "always": every
        pass that fits, from its first request. The curvature of a fit is stored either
        way (by reference: it costs no copy). ``None`` leaves the setting as it is.
    pass_threads : "auto", "torch" or int, default=None
        The torch threads (and numpy BLAS threads) that sklaplace's passes (fit and the
        predictions) run on, set with ``torch.set_num_threads`` for the call and restored
        after it (see :doc:`/scaling`). "auto" (the initial value): one thread for a
        small net (its largest parameter tensor times the rows of a batch under
        ``2**24``: every operation is then too small to gain from threads, and on a
        busy machine each parallel region waits for descheduled threads), torch's own
        setting otherwise. "torch": torch's own setting, always. An int: at most that many
        threads. The thread count changes results by float round-off only. ``None``
        leaves the setting as it is.

    See Also
    --------
    get_config : The current settings.
    config_context : Change the settings inside a ``with`` block.

    Examples
    --------
    >>> import sklaplace
    >>> sklaplace.set_config(cache_bytes=64 * 2**20)
    >>> sklaplace.get_config()["cache_bytes"]
    67108864
    >>> sklaplace.set_config(cache_bytes=2**30)
    """
    if cache_bytes is not None:
        value = _check_cache_bytes(cache_bytes)
        _global_config["cache_bytes"] = value
        _thread_config()["cache_bytes"] = value
    if max_result_bytes is not None:
        value = _check_result_bytes(max_result_bytes)
        _global_config["max_result_bytes"] = value
        _thread_config()["max_result_bytes"] = value
    if cache_admission is not None:
        value = _check_admission(cache_admission)
        _global_config["cache_admission"] = value
        _thread_config()["cache_admission"] = value
    if pass_threads is not None:
        value = _check_pass_threads(pass_threads)
        _global_config["pass_threads"] = value
        _thread_config()["pass_threads"] = value
    if cache_bytes is not None or max_result_bytes is not None:
        for listener in _listeners:
            listener(get_config())


@contextmanager
def config_context(
    *,
    cache_bytes: int | None = None,
    max_result_bytes=None,
    cache_admission: str | None = None,
    pass_threads=None,
):
    """Change sklaplace's settings inside a ``with`` block (in the calling thread).

    Parameters
    ----------
    cache_bytes : int, default=None
        See :func:`set_config`. ``config_context(cache_bytes=0)`` runs the block with the
        cache off.
    max_result_bytes : int or "available", default=None
        See :func:`set_config`.
    cache_admission : {"reuse", "always"}, default=None
        See :func:`set_config`.
    pass_threads : "auto", "torch" or int, default=None
        See :func:`set_config`.

    Examples
    --------
    >>> import sklaplace
    >>> with sklaplace.config_context(cache_bytes=0):
    ...     sklaplace.get_config()["cache_bytes"]
    0
    >>> sklaplace.get_config()["cache_bytes"] > 0
    True
    """
    config = _thread_config()
    old = dict(config)
    if cache_bytes is not None:
        config["cache_bytes"] = _check_cache_bytes(cache_bytes)
    if max_result_bytes is not None:
        config["max_result_bytes"] = _check_result_bytes(max_result_bytes)
    if cache_admission is not None:
        config["cache_admission"] = _check_admission(cache_admission)
    if pass_threads is not None:
        config["pass_threads"] = _check_pass_threads(pass_threads)
    try:
        yield
    finally:
        config.clear()
        config.update(old)
