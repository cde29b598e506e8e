"""Layers and their parameter matrices: which weights get a posterior, and in what layout.

Each selected layer's trainable parameters are one matrix ``W`` of shape ``(n_out, n_in)``,
row-major, so that the layer computes ``z_p = W a_p`` at each position ``p`` of its output
(``a_p`` gets a trailing 1 when a trainable bias is the last column of ``W``). A *kind* of
layer is one subclass of :class:`Layer`: it says which modules it takes (``accepts``), how
``W`` maps to the parameters (``weight_matrix``, ``to_params``), what a forward pass
records (``record``) and how the Jacobian follows from that and the vectors backpropagated
to the module's output (``jacobian_factors``, ``squared_jacobian``). The kinds, tried in
the order they are registered (:func:`register`):

* :class:`LinearLayer`, :class:`Conv2dLayer`, :class:`Conv1dLayer`,
  :class:`EmbeddingLayer`: Kronecker kinds (``kronecker = True``), whose Jacobian is
  ``sum_p g_p a_p^T`` over input rows ``a_p`` (``inputs``) and output positions ``g_p``
  (``outputs``); they get Kronecker or diagonal blocks;
* :class:`OtherLayer`, whatever no kind takes (LayerNorm, BatchNorm, PReLU, a grouped
  convolution, ...): every parameter flattened into one row, always a diagonal block.

The accumulators (:mod:`.curvature`), the posterior blocks and the predictive see only
these methods, so a new kind (a Kronecker factorisation for another module) is one class
here and its ``@register``; nothing else branches on the kind.

Only parameters with ``requires_grad=True`` are in ``W``: a frozen bias stays a constant
of the layer, for the last layer as for any other.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap
from torch.nn import functional as F

__all__ = [
    "KINDS",
    "Conv1dLayer",
    "Conv2dLayer",
    "EmbeddingLayer",
    "KroneckerLayer",
    "Layer",
    "LinearLayer",
    "OtherLayer",
    "layer_of",
    "register",
]

# Elements of a batch's Jacobians (directions x rows x layer parameters) formed at once.
CHUNK_ELEMENTS = 2**22
F64 = torch.float64


class Layer:
    """One posterior block's module: its name, the module, and its weight layout (the
    base of the kinds; :func:`layer_of` chooses the kind).

    Examples
    --------
    >>> from torch import nn
    >>> layer = layer_of(nn.Sequential(nn.Linear(3, 2)), "0")
    >>> layer.kind, layer.kronecker, layer.shape
    ('linear', True, (2, 4))
    """

    kind = "layer"  # a short name, for messages
    kronecker = False  # its Jacobian is sum_p g_p a_p^T: Kronecker blocks are possible
    has_bias = False  # a trainable bias as the last column of W

    def __init__(self, name: str, module: nn.Module) -> None:
        self.name = name
        self.module = module

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {type(self.module).__name__})"

    @classmethod
    def accepts(cls, module: nn.Module) -> bool:
        """Whether this kind lays out ``module``'s parameters."""
        return False

    @property
    def params(self) -> list[tuple[str, nn.Parameter]]:
        """The module's own trainable parameters, ``(local name, parameter)``."""
        return [(n, p) for n, p in self.module.named_parameters(recurse=False) if p.requires_grad]

    @property
    def device(self) -> torch.device:
        return next(p for _, p in self.params).device

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_out, n_in)`` of the parameter matrix."""
        raise NotImplementedError

    def weight_matrix(
        self, dtype: torch.dtype = F64, params: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """The parameters as one ``(n_out, n_in)`` matrix: the module's own, or those in
        ``params`` (local names, as returned by ``to_params``, which this inverts)."""
        raise NotImplementedError

    def to_params(self, matrix: Tensor) -> dict[str, Tensor]:
        """Invert ``weight_matrix``: local parameter names to tensors in the module's dtype."""
        raise NotImplementedError

    def _get(self, local: str, dtype: torch.dtype, params: Mapping[str, Tensor] | None):
        p = getattr(self.module, local) if params is None else params[local]
        return p.detach().to(dtype)

    def record(self, inputs: tuple):
        """What a forward pass keeps of the module's positional ``inputs`` (new tensors)."""
        raise NotImplementedError

    def jacobian_factors(self, a, g: Tensor) -> tuple[Tensor, Tensor | None]:
        """The Jacobians of a batch, in float64, from the recorded ``a`` and the vectors
        ``g`` (r, m, ...) backpropagated to the module's output: ``(g_p (r, m, P, n_out),
        a_p (m, P, n_in))`` of a Kronecker kind, else ``(gradients (r, m, n_params),
        None)`` (what :meth:`~sklaplace.posterior.DiagBlock.rotate` takes)."""
        raise NotImplementedError

    def squared_jacobian(self, a, g: Tensor) -> Tensor:
        """``sum_rn J_rn * J_rn`` (elementwise), ``(n_out, n_in)`` float64: the exact GGN
        diagonal of one batch when ``g`` holds the columns of ``Lambda``'s square root."""
        raise NotImplementedError


class KroneckerLayer(Layer):
    """A kind whose Jacobian is ``J = sum_p g_p a_p^T``: the input rows ``a_p``
    (``inputs``) and the output positions (``outputs``) define it."""

    kronecker = True

    def inputs(self, x: Tensor) -> Tensor:
        """The layer's input as ``(m, P, n_in)`` rows (bias column appended), a new tensor."""
        raise NotImplementedError

    def outputs(self, g: Tensor) -> Tensor:
        """Vectors at the layer's output, features last: (r, m, ...) -> (r, m, P, n_out)."""
        r, m = g.shape[:2]
        return g.reshape(r, m, -1, g.shape[-1])

    def record(self, inputs):
        return self.inputs(inputs[0])

    def jacobian_factors(self, a, g):
        return self.outputs(g).to(F64), a.to(F64)

    def squared_jacobian(self, a, g):
        g = self.outputs(g)
        if a.shape[1] == 1:
            return ((g[:, :, 0] ** 2).sum(0).T @ (a[:, 0] ** 2)).to(F64)
        r, m = g.shape[:2]
        h = torch.zeros(self.shape, dtype=F64, device=g.device)
        rows = max(1, CHUNK_ELEMENTS // max(1, r * h.numel()))
        for s in range(0, m, rows):
            jac = torch.einsum("rnpo,npi->rnoi", g[:, s : s + rows], a[s : s + rows])
            h += (jac * jac).sum((0, 1)).to(F64)
        return h


KINDS: list[type[Layer]] = []


def register(kind: type[Layer]) -> type[Layer]:
    """Add a layer kind (a class decorator), tried in order by :func:`layer_of`."""
    KINDS.append(kind)
    return kind


def _trainable_weight(mod: nn.Module) -> bool:
    weight = getattr(mod, "weight", None)
    return isinstance(weight, nn.Parameter) and weight.requires_grad


class _WeightAndBias(KroneckerLayer):
    """``W = [weight.reshape(n_out, -1) | bias]``, the bias column if it is trainable."""

    @property
    def has_bias(self) -> bool:
        bias = getattr(self.module, "bias", None)
        return isinstance(bias, Tensor) and bias.requires_grad

    @property
    def shape(self):
        weight = self.module.weight
        return weight.shape[0], weight[0].numel() + int(self.has_bias)

    def weight_matrix(self, dtype=F64, params=None):
        w = self._get("weight", dtype, params)
        w = w.reshape(w.shape[0], -1)
        if self.has_bias:
            w = torch.cat([w, self._get("bias", dtype, params)[:, None]], dim=1)
        return w

    def to_params(self, matrix):
        weight = self.module.weight
        n_w = weight[0].numel()
        out = {"weight": matrix[:, :n_w].reshape(weight.shape)}
        if self.has_bias:
            out["bias"] = matrix[:, n_w]
        return {k: v.to(weight.dtype) for k, v in out.items()}

    def patches(self, x: Tensor) -> Tensor:
        """The input rows ``(m, P, n_in)`` without the bias column (may be a view of x)."""
        raise NotImplementedError

    def inputs(self, x):
        a = self.patches(x.detach())
        if self.has_bias:
            return torch.cat([a, torch.ones_like(a[..., :1])], dim=-1)
        return a.clone()


@register
class LinearLayer(_WeightAndBias):
    """``nn.Linear``: ``[W | b]``; input dimensions between the rows and the features
    (sequences) are positions."""

    kind = "linear"

    @classmethod
    def accepts(cls, module):
        return isinstance(module, nn.Linear) and _trainable_weight(module)

    def patches(self, x):
        return x.reshape(x.shape[0], -1, x.shape[-1])


def _padded(layer: Layer, x: Tensor, dims: str) -> tuple[Tensor, tuple]:
    """A convolution's input ``x`` of ``dims``, padded as ``padding="same"`` pads it, and
    the padding left to apply."""
    conv = layer.module
    if x.dim() != len(dims.split(",")):
        raise ValueError(
            f"{type(conv).__name__} layer {layer.name!r} receives input of shape "
            f"{tuple(x.shape)}; the all-layer Laplace needs batched ({dims}) input."
        )
    padding = conv.padding
    if not isinstance(padding, str):
        return x, padding
    if padding == "same":
        pads = []
        for d, k in zip(reversed(conv.dilation), reversed(conv.kernel_size), strict=True):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        x = F.pad(x, pads)
    return x, (0,) * len(conv.kernel_size)


@register
class Conv2dLayer(_WeightAndBias):
    """``nn.Conv2d`` (``groups=1``, zero padding): ``[W.reshape(out, -1) | b]``, ``a_p``
    the unfolded input patch at output pixel ``p`` (Grosse & Martens 2016)."""

    kind = "conv2d"
    module_type: type[nn.Module] = nn.Conv2d

    @classmethod
    def accepts(cls, module):
        return (
            isinstance(module, cls.module_type)
            and _trainable_weight(module)
            and module.groups == 1
            and module.padding_mode == "zeros"
        )

    def patches(self, x):
        conv = self.module
        x, padding = _padded(self, x, "rows, channels, height, width")
        cols = F.unfold(x, conv.kernel_size, conv.dilation, padding, conv.stride)
        return cols.transpose(1, 2)

    def outputs(self, g):
        r, m = g.shape[:2]  # channels first: (r, m, n_out, *positions)
        return g.reshape(r, m, g.shape[2], -1).transpose(2, 3)


@register
class Conv1dLayer(Conv2dLayer):
    """``nn.Conv1d`` (``groups=1``, zero padding), as a Conv2d of height 1:
    ``[W.reshape(out, -1) | b]``, ``a_p`` the input patch at output position ``p``."""

    kind = "conv1d"
    module_type = nn.Conv1d

    def patches(self, x):
        conv = self.module
        x, padding = _padded(self, x, "rows, channels, length")
        kernel, dilation, stride = (1, *conv.kernel_size), (1, *conv.dilation), (1, *conv.stride)
        cols = F.unfold(x[:, :, None], kernel, dilation, (0, *padding), stride)
        return cols.transpose(1, 2)


@register
class EmbeddingLayer(KroneckerLayer):
    """``nn.Embedding`` (no ``max_norm``): ``W^T`` of shape (embedding_dim,
    num_embeddings), ``a_p`` the one-hot index (zero for ``padding_idx``, whose row gets no
    gradient). The one-hots are formed, so this suits the small vocabularies of
    categorical features."""

    kind = "embedding"

    @classmethod
    def accepts(cls, module):
        return (
            isinstance(module, nn.Embedding)
            and _trainable_weight(module)
            and module.max_norm is None
        )

    @property
    def shape(self):
        return self.module.embedding_dim, self.module.num_embeddings

    def weight_matrix(self, dtype=F64, params=None):
        return self._get("weight", dtype, params).T.contiguous()

    def to_params(self, matrix):
        return {"weight": matrix.T.to(self.module.weight.dtype)}

    def inputs(self, x):
        mod = self.module
        idx = x.detach().reshape(x.shape[0], -1).long()
        a = F.one_hot(idx, mod.num_embeddings).to(mod.weight.dtype)
        if mod.padding_idx is not None:
            a = a * (idx != mod.padding_idx)[..., None]
        return a


class OtherLayer(Layer):
    """Any other module with trainable parameters of its own (LayerNorm, BatchNorm,
    PReLU, a grouped Conv2d, ...): all of them flattened into one row ``(1, n_params)``;
    it always gets a diagonal block, from per-row gradients (``torch.func.vmap``), which
    assumes the module treats rows independently (true in evaluation mode)."""

    kind = "other"

    @property
    def shape(self):
        return 1, sum(p.numel() for _, p in self.params)

    def weight_matrix(self, dtype=F64, params=None):
        return torch.cat([self._get(n, dtype, params).reshape(-1) for n, _ in self.params])[None]

    def to_params(self, matrix):
        out, start = {}, 0
        flat = matrix.reshape(-1)
        for n, p in self.params:
            out[n] = flat[start : start + p.numel()].reshape(p.shape).to(p.dtype)
            start += p.numel()
        return out

    def record(self, inputs):
        if not all(isinstance(x, Tensor) for x in inputs):
            raise ValueError(
                f"Module {self.name!r} takes non-tensor positional inputs; leave it out with "
                "subset_of_weights=[...]."
            )
        return tuple(x.detach().clone() for x in inputs)

    def jacobian_factors(self, a, g):
        return self.per_row_grads(a, g), None

    def squared_jacobian(self, a, g):
        jac = self.per_row_grads(a, g)
        return (jac * jac).sum((0, 1))[None]

    def per_row_grads(self, inputs: tuple, g: Tensor) -> Tensor:
        """Gradients of ``g[r, n] . z_n`` w.r.t. the parameters, per row: ``(r, m, D)``.

        ``z_n`` is the module's output for row ``n`` alone (``torch.func``), so this is
        exact for modules that treat rows independently.
        """
        names = [n for n, _ in self.params]
        params = {n: p.detach() for n, p in self.params}

        def one_row(xs, gn):
            def fn(pd):
                return functional_call(self.module, pd, tuple(x[None] for x in xs))

            _, pull = vjp(fn, params)
            (grad,) = pull(gn[None].to(params[names[0]].dtype))
            return torch.cat([grad[n].reshape(-1) for n in names])

        per_row = vmap(vmap(one_row, in_dims=(0, 0)), in_dims=(None, 0))
        r, m = g.shape[:2]
        rows = max(1, CHUNK_ELEMENTS // max(1, r * self.shape[1]))
        chunks = [
            per_row(tuple(x[s : s + rows] for x in inputs), g[:, s : s + rows])
            for s in range(0, m, rows)
        ]
        return torch.cat(chunks, dim=1).to(F64)


def layer_of(module: nn.Module, name: str) -> Layer:
    """The ``Layer`` for the submodule ``name`` of ``module``: of the first registered kind
    that accepts it, else :class:`OtherLayer`."""
    mod = module.get_submodule(name)
    return next((kind for kind in KINDS if kind.accepts(mod)), OtherLayer)(name, mod)
