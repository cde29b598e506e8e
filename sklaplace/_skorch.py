"""Everything that knows skorch: criterion -> likelihood, data iteration, the last layer.

The rest of the package sees plain tensors: features entering the last ``nn.Linear``
(with a trailing 1 when it has a bias) and the logits / means it produces.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from skorch import NeuralNet, NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from skorch.dataset import unpack_data
from skorch.exceptions import NotInitializedError
from torch import Tensor, nn

__all__ = [
    "Head",
    "RecordingSplit",
    "check_fitted_net",
    "find_head",
    "iter_head",
    "likelihood_of",
    "weight_decay_coefficient",
]

_SUPPORTED = (
    "NeuralNetClassifier with CrossEntropyLoss (module returns logits) or NLLLoss "
    "(module returns probabilities, skorch's default); NeuralNetBinaryClassifier with "
    "BCEWithLogitsLoss; NeuralNetRegressor with MSELoss"
)


def _criterion_class(net: NeuralNet) -> type:
    crit = getattr(net, "criterion_", None) or net.criterion
    return crit if isinstance(crit, type) else type(crit)


def likelihood_of(net: NeuralNet) -> tuple[str, str]:
    """Map a skorch net to ``(likelihood, output_kind)``.

    ``likelihood`` is ``"classification"``, ``"binary"`` or ``"regression"``;
    ``output_kind`` is ``"logits"`` when the module's output is the last layer's output
    and ``"probabilities"`` when the module applies a softmax after it (skorch's
    ``NeuralNetClassifier`` with its default ``NLLLoss``, which takes the log of the
    module's output).
    """
    if not isinstance(net, NeuralNet):
        raise TypeError(
            f"estimator must be a skorch net, got {type(net).__name__}. Supported: {_SUPPORTED}."
        )
    crit = _criterion_class(net)
    if isinstance(net, NeuralNetBinaryClassifier):
        if issubclass(crit, nn.BCEWithLogitsLoss):
            return "binary", "logits"
    elif isinstance(net, NeuralNetClassifier):
        if issubclass(crit, nn.CrossEntropyLoss):
            return "classification", "logits"
        if issubclass(crit, nn.NLLLoss):
            return "classification", "probabilities"
    elif isinstance(net, NeuralNetRegressor):
        if issubclass(crit, nn.MSELoss):
            return "regression", "logits"
    raise TypeError(
        f"Unsupported net/criterion: {type(net).__name__} with {crit.__name__}. "
        f"Supported: {_SUPPORTED}."
    )


def check_fitted_net(net: NeuralNet) -> None:
    """Raise ``NotFittedError`` (with the fix) when a frozen net was never trained."""
    message = (
        f"The {type(net).__name__} inside FrozenEstimator is not fitted. Fit the net "
        "first (net.fit(X, y)) and then wrap it, or pass the unfitted net itself so "
        "that fit trains it."
    )
    try:
        net.check_is_fitted()
    except (NotInitializedError, NotFittedError) as exc:
        raise NotFittedError(message) from exc
    # initialized but never run: lazy layers (nn.LazyLinear) have no weights yet
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in net.module_.parameters()):
        raise NotFittedError(message)


def net_dtype(net: NeuralNet) -> torch.dtype:
    """The floating dtype of the net's parameters (float32 unless the user chose otherwise)."""
    for p in net.module_.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def net_device(net: NeuralNet) -> torch.device:
    """The device of the net's parameters (``net.device`` for a net without parameters)."""
    for p in net.module_.parameters():
        return p.device
    return torch.device(net.device or "cpu")


def iter_batches(net: NeuralNet, X, y=None, batch_size: int | None = None, rows=None) -> Iterator:
    """Yield ``(Xi, yi)`` batches in order, through the net's own dataset and iterator.

    ``batch_size`` overrides the net's validation batch size; shuffling is turned off so
    that rows come out in the order they went in. Floating-point batches of X are cast to
    the net's parameter dtype one at a time, so a float64 X given to a float32 net (or the
    reverse) is never copied whole. ``rows`` (integer indices) selects rows batch by batch,
    so a subset of X is never copied whole either.
    """
    dtype = net_dtype(net)
    fast = _array_batches(net, X, y, batch_size, dtype, rows)
    if fast is not None:
        yield from fast
        return
    dataset = net.get_dataset(X, y)
    if rows is not None:
        dataset = torch.utils.data.Subset(dataset, np.asarray(rows).tolist())
    kwargs = net.get_params_for("iterator_valid")
    kwargs.setdefault("batch_size", net.batch_size)
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if kwargs["batch_size"] == -1:
        kwargs["batch_size"] = len(dataset)
    if kwargs.get("shuffle"):
        kwargs["shuffle"] = False
    for batch in net.iterator_valid(dataset, **kwargs):
        Xi, yi = unpack_data(batch)
        if isinstance(Xi, Tensor) and Xi.is_floating_point() and Xi.dtype != dtype:
            Xi = Xi.to(dtype)
        yield Xi, yi


# iterator_valid__ settings that do not change which rows a batch holds or their values
_PLAIN_LOADER_KWARGS = {"batch_size", "shuffle", "num_workers", "pin_memory", "drop_last"}


def _array_batches(net: NeuralNet, X, y, batch_size, dtype, rows=None):
    """Batches sliced straight from numpy arrays, when that is what skorch would produce.

    With skorch's own ``Dataset`` and torch's ``DataLoader`` (no custom collate or
    sampler), a batch of array rows is the stacked rows as tensors; the DataLoader builds
    it one row at a time in Python, which costs more than a small net's forward pass.
    Slicing gives the same tensors. Anything else (custom datasets or loaders, sparse or
    pandas input, dicts) returns None and goes through the net's own iterator.
    """
    from skorch.dataset import Dataset

    if not (
        net.dataset is Dataset
        and net.iterator_valid is torch.utils.data.DataLoader
        and isinstance(X, np.ndarray)
        and X.ndim == 2
        and (y is None or isinstance(y, np.ndarray))
    ):
        return None
    kwargs = net.get_params_for("iterator_valid")
    if set(kwargs) - _PLAIN_LOADER_KWARGS or kwargs.get("drop_last"):
        return None
    n = len(X) if rows is None else len(rows)
    size = batch_size or kwargs.get("batch_size", net.batch_size)
    size = max(n, 1) if size == -1 else size

    def batches():
        for start in range(0, n, size):
            pick = slice(start, start + size) if rows is None else rows[start : start + size]
            Xi = torch.from_numpy(np.ascontiguousarray(X[pick]))
            if Xi.is_floating_point() and Xi.dtype != dtype:
                Xi = Xi.to(dtype)
            yi = None if y is None else torch.from_numpy(np.ascontiguousarray(y[pick]))
            yield Xi, yi

    return batches()


@dataclass
class Head:
    """The last ``nn.Linear`` a net applies: its module name and the module."""

    name: str
    module: nn.Linear

    @property
    def has_bias(self) -> bool:
        return self.module.bias is not None

    @property
    def n_in(self) -> int:
        return self.module.in_features + int(self.has_bias)

    @property
    def n_out(self) -> int:
        return self.module.out_features

    def weight_matrix(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``[W | b]`` of shape (n_out, n_in): the bias absorbed as the last column."""
        w = self.module.weight.detach().to(dtype)
        if self.has_bias:
            w = torch.cat([w, self.module.bias.detach().to(dtype)[:, None]], dim=1)
        return w


class _Recorder:
    """Forward hooks that record which leaf modules run, in order, and the head's I/O."""

    def __init__(self, module: nn.Module, watch_all: bool) -> None:
        self.calls: list[str] = []
        self.io: dict[str, tuple[Tensor, Tensor]] = {}
        self.handles = []
        for name, mod in module.named_modules():
            if (watch_all and not list(mod.children())) or isinstance(mod, nn.Linear):
                self.handles.append(mod.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(mod, inputs, output):
            self.calls.append(name)
            if isinstance(mod, nn.Linear):
                self.io[name] = (inputs[0], output)

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _first_output(out):
    return out[0] if isinstance(out, tuple | list) else out


# rows of X that find_head runs through the net (sklaplace._passes keys its cache on them)
HEAD_PROBE_ROWS = 64


def find_head(net: NeuralNet, X, output_kind: str) -> Head:
    """Find the last ``nn.Linear`` applied on a first batch of ``X`` and check it is the output.

    The module's output must equal the head's output (``output_kind="logits"``) or its
    softmax (``"probabilities"``); otherwise the error names the modules that run after it.
    """
    module = net.module_
    rec = _Recorder(module, watch_all=True)
    try:
        Xi, _ = next(iter_batches(net, X, batch_size=min(len(X), HEAD_PROBE_ROWS)))
        with torch.no_grad():
            out = _first_output(net.evaluation_step((Xi, None)))
    except RuntimeError as exc:  # e.g. torch's "mat1 and mat2 shapes cannot be multiplied"
        raise ValueError(
            f"The {type(net).__name__}'s module failed on X of shape {np.shape(X)}: {exc}. "
            "Does X have the features (number and order) the net was trained on?"
        ) from exc
    finally:
        rec.remove()
    if not torch.isfinite(out).all():
        raise ValueError(
            "The net's output contains NaN or inf on the training data; its training has "
            "probably diverged. Lower the net's learning rate, or scale X and y."
        )
    linear_calls = [c for c in rec.calls if c in rec.io]
    if not linear_calls:
        raise ValueError(
            f"The net's module ({type(module).__name__}) applies no torch.nn.Linear layer; "
            "sklaplace's last-layer Laplace needs the output to come from an nn.Linear."
        )
    name = linear_calls[-1]
    if linear_calls.count(name) > 1:
        raise ValueError(
            f"The last Linear layer {name!r} is applied {linear_calls.count(name)} times in "
            "one forward pass; its weights are shared, which the last-layer Laplace cannot "
            "express. Make the output layer a Linear used once."
        )
    head = Head(name, dict(module.named_modules())[name])
    a, z = rec.io[name]
    if a.dim() != 2:
        raise ValueError(
            f"The last Linear layer {name!r} receives input of shape {tuple(a.shape)}; "
            "sklaplace supports a last layer applied to 2-D (rows, features) input."
        )
    target = torch.softmax(z, dim=1) if output_kind == "probabilities" else z
    out = out.reshape(target.shape) if out.numel() == target.numel() else out
    after = rec.calls[len(rec.calls) - rec.calls[::-1].index(name) :]
    if out.shape != target.shape or not torch.allclose(out, target, rtol=1e-4, atol=1e-5):
        expected = "softmax of the" if output_kind == "probabilities" else "the"
        raise ValueError(
            f"The net's output is not {expected} output of its last Linear layer {name!r}; "
            f"modules applied after it: {after or 'none (the forward transforms it)'}. "
            "The last-layer Laplace needs the module to end in nn.Linear"
            + (
                " followed by nn.Softmax (NLLLoss)."
                if output_kind == "probabilities"
                else " (use CrossEntropyLoss on logits, or NLLLoss with a final Softmax)."
            )
        )
    return head


def iter_head(
    net: NeuralNet, head: Head, X, y=None, batch_size: int | None = None, rows=None
) -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
    """Yield ``(a, z, yi)`` per batch: head input (bias column appended), head output, targets.

    Runs the net in evaluation mode without gradients; tensors stay on the net's device.
    """
    store = {}

    def hook(mod, inputs, output):
        store["io"] = (inputs[0], output)

    handle = head.module.register_forward_hook(hook)
    try:
        for Xi, yi in iter_batches(net, X, y, batch_size=batch_size, rows=rows):
            with torch.no_grad():
                net.evaluation_step((Xi, yi))
            a, z = store.pop("io")
            if not (torch.isfinite(a).all() and torch.isfinite(z).all()):
                largest = float(Xi.abs().max()) if isinstance(Xi, Tensor) else float("nan")
                raise ValueError(
                    "The net's last layer receives or gives NaN or inf on some rows of X "
                    f"(largest |X| in their batch: {largest:.3g}; the net computes in "
                    f"{net_dtype(net)}). X is too large for the net (scale it, for example "
                    "with StandardScaler), or the net's weights are not finite."
                )
            if head.has_bias:
                a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
            if yi is not None and isinstance(yi, Tensor):
                yi = yi.to(z.device)
            yield a, z, yi
    finally:
        handle.remove()


def to_net_input(net: NeuralNet, X: np.ndarray) -> np.ndarray:
    """Cast validated float input to the net's parameter dtype (float64 in, float32 net)."""
    return np.asarray(X, dtype=torch.empty((), dtype=net_dtype(net)).numpy().dtype)


class RecordingSplit:
    """Wrap a net's ``train_split`` to remember which rows it held out for validation.

    skorch trains on the first dataset ``train_split`` returns and validates on the second;
    the held-out rows were never used to fit the weights, so they can tune the Laplace
    hyper-parameters. The wrapper calls the original split and records the indices.
    """

    def __init__(self, split) -> None:
        self.split = split
        self.valid_indices = None

    def __call__(self, dataset, y=None, **kwargs):
        ds_train, ds_valid = self.split(dataset, y, **kwargs)
        indices = getattr(ds_valid, "indices", None)
        self.valid_indices = None if indices is None else np.asarray(indices)
        return ds_train, ds_valid


_DECOUPLED = ("AdamW",)


def weight_decay_coefficient(
    net: NeuralNet, params: list, name: str, likelihood: str, n_outputs: int
) -> float:
    """Coefficient ``c`` with prior precision ``c / (sigma^2 T)`` matching L2 training.

    An optimiser with coupled weight decay ``lambda`` (SGD, Adam, RMSprop, ... with
    ``weight_decay=lambda``) adds ``lambda * theta`` to the gradient of the per-batch loss, so
    the trained weights are a stationary point of the epoch objective. Summed over one epoch
    of ``N`` rows in ``n_b`` batches and multiplied to match the summed loss of
    DESIGN.md section 4:

    * criterion reduction "mean": cross-entropy ``sum CE + (N lambda / 2) ||theta||^2``;
      MSE (mean over rows and K outputs) ``0.5 sum (y - f)^2 + (N K lambda / 4) ||theta||^2``;
    * reduction "sum": ``n_b lambda`` instead of ``N lambda`` (and ``n_b lambda / 2`` for MSE).

    The Laplace posterior's log density is ``-scale * loss - tau / 2 ||theta||^2`` with
    ``scale = 1 / (sigma^2 T)``; its maximum is the trained weights when
    ``tau = scale * c`` with ``c = N lambda`` (CE), ``N K lambda / 2`` (MSE), etc.

    Raises ``ValueError`` where no such prior exists: decoupled weight decay (AdamW or
    ``decoupled_weight_decay=True``), no record of the training epochs, or a head whose
    weight and bias have different weight decay.
    """
    opt = getattr(net, "optimizer_", None)
    if opt is None:
        raise ValueError(
            "prior_precision='weight_decay' needs the net's optimizer; the net has none "
            "(was it trained with skorch?)."
        )
    decays = set()
    for group in opt.param_groups:
        if any(p is q for p in group["params"] for q in params):
            if group.get("decoupled_weight_decay") or type(opt).__name__ in _DECOUPLED:
                raise ValueError(
                    f"The net was trained with decoupled weight decay ({type(opt).__name__}); "
                    "it shrinks the weights outside the loss's gradient, so no Gaussian prior "
                    "reproduces it and prior_precision='weight_decay' does not apply. Use a "
                    "float, 'marglik' or 'holdout'."
                )
            decays.add(float(group.get("weight_decay", 0.0)))
    if len(decays) != 1:
        raise ValueError(
            f"The layer {name!r} has parameters with different weight decays "
            f"{sorted(decays)}; prior_precision='weight_decay' needs one value."
        )
    lam = decays.pop()
    if lam <= 0:
        raise ValueError(
            "The net was trained without weight decay (optimizer weight_decay=0), so it "
            "implies no prior (an infinitely wide one); prior_precision='weight_decay' needs "
            "weight_decay > 0. Use a float, 'marglik' or 'holdout'."
        )
    try:
        batches = net.history[-1, "batches"]
        sizes = [b["train_batch_size"] for b in batches if "train_batch_size" in b]
    except (IndexError, KeyError) as exc:
        raise ValueError(
            "prior_precision='weight_decay' needs the net's training history (rows per "
            "epoch); this net has none."
        ) from exc
    if not sizes:
        raise ValueError("The net's last epoch recorded no training batches.")
    reduction = getattr(net.criterion_, "reduction", "mean")
    count = sum(sizes) if reduction == "mean" else len(sizes)
    if likelihood == "regression":
        return count * (n_outputs if reduction == "mean" else 1) * lam / 2.0
    return count * lam
