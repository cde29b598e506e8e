"""The held-out rows' projections, computed once for the many evaluations of tuning.

The projections do not depend on the hyper-parameters: one pass over the rows serves
every candidate prior precision, temperature and head.
"""

from __future__ import annotations

import tempfile

import numpy as np
import torch

from .._runtime.cache import nbytes

__all__ = ["MERGE_BYTES", "TUNING_BYTES", "Kept"]


# Bytes of held-out projections kept in memory while tuning (beyond, they go to a file).
TUNING_BYTES = 256 * 2**20
# Bytes of kept projections concatenated into one (fewer, larger products per evaluation).
MERGE_BYTES = 32 * 2**20


class Kept:
    """The held-out rows' projections, computed once (one pass over the rows).

    Kept in memory while they fit in ``TUNING_BYTES`` (concatenated in runs of
    ``MERGE_BYTES``: an evaluation is then one contraction per block and run, not one per
    batch); beyond, written to an unlinked
    temporary file and read back one batch at a time at each evaluation, so memory stays
    bounded and the tuning's many evaluations cost no pass over the rows. If the file
    cannot be written (no disk space), each evaluation projects the rows again.
    """

    def __init__(self, fitted, X) -> None:
        self.fitted, self.X = fitted, X
        self.kept: list | None = []
        self.spill: _Spill | None = None
        sizes, size = [], 0
        for proj in fitted.approximation.project(fitted.view(), X):
            sizes.append(len(proj.mean))
            size += nbytes(proj)
            if self.kept is not None and self.spill is None and size > TUNING_BYTES:
                self.spill = _Spill.open()
                if self.spill is None:  # no file: re-project at each evaluation
                    self.kept = None
                else:
                    for kept in self.kept:
                        self.spill.write(kept)
                    self.kept = []
            if self.spill is not None:
                self.spill.write(proj)
            elif self.kept is not None:
                self.kept.append(proj)
        if self.spill is not None and not self.spill.ok:
            self.spill, self.kept = None, None
        if self.kept:
            self.kept = _merged(fitted.approximation, self.kept)
            sizes = [len(proj.mean) for proj in self.kept]
        self.bounds = np.cumsum([0, *sizes])

    def __iter__(self):
        if self.spill is not None:
            return self.spill.read()
        if self.kept is not None:
            return iter(self.kept)
        return self.fitted.approximation.project(self.fitted.view(), self.X)


def _merged(approximation, projections: list) -> list:
    """The projections concatenated in runs of about ``MERGE_BYTES`` (each evaluation is
    then a few large products instead of one per batch); the originals are let go as
    their run is concatenated, so memory grows by one run at most."""
    merged, run, size = [], [], 0
    projections = projections[::-1]
    while projections:
        proj = projections.pop()
        run.append(proj)
        size += nbytes(proj)
        if size >= MERGE_BYTES or not projections:
            merged.append(approximation.concat(run))
            run, size = [], 0
    return merged


class _Spill:
    """Projections written to an unlinked temporary file, read back in order."""

    def __init__(self, file) -> None:
        self.file, self.records, self.ok = file, [], True

    @classmethod
    def open(cls) -> _Spill | None:
        try:
            return cls(tempfile.TemporaryFile())
        except OSError:
            return None

    def write(self, proj) -> None:
        if not self.ok:
            return
        tensors, layout = _flatten(proj)
        entries = []
        try:
            for t in tensors:
                array = t.detach().cpu().contiguous().numpy()
                entries.append((self.file.tell(), array.shape, array.dtype, t.device))
                self.file.write(memoryview(array).cast("B"))
        except OSError:  # the disk is full: give the file up
            self.ok = False
            self.file.close()
            return
        self.records.append((entries, layout))

    def read(self):
        for entries, layout in self.records:
            tensors = []
            for offset, shape, dtype, device in entries:
                array = np.empty(shape, dtype)
                self.file.seek(offset)
                self.file.readinto(memoryview(array).cast("B"))
                tensors.append(torch.from_numpy(array).to(device))
            yield _unflatten(tensors, layout)


def _flatten(obj):
    """The tensors of nested tuples (NamedTuples included) and their layout."""
    if isinstance(obj, torch.Tensor):
        return [obj], "t"
    if obj is None:
        return [], None
    tensors, layouts = [], []
    for item in obj:
        ts, lay = _flatten(item)
        tensors += ts
        layouts.append(lay)
    return tensors, (type(obj), tuple(layouts))


def _unflatten(tensors: list, layout):
    it = iter(tensors)

    def build(lay):
        if lay == "t":
            return next(it)
        if lay is None:
            return None
        kind, items = lay
        values = [build(item) for item in items]
        return kind(*values) if hasattr(kind, "_fields") else kind(values)

    return build(layout)
