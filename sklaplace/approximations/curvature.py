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
float64, so the result does not depend on the batch size beyond round-off. A module with
parameters of another kind (LayerNorm, ...) gets its diagonal from per-row gradients
(``torch.func.vmap``), which assumes it treats rows independently (true in eval mode).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import functional_call, vjp, vmap

from .._runtime.blas import gram
from ..likelihoods import Likelihood
from ..posterior import DiagBlock, FullBlock, KronBlock
from .layers import Layer

__all__ = ["Accumulator", "per_row_grads"]

# Elements of per-row gradients (directions x rows x layer parameters) formed at once.
_CHUNK_ELEMENTS = 2**22


def per_row_grads(layer: Layer, inputs: tuple, g: Tensor) -> Tensor:
    """Gradients of ``g[r, n] . z_n`` w.r.t. the layer's parameters, per row: ``(r, m, D)``.

    ``z_n`` is the module's output for row ``n`` alone (``torch.func``), so this is exact
    for modules that treat rows independently.
    """
    names = [n for n, _ in layer.params]
    params = {n: p.detach() for n, p in layer.params}

    def one_row(xs, gn):
        def fn(pd):
            return functional_call(layer.module, pd, tuple(x[None] for x in xs))

        _, pull = vjp(fn, params)
        (grad,) = pull(gn[None].to(params[names[0]].dtype))
        return torch.cat([grad[n].reshape(-1) for n in names])

    per_row = vmap(vmap(one_row, in_dims=(0, 0)), in_dims=(None, 0))
    r, m = g.shape[:2]
    rows = max(1, _CHUNK_ELEMENTS // max(1, r * layer.shape[1]))
    chunks = [
        per_row(tuple(x[s : s + rows] for x in inputs), g[:, s : s + rows])
        for s in range(0, m, rows)
    ]
    return torch.cat(chunks, dim=1).to(torch.float64)


class Accumulator:
    """Curvature sums of one layer over batches (float64).

    Parameters
    ----------
    layer : Layer
    structure : {"diag", "kron", "full"}
        ``kron`` falls back to ``diag`` for layers of kind ``"other"``; ``full`` is for the
        head only (``update_head``).
    """

    def __init__(self, layer: Layer, structure: str) -> None:
        self.layer = layer
        if structure == "kron" and layer.kind == "other":
            structure = "diag"
        self.structure = structure
        n_out, n_in = layer.shape
        kw = {"dtype": torch.float64, "device": layer.device}
        if structure == "kron":
            self.A = torch.zeros(n_in, n_in, **kw)
            self.B = torch.zeros(n_out, n_out, **kw)
            self.B_diag = torch.zeros(n_out, **kw)  # the head's diagonal part, kept apart
            self.n_positions = 0
        elif structure == "diag":
            self.h = torch.zeros(n_out, n_in, **kw)
        elif structure == "full":
            self.H = torch.zeros(n_out * n_in, n_out * n_in, **kw)
        else:
            raise ValueError(f"Unknown structure {structure!r}.")

    def update(self, a, g: Tensor, w: Tensor | None = None) -> None:
        """Add one batch from inputs ``a`` (m, P, n_in) and columns ``g`` (r, m, ...).

        With row weights ``w``, ``g`` must already carry ``sqrt(w)`` (the caller scales the
        square root of ``Lambda``); the input factor is then weighted here.
        """
        layer = self.layer
        if layer.kind == "other":
            jac = per_row_grads(layer, a, g)
            self.h += (jac * jac).sum((0, 1))[None]
            return
        g = layer.outputs(g)  # (r, m, P, n_out)
        if self.structure == "kron":
            positions = a.shape[1]
            if w is not None:
                a = a * w.sqrt().to(a.dtype)[:, None, None]
            flat_a = a.reshape(-1, a.shape[-1]).to(torch.float64)  # exact products
            self.A += gram(flat_a)
            self.B += gram(g.reshape(-1, g.shape[-1]))
            self.n_positions += positions * (len(a) if w is None else float(w.sum()))
        elif self.structure == "full":
            raise ValueError("hessian_structure='full' is available for the last layer only.")
        elif a.shape[1] == 1:
            self.h += ((g[:, :, 0] ** 2).sum(0).T @ (a[:, 0] ** 2)).to(torch.float64)
        else:
            r, m = g.shape[:2]
            rows = max(1, _CHUNK_ELEMENTS // max(1, r * self.h.numel()))
            for s in range(0, m, rows):
                jac = torch.einsum("rnpo,npi->rnoi", g[:, s : s + rows], a[s : s + rows])
                self.h += (jac * jac).sum((0, 1)).to(torch.float64)

    def update_head(
        self, a: Tensor, f: Tensor, likelihood: Likelihood, w: Tensor | None = None
    ) -> None:
        """Add one batch for the head: its inputs ``a`` (m, n_in), outputs ``f`` (m, c) and
        row weights ``w`` (each row's GGN term times its weight; the Kronecker input factor
        becomes the weighted mean ``sum_n w_n a_n a_n^T / sum_n w_n``)."""
        a = a.to(torch.float64)  # the head's factors in float64: it is cheap there
        if self.structure == "kron":
            self.A += gram(a if w is None else a * w.sqrt()[:, None])
            d, R = likelihood.hessian_sum_factors(f, w)  # sum_n w_n Lambda_n = diag(d) - R^T R
            self.B_diag += d
            if R is not None:
                self.B -= gram(R)
            self.n_positions += a.shape[0] if w is None else float(w.sum())
        elif self.structure == "diag":
            diag = likelihood.hessian_diag(f.to(torch.float64))
            if w is not None:
                diag = diag * w[:, None]
            self.h += diag.T @ (a**2)
        else:
            lam = likelihood.hessian(f.to(torch.float64))  # (m, c, c)
            if w is not None:
                lam = lam * w[:, None, None]
            m, c, d = a.shape[0], lam.shape[1], a.shape[1]
            rows = max(1, _CHUNK_ELEMENTS // max(1, d * d + c * c))
            for s in range(0, m, rows):
                ai, li = a[s : s + rows], lam[s : s + rows]
                aa = (ai[:, :, None] * ai[:, None, :]).reshape(len(ai), d * d)
                blocks = li.reshape(len(ai), c * c).T @ aa  # (c*c, d*d): [k, l, i, j]
                self.H += blocks.reshape(c, c, d, d).permute(0, 2, 1, 3).reshape(c * d, c * d)

    def block(self) -> DiagBlock | KronBlock | FullBlock:
        """The finished, eigendecomposed curvature block."""
        if self.structure == "kron":
            return KronBlock(self.A / max(self.n_positions, 1), self.B + torch.diag(self.B_diag))
        if self.structure == "diag":
            return DiagBlock(self.h)
        return FullBlock(self.H, self.layer.shape)
