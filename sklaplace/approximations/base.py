"""The interface every Laplace approximation offers, and the passes they share.

An approximation is chosen once, in ``fit`` (:func:`sklaplace.approximations.make`), and
is the only place that knows which weights carry the posterior. Its interface:

``fit(view, head_name, likelihood, X, y, rows)``
    One pass over the training rows: the posterior (eigendecomposed blocks, MAP weights),
    the summed training loss and the number of rows.
``project(view, X)``
    Per batch, a ``Projection``: the net's outputs ``f`` (the GLM mean) and what the
    predictive covariance needs that no hyper-parameter changes. Cached by content.
``moments(projection, tau, scale, cov)``
    The GLM output variances (m, c), or covariances (m, c, c) if ``cov``, for one
    projection and given hyper-parameters: no pass over the data.
``draws(view, X, n_samples, tau, scale, seed)``
    Per batch, an iterator of chunks of the outputs ``(k, b, c)`` of the net under weights
    drawn from the posterior (the ``"nn"`` predictive), every batch seeing the same draws;
    memory stays bounded whatever ``n_samples`` is. Sampled weights go into the private
    view only.
``joint_moments(view, X, tau, scale, n_cov)``
    Means, variances, and covariances across rows of the first ``n_cov`` outputs
    (``return_cov``, ``sample_y``), filled tile by tile (``row_cov``): memory is the result
    and a few tiles of ``JOINT_ELEMENTS`` entries.

``tau`` is a float64 tensor with one prior precision per block and ``scale`` the factor
``1 / (sigma^2 T)`` on the curvature (:mod:`sklaplace.posterior`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._runtime.blas import blas_threads_like_torch
from .._runtime.cache import get_cache, nbytes
from .._runtime.passes import NetView, n_rows_of, pass_key
from ..likelihoods import Likelihood
from ..posterior import Posterior
from .layers import Layer, layer_of

__all__ = ["Approximation", "Projection"]

# Rows x outputs^2 of a stored chunk of a projected pass (a hit then costs a few large
# operations instead of one per batch).
MERGED_ELEMENTS = 2**22

# Bytes a batch of a projected pass may take (``sized_rows``), and the net's batches it may
# merge at most.
PROJECTION_BYTES = 2**25
PROJECTION_MERGE = 8


class Projection(NamedTuple):
    """Per-batch parts of a GLM predictive that no hyper-parameter changes."""

    mean: Tensor  # (m, c) float64: the net's outputs
    parts: tuple


class Approximation:
    """Base class: the shared ``fit`` and ``project`` passes (with their cache).

    Subclasses implement ``_select`` (which layers), ``_curvature`` (the fit pass),
    ``_project_batches``, ``moments``, ``draws``, ``_rows`` and ``_concat``.

    Parameters
    ----------
    structure : {"diag", "kron", "full"}
    """

    name = "approximation"

    def __init__(self, structure: str) -> None:
        self.structure = structure

    # ---------------------------------------------------------------- fit
    def settings(self) -> tuple:
        """What, besides the net and the rows, the curvature depends on (cache key)."""
        return (type(self).__name__, self.structure)

    def fit(
        self,
        view: NetView,
        head_name: str,
        likelihood: Likelihood,
        X,
        y,
        rows=None,
        sample_weight=None,
    ) -> Approximation:
        """Compute the posterior from the rows ``rows`` of ``(X, y)`` (all if None).

        With ``sample_weight`` (one per row of X), each row's loss and curvature count
        that many times, as a weighted training loss would weigh them.
        """
        layers = self._select(view, head_name)
        key = pass_key(
            view, "curvature", X, y, rows, self.settings(), likelihood, head_name, sample_weight
        )
        cache = get_cache()
        hit = cache.get(key)
        if hit is None:
            head = view.module.get_submodule(head_name)
            weights = None
            if sample_weight is not None:
                w = sample_weight if rows is None else sample_weight[rows]
                weights = torch.as_tensor(w, dtype=torch.float64, device=view.device)
            with blas_threads_like_torch():
                blocks, loss, n_rows = self._curvature(
                    view, layers, head, likelihood, _weighted(view.batches(X, y, rows), weights)
                )
            if n_rows == 0:
                raise ValueError("No rows were seen: cannot compute curvature from empty data.")
            means = [layer.weight_matrix() for layer in layers]
            posterior = Posterior(blocks, means, [layer.name for layer in layers], key)
            total = n_rows if weights is None else float(weights.sum())
            hit = (posterior, float(loss), int(n_rows), total)
            cache.put(key, hit)
        self.posterior, self.loss, self.n_rows, self.weight_sum = hit
        self.head_name = head_name
        self.likelihood = likelihood
        return self

    def _select(self, view: NetView, head_name: str) -> list[Layer]:
        raise NotImplementedError

    def _curvature(self, view, layers, head, likelihood, batches) -> tuple:
        raise NotImplementedError

    # ---------------------------------------------------------------- the fitted layers
    def layers(self, view: NetView) -> list[Layer]:
        """The posterior's layers on ``view``, checked against what fit saw.

        Raises ``ValueError`` when a layer's layout or trained weights changed since fit
        (the posterior is then not the net's): predictions would silently mix two nets.
        """
        layers = []
        for name, block, mean in zip(
            self.posterior.names, self.posterior.blocks, self.posterior.means, strict=True
        ):
            try:
                layer = layer_of(view.module, name)
            except AttributeError as exc:
                raise ValueError(
                    f"The net has no module {name!r} any more; it changed since fit. Call "
                    "fit again."
                ) from exc
            if tuple(layer.shape) != tuple(block.shape) or not layer.params:
                raise ValueError(
                    f"Layer {name!r} has parameter matrix {layer.shape} but its posterior "
                    f"block has {tuple(block.shape)}: the module (or which of its parameters "
                    "have requires_grad=True) changed since fit. Call fit again."
                )
            if not torch.equal(layer.weight_matrix(mean.dtype).to(mean.device), mean):
                raise ValueError(
                    f"The weights of layer {name!r} changed since fit (the net was trained "
                    "or modified after the posterior was computed). Call fit again."
                )
            layers.append(layer)
        return layers

    # ---------------------------------------------------------------- projected passes
    def project(self, view: NetView, X, tau=None, scale=None) -> Iterator[Projection]:
        """``Projection`` per batch of X; cached under the posterior's key and the rows.

        Stored in chunks of up to ``MERGED_ELEMENTS / c^2`` rows; a pass larger than the
        cache bound is streamed and not kept. The net is checked against the posterior
        (``layers``) on a hit as on a miss. With the hyper-parameters ``(tau, scale)`` the
        moments will be taken at, a float32 net's rows may be projected in float32 where
        that is safe for them (``precision``); without, in float64 (as for tuning, whose
        projections serve every prior).
        """
        layers = self.layers(view)
        precision = self.precision(view, tau, scale)
        key = None
        if self.posterior.key is not None:
            names = None if precision is None else tuple(str(d) for d in precision)
            key = pass_key(view, "projection", X, None, None, self.posterior.key, names)
        cache = get_cache()
        hit = cache.get(key)
        if hit is not None:
            yield from hit
            return
        stored, pending, size = [], [], 0
        keep = key is not None
        sized = not getattr(view, "batch_size_given", True) and self.parts_bound_the_pass()
        pview = ProjectionView(view, precision, sized)
        for proj in self._project_batches(pview, X, layers):
            if not pview.part_bytes:
                pview.part_bytes = nbytes(proj)
            if keep:
                size += nbytes(proj)
                keep = cache.fits(size)
                pending.append(proj)
                c = proj.mean.shape[1]
                if sum(len(p.mean) for p in pending) * c * c >= MERGED_ELEMENTS:
                    stored.append(self._concat(pending))
                    pending = []
                if not keep:
                    stored, pending = [], []
            yield proj
        if keep:
            if pending:
                stored.append(self._concat(pending))
            cache.put(key, stored)

    def parts_bound_the_pass(self) -> bool:
        """Whether the projection's parts are, per row, of the order of the memory its pass
        takes (the activations and backpropagated vectors of every layer of the net), so
        that batches may be sized by them; False by default."""
        return False

    def precision(self, view: NetView, tau, scale) -> tuple | None:
        """The dtype each block's projection is formed in at ``(tau, scale)``; None for
        float64 throughout (the default)."""
        return None

    def _project_batches(self, view: ProjectionView, X, layers) -> Iterator[Projection]:
        raise NotImplementedError

    def _concat(self, projections: list[Projection]) -> Projection:
        raise NotImplementedError

    def rows(self, proj: Projection, s: slice) -> Projection:
        """The rows ``s`` of a projection."""
        raise NotImplementedError

    def moments(self, proj: Projection, tau: Tensor, scale: Tensor, cov: bool) -> Tensor:
        raise NotImplementedError

    def moments_grid(self, proj: Projection, taus: Tensor, scale: Tensor, dtype=torch.float64):
        """The GLM output variances for many prior precisions at once: (T, m, c).

        ``taus`` (T, n_blocks): row ``t`` is a ``tau`` of ``moments``. Here one
        ``moments`` per row; subclasses contract all of them together where they can
        (tuning's grid of prior precisions, :mod:`sklaplace.tuning.objectives`), in
        ``dtype`` (float32 for a grid search: sums of positive terms).
        """
        return torch.stack([self.moments(proj, tau, scale, cov=False) for tau in taus]).to(dtype)

    def concat(self, projections: list[Projection]) -> Projection:
        """One projection of the rows of ``projections``, in order."""
        return projections[0] if len(projections) == 1 else self._concat(projections)

    def output_root(self, proj: Projection, tau: Tensor, scale: Tensor):
        """A :class:`~sklaplace.links.OutputRoot` of the output covariances of
        ``proj``'s rows when the blocks give one without a decomposition, else None (then
        Monte Carlo draws decompose ``moments(..., cov=True)``)."""
        return None

    def draws(self, view, X, n_samples, tau, scale, seed) -> Iterator[Tensor]:
        raise NotImplementedError

    def joint_moments(self, view, X, tau, scale, n_cov) -> tuple[Tensor, Tensor, Tensor]:
        """Means (m, c), variances (m, c) and covariances across rows (m, m, n_cov) of the
        net's outputs (the first ``n_cov`` of them)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- pickling
    def to(self, device: torch.device) -> Approximation:
        """This approximation with its posterior on ``device`` (a copy if it moves)."""
        moved = self.posterior.to(device)
        if moved is self.posterior:
            return self
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.posterior = moved
        return out


# Elements (draws x rows x outputs, or draws x parameters) formed at once by the draws.
DRAW_ELEMENTS = 2**17


def draw_chunk(n_samples: int, per_draw: int) -> int:
    """How many draws to form at once so that memory stays within ``DRAW_ELEMENTS``."""
    return max(1, min(n_samples, DRAW_ELEMENTS // max(1, per_draw)))


# Entries of the temporaries of one tile of a covariance across rows (``row_cov``).
JOINT_ELEMENTS = 2**22


def tile_rows(n_rows: int, n_cov: int, per_row: int) -> int:
    """Rows per tile of ``row_cov``: a tile's (t, t, n_cov) result and its (t, per_row)
    factors each hold at most ``JOINT_ELEMENTS`` entries."""
    square = math.isqrt(max(1, JOINT_ELEMENTS // max(1, n_cov)))
    return max(1, min(n_rows, square, JOINT_ELEMENTS // max(1, per_row)))


def row_cov(n_rows: int, n_cov: int, rows: int, tile, device) -> Tensor:
    """The (n_rows, n_rows, n_cov) float64 covariance across rows, filled tile by tile.

    ``tile(A, B)`` gives the (len(A), len(B), n_cov) covariances between the rows of the
    slices ``A`` and ``B`` (tiles of ``rows`` rows). Only the tiles on and above the
    diagonal are computed; each is mirrored below it, and the diagonal tiles are
    symmetrised, so the result is exactly symmetric. Memory: the result and one tile's
    temporaries (``tile_rows``), never an (outputs, rows, rows) intermediate.
    """
    out = torch.empty((n_rows, n_rows, n_cov), dtype=torch.float64, device=device)
    for s in range(0, n_rows, rows):
        A = slice(s, min(n_rows, s + rows))
        for t in range(s, n_rows, rows):
            B = slice(t, min(n_rows, t + rows))
            part = tile(A, B)
            if t == s:  # J S J^T is symmetric; the products round each triangle apart
                part = (part + part.transpose(0, 1)) / 2
            out[A, B] = part
            if t != s:
                out[B, A] = part.transpose(0, 1)
            del part
    return out


class ProjectionView:
    """A :class:`NetView` as a projected pass runs it (every attribute not set here is the
    view's): ``precision``, the dtype of each block's projection (None: float64), and
    ``batches`` sized for the projection when ``sized``: the first of the view's batch
    size, the others of ``sized_rows`` rows by the bytes of the first batch's projection
    (``part_bytes``, set by ``Approximation.project`` once it has it). Fewer, larger
    batches cost fewer small operations; the results differ by float rounding only."""

    def __init__(self, view: NetView, precision, sized: bool) -> None:
        self.view, self.precision, self.sized = view, precision, sized
        self.part_bytes = 0

    def __getattr__(self, name):
        return getattr(self.view, name)

    def batches(self, X, y=None, rows=None) -> Iterator[tuple]:
        n, first = n_rows_of(X), batch_rows(self.view, X)
        # a custom iterator_valid may batch with a purpose (by length, say): its own sizes
        plain = self.view.net.iterator_valid is torch.utils.data.DataLoader
        if not self.sized or not plain or rows is not None or first >= n:
            yield from self.view.batches(X, y, rows)
            return
        yield from self.view.batches(X, y, np.arange(first))
        sized = copy.copy(self.view)
        sized.batch_size = sized_rows(self.part_bytes / first, self.view.batch_size, n - first)
        yield from sized.batches(X, y, np.arange(first, n))


def sized_rows(part_bytes: float, batch_size: int, n_rows: int) -> int:
    """Rows per batch of a projected pass whose parts take ``part_bytes`` per row: four
    times that (the net's activations, the backpropagated vectors, the casts) within
    ``PROJECTION_BYTES``, at least the net's ``batch_size`` and at most
    ``PROJECTION_MERGE`` of its batches (the net's memory per row beyond the parts is
    unknown), and at most ``n_rows``."""
    budget = int(PROJECTION_BYTES // max(1.0, 4 * part_bytes))
    return max(1, min(n_rows, max(batch_size, min(budget, PROJECTION_MERGE * batch_size))))


def batch_rows(view: NetView, X) -> int:
    """The rows of a full batch of X (the view's batch size, or all rows for -1)."""
    n = n_rows_of(X)
    return n if view.batch_size == -1 else min(n, view.batch_size)


def _weighted(batches, weights: Tensor | None):
    """``(Xi, yi, wi)`` per batch: the rows' weights (None without weights), in order."""
    start = 0
    for Xi, yi in batches:
        m = len(yi)
        yield Xi, yi, None if weights is None else weights[start : start + m]
        start += m


def check_finite(a: Tensor, f: Tensor, Xi, dtype) -> None:
    """Raise a clear error when the head's inputs or outputs are not finite."""
    if torch.isfinite(a).all() and torch.isfinite(f).all():
        return
    largest = float(Xi.abs().max()) if isinstance(Xi, Tensor) else float("nan")
    raise ValueError(
        "The net's output layer receives or gives NaN or inf on some rows of X (largest |X| "
        f"in their batch: {largest:.3g}; the net computes in {dtype}). X is too large for "
        "the net (scale it, for example with StandardScaler), or the net's weights are not "
        "finite."
    )
