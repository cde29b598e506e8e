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

import torch
from torch import Tensor

from ._blas import gram
from .posterior import DiagBlock, FullBlock, KronBlock

__all__ = [
    "LIKELIHOODS",
    "CurvatureAccumulator",
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
