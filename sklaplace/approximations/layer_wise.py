"""Every layer, or a subnetwork: a block per selected layer, from forward and backward passes.

The model's outputs ``f`` are the head's outputs (recorded by the :class:`~.tape.Tape`,
so a module that applies a softmax after the head is handled). Per batch:

* **fit**: the likelihood's exact square root of ``Lambda`` (``c - 1`` columns for the
  softmax, one for the sigmoid, the identity for the Gaussian) is backpropagated from
  ``f`` to every selected layer's output in one batched backward pass; each layer's
  :class:`~.curvature.Accumulator` adds its block of the GGN.
* **GLM predictive**: the identity's ``c`` columns are backpropagated; each block rotates
  the layer's Jacobian factors into its eigenbasis (``rotate``: the projection, which no
  hyper-parameter changes and which is cached), then ``jacobian_moments`` contracts them
  for given hyper-parameters: O(c^2 n_out + n_in n_out) per row and Kronecker layer, never
  a (rows, outputs, parameters) Jacobian.
* **draws**: weights drawn from the posterior are written into the private view's
  parameter tables (never the user's module) and the net is run once per draw.

Cost of a fit: one forward and one batched backward pass per batch, plus
``O(N c n_out^2 + N n_in^2)`` per Kronecker layer; memory does not depend on ``N``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

from .._runtime.cache import in_model_selection
from ..posterior import jacobian_factors
from .base import (
    Approximation,
    Projection,
    batch_rows,
    check_finite,
    draw_chunk,
    row_cov,
    tile_rows,
)
from .curvature import Accumulator
from .layers import Layer
from .selection import RowsDependOnTheirBatch, select_layers
from .tape import Tape, backprop

__all__ = ["LayerWise"]


class LayerWise(Approximation):
    """Laplace approximation over the weights of several layers (block-diagonal).

    Parameters
    ----------
    structure : {"kron", "diag"}
        ``kron``: Kronecker blocks for Linear / Conv2d / Embedding and diagonal blocks for
        other modules; ``diag``: exact GGN diagonals everywhere.
    subset : "all" or list of str
        See :func:`~.selection.select_layers`.
    """

    name = "layer_wise"

    def __init__(self, structure: str, subset="all") -> None:
        super().__init__(structure)
        self.subset = subset if isinstance(subset, str) else list(subset)

    def settings(self) -> tuple:
        return (*super().settings(), self.subset)

    def _select(self, view, head_name: str) -> list[Layer]:
        return select_layers(view.module, self.subset)

    def _run(self, view, layers, head, Xi) -> tuple[Tape, Tensor]:
        """One forward pass with the layers' outputs kept for a backward pass."""
        with Tape(layers, head, keep_outputs=True) as tape, torch.enable_grad():
            view.forward(Xi)
        f = tape.check()
        for layer, z in zip(layers, tape.z, strict=True):
            if z is not None and not z.requires_grad:
                # its weights require gradients, so the forward turned recording off: the
                # backward pass would see no path and the curvature would silently be zero
                raise ValueError(
                    f"Module {layer.name!r} ran without recording gradients (the net's "
                    "forward runs it under torch.no_grad() or torch.inference_mode(), or "
                    "detaches it), so its Jacobian cannot be computed. Let gradients flow "
                    "through it, or leave it out with subset_of_weights=[...]."
                )
        return tape, f

    def _curvature(self, view, layers, head, likelihood, batches):
        accs = [Accumulator(layer, self.structure) for layer in layers]
        loss = torch.zeros((), dtype=torch.float64, device=layers[0].device)
        n_rows = 0
        for Xi, yi, wi in batches:
            if not isinstance(yi, Tensor):
                raise ValueError(
                    f"Each batch must hold targets (the summed loss needs them); got "
                    f"{type(yi).__name__}."
                )
            tape, f = self._run(view, layers, head, Xi)
            f_det = f.detach()
            check_finite(f_det, f_det, Xi, view.dtype)
            if n_rows == 0:
                _check_rows_independent(view, Xi)
            n_rows += f.shape[0]
            loss = loss + likelihood.loss(f_det, yi, wi)
            root = likelihood.hessian_sqrt(f_det)
            if wi is not None:  # each row's GGN term times its weight
                root = root * wi.sqrt().to(root.dtype)[None, :, None]
            grads = backprop(f, tape.z, root)
            for acc, a, g in zip(accs, tape.a, grads, strict=True):
                if a is not None:
                    acc.update(a, g, wi)
            del tape, f, grads
        return [acc.block() for acc in accs], loss, n_rows

    # ---------------------------------------------------------------- predictive
    def precision(self, view, tau, scale):
        """Per block, float32 for a float32 net where ``rotation_dtype`` finds it safe at
        ``(tau, scale)`` (rows with one position, not per-row gradients), else float64.

        Inside scikit-learn's model selection (a search, a cross-validation) always
        float64, with the cache on or off alike: there the candidates differ in their
        priors, and one float64 pass per fold, safe at every prior, serves them all from
        the cache (per-prior precisions would run a pass per candidate).
        """
        if tau is None or view.dtype != torch.float32 or in_model_selection():
            return None
        blocks = self.posterior.blocks
        return tuple(b.rotation_dtype(t, scale) for b, t in zip(blocks, tau, strict=True))

    def parts_bound_the_pass(self) -> bool:
        """Every layer: the parts hold each layer's input and backpropagated vectors."""
        return self.subset == "all"

    def _project_batches(self, view, X, layers) -> Iterator[Projection]:
        head = view.module.get_submodule(self.head_name)
        dtypes = view.precision or (torch.float64,) * len(layers)
        for Xi, _ in view.batches(X):
            tape, f = self._run(view, layers, head, Xi)
            check_finite(f.detach(), f.detach(), Xi, view.dtype)
            m, c = f.shape
            eye = torch.eye(c, dtype=f.dtype, device=f.device)[:, None, :].expand(c, m, c)
            grads = backprop(f, tape.z, eye)
            parts = []
            for layer, block, a, g, dtype in zip(
                layers, self.posterior.blocks, tape.a, grads, dtypes, strict=True
            ):
                if a is None:  # the layer did not run: no contribution
                    parts.append(_zero_part(layer, block, c, m, f.device))
                elif dtype == torch.float32 and layer.kronecker and a.shape[1] == 1:
                    # float32 only for one position (summed positions cancel): the
                    # factors as the net computed them, rotated in float32
                    parts.append(block.rotate(layer.outputs(g).to(dtype), a.to(dtype)))
                else:
                    parts.append(block.rotate(*layer.jacobian_factors(a, g)))
            yield Projection(f.detach().to(torch.float64), tuple(parts))
            del tape, f, grads

    def _concat(self, projections):
        parts = []
        for i in range(len(projections[0].parts)):
            items = [p.parts[i] for p in projections]
            v = torch.cat([item[0] for item in items], dim=1)
            u = None if items[0][1] is None else torch.cat([item[1] for item in items])
            parts.append((v, u))
        return Projection(torch.cat([p.mean for p in projections]), tuple(parts))

    def rows(self, proj, s):
        parts = tuple((v[:, s], None if u is None else u[s]) for v, u in proj.parts)
        return Projection(proj.mean[s], parts)

    def moments(self, proj, tau, scale, cov):
        m, c = proj.mean.shape
        shape = (m, c, c) if cov else (m, c)
        out = torch.zeros(shape, dtype=torch.float64, device=proj.mean.device)
        for block, t, (v, u) in zip(self.posterior.blocks, tau, proj.parts, strict=True):
            out += block.jacobian_moments(v, u, t, scale, cov)
        return out

    def moments_grid(self, proj, taus, scale, dtype=torch.float64):
        """Variances (T, m, c) for the T rows of ``taus`` (T, n_blocks), each block's
        grid contracted at once (``jacobian_variances_grid``), in ``dtype``."""
        m, c = proj.mean.shape
        out = torch.zeros((len(taus), m, c), dtype=dtype, device=proj.mean.device)
        for block, t, (v, u) in zip(self.posterior.blocks, taus.T, proj.parts, strict=True):
            out += block.jacobian_variances_grid(v, u, t.contiguous(), scale, dtype)
        return out

    def joint_moments(self, view, X, tau, scale, n_cov):
        """Means and variances (m, c), and covariances across rows (m, m, n_cov) of the
        first ``n_cov`` outputs: every row's projection is kept (O(m) memory), then each
        tile of rows pairs the rows' scaled Jacobians (``jacobian_factors``) in one matrix
        product per block and output, so no temporary grows with m^2 beyond the result."""
        projections = list(self.project(view, X))
        proj = projections[0] if len(projections) == 1 else self._concat(projections)
        del projections
        var = self.moments(proj, tau, scale, cov=False)
        blocks = self.posterior.blocks
        roots = [block.eigenvalues(t, scale).rsqrt() for block, t in zip(blocks, tau, strict=True)]
        m = len(proj.mean)
        rows = tile_rows(m, n_cov, max(block.n_params for block in blocks))

        def tile(A, B):
            part = torch.zeros(
                (A.stop - A.start, B.stop - B.start, n_cov), dtype=torch.float64,
                device=proj.mean.device,
            )  # fmt: skip
            for root, (v, u) in zip(roots, proj.parts, strict=True):
                for k in range(n_cov):
                    left = jacobian_factors(v[:, A], None if u is None else u[A], root, k)
                    right = (
                        left
                        if A == B
                        else jacobian_factors(v[:, B], None if u is None else u[B], root, k)
                    )
                    part[:, :, k] += left @ right.T
            return part

        return proj.mean, var, row_cov(m, n_cov, rows, tile, proj.mean.device)

    def draws(self, view, X, n_samples, tau, scale, seed) -> Iterator[Iterator[Tensor]]:
        """Per batch, chunks of head outputs ``(k, b, c)`` under weights drawn from the
        posterior; every batch sees the same draws (the generator is re-seeded)."""
        layers = self.layers(view)
        head = view.module.get_submodule(self.head_name)
        saved = [dict(layer.module._parameters) for layer in layers]
        k = draw_chunk(n_samples, batch_rows(view, X) * getattr(head, "out_features", 1))

        def run(Xi):
            generator = torch.Generator(device="cpu").manual_seed(seed)
            outs = []
            for _ in range(n_samples):
                draws = self.posterior.sample(1, tau, scale, generator)
                for layer, draw, params in zip(layers, draws, saved, strict=True):
                    # Parameters with the original flags: the layer's layout (which of its
                    # parameters are trainable) must not change between draws
                    drawn = layer.to_params(draw[0])
                    layer.module._parameters.update(
                        {k: nn.Parameter(v, params[k].requires_grad) for k, v in drawn.items()}
                    )
                with Tape(head=head) as tape, torch.no_grad():
                    view.forward(Xi)
                outs.append(tape.check().to(torch.float64))
                if len(outs) == k:
                    yield torch.stack(outs)
                    outs = []
            if outs:
                yield torch.stack(outs)

        try:
            for Xi, _ in view.batches(X):
                yield run(Xi)
        finally:
            for layer, params in zip(layers, saved, strict=True):
                layer.module._parameters.update(params)


def _zero_part(layer: Layer, block, c: int, m: int, device) -> tuple:
    """The projection of a layer that did not run on a batch (zero Jacobian)."""
    n_out, n_in = block.shape

    def zeros(*shape):
        return torch.zeros(shape, dtype=torch.float64, device=device)

    if block.structure == "full":
        return zeros(c, m, n_out * n_in), None
    if not layer.kronecker:
        return zeros(c, m, n_in), None
    return zeros(c, m, 1, n_out), zeros(m, 1, n_in)


def _check_rows_independent(view, Xi) -> None:
    """Raise ``RowsDependOnTheirBatch`` if the net's outputs for the first two rows of a
    batch differ when the two are run alone: a module that normalises with its batch's
    statistics, or a forward pass that is random in evaluation mode.

    Running the same rows in batches of other sizes changes float rounding only (other
    BLAS kernels): far below the 1e-3 of the outputs' scale tolerated here, while batch
    statistics or randomness change outputs by a sizeable fraction of it.
    """
    m = Xi[next(iter(Xi))].shape[0] if isinstance(Xi, Mapping) else Xi.shape[0]
    if m < 3 or (isinstance(Xi, Tensor) and Xi.layout != torch.strided):
        return
    two = {k: v[:2] for k, v in Xi.items()} if isinstance(Xi, Mapping) else Xi[:2]
    with torch.no_grad():
        full, alone = view.forward(Xi)[:2], view.forward(two)
    gap = float((full - alone).abs().max())
    if gap > 1e-3 * (float(full.abs().max()) + 1.0):
        raise RowsDependOnTheirBatch(
            "subset_of_weights='all' (or a list of modules) needs each row's gradient on "
            f"its own, but the net's outputs for two rows change by {gap:.3g} when they "
            f"are run without the other {m - 2} rows of their batch (or from one call to "
            "the next): a module normalises with its batch's statistics, or the net is "
            "random in evaluation mode (dropout kept on, say)."
        )
