"""A cheap check that a net is still the one ``fit`` saw.

A prediction combines the posterior computed in ``fit`` with the net's features now; if
the net was trained, reloaded or modified in place since, the two no longer belong
together. Hashing every weight at each prediction would cost as much as the prediction
on a large net, so the check compares a *stamp* instead: per parameter and buffer, its
shape, dtype, flags, device, storage address and torch's version counter (which every
in-place operation bumps: an optimiser step, ``load_state_dict``, ``param.add_``).
"""

from __future__ import annotations

import torch

__all__ = ["stamp_changes", "tensor_stamp"]


def tensor_stamp(module) -> dict:
    """What identifies each parameter and buffer of a module at a moment, cheaply.

    Shape, dtype, ``requires_grad``, device, storage address and torch's version counter,
    which every in-place operation bumps (an optimiser step, ``load_state_dict``,
    ``param.add_``). O(number of tensors), not of their sizes: it is checked at every
    prediction. Writes that bypass the counter (through ``param.data`` or a numpy view)
    are not seen; the posterior's own layers are also compared value by value
    (``Approximation.layers``).
    """
    stamp = {}
    for kind, items in (("p", module.named_parameters()), ("b", module.named_buffers())):
        for name, t in items:
            stamp[(kind, name)] = (
                tuple(t.shape),
                t.dtype,
                t.requires_grad,
                t.device,
                _storage_address(t),
                t._version,
            )
    return stamp


def _storage_address(t) -> int:
    """Where a dense tensor's data lives (0 for sparse and meta tensors, which have none)."""
    if t.layout != torch.strided or t.device.type == "meta":
        return 0
    return t.data_ptr()


def stamp_changes(before: dict | None, after: dict) -> list[str]:
    """Names of the tensors that changed between two stamps (a move to another device,
    which changes the storage address with the device, is not a change)."""
    if before is None:
        return []
    changed = [name for _, name in set(before) ^ set(after)]
    for key in set(before) & set(after):
        *a, ptr_a, ver_a = before[key]
        *b, ptr_b, ver_b = after[key]
        moved = a[3] != b[3]
        if a[:3] != b[:3] or ver_a != ver_b or (ptr_a != ptr_b and not moved):
            changed.append(key[1])
    return sorted(changed)
