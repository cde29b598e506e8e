"""Layers and their parameter matrices: which weights get a posterior, and in what layout.

Each selected layer's trainable parameters are one matrix ``W`` of shape ``(n_out, n_in)``,
row-major, bias (when trainable) as the last column, so the layer computes ``z_p = W a_p``
at each position ``p`` (the input ``a_p`` gets a trailing 1 when the bias is in ``W``):

* ``nn.Linear``: ``[W | b]``; input dimensions between the rows and the features
  (sequences) are positions.
* ``nn.Conv2d`` (``groups=1``, zero padding): ``[W.reshape(out, -1) | b]``, ``a_p`` the
  unfolded input patch at output pixel ``p`` (Grosse & Martens 2016).
* ``nn.Embedding``: ``W^T`` of shape (embedding_dim, num_embeddings), ``a_p`` the one-hot
  index (zero for ``padding_idx``, whose row gets no gradient). The one-hots are formed, so
  this suits the small vocabularies of categorical features.
* any other module with parameters of its own (LayerNorm, BatchNorm, PReLU, a grouped
  Conv2d, ...): all of them flattened into one row ``(1, n_params)``; such a layer always
  gets a diagonal block.

Only parameters with ``requires_grad=True`` are in ``W``: a frozen bias stays a constant
of the layer, for the last layer as for any other.

The *head* is the last ``nn.Linear`` the module applies; its output is the model's output
``f`` (logits or means). ``find_head`` locates it on a forward pass and checks that the
module's output is ``f`` (or its softmax, for skorch's ``NLLLoss``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "Layer",
    "RowsDependOnTheirBatch",
    "batch_dependent",
    "check_not_shared",
    "layer_of",
    "select_layers",
]


class RowsDependOnTheirBatch(ValueError):
    """The net's output for a row changes with the other rows of its batch (or from call
    to call): per-row gradients, and so every layer-wise curvature, are undefined.
    ``reason`` is the message without its advice."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"{reason} Use subset_of_weights='last_layer' (or 'auto', which then takes it)."
        )
        self.reason = reason


class Layer(NamedTuple):
    """One posterior block's module: its name, the module, and its weight layout.

    ``kind`` is ``"linear"``, ``"conv2d"``, ``"embedding"`` (Kronecker-factorable) or
    ``"other"`` (diagonal only). See the module docstring for the layouts.

    Examples
    --------
    >>> from torch import nn
    >>> layer = layer_of(nn.Sequential(nn.Linear(3, 2)), "0")
    >>> layer.kind, layer.shape
    ('linear', (2, 4))
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
        return (
            self.kind in ("linear", "conv2d") and isinstance(bias, Tensor) and bias.requires_grad
        )

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_out, n_in)`` of the parameter matrix."""
        mod = self.module
        if self.kind == "linear":
            return mod.out_features, mod.in_features + int(self.has_bias)
        if self.kind == "conv2d":
            return mod.out_channels, mod.weight[0].numel() + int(self.has_bias)
        if self.kind == "embedding":
            return mod.embedding_dim, mod.num_embeddings
        return 1, sum(p.numel() for _, p in self.params)

    @property
    def device(self) -> torch.device:
        return next(p for _, p in self.params).device

    def weight_matrix(
        self, dtype: torch.dtype = torch.float64, params: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """The parameters as one ``(n_out, n_in)`` matrix.

        The module's own, or those in ``params`` (local names, as returned by
        ``to_params``), which this inverts.
        """

        def get(local: str) -> Tensor:
            p = getattr(self.module, local) if params is None else params[local]
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
        """Invert ``weight_matrix``: local parameter names to tensors in the module's dtype."""
        mod = self.module
        if self.kind == "embedding":
            return {"weight": matrix.T.to(mod.weight.dtype)}
        if self.kind in ("linear", "conv2d"):
            n_w = mod.weight[0].numel()
            out = {"weight": matrix[:, :n_w].reshape(mod.weight.shape)}
            if self.has_bias:
                out["bias"] = matrix[:, n_w]
            return {k: v.to(mod.weight.dtype) for k, v in out.items()}
        out, start = {}, 0
        flat = matrix.reshape(-1)
        for n, p in self.params:
            out[n] = flat[start : start + p.numel()].reshape(p.shape).to(p.dtype)
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
            f"Module {name!r} is a {type(mod).__name__}; the Laplace approximation over "
            "layers does not support recurrent layers. Leave it out with "
            "subset_of_weights=[...] listing the other layers' names."
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


def layer_of(module: nn.Module, name: str) -> Layer:
    """The ``Layer`` for the submodule ``name`` of ``module``."""
    mod = module.get_submodule(name)
    return Layer(name, mod, _kind(name, mod))


def batch_dependent(module: nn.Module) -> list[str]:
    """Names of the modules whose output for a row depends on the other rows of its batch
    in evaluation mode: batch norms without running statistics
    (``track_running_stats=False``), which normalise with the batch's own statistics.

    Per-row gradients, and so every layer-wise curvature, are undefined for such a net;
    its last layer's posterior is still defined (the features come from the net's own
    batched forward pass).

    Examples
    --------
    >>> from torch import nn
    >>> batch_dependent(nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4)))
    []
    >>> norm = nn.BatchNorm1d(4, track_running_stats=False)
    >>> batch_dependent(nn.Sequential(nn.Linear(2, 4), norm))
    ['1']
    """
    return [
        name
        for name, m in module.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is None
    ]


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
    dependent = batch_dependent(module)
    if dependent:
        raise RowsDependOnTheirBatch(
            f"subset_of_weights={subset!r} needs each row's gradient on its own, but "
            f"module(s) {dependent} normalise each row with its batch's statistics "
            "(a batch norm with track_running_stats=False), so a row's output depends on "
            "the rest of its batch; a batch norm with track_running_stats=True would not."
        )
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
    layers = [Layer(n, named[n], _kind(n, named[n])) for n in chosen]
    check_not_shared(module, layers)
    return layers


def check_not_shared(module: nn.Module, layers: list[Layer]) -> None:
    """Refuse a selected parameter that another module also holds (tied weights)."""
    owners: dict[int, list[str]] = {}
    for name, mod in module.named_modules(remove_duplicate=False):
        for _, p in mod.named_parameters(recurse=False):
            owners.setdefault(id(p), []).append(name)
    for layer in layers:
        for local, p in layer.params:
            holders = sorted(set(owners.get(id(p), [])))
            if len(holders) > 1:
                raise ValueError(
                    f"The parameter {layer.name}.{local} is shared with module(s) "
                    f"{[h for h in holders if h != layer.name]} (tied weights), which a "
                    "posterior over one layer's weights cannot express. Leave the layers "
                    "that share it out with subset_of_weights=[...]."
                )
