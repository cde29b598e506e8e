"""The torch threads that sklaplace's passes run on (setting ``pass_threads``, :doc:`/scaling`).

The outermost ``torch_state`` of a call (:mod:`sklaplace._runtime.passes`) is also the
scope of the torch thread count its passes run on: a ``NetView`` made inside it lowers
``torch.set_num_threads`` for the rest of the call when the net is small
(``pass_threads="auto"``: its largest parameter tensor times the rows of a batch under
``SMALL_PASS_WORK``), and the scope restores the caller's count when the call ends,
exceptions included. A small net's passes are hundreds of small operations, each an OpenMP
parallel region; on a busy machine every region waits for threads the scheduler has put
aside (an all-layer prediction on two threads, with two other processes running torch, was
measured at 1.30 s against 16 ms on a quiet machine, and at 57 ms on one thread). torch
keeps the count per thread but hands the last value set to threads that start (or first
use torch) afterwards: a call restores the count its thread had, unless that count is one
another call in progress has set (the thread inherited it), in which case it restores the
count the first of the overlapping calls found.
"""

from __future__ import annotations

import contextvars
import threading
from contextlib import contextmanager
from typing import ClassVar

import torch

from .config import get_config

__all__ = ["SMALL_PASS_WORK", "limit_threads", "pass_threads", "thread_scope"]

# Under pass_threads="auto", a net whose largest parameter tensor times the rows of a batch
# is under this runs its passes on one thread (module docstring).
SMALL_PASS_WORK = 2**24


class _ThreadScope:
    """The torch thread count of one call (the outermost ``torch_state`` of a thread):
    lowered by ``limit``, restored by ``close``."""

    _lock = threading.Lock()
    _lowered: ClassVar[list[int]] = []  # the counts set by the scopes not restored yet
    _original = 1  # the count the first of them found

    def __init__(self) -> None:
        self.restore: int | None = None
        self.lowered: list[int] = []

    def limit(self, n_threads: int) -> None:
        current = torch.get_num_threads()
        if n_threads >= current:
            return
        cls = type(self)
        with cls._lock:
            if self.restore is None:
                if not cls._lowered:
                    cls._original = current
                # a count another call in progress set: this thread inherited it (it
                # started, or first used torch, during that call), so restore what that
                # call found; else the thread's own count
                self.restore = cls._original if current in cls._lowered else current
            cls._lowered.append(n_threads)
            self.lowered.append(n_threads)
            torch.set_num_threads(n_threads)

    def close(self) -> None:
        if self.restore is None:
            return
        cls = type(self)
        with cls._lock:
            for n_threads in self.lowered:
                cls._lowered.remove(n_threads)
            self.lowered = []
            torch.set_num_threads(self.restore)
            self.restore = None


_THREAD_SCOPE: contextvars.ContextVar[_ThreadScope | None] = contextvars.ContextVar(
    "sklaplace_thread_scope", default=None
)


def pass_threads(net, batch_size: int) -> int | None:
    """The torch threads that passes over ``net`` in batches of ``batch_size`` rows (-1: all
    in one) should run on (setting ``pass_threads``, see the module docstring), or None for
    torch's own setting."""
    setting = get_config()["pass_threads"]
    if setting == "torch":
        return None
    if setting != "auto":
        return setting
    if batch_size <= 0:  # (-1: every row in one batch)
        return None
    largest = max((p.numel() for p in net.module_.parameters()), default=0)
    return 1 if largest * batch_size < SMALL_PASS_WORK else None


@contextmanager
def thread_scope():
    """The scope of one call (entered by the outermost ``torch_state``): the thread count
    that ``limit_threads`` lowers inside it is restored when it ends, exceptions included."""
    scope = _ThreadScope()
    token = _THREAD_SCOPE.set(scope)
    try:
        yield scope
    finally:
        _THREAD_SCOPE.reset(token)
        scope.close()


def limit_threads(net, batch_size: int) -> None:
    """Inside a ``thread_scope``: lower torch's threads as ``pass_threads`` says for passes
    over ``net`` (nothing outside one)."""
    scope = _THREAD_SCOPE.get()
    if scope is None:
        return
    n_threads = pass_threads(net, batch_size)
    if n_threads is not None:
        scope.limit(n_threads)
