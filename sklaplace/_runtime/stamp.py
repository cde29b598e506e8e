"""A cheap check that the model is still the one ``fit`` saw.

A prediction combines the posterior computed in ``fit`` with the net's features now; if
the net was trained, reloaded or modified since, or the fitted steps of a Pipeline before
it were refitted, the two no longer belong together. Hashing every weight at each
prediction would cost as much as the prediction on a large net, so the check compares a
*stamp* instead, taken in ``fit`` and again before each prediction:

* per parameter, buffer and plain tensor attribute of every module: its shape, dtype,
  ``requires_grad``, device, storage address, torch's version counter (which every
  in-place operation bumps: an optimiser step, ``load_state_dict``, ``param.add_``) and a
  fixed sample of ``SAMPLE`` of its values, spread over the tensor. Writes that bypass the
  version counter (through ``param.data`` or a numpy view) are seen when they change a
  sampled value, as a write to a whole tensor does; a write to a few elements may not be.
  The posterior's own layers are also compared value by value
  (``Approximation.layers``);
* per module, its structure: its name and type, in order, the functions in its hook
  tables and its plain attributes that hold numbers, strings or tuples of them (what
  ``forward`` reads as settings: an activation chosen by a string, a convolution's
  padding); the ``training`` flag is left out (predictions run in evaluation mode);
  torch's global module hooks;
* per fitted step of a Pipeline before the net (and the estimators nested in it), its
  attributes: numbers and strings by value, anything else (fitted arrays, nested
  estimators) by identity (the stamp keeps a reference, so that an identity cannot be
  reused). A refit binds new objects to them.

Storage addresses, version counters and identities do not survive a pickle or a deep
copy. ``portable`` keeps what does (shapes, dtypes, flags, sampled values, structure) and
the verdict of the check at the time of the pickle; ``reloaded`` compares the loaded model
with it and stamps the loaded objects anew. A model changed before it was pickled is
therefore refused after loading exactly when it was refused before. (A digest of every
weight, taken in ``fit`` and compared after loading, would see more of the writes that
bypass the version counter, but costs a pass over every weight in ``fit`` and at each
load; the verdict costs one check when pickling.)

The check costs O(number of modules and tensors), not of their sizes: on an MLP of 25M
weights in 8 layers, about 1 % of the net's own one-row ``predict_proba``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as _torch_module

__all__ = ["STEPS_CHANGED", "PortableStamp", "Stamp"]

# How a change in the Pipeline's steps before the net is described (its prefix).
STEPS_CHANGED = "Pipeline step"

# Values read per tensor at each check.
SAMPLE = 16
# Hook tables of a module that change what its forward or backward computes (the
# "with_kwargs" and "always_called" tables are keyed by the same handles).
_HOOK_TABLES = (
    "_forward_pre_hooks",
    "_forward_hooks",
    "_backward_pre_hooks",
    "_backward_hooks",
)
_GLOBAL_HOOKS = (
    "_global_forward_pre_hooks",
    "_global_forward_hooks",
    "_global_backward_pre_hooks",
    "_global_backward_hooks",
)
_ATOMS = frozenset({bool, int, float, str, type(None)})
# what every module holds: torch's tables of parameters, buffers, submodules and hooks,
# and the training flag (predictions run in evaluation mode)
_MODULE_INTERNALS = frozenset(vars(nn.Module()))
_UNINITIALIZED = frozenset({nn.UninitializedParameter, nn.UninitializedBuffer})
# dtypes whose tensors numpy can view (the others are read through torch)
_NUMPY_DTYPES = frozenset(
    {
        torch.float16,
        torch.float32,
        torch.float64,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.uint8,
        torch.bool,
        torch.complex64,
        torch.complex128,
    }
)


@lru_cache(maxsize=1024)
def _positions(shape: tuple) -> tuple:
    """``SAMPLE`` element positions spread evenly over a tensor of ``shape`` (first and
    last included), as a numpy index tuple; and the same as flat positions."""
    n = int(np.prod(shape, dtype=np.int64))
    flat = np.unique(np.linspace(0, n - 1, min(n, SAMPLE)).round().astype(np.int64))
    if not shape:  # a 0-d tensor (a batch norm's num_batches_tracked): its one value
        return (), flat
    return np.unravel_index(flat, shape), flat


def _sample(t: torch.Tensor, dense: bool):
    """The raw bytes of a fixed sample of ``t``'s values (empty for a tensor without
    strided data: sparse, meta, quantized, not yet materialised, or unreadable). Read
    through numpy for a CPU tensor; else through torch, as a uint8 tensor on ``t``'s
    device that ``_fetch`` brings back with the others in one transfer."""
    if not dense or t.is_quantized or type(t) in _UNINITIALIZED or t.numel() == 0:
        return b""
    index, flat = _positions(tuple(t.shape))
    try:
        if t.is_cpu and t.dtype in _NUMPY_DTYPES and not t.is_conj() and not t.is_neg():
            values = t.detach().numpy()
            return (values.take(flat) if t.is_contiguous() else values[index]).tobytes()
        plain = t.detach().resolve_conj().resolve_neg()
        with torch.no_grad():
            values = torch.take(plain, torch.as_tensor(flat, device=t.device))
        return values.contiguous().view(-1).view(torch.uint8)
    except (RuntimeError, TypeError, ValueError):  # a tensor subclass that cannot be read
        return b""


def _fetch(tensors: list) -> None:
    """Replace the samples read as tensors (``_sample``) by their bytes: one transfer per
    device, so that a net on an accelerator waits for it once per check."""
    pending: dict = {}
    for i, entry in enumerate(tensors):
        if type(entry[4]) is not bytes:
            pending.setdefault(entry[4].device, []).append(i)
    for rows in pending.values():
        blob = torch.cat([tensors[i][4] for i in rows]).cpu().numpy().tobytes()
        start = 0
        for i in rows:
            entry = tensors[i]
            stop = start + entry[4].numel()
            tensors[i] = (*entry[:4], blob[start:stop], *entry[5:])
            start = stop


def _tensor(name: str, t: torch.Tensor) -> tuple:
    """A tensor's entry: name, shape, dtype, requires_grad, sample (what survives a
    pickle), then device, storage address (0 for sparse and meta tensors, which have
    none) and version counter (None for an inference tensor, which has none)."""
    device = t.device
    dense = t.layout == torch.strided and device.type != "meta"
    try:
        version = t._version
    except RuntimeError:
        version = None
    return (
        name,
        tuple(t.shape),
        t.dtype,
        t.requires_grad,
        _sample(t, dense),
        device,
        t.data_ptr() if dense else 0,
        version,
    )


def _atom(value) -> bool:
    kind = type(value)
    return kind in _ATOMS or (kind is tuple and all(type(v) in _ATOMS for v in value))


def _module_entries(module: nn.Module) -> tuple[list, list]:
    """``(modules, tensors)``: one entry per module of the tree (in order) and one per
    tensor it holds (a tensor shared by two modules once)."""
    modules, tensors, seen = [], [], set()
    for prefix, mod in module.named_modules():
        d = mod.__dict__
        hooks = tuple(tuple(d[table].items()) if d.get(table) else () for table in _HOOK_TABLES)
        dot = f"{prefix}." if prefix else ""
        atoms = []
        for key in sorted(d.keys() - _MODULE_INTERNALS):  # (sorted: the same in any process)
            value = d[key]
            if isinstance(value, torch.Tensor):  # a plain tensor attribute
                if id(value) not in seen:
                    seen.add(id(value))
                    tensors.append(_tensor(dot + key, value))
            elif key[0] != "_" and _atom(value):
                atoms.append((key, value))
        modules.append((prefix, type(mod), hooks, tuple(atoms)))
        for table in ("_parameters", "_buffers"):
            for key, value in d.get(table, {}).items():
                if value is not None and id(value) not in seen:
                    seen.add(id(value))
                    tensors.append(_tensor(dot + key, value))
    _fetch(tensors)
    return modules, tensors


def _global_hooks() -> tuple:
    return tuple(tuple(getattr(_torch_module, name, {}).items()) for name in _GLOBAL_HOOKS)


def _is_estimator(obj) -> bool:
    return hasattr(obj, "get_params") and hasattr(obj, "fit") and not isinstance(obj, type)


def _step_entries(prep) -> tuple[list, list]:
    """``(entries, kept)``: per attribute of each fitted step (and of the estimators
    nested in one), its value for numbers and strings, else the identity of the object it
    holds; ``kept`` keeps those objects alive (so that their identities are not reused)."""
    entries, kept = [], []
    if prep is None:
        return entries, kept

    def walk(path: str, est, depth: int) -> None:
        for key, value in getattr(est, "__dict__", {}).items():
            if _atom(value) or isinstance(value, np.generic):
                entries.append((path, key, "value", value))
                continue
            sample = b""  # an array of numbers is also sampled (a write into it in place)
            if isinstance(value, np.ndarray) and value.dtype.kind in "biufc" and value.size:
                sample = value[_positions(value.shape)[0]].tobytes()
            entries.append((path, key, id(value), sample))
            kept.append(value)
            if depth >= 3:
                continue
            if _is_estimator(value):
                walk(f"{path}.{key}", value, depth + 1)
            elif isinstance(value, list | tuple | dict):
                items = value.items() if isinstance(value, dict) else enumerate(value)
                for i, item in items:
                    for j, sub in enumerate(item if isinstance(item, tuple) else (item,)):
                        if _is_estimator(sub):
                            walk(f"{path}.{key}[{i}][{j}]", sub, depth + 1)

    for name, step in prep.steps:
        walk(name, step, 0)
    return entries, kept


def _portable_tensor(entry: tuple) -> tuple:
    return entry[:5]  # name, shape, dtype, requires_grad, sample


def _portable_module(entry: tuple) -> tuple:
    prefix, kind, hooks, atoms = entry
    names = tuple(
        tuple((key, getattr(fn, "__qualname__", type(fn).__qualname__)) for key, fn in table)
        for table in hooks
    )
    return (prefix, f"{kind.__module__}.{kind.__qualname__}", names, repr(atoms))


class Stamp:
    """What the model looked like at a moment (see the module docstring).

    Parameters
    ----------
    module : torch.nn.Module
        The net's module.
    prep : Pipeline or None
        The fitted steps before the net.
    """

    def __init__(self, module: nn.Module, prep=None) -> None:
        self.modules, self.tensors = _module_entries(module)
        self.hooks = _global_hooks()
        self.steps, self._kept = _step_entries(prep)
        self.refused: list[str] = []  # what had changed before a pickle (see reloaded)

    def changes(self, module: nn.Module, prep=None) -> list[str]:
        """What changed since this stamp, in words (empty: nothing it can see).

        A move to another device, which changes the storage addresses with the device, is
        not a change.
        """
        if self.refused:
            return self.refused
        modules, tensors = _module_entries(module)
        hooks = _global_hooks()
        steps = _step_entries(prep)[0] if self.steps or prep is not None else []
        if modules == self.modules and tensors == self.tensors and hooks == self.hooks:
            if steps == self.steps:
                return []
        changed = _tensor_changes(self.tensors, tensors)
        changed += _module_changes(self.modules, modules)
        if hooks != self.hooks:
            changed.append("torch's global module hooks")
        if steps != self.steps:
            old = {e[:2]: e for e in self.steps}
            new = {e[:2]: e for e in steps}
            paths = sorted({k[0] for k in old.keys() | new.keys() if old.get(k) != new.get(k)})
            changed.append(f"{STEPS_CHANGED}(s) {paths[:5]}")
        return changed

    def portable(self, changed: list[str]) -> PortableStamp:
        """What survives a pickle, with the verdict ``changed`` of a check made now."""
        return PortableStamp(
            [_portable_module(e) for e in self.modules],
            [_portable_tensor(e) for e in self.tensors],
            changed,
        )


def _tensor_changes(before: list, after: list) -> list[str]:
    old = {e[0]: e for e in before}
    new = {e[0]: e for e in after}
    changed = [f"tensor {name!r}" for name in sorted(set(old) ^ set(new))]
    for name in sorted(set(old) & set(new)):
        a, b = old[name], new[name]
        moved = a[5] != b[5]
        if a[1:5] != b[1:5] or a[7] != b[7] or (a[6] != b[6] and not moved):
            changed.append(f"tensor {name!r}")
    return changed


def _module_changes(before: list, after: list) -> list[str]:
    if len(before) != len(after) or [e[0] for e in before] != [e[0] for e in after]:
        return ["the modules (submodules added, removed or reordered)"]
    changed = []
    for a, b in zip(before, after, strict=True):
        if a[1] is not b[1]:
            changed.append(f"module {a[0]!r} ({a[1].__name__} -> {b[1].__name__})")
        elif a[2] != b[2]:
            changed.append(f"the hooks of module {a[0]!r}")
        elif a[3] != b[3]:
            keys = sorted({k for k, _ in set(a[3]) ^ set(b[3])})
            changed.append(f"the attribute(s) {keys} of module {a[0]!r}")
    return changed


class PortableStamp:
    """The part of a ``Stamp`` that survives a pickle, and the verdict at that time."""

    def __init__(self, modules: list, tensors: list, changed: list[str]) -> None:
        self.modules, self.tensors, self.changed = modules, tensors, list(changed)

    def reloaded(self, module: nn.Module, prep=None) -> Stamp:
        """A new ``Stamp`` of the loaded model; it refuses (``changes``) if the model had
        changed before the pickle, or differs from what was pickled."""
        stamp = Stamp(module, prep)
        changed = list(self.changed)
        if not changed:
            now = stamp.portable([])
            changed = _tensor_changes(_padded(self.tensors), _padded(now.tensors))
            if now.modules != self.modules:
                changed.append("the modules (their types, hooks or attributes)")
        stamp.refused = changed
        return stamp


def _padded(entries: list) -> list:
    """Portable tensor entries in the layout ``_tensor_changes`` reads (no device,
    address or version)."""
    return [(*e, None, 0, 0) for e in entries]
