"""Which layers get a posterior block: the modules named by ``subset_of_weights``.

:func:`select_layers` resolves ``"all"`` or a list of module names to the
:class:`~.layers.Layer` of each module with trainable parameters of its own, and refuses
what no layer-wise posterior can express: recurrent modules, parameters shared between
modules (tied weights), and batch norms that normalise each row with its batch's
statistics (:func:`batch_dependent`), for which per-row gradients are undefined.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from .layers import Layer, layer_of

__all__ = ["RowsDependOnTheirBatch", "batch_dependent", "check_not_shared", "select_layers"]


class RowsDependOnTheirBatch(ValueError):
    """The net's output for a row changes with the other rows of its batch (or from call
    to call): per-row gradients, and so every layer-wise curvature, are undefined.
    ``reason`` is the message without its advice."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"{reason} Use subset_of_weights='last_layer' (or 'auto', which then takes it)."
        )
        self.reason = reason


def _has_own_params(mod: nn.Module) -> bool:
    return any(p.requires_grad for p in mod.parameters(recurse=False))


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
    for n in chosen:
        if isinstance(named[n], nn.RNNBase):
            raise ValueError(
                f"Module {n!r} is a {type(named[n]).__name__}; the Laplace approximation "
                "over layers does not support recurrent layers. Leave it out with "
                "subset_of_weights=[...] listing the other layers' names."
            )
    layers = [layer_of(module, n) for n in chosen]
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
