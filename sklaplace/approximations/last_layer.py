"""The last layer: the posterior over the head's weights, in closed form from features.

For the head ``f = W a`` (bias absorbed), the Jacobian of ``f`` with respect to ``vec(W)``
is ``I (x) a^T``: the curvature and every predictive moment need only the head's inputs
``a`` and outputs ``f``, from a forward pass without gradients. This is the layer-wise
approximation (:mod:`.layer_wise`) restricted to the head, with the backward pass and the
per-row Jacobians worked out by hand:

* curvature: ``B = sum_n Lambda_n`` and ``A = (1/N) sum_n a_n a_n^T`` (kron), the exact
  diagonal or the exact dense GGN (:class:`~.curvature.Accumulator.update_head`);
* GLM predictive: ``project(a)`` once per row (cacheable), then O(c d) per row for any
  hyper-parameters (:meth:`~sklaplace.posterior.KronBlock.projected_moments`);
* ``"nn"`` predictive: the body runs once per batch and only the head is sampled,
  ``f_s = f + D_s a`` with ``D_s`` a draw of the head's weights minus their mean;
* covariances across rows (``return_cov``, ``sample_y``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ..links import OutputRoot
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
from .layers import Layer, layer_of
from .tape import Tape

__all__ = ["LastLayer"]


class LastLayer(Approximation):
    """Laplace approximation over the weights of the head (the last ``nn.Linear``).

    Parameters
    ----------
    structure : {"kron", "diag", "full"}
    """

    name = "last_layer"

    def _select(self, view, head_name: str) -> list[Layer]:
        layer = layer_of(view.module, head_name)
        if layer.kind != "linear":
            raise ValueError(
                f"The last Linear layer {head_name!r} has no trainable weight "
                "(requires_grad=False), so the last-layer posterior has nothing to sit on. "
                "Unfreeze it, or choose other layers with subset_of_weights=[...]."
            )
        return [layer]

    def _head_io(self, view, layer: Layer, Xi) -> tuple[Tensor, Tensor]:
        """The head's outputs ``f`` (m, c) and inputs ``a`` (m, n_in) for one batch."""
        with Tape([layer], layer.module) as tape, torch.no_grad():
            view.forward(Xi)
        f = tape.check()
        a = tape.a[0][:, 0]
        check_finite(a, f, Xi, view.dtype)
        return f, a

    def _curvature(self, view, layers, head, likelihood, batches):
        (layer,) = layers
        acc = Accumulator(layer, self.structure)
        loss = torch.zeros((), dtype=torch.float64, device=layer.device)
        n_rows = 0
        for Xi, yi, wi in batches:
            f, a = self._head_io(view, layer, Xi)
            loss = loss + likelihood.loss(f, yi, wi)
            n_rows += f.shape[0]
            acc.update_head(a, f, likelihood, wi)
        return [acc.block()], loss, n_rows

    # ---------------------------------------------------------------- predictive
    def _project_batches(self, view, X, layers) -> Iterator[Projection]:
        (layer,) = layers
        block = self.posterior.blocks[0]
        for Xi, _ in view.batches(X):
            f, a = self._head_io(view, layer, Xi)
            yield Projection(f.to(torch.float64), (block.project(a),))

    def _concat(self, projections):
        return Projection(
            torch.cat([p.mean for p in projections]),
            (torch.cat([p.parts[0] for p in projections]),),
        )

    def rows(self, proj, s):
        return Projection(proj.mean[s], (proj.parts[0][s],))

    def moments(self, proj, tau, scale, cov):
        return self.posterior.blocks[0].projected_moments(proj.parts[0], tau[0], scale, cov)

    def output_root(self, proj, tau, scale):
        """``OutputRoot`` of a diagonal or Kronecker head (shared eigenbasis); None for a
        full one (its root would be (m, c, c n_in), larger than the covariances)."""
        block = self.posterior.blocks[0]
        if block.structure == "full":
            return None
        return OutputRoot(*block.projected_root(proj.parts[0], tau[0], scale))

    def joint_moments(self, view, X, tau, scale, n_cov):
        """Means and variances (m, c), and covariances across rows (m, m, n_cov) of the
        first ``n_cov`` outputs, from the head's inputs (O(m) memory), tile by tile."""
        (layer,) = self.layers(view)
        means, feats = [], []
        for Xi, _ in view.batches(X):
            f, a = self._head_io(view, layer, Xi)
            means.append(f.to(torch.float64))
            feats.append(a.to(torch.float64))
        mean, a = torch.cat(means), torch.cat(feats)
        block = self.posterior.blocks[0]
        var = block.projected_moments(block.project(a), tau[0], scale, cov=False)
        c = mean.shape[1]
        per_row = block.n_params * (c if block.structure == "full" else 1)
        rows = tile_rows(len(a), c, per_row)

        def tile(A, B):
            return block.row_cov(a[A], tau[0], scale, None if A == B else a[B])[:, :, :n_cov]

        return mean, var, row_cov(len(a), n_cov, rows, tile, a.device)

    def draws(self, view, X, n_samples, tau, scale, seed) -> Iterator[Iterator[Tensor]]:
        """Per batch, chunks of head outputs ``(k, b, c)``: ``f + D_s a``.

        The body runs once per batch; only the head's weights are sampled. Every batch sees
        the same draws (the generator is re-seeded), drawn ``draw_chunk`` at a time.
        """
        (layer,) = self.layers(view)
        block = self.posterior.blocks[0]
        mean = self.posterior.means[0]
        # the same chunks for every batch (a last, smaller batch too): the same draws
        k = draw_chunk(n_samples, batch_rows(view, X) * block.shape[0] + block.n_params)
        for Xi, _ in view.batches(X):
            f, a = self._head_io(view, layer, Xi)
            f, a = f.to(torch.float64), a.to(torch.float64)

            def chunks(f=f, a=a, k=k):
                generator = torch.Generator(device="cpu").manual_seed(seed)
                for start in range(0, n_samples, k):
                    shape = (min(k, n_samples - start), *block.shape)
                    z = torch.randn(shape, generator=generator, dtype=mean.dtype)
                    deviations = block.sample(z.to(mean.device), tau[0], scale)  # (k, c, n_in)
                    yield f + torch.einsum("sci,mi->smc", deviations, a)

            yield chunks()
