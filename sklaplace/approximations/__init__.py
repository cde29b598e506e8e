"""Laplace approximations: one object per choice of weights, all with one interface.

``make(subset_of_weights, hessian_structure)`` is called once, in ``fit``; nothing outside
this package branches on which weights carry the posterior.

* :class:`LastLayer` (``"last_layer"``): the head's weights, in closed form from its
  input features (diag, kron or full) — the fast special case.
* :class:`LayerWise` (``"all"`` or a list of module names): one block per selected layer,
  from forward and backward passes (diag or kron).

Modules: :mod:`.base` (the interface and the cached passes), :mod:`.layers` (module <->
matrix layouts), :mod:`.tape` (the forward/backward recorder), :mod:`.curvature` (the
per-layer GGN sums), :mod:`.head` (finding the output layer).
"""

from __future__ import annotations

from .base import Approximation, Projection
from .head import find_head
from .last_layer import LastLayer
from .layer_wise import LayerWise

__all__ = ["Approximation", "LastLayer", "LayerWise", "Projection", "find_head", "make"]


def make(subset_of_weights, hessian_structure: str) -> Approximation:
    """The approximation for the estimator parameters ``subset_of_weights`` and
    ``hessian_structure`` (validated here: the messages name the parameters).

    Examples
    --------
    >>> type(make("last_layer", "kron")).__name__, type(make("all", "diag")).__name__
    ('LastLayer', 'LayerWise')
    """
    subset = subset_of_weights
    if isinstance(subset, str) and subset == "last_layer":
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
