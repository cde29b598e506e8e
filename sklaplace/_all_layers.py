"""All-layer Laplace: curvature over every selected layer, GLM predictive, weight sampling.

The functions here take a plain ``torch.nn.Module`` and tensors; nothing knows skorch.

API
---
``select_layers(module, subset="all") -> list[Layer]``
    The layers that get a posterior block, in ``named_modules`` order. ``subset`` is
    ``"all"`` or a list of module names (a container name stands for every module inside
    it that owns parameters). Only parameters with ``requires_grad=True`` are included.
``fit_all_layers(module, head, batches, likelihood, structure, subset="all")``
    ``-> (Posterior, summed_loss, n_rows)``: one pass over ``batches`` of ``(Xi, yi)``.
``glm_output_cov(module, head, posterior, Xi, tau, scale) -> (f_mean, f_cov)``
    Linearised predictive of the head outputs for one batch: (m, c) and (m, c, c).
``sample_predictions(module, head, posterior, Xi, n_samples, tau, scale, generator)``
    ``-> Tensor (n_samples, m, c)``: head outputs with weights drawn from the posterior.
``sample_parameters(module, posterior, n_samples, tau, scale, generator)``
    ``-> list[dict[str, Tensor]]``: the drawn weights, as ``functional_call`` dictionaries.

The model's outputs ``f`` are the outputs of ``head`` (the last ``nn.Linear``), captured
with a forward hook, so a module that applies a softmax after it (skorch's ``NLLLoss``) is
handled. ``tau`` is a tensor with one prior precision per block and ``scale`` the factor
``1 / (sigma^2 T)`` on the curvature, as in :mod:`sklaplace.posterior`. The module is run in
evaluation mode (and put back in its previous mode); its weights are never written.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from sklaplace._all_layers import fit_all_layers, glm_output_cov
>>> _ = torch.manual_seed(0)
>>> net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
>>> X, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
>>> post, loss, n_rows = fit_all_layers(net, net[2], [(X, y)], "classification", "kron")
>>> post.names, [b.structure for b in post.blocks], n_rows
(['0', '2'], ['kron', 'kron'], 20)
>>> mean, cov = glm_output_cov(net, net[2], post, X[:5], torch.ones(2), torch.tensor(1.0))
>>> tuple(mean.shape), tuple(cov.shape)
((5, 2), (5, 2, 2))

Layers and their parameter matrices
-----------------------------------
Each layer's trainable parameters are one matrix ``(n_out, n_in)``, row-major, bias (when
trainable) as the last column, so the layer computes ``z_p = W a_p`` at each position ``p``:

* ``nn.Linear``: ``[W | b]``; input dimensions between the rows and the features
  (sequences) are positions.
* ``nn.Conv2d`` (``groups=1``, zero padding): ``[W.reshape(out, -1) | b]``, ``a_p`` the
  unfolded input patch at output pixel ``p`` (Grosse & Martens 2016).
* ``nn.Embedding``: ``W^T`` of shape (embedding_dim, num_embeddings), ``a_p`` the one-hot
  index (zero for ``padding_idx``, whose row gets no gradient). The one-hots are formed, so
  this suits the small vocabularies of categorical features.
* any other module with parameters of its own (LayerNorm, BatchNorm, PReLU, a Conv2d with
  groups, ...): all of them flattened into one row ``(1, n_params)``; it always gets a
  diagonal block, computed exactly from per-row gradients (``torch.func.vmap``), which
  assumes the module treats rows independently (true in evaluation mode).

Recurrent modules (RNN, LSTM, GRU) and a selected module applied more than once per forward
pass (shared weights) raise a ``ValueError`` that suggests a ``subset_of_weights`` list.

Curvature (DESIGN.md section 4)
-------------------------------
The GGN ``H = sum_n J_n^T Lambda_n J_n`` is computed from ``Lambda_n = S_n S_n^T`` with an
exact square root: ``c - 1`` columns for the softmax (``diag(p) - p p^T`` has rank
``c - 1``; see ``_lambda_sqrt``), ``sqrt(p (1 - p))`` for the sigmoid, the identity for the
Gaussian. The columns are backpropagated in one batched backward pass
(``is_grads_batched``), giving at each layer's output the vectors ``g_nrp``, so the
Jacobian-transpose-vector for the layer's weights is ``sum_p g_nrp a_np^T``.

* ``diag``: the exact diagonal ``sum_nr (sum_p g_nrp a_np^T)^2`` (elementwise); for one
  position this is ``sum_n (sum_r g_nr^2) (a_n^2)^T``.
* ``kron`` (KFAC, "expand" convention for positions, which are treated like extra rows):
  ``A = (1 / (N P)) sum_np a_np a_np^T`` and ``B = sum_nrp g_nrp g_nrp^T``, block ``B (x) A``.
  ``B`` is the exact output-side GGN factor ("KFAC with exact B" rather than Monte Carlo
  samples). The product does not depend on the batch size; it equals the exact GGN block
  for one row at one position, and for the last layer of a regression net.

Products within a batch are formed in the net's dtype; the sums over batches and all
that follows (eigendecompositions, predictive covariances) are float64. Cost of a fit: one
forward and one batched backward pass per batch, plus ``O(N c n_out^2 + N n_in^2)`` per
Kronecker layer (``O(N c n_out n_in)`` for diag); memory does not depend on ``N``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap
from torch.nn import functional as F

from ._blas import blas_threads_like_torch, gram
from .curvature import LIKELIHOODS, summed_loss
from .posterior import DiagBlock, KronBlock, Posterior

__all__ = [
    "Layer",
    "fit_all_layers",
    "glm_output_cov",
    "sample_parameters",
    "sample_predictions",
    "select_layers",
]

STRUCTURES = ("diag", "kron")

# Elements of per-row gradients (directions x rows x layer parameters) formed at once.
_CHUNK_ELEMENTS = 2**22


# ----------------------------------------------------------------------------- layers
class Layer(NamedTuple):
    """One posterior block's module: its name, the module, and how its weights are laid out.

    ``kind`` is ``"linear"``, ``"conv2d"``, ``"embedding"`` (Kronecker-factorable) or
    ``"other"`` (diagonal only). See the module docstring for the layouts.
    """

    name: str
    module: nn.Module
    kind: str

    @property
    def params(self) -> list[tuple[str, nn.Parameter]]:
        """The module's own trainable parameters, ``(local name, parameter)``."""
        return [(n, p) for n, p in self.module.named_parameters(recurse=False) if p.requires_grad]

    @property
    def has_bias(self) -> bool:
        bias = getattr(self.module, "bias", None)
        return self.kind in ("linear", "conv2d") and bias is not None and bias.requires_grad

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_out, n_in)`` of the parameter matrix."""
        mod = self.module
        if self.kind == "linear":
            return mod.out_features, mod.in_features + int(self.has_bias)
        if self.kind == "conv2d":
            per_out = mod.weight[0].numel()
            return mod.out_channels, per_out + int(self.has_bias)
        if self.kind == "embedding":
            return mod.embedding_dim, mod.num_embeddings
        return 1, sum(p.numel() for _, p in self.params)

    def weight_matrix(
        self, dtype: torch.dtype = torch.float64, params: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """The parameters as one ``(n_out, n_in)`` matrix.

        The trained ones, or those in ``params`` (fully qualified names, as returned by
        ``to_params``), which this inverts.
        """
        prefix = f"{self.name}." if self.name else ""

        def get(local: str) -> Tensor:
            p = getattr(self.module, local) if params is None else params[prefix + local]
            return p.detach().to(dtype)

        if self.kind == "embedding":
            return get("weight").T.contiguous()
        if self.kind in ("linear", "conv2d"):
            w = get("weight")
            w = w.reshape(w.shape[0], -1)
            if self.has_bias:
                w = torch.cat([w, get("bias")[:, None]], dim=1)
            return w
        return torch.cat([get(n).reshape(-1) for n, _ in self.params])[None]

    def to_params(self, matrix: Tensor) -> dict[str, Tensor]:
        """Invert ``weight_matrix``: fully qualified parameter names to tensors.

        The tensors take the dtype of the module's parameters.
        """
        prefix = f"{self.name}." if self.name else ""
        mod = self.module
        if self.kind == "embedding":
            return {prefix + "weight": matrix.T.to(mod.weight.dtype)}
        if self.kind in ("linear", "conv2d"):
            n_w = mod.weight[0].numel()
            out = {prefix + "weight": matrix[:, :n_w].reshape(mod.weight.shape)}
            if self.has_bias:
                out[prefix + "bias"] = matrix[:, n_w]
            return {k: v.to(mod.weight.dtype) for k, v in out.items()}
        out, start = {}, 0
        flat = matrix.reshape(-1)
        for n, p in self.params:
            out[prefix + n] = flat[start : start + p.numel()].reshape(p.shape).to(p.dtype)
            start += p.numel()
        return out

    def inputs(self, x: Tensor) -> Tensor:
        """The layer's input as ``(m, P, n_in)`` rows (bias column appended), a new tensor."""
        mod = self.module
        if self.kind == "linear":
            a = x.detach().reshape(x.shape[0], -1, x.shape[-1])
        elif self.kind == "conv2d":
            a = _unfold(mod, x.detach())
        else:
            idx = x.detach().reshape(x.shape[0], -1).long()
            a = F.one_hot(idx, mod.num_embeddings).to(mod.weight.dtype)
            if mod.padding_idx is not None:
                a = a * (idx != mod.padding_idx)[..., None]
            return a
        if self.has_bias:
            return torch.cat([a, torch.ones_like(a[..., :1])], dim=-1)
        return a.clone()

    def outputs(self, g: Tensor) -> Tensor:
        """Backpropagated vectors at the layer's output: (r, m, ...) -> (r, m, P, n_out)."""
        r, m = g.shape[:2]
        if self.kind == "conv2d":
            return g.reshape(r, m, g.shape[2], -1).transpose(2, 3)
        return g.reshape(r, m, -1, g.shape[-1])


def _unfold(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """Input patches of a Conv2d, ``(m, P, C * kh * kw)`` (Grosse & Martens 2016)."""
    if x.dim() != 4:
        raise ValueError(
            f"Conv2d layer receives input of shape {tuple(x.shape)}; the all-layer Laplace "
            "needs batched (rows, channels, height, width) input."
        )
    padding = conv.padding
    if isinstance(padding, str):
        if padding == "same":
            pads = []
            for d, k in zip(reversed(conv.dilation), reversed(conv.kernel_size), strict=True):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        padding = 0
    cols = F.unfold(x, conv.kernel_size, conv.dilation, padding, conv.stride)
    return cols.transpose(1, 2)


def _kind(name: str, mod: nn.Module) -> str:
    if isinstance(mod, nn.RNNBase):
        raise ValueError(
            f"Module {name!r} is a {type(mod).__name__}; the all-layer Laplace does not "
            "support recurrent layers. Leave it out with subset_of_weights=[...] listing "
            "the other layers' names, e.g. the ones after it."
        )
    weight = getattr(mod, "weight", None)
    trainable_w = isinstance(weight, nn.Parameter) and weight.requires_grad
    if isinstance(mod, nn.Linear) and trainable_w:
        return "linear"
    if (
        isinstance(mod, nn.Conv2d)
        and trainable_w
        and mod.groups == 1
        and mod.padding_mode == "zeros"
    ):
        return "conv2d"
    if isinstance(mod, nn.Embedding) and trainable_w and mod.max_norm is None:
        return "embedding"
    return "other"


def _has_own_params(mod: nn.Module) -> bool:
    return any(p.requires_grad for p in mod.parameters(recurse=False))


def select_layers(module: nn.Module, subset: str | Iterable[str] = "all") -> list[Layer]:
    """The layers that get a posterior block.

    Parameters
    ----------
    module : nn.Module
    subset : "all" or list of str
        Module names as in ``module.named_modules()``; a name of a container stands for
        every module inside it that has trainable parameters of its own.

    Returns
    -------
    list of Layer
        In ``named_modules`` order, each module once; modules whose parameters all have
        ``requires_grad=False`` are left out.
    """
    named = dict(module.named_modules())
    if isinstance(subset, str):
        if subset != "all":
            raise ValueError(f"subset must be 'all' or a list of module names, got {subset!r}.")
        roots = [""]
    else:
        roots = list(subset)
        if not roots:
            raise ValueError("subset is an empty list; name at least one module.")
        unknown = [r for r in roots if r not in named]
        if unknown:
            known = [n for n, m in named.items() if n and _has_own_params(m)]
            raise ValueError(f"Unknown module name(s) {unknown}; modules with weights: {known}.")
    chosen = []
    for root in roots:
        prefix = f"{root}." if root else ""
        hits = [
            n
            for n, m in named.items()
            if (n == root or n.startswith(prefix)) and _has_own_params(m)
        ]
        if not hits:
            what = f"Module {root!r}" if root else f"The module ({type(module).__name__})"
            raise ValueError(f"{what} has no trainable parameters (requires_grad=True).")
        chosen.extend(h for h in hits if h not in chosen)
    order = {n: i for i, n in enumerate(named)}
    chosen.sort(key=order.__getitem__)
    return [Layer(n, named[n], _kind(n, named[n])) for n in chosen]


def _layers_of(module: nn.Module, posterior: Posterior) -> list[Layer]:
    """Rebuild the layers of a posterior from its block names."""
    layers = []
    for name, block in zip(posterior.names, posterior.blocks, strict=True):
        mod = module.get_submodule(name)
        layer = Layer(name, mod, _kind(name, mod))
        if tuple(layer.shape) != tuple(block.shape):
            raise ValueError(
                f"Layer {name!r} has parameter matrix {layer.shape} but its posterior block "
                f"has {tuple(block.shape)}; the module changed since fit."
            )
        if block.structure == "kron" and layer.kind == "other":
            raise ValueError(f"Layer {name!r} cannot have a Kronecker block.")
        layers.append(layer)
    return layers


# ------------------------------------------------------------------------ forward tape
@contextmanager
def _eval_mode(module: nn.Module):
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _call(module: nn.Module, Xi) -> None:
    if isinstance(Xi, Mapping):
        module(**Xi)
    else:
        module(Xi)


class _Tape:
    """Forward hooks recording each layer's input and output and the head's output."""

    def __init__(self, layers: list[Layer], head: nn.Module) -> None:
        self.layers = layers
        self.calls = [0] * len(layers)
        self.head_calls = 0
        self.a: list = [None] * len(layers)
        self.z: list = [None] * len(layers)
        self.f: Tensor | None = None
        self.handles = [
            layer.module.register_forward_hook(self._hook(i)) for i, layer in enumerate(layers)
        ]
        self.handles.append(head.register_forward_hook(self._head_hook))

    def _hook(self, i: int):
        layer = self.layers[i]

        def hook(mod, inputs, output):
            self.calls[i] += 1
            if not isinstance(output, Tensor):
                raise ValueError(
                    f"Module {layer.name!r} returns {type(output).__name__}, not a tensor; "
                    "leave it out with subset_of_weights=[...]."
                )
            if layer.kind == "other":
                if not all(isinstance(x, Tensor) for x in inputs):
                    raise ValueError(
                        f"Module {layer.name!r} takes non-tensor positional inputs; leave it "
                        "out with subset_of_weights=[...]."
                    )
                self.a[i] = tuple(x.detach().clone() for x in inputs)
            else:
                self.a[i] = layer.inputs(inputs[0])
            self.z[i] = output
            # Downstream in-place ops (ReLU(inplace=True)) act on the copy, so gradients
            # with respect to ``output`` stay gradients with respect to this layer's output.
            return output.clone()

        return hook

    def _head_hook(self, mod, inputs, output):
        self.head_calls += 1
        self.f = output
        return output.clone() if isinstance(output, Tensor) else output

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def check(self) -> Tensor:
        """Validate one forward pass and return the head output (m, c)."""
        if self.head_calls != 1:
            raise ValueError(
                f"The head module ran {self.head_calls} times in one forward pass; it must "
                "run exactly once."
            )
        for layer, n in zip(self.layers, self.calls, strict=True):
            if n > 1:
                raise ValueError(
                    f"Module {layer.name!r} is applied {n} times in one forward pass (shared "
                    "weights), which the all-layer Laplace cannot express; leave it out with "
                    "subset_of_weights=[...] listing the other layers."
                )
        f = self.f
        if not isinstance(f, Tensor) or f.dim() != 2:
            raise ValueError(
                f"The head's output is {_describe(f)}; it must be a (rows, outputs) tensor."
            )
        m = f.shape[0]
        for layer, n, z in zip(self.layers, self.calls, self.z, strict=True):
            if n == 1 and (z.dim() == 0 or z.shape[0] != m):
                raise ValueError(
                    f"Module {layer.name!r} outputs shape {tuple(z.shape)}, whose first "
                    f"dimension is not the {m} rows; rows must stay the first dimension."
                )
        return f


def _describe(x) -> str:
    return f"of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


def _run(module: nn.Module, layers: list[Layer], head: nn.Module, Xi) -> tuple[_Tape, Tensor]:
    tape = _Tape(layers, head)
    try:
        with torch.enable_grad():
            _call(module, Xi)
    finally:
        tape.remove()
    return tape, tape.check()


def _backprop(f: Tensor, zs: list[Tensor | None], V: Tensor) -> list[Tensor]:
    """``V[r]^T df/dz`` for every captured output ``z``: each ``(r, *z.shape)``.

    One batched backward pass; falls back to a loop over directions where an operation
    has no batching rule.
    """
    used = [i for i, z in enumerate(zs) if z is not None and z.requires_grad]
    out: list = [None] * len(zs)
    inputs = [zs[i] for i in used]
    grads: list | tuple = []
    if inputs:
        try:
            grads = torch.autograd.grad(
                f, inputs, grad_outputs=V, is_grads_batched=True, allow_unused=True
            )
        except RuntimeError:
            per_dir = [
                torch.autograd.grad(
                    f, inputs, grad_outputs=v, retain_graph=True, allow_unused=True
                )
                for v in V
            ]
            grads = [
                None if per_dir[0][j] is None else torch.stack([d[j] for d in per_dir])
                for j in range(len(inputs))
            ]
    for i, g in zip(used, grads, strict=True):
        out[i] = None if g is None else g.detach()
    # an output the head does not depend on has zero gradient
    return [
        z.new_zeros((V.shape[0], *z.shape)) if g is None and z is not None else g
        for z, g in zip(zs, out, strict=True)
    ]


def _lambda_sqrt(likelihood: str, f: Tensor) -> Tensor:
    """Columns of ``S_n`` with ``S_n S_n^T = Lambda_n``, as ``(r, m, c)`` cotangents.

    Softmax: ``S = diag(u) - p u^T`` with ``u = sqrt(p)`` (``S S^T = diag(p) - p p^T`` as
    ``u^T u = 1``). ``S u = 0``, so ``Lambda`` has rank ``c - 1``: rotating the columns with
    the Householder reflection ``H`` that maps ``e_j`` to ``u`` makes column ``j`` zero and
    leaves, for ``r != j``, ``s_r + s_j u_r / (1 - u_j) = u_r (e_r + beta e_j -
    (1 + beta) p)`` with ``beta = u_j / (1 - u_j)``; ``j`` is the least likely class, so
    ``1 - u_j >= 1 - c^(-1/2)``. That saves one of ``c`` backward directions.
    """
    m, c = f.shape
    if likelihood == "classification":
        p = torch.softmax(f, dim=1)
        u = p.sqrt()
        if c < 2:
            return (u - p * u)[None]
        j = p.argmin(dim=1, keepdim=True)  # (m, 1)
        u_j = u.gather(1, j)
        beta = u_j / (1 - u_j)
        r = torch.arange(c - 1, device=f.device)
        keep = (r + (r >= j)).T  # the classes other than j, (c - 1, m)
        u_keep = u.T.gather(0, keep)  # (c - 1, m)
        base = (-(1 + beta) * p).scatter_add_(1, j, beta)  # beta e_j - (1 + beta) p
        out = u_keep[:, :, None] * base
        return out.scatter_add_(2, keep[:, :, None], u_keep[:, :, None])
    if likelihood == "binary":
        p = torch.sigmoid(f)
        return (p * (1 - p)).sqrt()[None]
    if likelihood == "regression":
        return torch.eye(c, dtype=f.dtype, device=f.device)[:, None, :].expand(c, m, c)
    raise ValueError(f"Unknown likelihood {likelihood!r}; expected one of {LIKELIHOODS}.")


def _per_row_grads(layer: Layer, inputs: tuple, g: Tensor) -> Tensor:
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


# --------------------------------------------------------------------------- curvature
class _Accumulator:
    """Per-layer curvature sums over batches (float64)."""

    def __init__(self, layer: Layer, structure: str) -> None:
        self.layer = layer
        self.kron = structure == "kron" and layer.kind != "other"
        n_out, n_in = layer.shape
        kw = {"dtype": torch.float64, "device": _device(layer)}
        if self.kron:
            self.A = torch.zeros(n_in, n_in, **kw)
            self.B = torch.zeros(n_out, n_out, **kw)
            self.n_positions = 0
        else:
            self.h = torch.zeros(n_out, n_in, **kw)

    def update(self, a, g: Tensor) -> None:
        layer = self.layer
        if layer.kind == "other":
            jac = _per_row_grads(layer, a, g)
            self.h += (jac * jac).sum((0, 1))[None]
            return
        # Products within a batch in the net's dtype, sums over batches in float64.
        g = layer.outputs(g)  # (r, m, P, n_out)
        if self.kron:
            flat_a = a.reshape(-1, a.shape[-1])
            self.A += gram(flat_a)
            flat_g = g.reshape(-1, g.shape[-1])
            self.B += gram(flat_g)
            self.n_positions += flat_a.shape[0]
        elif a.shape[1] == 1:
            self.h += ((g[:, :, 0] ** 2).sum(0).T @ (a[:, 0] ** 2)).to(torch.float64)
        else:
            r, m = g.shape[:2]
            rows = max(1, _CHUNK_ELEMENTS // max(1, r * self.h.numel()))
            for s in range(0, m, rows):
                jac = torch.einsum("rnpo,npi->rnoi", g[:, s : s + rows], a[s : s + rows])
                self.h += (jac * jac).sum((0, 1)).to(torch.float64)

    def block(self) -> DiagBlock | KronBlock:
        if self.kron:
            return KronBlock(self.A / max(self.n_positions, 1), self.B)
        return DiagBlock(self.h)


def _device(layer: Layer) -> torch.device:
    return next(p for _, p in layer.params).device


def fit_all_layers(
    module: nn.Module,
    head: nn.Module,
    batches: Iterable,
    likelihood: str,
    structure: str,
    subset: str | Iterable[str] = "all",
) -> tuple[Posterior, Tensor, int]:
    """One pass over the data: the all-layer Laplace posterior's curvature.

    Parameters
    ----------
    module : nn.Module
        The trained net (run in evaluation mode; never modified).
    head : nn.Module
        The module whose output is the model's output ``f`` (logits or means), usually
        the last ``nn.Linear``; it must run once per forward pass and return (m, c).
    batches : iterable of (Xi, yi)
        ``Xi`` a tensor (or a dict of keyword tensors), ``yi`` the targets of the loss.
    likelihood : {"classification", "binary", "regression"}
    structure : {"kron", "diag"}
        ``kron``: Kronecker blocks for Linear / Conv2d / Embedding and diagonal blocks for
        other modules; ``diag``: exact GGN diagonals everywhere.
    subset : "all" or list of str
        See ``select_layers``.

    Returns
    -------
    posterior : Posterior
        One block per layer, means from ``Layer.weight_matrix``, names the module names.
    loss : Tensor
        The summed training loss at the trained weights (float64 scalar).
    n_rows : int
    """
    if structure not in STRUCTURES:
        raise ValueError(f"Unknown structure {structure!r}; expected one of {STRUCTURES}.")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"Unknown likelihood {likelihood!r}; expected one of {LIKELIHOODS}.")
    layers = select_layers(module, subset)
    accs = [_Accumulator(layer, structure) for layer in layers]
    loss = torch.zeros((), dtype=torch.float64)
    n_rows = 0
    with _eval_mode(module), blas_threads_like_torch():
        for Xi, yi in batches:
            if not isinstance(yi, Tensor):
                raise ValueError(
                    f"Each batch must be (Xi, yi) with yi a tensor of targets (the summed "
                    f"loss needs them); got yi of type {type(yi).__name__}."
                )
            tape, f = _run(module, layers, head, Xi)
            f_det = f.detach()
            n_rows += f.shape[0]
            loss = loss + summed_loss(likelihood, f_det.to(torch.float64), yi.to(f.device))
            grads = _backprop(f, tape.z, _lambda_sqrt(likelihood, f_det))
            for acc, a, g in zip(accs, tape.a, grads, strict=True):
                if a is not None:
                    acc.update(a, g)
            del tape, f, grads
    if n_rows == 0:
        raise ValueError("No rows were seen: cannot compute curvature from empty data.")
    posterior = Posterior(
        [acc.block() for acc in accs],
        [layer.weight_matrix() for layer in layers],
        [layer.name for layer in layers],
    )
    return posterior, loss, n_rows


# -------------------------------------------------------------------------- predictive
def glm_output_cov(
    module: nn.Module,
    head: nn.Module,
    posterior: Posterior,
    Xi,
    tau: Tensor,
    scale: Tensor,
) -> tuple[Tensor, Tensor]:
    """Linearised (GLM) predictive of the head outputs for one batch.

    ``Cov_f = sum_b J_b Sigma_b J_b^T`` over the posterior's blocks. The vectors ``g``
    backpropagated from each output to each layer's output (one batched backward pass)
    and the layer inputs ``a`` give the layer Jacobians as outer products, which the
    blocks contract in their eigenbases (``jacobian_cov``); no (m, c, n_params) Jacobian
    is formed. Other modules use their per-row parameter gradients (m, c, n_params_layer).

    Parameters
    ----------
    module, head : nn.Module
    posterior : Posterior
        From ``fit_all_layers`` on the same module.
    Xi : Tensor or dict of Tensor
    tau : Tensor of shape (n_blocks,)
    scale : Tensor (scalar)

    Returns
    -------
    f_mean : Tensor of shape (m, c), float64
    f_cov : Tensor of shape (m, c, c), float64
    """
    layers = _layers_of(module, posterior)
    tau = torch.as_tensor(tau, dtype=torch.float64).reshape(-1)
    scale = torch.as_tensor(scale, dtype=torch.float64)
    if tau.numel() != len(layers):
        raise ValueError(f"tau has {tau.numel()} values for {len(layers)} posterior blocks.")
    with _eval_mode(module):
        tape, f = _run(module, layers, head, Xi)
        m, c = f.shape
        eye = torch.eye(c, dtype=f.dtype, device=f.device)[:, None, :].expand(c, m, c)
        grads = _backprop(f, tape.z, eye)
    cov = torch.zeros(m, c, c, dtype=torch.float64, device=f.device)
    for layer, block, t, a, g in zip(layers, posterior.blocks, tau, tape.a, grads, strict=True):
        if a is None:
            continue
        if layer.kind == "other":
            jac = _per_row_grads(layer, a, g)  # (c, m, D)
            inv = 1.0 / block.eigenvalues(t, scale).reshape(-1)
            cov += torch.einsum("knd,d,lnd->nkl", jac, inv, jac)
        else:
            g64 = layer.outputs(g).to(torch.float64)
            cov += block.jacobian_cov(g64, a.to(torch.float64), t, scale)
    return f.detach().to(torch.float64), cov


def sample_parameters(
    module: nn.Module,
    posterior: Posterior,
    n_samples: int,
    tau: Tensor,
    scale: Tensor,
    generator: torch.Generator,
) -> list[dict[str, Tensor]]:
    """``n_samples`` weight draws from the posterior, each a ``functional_call`` dict.

    Each block is matrix-normal (Kronecker) or independent normal (diagonal) around its
    MAP weights, drawn through the stored eigendecomposition (``Posterior.sample``).
    """
    layers = _layers_of(module, posterior)
    tau = torch.as_tensor(tau, dtype=torch.float64).reshape(-1)
    draws = posterior.sample(n_samples, tau, torch.as_tensor(scale), generator)
    out = []
    for s in range(n_samples):
        params = {}
        for layer, d in zip(layers, draws, strict=True):
            params.update(layer.to_params(d[s]))
        out.append(params)
    return out


def sample_predictions(
    module: nn.Module,
    head: nn.Module,
    posterior: Posterior,
    Xi,
    n_samples: int,
    tau: Tensor,
    scale: Tensor,
    generator: torch.Generator,
) -> Tensor:
    """Head outputs under weights drawn from the posterior: (n_samples, m, c), float64.

    The net runs with ``torch.func.functional_call`` on each draw; the live module's
    weights are never written.
    """
    samples = sample_parameters(module, posterior, n_samples, tau, scale, generator)
    store: list[Tensor] = []
    outs = []
    handle = head.register_forward_hook(lambda mod, inputs, output: store.append(output))
    try:
        with _eval_mode(module), torch.no_grad():
            for params in samples:
                store.clear()
                if isinstance(Xi, Mapping):
                    functional_call(module, params, (), dict(Xi))
                else:
                    functional_call(module, params, (Xi,))
                if len(store) != 1:
                    raise ValueError(
                        f"The head module ran {len(store)} times in one forward pass; it "
                        "must run exactly once."
                    )
                outs.append(store[0].to(torch.float64))
    finally:
        handle.remove()
    return torch.stack(outs)
