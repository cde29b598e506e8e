"""The one forward/backward recorder: what the selected layers saw in one forward pass.

A ``Tape`` puts forward hooks on the modules of a *private view* of the net
(:func:`sklaplace._runtime.passes.NetView`, a shallow copy of the user's module tree), never on
the user's module: two threads sharing one net each record their own pass, and nothing is
left behind. During one forward pass it records, for each selected layer, its input as
its kind keeps it (``Layer.record``: ``(m, P, n_in)`` rows for a Kronecker kind) and, when
a backward pass will follow, its output; the head's output ``f``; and, when asked
(``trace=True``), the order in which leaf modules ran and the inputs and outputs of every
``nn.Linear`` (to find the head).

``backprop`` then sends several cotangent directions back from ``f`` to every recorded
layer output in one batched backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .layers import Layer

__all__ = ["Tape", "backprop"]


class Tape:
    """Forward hooks recording one forward pass (use as a context manager).

    Parameters
    ----------
    layers : list of Layer
        Layers of the view whose inputs (and outputs, if ``keep_outputs``) are recorded.
    head : nn.Module or None
        The module whose output is the model output ``f``.
    keep_outputs : bool
        Keep each layer's output in the autograd graph, for ``backprop``.
    trace : nn.Module or None
        A module tree whose leaf modules and ``nn.Linear`` layers are traced: ``calls``
        lists their names in the order they ran, ``linear_io[name]`` the last input and
        output of each Linear.
    """

    def __init__(
        self,
        layers: Sequence[Layer] = (),
        head: nn.Module | None = None,
        *,
        keep_outputs: bool = False,
        trace: nn.Module | None = None,
    ) -> None:
        self.layers = list(layers)
        self.keep_outputs = keep_outputs
        self.layer_calls = [0] * len(self.layers)
        self.a: list = [None] * len(self.layers)
        self.z: list = [None] * len(self.layers)
        self.head = head
        self.head_calls = 0
        self.f = None
        self.calls: list[str] = []
        self.linear_io: dict[str, tuple[Tensor, Tensor]] = {}
        self._trace = trace
        self._handles: list = []

    # ---------------------------------------------------------------- hooks
    def __enter__(self) -> Tape:
        for i, layer in enumerate(self.layers):
            self._handles.append(layer.module.register_forward_hook(self._layer_hook(i)))
        if self.head is not None:
            self._handles.append(self.head.register_forward_hook(self._head_hook))
        if self._trace is not None:
            for name, mod in self._trace.named_modules():
                if not list(mod.children()) or isinstance(mod, nn.Linear):
                    self._handles.append(mod.register_forward_hook(self._trace_hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _layer_hook(self, i: int):
        layer = self.layers[i]

        def hook(mod, inputs, output):
            self.layer_calls[i] += 1
            if not isinstance(output, Tensor):
                raise ValueError(
                    f"Module {layer.name!r} returns {type(output).__name__}, not a tensor; "
                    "leave it out with subset_of_weights=[...]."
                )
            self.a[i] = layer.record(inputs)
            if self.keep_outputs:
                self.z[i] = output
                # Downstream in-place ops (ReLU(inplace=True)) then act on the copy, so
                # gradients with respect to ``output`` stay those of this layer's output.
                return output.clone()
            return None

        return hook

    def _head_hook(self, mod, inputs, output):
        self.head_calls += 1
        self.f = output
        # a copy flows on, so that an in-place op after the head cannot change ``f``
        return output.clone() if isinstance(output, Tensor) else None

    def _trace_hook(self, name: str):
        def hook(mod, inputs, output):
            self.calls.append(name)
            if isinstance(mod, nn.Linear):
                self.linear_io[name] = (inputs[0].detach(), output.detach().clone())

        return hook

    # ---------------------------------------------------------------- checks
    def check(self) -> Tensor:
        """Validate the recorded pass and return the head output ``f`` (m, c)."""
        if self.head_calls != 1:
            raise ValueError(
                f"The head module ran {self.head_calls} times in one forward pass; it must "
                "run exactly once."
            )
        for layer, n in zip(self.layers, self.layer_calls, strict=True):
            if n > 1:
                raise ValueError(
                    f"Module {layer.name!r} is applied {n} times in one forward pass (shared "
                    "weights), which the Laplace approximation over layers cannot express; "
                    "leave it out with subset_of_weights=[...] listing the other layers."
                )
        f = self.f
        if not isinstance(f, Tensor) or f.dim() != 2:
            raise ValueError(
                f"The head's output is {_describe(f)}; it must be a (rows, outputs) tensor."
            )
        m = f.shape[0]
        for layer, n, a in zip(self.layers, self.layer_calls, self.a, strict=True):
            rows = a[0].shape[0] if isinstance(a, tuple) else (None if a is None else a.shape[0])
            if n == 1 and rows != m:
                raise ValueError(
                    f"Module {layer.name!r} receives {rows} rows where the output has {m}; "
                    "rows must stay the first dimension."
                )
        return f


def _describe(x) -> str:
    return f"of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


def backprop(f: Tensor, zs: Sequence[Tensor | None], V: Tensor) -> list[Tensor | None]:
    """``V[r]^T df/dz`` for every recorded output ``z``: each ``(r, *z.shape)``.

    One batched backward pass (``is_grads_batched``); a loop over the directions where an
    operation has no batching rule. An output ``f`` does not depend on gets zeros.
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
    return [
        z.new_zeros((V.shape[0], *z.shape)) if g is None and z is not None else g
        for z, g in zip(zs, out, strict=True)
    ]
