"""Data passes that produce curvature: the last-layer GGN in closed form from features.

For a last layer ``z = W a`` (bias absorbed: ``a`` ends in 1), the per-row Jacobian of the
outputs with respect to ``vec(W)`` is ``I (x) a^T``, so the generalised Gauss-Newton matrix

    H = sum_n J_n^T Lambda_n J_n = sum_n Lambda_n (x) a_n a_n^T

needs only the features ``a_n`` and the output-side curvature ``Lambda_n`` of the loss:
``diag(p) - p p^T`` for the softmax cross-entropy, ``p (1 - p)`` for the sigmoid one, and the
identity for the Gaussian ``0.5 * ||y - z||^2`` (the noise variance is applied later, by the
posterior). Accumulators consume one batch at a time, in float64, so memory does not depend
on the number of rows and the result does not depend on the batch size.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from threadpoolctl import ThreadpoolController
from torch import Tensor

from .posterior import DiagBlock, FullBlock, KronBlock

__all__ = [
    "LIKELIHOODS",
    "CurvatureAccumulator",
    "blas_threads_like_torch",
    "gram",
    "output_hessian",
    "summed_loss",
]

LIKELIHOODS = ("classification", "binary", "regression")


def output_hessian(likelihood: str, f: Tensor) -> Tensor:
    """``Lambda_n``: the Hessian of the per-row loss with respect to the outputs (m, c, c).

    Parameters
    ----------
    likelihood : {"classification", "binary", "regression"}
    f : Tensor of shape (m, c)
        Logits (classification, binary with c = 1) or predicted means (regression).
    """
    m, c = f.shape
    if likelihood == "classification":
        p = torch.softmax(f, dim=1)
        return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    if likelihood == "binary":
        p = torch.sigmoid(f)
        return (p * (1 - p))[:, :, None]
    if likelihood == "regression":
        return torch.eye(c, dtype=f.dtype, device=f.device).expand(m, c, c)
    raise ValueError(f"Unknown likelihood {likelihood!r}; expected one of {LIKELIHOODS}.")


_BLAS: ThreadpoolController | None = None


@contextmanager
def blas_threads_like_torch():
    """Within the block, numpy's BLAS (used by ``gram``) runs at most
    ``torch.get_num_threads()`` threads, so a curvature pass does not oversubscribe the
    cores a user gave torch; a lower limit the BLAS already had is kept."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController().select(user_api="blas")
    limit = torch.get_num_threads()
    for lib in _BLAS.info():
        limit = min(limit, lib["num_threads"])
    with _BLAS.limit(limits=limit):
        yield


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


def summed_loss(likelihood: str, f: Tensor, y: Tensor) -> Tensor:
    """The training loss summed over rows, in the conventions of DESIGN.md section 4.

    Cross-entropy for classification (``y`` integer class indices), binary cross-entropy
    with logits for binary (``y`` in {0, 1}), and ``0.5 * sum (y - f)^2`` for regression.
    """
    if likelihood == "classification":
        return torch.nn.functional.cross_entropy(f, y.long(), reduction="sum")
    if likelihood == "binary":
        return torch.nn.functional.binary_cross_entropy_with_logits(
            f.reshape(-1), y.reshape(-1).to(f.dtype), reduction="sum"
        )
    if likelihood == "regression":
        return 0.5 * ((f - y.reshape(f.shape).to(f.dtype)) ** 2).sum()
    raise ValueError(f"Unknown likelihood {likelihood!r}; expected one of {LIKELIHOODS}.")


class CurvatureAccumulator:
    """Accumulate last-layer curvature over batches of ``(a, f)``.

    Parameters
    ----------
    structure : {"diag", "kron", "full"}
    likelihood : {"classification", "binary", "regression"}
    n_in, n_out : int
        Feature dimension (bias column included) and number of outputs.
    dtype, device
        Where the float64 accumulators live.

    Notes
    -----
    * ``diag``: ``h_kj = sum_n Lambda_n[k, k] a_nj^2``, the exact GGN diagonal.
    * ``kron``: ``A = (1/N) sum_n a_n a_n^T`` and ``B = sum_n Lambda_n``, so the block is
      ``B (x) A`` (exact when ``Lambda_n`` is constant, as in regression).
    * ``full``: ``H = sum_n Lambda_n (x) a_n a_n^T``, computed as one matrix product of
      ``Lambda`` (m, c^2) with ``a (x) a`` (m, n_in^2). Cost O(n c^2 n_in^2).
    """

    def __init__(
        self,
        structure: str,
        likelihood: str,
        n_in: int,
        n_out: int,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        self.structure = structure
        self.likelihood = likelihood
        self.n_in, self.n_out = n_in, n_out
        self.n_rows = 0
        self.loss = torch.zeros((), dtype=dtype, device=device)
        kw = {"dtype": dtype, "device": device}
        if structure == "diag":
            self.h = torch.zeros(n_out, n_in, **kw)
        elif structure == "kron":
            self.A = torch.zeros(n_in, n_in, **kw)
            self.B = torch.zeros(n_out, n_out, **kw)
        elif structure == "full":
            self.H = torch.zeros(n_out * n_in, n_out * n_in, **kw)
        else:
            raise ValueError(f"Unknown structure {structure!r}.")
        self.dtype = dtype

    def update(self, a: Tensor, f: Tensor, y: Tensor | None = None) -> None:
        """Add one batch: features ``a`` (m, n_in), outputs ``f`` (m, n_out), targets ``y``."""
        a = a.to(self.dtype)
        f = f.to(self.dtype)
        lam = output_hessian(self.likelihood, f)
        self.n_rows += a.shape[0]
        if y is not None:
            self.loss = self.loss + summed_loss(self.likelihood, f, y)
        if self.structure == "diag":
            self.h += torch.diagonal(lam, dim1=1, dim2=2).T @ (a * a)
        elif self.structure == "kron":
            self.A += gram(a)
            self.B += lam.sum(0)
        else:
            m, c, d = a.shape[0], self.n_out, self.n_in
            aa = (a[:, :, None] * a[:, None, :]).reshape(m, d * d)
            blocks = lam.reshape(m, c * c).T @ aa  # (c*c, d*d): [k, l, i, j]
            self.H += blocks.reshape(c, c, d, d).permute(0, 2, 1, 3).reshape(c * d, c * d)

    def block(self) -> DiagBlock | KronBlock | FullBlock:
        """The finished, eigendecomposed curvature block."""
        if self.n_rows == 0:
            raise ValueError("No rows were seen: cannot compute curvature from empty data.")
        if self.structure == "diag":
            return DiagBlock(self.h)
        if self.structure == "kron":
            return KronBlock(self.A / self.n_rows, self.B)
        return FullBlock(self.H, (self.n_out, self.n_in))
