"""Laplace approximations: one object per choice of weights, all with one interface.

``make(subset_of_weights, hessian_structure)`` is called once, in ``fit``; nothing outside
this package branches on which weights carry the posterior.

* :class:`LastLayer` (``"last_layer"``): the head's weights, in closed form from its
  input features (diag, kron or full) — the fast special case.
* :class:`LayerWise` (``"all"`` or a list of module names): one block per selected layer,
  from forward and backward passes (diag or kron).

Modules: :mod:`.base` (the interface and the cached passes), :mod:`.layers` (the layer
kinds: module <-> matrix layouts), :mod:`.selection` (which layers), :mod:`.tape` (the
forward/backward recorder), :mod:`.curvature` (the per-layer GGN sums), :mod:`.head`
(finding the output layer).
"""

from __future__ import annotations

from .._runtime.warnings import warn
from .base import Approximation, Projection
from .head import find_head
from .last_layer import LastLayer
from .layer_wise import LayerWise
from .selection import RowsDependOnTheirBatch, batch_dependent, select_layers

__all__ = [
    "Approximation",
    "LastLayer",
    "LayerWise",
    "Projection",
    "RowsDependOnTheirBatch",
    "choose_subset",
    "factor_entries",
    "find_head",
    "fit_resolved",
    "make",
]

# subset_of_weights="auto" takes every layer up to these sizes, else the last layer: the
# layer-wise passes cost a backward pass per output and grow with the weights, while the
# last layer's cost hardly depends on either (benchmarks/RESULTS_scale.md).
AUTO_MAX_PARAMS = 1_000_000
AUTO_MAX_OUTPUTS = 32
# ... and, for Kronecker blocks, while the factors cost little next to the net: their
# entries (sum of n_in^2 + n_out^2 over the layers: the sums formed at every row, the
# eigenvectors stored and pickled, and O(d^3) eigendecompositions) at most this many per
# trainable weight, or at most AUTO_SMALL_FACTORS in all (2 MiB of float64 eigenvectors,
# decomposed in milliseconds, whatever the net's size).
AUTO_FACTOR_RATIO = 8
AUTO_SMALL_FACTORS = 2**18


def factor_entries(module) -> tuple[int, int]:
    """``(entries of the all-layer Kronecker factors, trainable weights)`` of a module.

    A Kronecker layer of shape (n_out, n_in) stores ``n_in^2 + n_out^2`` eigenvector
    entries; a layer of another kind (a diagonal block) its number of weights.
    """
    entries = n_params = 0
    for layer in select_layers(module, "all"):
        n_out, n_in = layer.shape
        n_params += n_out * n_in
        entries += n_in * n_in + n_out * n_out if layer.kronecker else n_out * n_in
    return entries, n_params


def choose_subset(subset_of_weights, module, n_outputs: int, hessian_structure: str):
    """Resolve ``subset_of_weights="auto"``: ``"all"`` for a net with at most
    ``AUTO_MAX_PARAMS`` trainable parameters and ``AUTO_MAX_OUTPUTS`` outputs whose
    Kronecker factors (``hessian_structure="kron"``) hold at most ``AUTO_FACTOR_RATIO``
    entries per weight or ``AUTO_SMALL_FACTORS`` in all (:func:`factor_entries`), else
    ``"last_layer"``. Also ``"last_layer"`` with ``hessian_structure="full"`` (which is for
    the last layer) and for a net whose rows depend on their batch (see
    :func:`.selection.batch_dependent`: that one warns, saying why). Any other value is
    returned as it is.

    The factor rule keeps the all-layer fit within about two training epochs and its
    memory within a small multiple of the net's whatever the shape: a wide first layer (a
    one-hot encoded column of 3,000 categories into ``Linear(3000, 8)``) has few weights
    but a 3,000 x 3,000 input factor, formed at every row, decomposed in O(3000^3) and
    stored; the MLPs of the benchmarks hold 2.5 to 3.9 factor entries per weight (an MNIST
    MLP 784-128-10: 6.4).

    Examples
    --------
    >>> from torch import nn
    >>> choose_subset("auto", nn.Sequential(nn.Linear(10, 64), nn.Linear(64, 3)), 3, "kron")
    'all'
    >>> choose_subset("auto", nn.Linear(2000, 1000), 1000, "kron")
    'last_layer'
    >>> wide = nn.Sequential(nn.Linear(3000, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> choose_subset("auto", wide, 2, "kron"), choose_subset("auto", wide, 2, "diag")
    ('last_layer', 'all')
    """
    if not (isinstance(subset_of_weights, str) and subset_of_weights == "auto"):
        return subset_of_weights
    n_params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    small = n_params <= AUTO_MAX_PARAMS and n_outputs <= AUTO_MAX_OUTPUTS
    if not small or hessian_structure == "full":
        return "last_layer"
    dependent = batch_dependent(module)
    if dependent:
        warn(
            f"subset_of_weights='auto' takes the last layer, not every layer: the batch "
            f"norm(s) {dependent} have track_running_stats=False, so they normalise each "
            "row with its batch's statistics and a row's gradient is not its own (the "
            "all-layer posterior is undefined). Build them with track_running_stats=True "
            "(and train the net again) for the all-layer posterior, or pass "
            "subset_of_weights='last_layer' to choose the last layer without this warning."
        )
        return "last_layer"
    if hessian_structure == "kron":
        entries, weights = factor_entries(module)
        if entries > max(AUTO_FACTOR_RATIO * weights, AUTO_SMALL_FACTORS):
            return "last_layer"
    return "all"


def fit_resolved(
    subset_of_weights,
    hessian_structure: str,
    view,
    head: str,
    likelihood,
    X,
    y,
    rows=None,
    sample_weight=None,
) -> tuple[object, Approximation]:
    """Resolve ``subset_of_weights`` (:func:`choose_subset`), make the approximation and fit
    it (:meth:`Approximation.fit <.base.Approximation.fit>` on ``rows`` of X through
    ``view``, ``head`` the output layer); returns ``(resolved subset, fitted
    approximation)``.

    Under ``"auto"``, a net whose rows turn out to depend on their batch (the layer-wise
    fit raises :class:`RowsDependOnTheirBatch`) is fitted on the last layer instead, with a
    warning; any other choice lets the error through.
    """
    args = (view, head, likelihood, X, y, rows, sample_weight)
    n_outputs = view.module.get_submodule(head).out_features
    subset = choose_subset(subset_of_weights, view.module, n_outputs, hessian_structure)
    approximation = make(subset, hessian_structure)
    try:
        approximation.fit(*args)
    except RowsDependOnTheirBatch as error:
        if not (isinstance(subset_of_weights, str) and subset_of_weights == "auto"):
            raise
        warn(f"{error.reason} subset_of_weights='auto' takes the last layer instead.")
        subset, approximation = "last_layer", make("last_layer", hessian_structure)
        approximation.fit(*args)
    return subset, approximation


def make(subset_of_weights, hessian_structure: str) -> Approximation:
    """The approximation for the estimator parameters ``subset_of_weights`` and
    ``hessian_structure`` (validated here: the messages name the parameters).

    Examples
    --------
    >>> type(make("last_layer", "kron")).__name__, type(make("all", "diag")).__name__
    ('LastLayer', 'LayerWise')
    """
    subset = subset_of_weights
    if isinstance(subset, str) and subset in ("last_layer", "auto"):  # (auto: checked only)
        return LastLayer(hessian_structure)
    if not isinstance(subset, str) and (
        len(subset) == 0 or not all(isinstance(n, str) for n in subset)
    ):
        raise ValueError(
            "subset_of_weights must be 'last_layer', 'all' or a non-empty list of module "
            f"names (as in net.module_.named_modules()), got {subset!r}."
        )
    if hessian_structure == "full":
        raise ValueError(
            "hessian_structure='full' is only available with subset_of_weights='last_layer': "
            "a dense covariance over several layers' weights costs (n_params)^2 memory. Use "
            "hessian_structure='kron' or 'diag' for several layers, or keep the last layer "
            "with 'full'."
        )
    return LayerWise(hessian_structure, subset)
