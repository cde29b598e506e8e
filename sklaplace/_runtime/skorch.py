"""Everything that knows skorch: the net's likelihood, its state, its training record.

The rest of the package sees a :class:`~sklaplace.likelihoods.Likelihood`, a private view
of the module (:class:`sklaplace._runtime.passes.NetView`) and plain tensors.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.exceptions import NotFittedError
from skorch import NeuralNet, NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from skorch.exceptions import NotInitializedError
from torch import nn

from ..likelihoods import Likelihood, for_criterion, supported

__all__ = [
    "RecordingSplit",
    "check_fitted_net",
    "criterion_changes",
    "infer_view",
    "likelihood_of",
    "net_device",
    "net_dtype",
    "numpy_dtype",
    "weight_decay_coefficient",
]

# The skorch net classes, by the ``net_kind`` the likelihoods register (the first match).
NET_KINDS = (
    (NeuralNetBinaryClassifier, "binary"),
    (NeuralNetClassifier, "classifier"),
    (NeuralNetRegressor, "regressor"),
)


def _criterion_class(net: NeuralNet) -> type:
    crit = getattr(net, "criterion_", None) or net.criterion
    return crit if isinstance(crit, type) else type(crit)


def likelihood_of(net) -> Likelihood:
    """The likelihood a skorch net was trained with, from its class and criterion (the
    likelihoods register both: :func:`sklaplace.likelihoods.for_criterion`).

    Raises ``TypeError`` (naming what is supported) for anything else.
    """
    if not isinstance(net, NeuralNet):
        raise TypeError(
            f"estimator must be a skorch net, got {type(net).__name__}. Supported: {supported()}."
        )
    crit = _criterion_class(net)
    kind = next((kind for cls, kind in NET_KINDS if isinstance(net, cls)), None)
    likelihood = None if kind is None else for_criterion(kind, crit, net)
    if likelihood is None:
        raise TypeError(
            f"Unsupported net/criterion: {type(net).__name__} with {crit.__name__}. "
            f"Supported: {supported()}."
        )
    return likelihood


# Criterion arguments that leave the registered likelihood as it is: how the loss is
# reduced over rows (the Laplace approximation sums it), and the label to skip.
_NEUTRAL_ARGUMENTS = ("reduction", "size_average", "reduce", "ignore_index")
# Arguments that weigh rows by their class: the same as per-row weights (sample_weight).
CLASS_WEIGHTS = ("weight", "pos_weight")


def criterion_changes(net: NeuralNet, likelihood: Likelihood) -> list[str]:
    """What in the net's criterion makes its training loss another than ``likelihood``'s
    (empty: nothing): arguments beyond the reduction (``criterion__weight``,
    ``criterion__label_smoothing``, ``criterion__pos_weight`` ...), and a subclass of the
    registered loss that computes its own ``forward``."""
    crit = _criterion_class(net)
    changes = []
    base = next((c for c in likelihood.criteria if issubclass(crit, c)), None)
    if base is not None and crit.forward is not base.forward:
        changes.append(f"{crit.__name__}, which overrides {base.__name__}.forward")
    given = {
        name[len("criterion__") :]: value
        for name, value in net.get_params(deep=False).items()
        if name.startswith("criterion__")
    }
    instance = getattr(net, "criterion_", None)
    for attr in (*CLASS_WEIGHTS, "label_smoothing"):
        if attr not in given and instance is not None and hasattr(instance, attr):
            given[attr] = getattr(instance, attr)
    for name, value in given.items():
        if name in _NEUTRAL_ARGUMENTS or value is None:
            continue
        if name == "label_smoothing" and float(value) == 0.0:
            continue
        changes.append(f"criterion__{name}")
    return changes


def check_fitted_net(net: NeuralNet, message: str | None = None) -> None:
    """Raise ``NotFittedError`` (with the fix, or ``message``) when a frozen net was never
    trained."""
    message = message or (
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


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The numpy dtype of arrays for a net of ``dtype``: the same one, or float32 for
    bfloat16 (numpy has none; float32 holds every bfloat16 value exactly)."""
    if dtype == torch.bfloat16:
        return np.dtype(np.float32)
    return torch.empty((), dtype=dtype).numpy().dtype


def net_device(net: NeuralNet) -> torch.device:
    """The device of the net's parameters (``net.device`` for a net without parameters)."""
    for p in net.module_.parameters():
        return p.device
    return torch.device(net.device or "cpu")


def takes_codes(net: NeuralNet) -> bool:
    """Whether the net's integer inputs are category codes (it has an embedding)."""
    return any(isinstance(m, nn.Embedding | nn.EmbeddingBag) for m in net.module_.modules())


def training_input(net: NeuralNet, X):
    """X as the net's training takes it: a numeric array in the net's floating dtype
    (integers stay integers for a net with an embedding); other inputs as they are."""
    if sp.issparse(X):
        return X.astype(numpy_dtype(net_dtype(net)))
    if not isinstance(X, np.ndarray) or X.dtype.kind not in "fiub":
        return X
    if X.dtype.kind in "iu" and takes_codes(net):
        return X
    return X.astype(numpy_dtype(net_dtype(net)), copy=False)


def infer_view(net: NeuralNet, module: nn.Module) -> NeuralNet:
    """A shallow copy of the net whose ``module_`` is ``module`` (a private view).

    Calling ``infer`` on it runs the net's own inference code, an override included, on
    the view; the user's net is not touched, so other threads can use it meanwhile.
    """
    view = object.__new__(type(net))
    view.__dict__.update(net.__dict__)
    view.__dict__["module_"] = module
    return view


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
    net: NeuralNet, params: list, name: str, likelihood: Likelihood, n_outputs: int
) -> float:
    """Coefficient ``c`` with prior precision ``c / (sigma^2 T)`` matching L2 training.

    An optimiser with coupled weight decay ``lambda`` (SGD, Adam, RMSprop, ... with
    ``weight_decay=lambda``) adds ``lambda * theta`` to the gradient of the per-batch loss, so
    the trained weights are a stationary point of the epoch objective. Summed over one epoch
    of ``N`` rows in ``n_b`` batches and multiplied to match the summed loss (see
    :doc:`/user_guide`):

    * criterion reduction "mean": cross-entropy ``sum CE + (N lambda / 2) ||theta||^2``;
      MSE (mean over rows and K outputs) ``0.5 sum (y - f)^2 + (N K lambda / 4) ||theta||^2``;
    * reduction "sum": ``n_b lambda`` instead of ``N lambda`` (and ``n_b lambda / 2`` for MSE).

    The Laplace posterior's log density is ``-scale * loss - tau / 2 ||theta||^2`` with
    ``scale = 1 / (sigma^2 T)``; its maximum is the trained weights when
    ``tau = scale * c`` with ``c = N lambda`` (CE), ``N K lambda / 2`` (MSE), etc.

    Raises ``ValueError`` where no such prior exists: decoupled weight decay (AdamW or
    ``decoupled_weight_decay=True``), no record of the training epochs, or a layer whose
    parameters have different weight decays.
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
    return likelihood.l2_prior_coefficient(lam, sizes, n_outputs, reduction)
