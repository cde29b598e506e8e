"""The one matrix product that dominates a Kronecker-factored pass, and its threads.

Every Kronecker factor is a sum over batches of ``x^T x``. torch runs it as a general
matrix product; numpy's ``x.T @ x`` on the same memory is a symmetric rank-k update (BLAS
``syrk``), half the multiplications, with an exactly symmetric result. The math modules
otherwise use torch only; this module is where numpy's BLAS, and the number of threads it
may use (``threadpoolctl``, a scikit-learn dependency), come in.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
from threadpoolctl import ThreadpoolController
from torch import Tensor

__all__ = ["blas_threads_like_torch", "gram"]

_BLAS: ThreadpoolController | None = None
# The BLAS thread limit is process-wide: passes running at once in several threads share
# one limit, set by the first to start and restored by the last to finish.
_LOCK = threading.Lock()
_ACTIVE = 0
_RESTORE = None


@contextmanager
def blas_threads_like_torch():
    """Within the block, numpy's BLAS (used by ``gram``) runs at most
    ``torch.get_num_threads()`` threads, so a curvature pass does not oversubscribe the
    cores a user gave torch; a lower limit the BLAS already had is kept. Blocks that
    overlap in several threads share the limit, and the last one out restores the
    original (restoring per block would leave the limit lowered when they do not nest)."""
    global _BLAS, _ACTIVE, _RESTORE
    with _LOCK:
        if _BLAS is None:
            _BLAS = ThreadpoolController().select(user_api="blas")
        if _ACTIVE == 0:
            limit = torch.get_num_threads()
            for lib in _BLAS.info():
                limit = min(limit, lib["num_threads"])
            _RESTORE = _BLAS.limit(limits=limit)
        _ACTIVE += 1
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE -= 1
            if _ACTIVE == 0:
                _RESTORE.restore_original_limits()
                _RESTORE = None


def gram(x: Tensor) -> Tensor:
    """``x^T x`` for ``x`` of shape (m, n), computed in ``x``'s dtype, returned in float64.

    The Kronecker factors are sums of such products over batches, and they dominate the
    cost of a KFAC pass. On the CPU the product goes through numpy, whose ``x.T @ x`` is a
    symmetric rank-k update (BLAS ``syrk``: half the multiplications of the general product
    that ``torch.mm`` runs, and an exactly symmetric result); passes call it inside
    ``blas_threads_like_torch``. Elsewhere (GPU, other dtypes) it is ``torch.mm``.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> gram(x)
    tensor([[10., 14.],
            [14., 20.]], dtype=torch.float64)
    """
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return (x.T @ x).to(torch.float64)
    xn = x.detach().contiguous().numpy()
    return torch.from_numpy(xn.T @ xn).to(torch.float64)
