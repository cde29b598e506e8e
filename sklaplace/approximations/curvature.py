"""Per-layer curvature sums over batches: the GGN ``H = sum_n J_n^T Lambda_n J_n``.

A layer's Jacobian for row ``n`` is ``J_nk = sum_p g_nkp a_np^T`` (``g`` the vector
backpropagated from output ``k`` to the layer's output at position ``p``, ``a`` the layer's
input there). With ``Lambda_n = S_n S_n^T`` (the likelihood's exact square root, ``r``
columns), the GGN needs only ``a`` and the ``r`` backpropagated columns ``g``:

* ``diag``: the exact diagonal ``sum_nr (sum_p g_nrp a_np^T)^2``; for one position
  ``sum_n (sum_r g_nr^2) (a_n^2)^T``.
* ``kron`` (KFAC, "expand" convention: positions count as rows):
  ``A = (1 / (N P)) sum_np a_np a_np^T``, ``B = sum_nrp g_nrp g_nrp^T``, block ``B (x) A``
  (Ritter et al. 2018; ``B`` exact, not sampled). Exact for one row at one position, and
  for the last layer of a regression net.
* ``full`` (the head only): ``H = sum_n Lambda_n (x) a_n a_n^T``.

For the head (``f`` is the layer's output, ``g = S``), ``update_head`` uses
``Lambda_n`` directly: ``B = sum_n Lambda_n`` and ``diag = sum_n diag(Lambda_n) a_n^2``
need no square root and no backward pass, and memory stays O(c^2) for ``c`` outputs.

Products within a batch are formed in the net's dtype, except the Kronecker input factor
``A`` and everything ``update_head`` adds, formed in float64 (the product of two float32
values is exact in float64). A singular ``A`` (one-hot columns that sum to the bias
column, a duplicated unit) then keeps its exact null space: float32 sums would tilt it by
``eps32``, and at a small prior the posterior variance ``1 / tau`` along it amplifies the
tilt into the predictions (see :mod:`sklaplace.posterior`). The sums over batches are
float64, so the result does not depend on the batch size beyond round-off.

One class per structure (:class:`DiagSum`, :class:`KronSum`, :class:`FullSum`), as the
blocks they make (:mod:`sklaplace.posterior`); ``Accumulator(layer, structure)`` gives the
one for ``structure``. They see a layer only through its kind's methods
(:mod:`.layers`): ``squared_jacobian`` for the diagonal, ``outputs`` and the recorded
inputs for the Kronecker factors.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from .._runtime.blas import gram
from ..likelihoods import Likelihood
from ..posterior import DiagBlock, FullBlock, KronBlock
from .layers import CHUNK_ELEMENTS, Layer

__all__ = ["Accumulator", "DiagSum", "FullSum", "KronSum"]

F64 = torch.float64


class Accumulator:
    """Curvature sums of one layer over batches (float64).

    ``Accumulator(layer, structure)`` makes the subclass registered for ``structure``
    (its class attribute ``structure``).

    Parameters
    ----------
    layer : Layer
    structure : {"diag", "kron", "full"}
        ``kron`` falls back to ``diag`` for a layer whose kind has no Kronecker factors
        (``layer.kronecker`` false); ``full`` is for the head only (``update_head``).
    """

    structure: str
    _by_structure: ClassVar[dict[str, type[Accumulator]]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        Accumulator._by_structure[cls.structure] = cls

    def __new__(cls, layer: Layer, structure: str | None = None) -> Accumulator:
        if cls is Accumulator:
            if structure == "kron" and not layer.kronecker:
                structure = "diag"
            if structure not in Accumulator._by_structure:
                raise ValueError(f"Unknown structure {structure!r}.")
            cls = Accumulator._by_structure[structure]
        return super().__new__(cls)

    def __init__(self, layer: Layer, structure: str | None = None) -> None:
        self.layer = layer

    def _zeros(self, *shape: int) -> Tensor:
        return torch.zeros(shape, dtype=F64, device=self.layer.device)

    def update(self, a, g: Tensor, w: Tensor | None = None) -> None:
        """Add one batch from the recorded inputs ``a`` and columns ``g`` (r, m, ...).

        With row weights ``w``, ``g`` must already carry ``sqrt(w)`` (the caller scales the
        square root of ``Lambda``); the Kronecker input factor is then weighted here.
        """
        raise NotImplementedError

    def update_head(
        self, a: Tensor, f: Tensor, likelihood: Likelihood, w: Tensor | None = None
    ) -> None:
        """Add one batch for the head: its inputs ``a`` (m, n_in), outputs ``f`` (m, c) and
        row weights ``w`` (each row's GGN term times its weight; the Kronecker input factor
        becomes the weighted mean ``sum_n w_n a_n a_n^T / sum_n w_n``). The head's factors
        are formed in float64: it is cheap there."""
        raise NotImplementedError

    def block(self) -> DiagBlock | KronBlock | FullBlock:
        """The finished, eigendecomposed curvature block."""
        raise NotImplementedError


class DiagSum(Accumulator):
    """The exact GGN diagonal, ``(n_out, n_in)``."""

    structure = "diag"

    def __init__(self, layer, structure=None):
        super().__init__(layer)
        self.h = self._zeros(*layer.shape)

    def update(self, a, g, w=None):
        self.h += self.layer.squared_jacobian(a, g)

    def update_head(self, a, f, likelihood, w=None):
        diag = likelihood.hessian_diag(f.to(F64))
        if w is not None:
            diag = diag * w[:, None]
        self.h += diag.T @ (a.to(F64) ** 2)

    def block(self):
        return DiagBlock(self.h)


class KronSum(Accumulator):
    """The Kronecker factors ``A`` (n_in, n_in) and ``B`` (n_out, n_out)."""

    structure = "kron"

    def __init__(self, layer, structure=None):
        super().__init__(layer)
        n_out, n_in = layer.shape
        self.A = self._zeros(n_in, n_in)
        self.B = self._zeros(n_out, n_out)
        self.B_diag = self._zeros(n_out)  # the head's diagonal part, kept apart
        self.n_positions = 0

    def update(self, a, g, w=None):
        g = self.layer.outputs(g)  # (r, m, P, n_out)
        positions = a.shape[1]
        if w is not None:
            a = a * w.sqrt().to(a.dtype)[:, None, None]
        flat_a = a.reshape(-1, a.shape[-1]).to(F64)  # exact products
        self.A += gram(flat_a)
        self.B += gram(g.reshape(-1, g.shape[-1]))
        self.n_positions += positions * (len(a) if w is None else float(w.sum()))

    def update_head(self, a, f, likelihood, w=None):
        a = a.to(F64)
        self.A += gram(a if w is None else a * w.sqrt()[:, None])
        d, R = likelihood.hessian_sum_factors(f, w)  # sum_n w_n Lambda_n = diag(d) - R^T R
        self.B_diag += d
        if R is not None:
            self.B -= gram(R)
        self.n_positions += a.shape[0] if w is None else float(w.sum())

    def block(self):
        return KronBlock(self.A / max(self.n_positions, 1), self.B + torch.diag(self.B_diag))


class FullSum(Accumulator):
    """The dense GGN ``sum_n Lambda_n (x) a_n a_n^T`` of the head."""

    structure = "full"

    def __init__(self, layer, structure=None):
        super().__init__(layer)
        n = layer.shape[0] * layer.shape[1]
        self.H = self._zeros(n, n)

    def update(self, a, g, w=None):
        raise ValueError("hessian_structure='full' is available for the last layer only.")

    def update_head(self, a, f, likelihood, w=None):
        a = a.to(F64)
        lam = likelihood.hessian(f.to(F64))  # (m, c, c)
        if w is not None:
            lam = lam * w[:, None, None]
        m, c, d = a.shape[0], lam.shape[1], a.shape[1]
        rows = max(1, CHUNK_ELEMENTS // max(1, d * d + c * c))
        for s in range(0, m, rows):
            ai, li = a[s : s + rows], lam[s : s + rows]
            aa = (ai[:, :, None] * ai[:, None, :]).reshape(len(ai), d * d)
            blocks = li.reshape(len(ai), c * c).T @ aa  # (c*c, d*d): [k, l, i, j]
            self.H += blocks.reshape(c, c, d, d).permute(0, 2, 1, 3).reshape(c * d, c * d)

    def block(self):
        return FullBlock(self.H, self.layer.shape)
