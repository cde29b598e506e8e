"""Tuning in batched evaluations (issue 23): the grid of prior precisions evaluated at once,
the held-out rows' projections concatenated once, against the one-at-a-time evaluations
they replace.

``moments_grid`` contracts the squared projections with the inverse eigenvalues of every
prior precision of a grid in one product per block; in float64 it is ``moments`` at each
prior precision up to the order of the sums, in float32 (the grid search's precision) up
to float32's round-off of sums of positive terms.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _nets import classifier_net
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from test_projections import LIKELIHOODS, _data, _make, _view

from sklaplace import LaplaceClassifier
from sklaplace.approximations import LastLayer, LayerWise
from sklaplace.tuning import heldout, kept
from sklaplace.tuning.objectives import objectives

F64 = torch.float64
EPS = {
    torch.float64: torch.finfo(torch.float64).eps,
    torch.float32: torch.finfo(torch.float32).eps,
}


def _approximation(kind, structure, approx_cls):
    X, y = _data(kind, 23, "classification")
    view = _view(_make(kind, 3), 7)  # several batches
    if approx_cls is LastLayer:
        approx = LastLayer(structure).fit(view, "out", LIKELIHOODS["classification"], X, y)
    else:
        approx = LayerWise(structure, "all").fit(view, "out", LIKELIHOODS["classification"], X, y)
    return approx, view, X


CASES = [
    ("mlp", "kron", LayerWise),
    ("mlp", "diag", LayerWise),
    ("conv", "kron", LayerWise),  # nine positions: one contraction per prior precision
    ("layernorm", "kron", LayerWise),  # per-row gradients of the LayerNorm
    ("mlp", "kron", LastLayer),
    ("mlp", "full", LastLayer),
]


@pytest.mark.parametrize("kind,structure,approx_cls", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_moments_grid_is_moments_at_each_prior_precision(kind, structure, approx_cls, dtype):
    """Every row of the grid's variances is ``moments`` at that row's prior precisions
    (one per block, different ones), to the round-off of a sum of ``n_params`` positive
    terms in ``dtype``."""
    approx, view, X = _approximation(kind, structure, approx_cls)
    n_blocks = approx.posterior.n_blocks
    gen = np.random.default_rng(0)
    taus = torch.tensor(10.0 ** gen.uniform(-4, 6, (9, n_blocks)), dtype=F64)
    scale = torch.tensor(1.3, dtype=F64)
    proj = approx.concat(list(approx.project(view, X)))
    grid = approx.moments_grid(proj, taus, scale, dtype)
    assert grid.dtype == dtype and grid.shape == (9, *proj.mean.shape)
    ref = torch.stack([approx.moments(proj, tau, scale, cov=False) for tau in taus])
    rtol = 4 * approx.posterior.n_params * EPS[dtype]
    torch.testing.assert_close(grid.to(F64), ref, rtol=rtol, atol=0.0)


@pytest.fixture(scope="module")
def fitted_with_rows():
    """A fitted classifier (all layers, calibration off) and its unseen rows."""
    X, y = make_classification(
        n_samples=600, n_features=6, n_informative=4, n_classes=3, flip_y=0.1, random_state=0
    )
    X = X.astype(np.float32)
    torch.manual_seed(0)
    net = classifier_net(3, max_epochs=15, batch_size=32).fit(X[:450], y[:450])
    clf = LaplaceClassifier(FrozenEstimator(net), calibration=None, subset_of_weights="all")
    clf.fit(X[:450], y[:450], X_val=X[450:], y_val=y[450:])
    clf.rows_ = (X[:450], y[:450])
    return clf, X[450:], y[450:]


def test_kept_projections_are_concatenated(fitted_with_rows):
    """The held-out rows (five batches of the net's batch size) are kept as one projection:
    an evaluation is one contraction per block, not one per batch."""
    clf, X_val, _ = fitted_with_rows
    rows = kept.Kept(clf._fitted, X_val)
    assert len(list(rows)) == 1
    assert list(rows.bounds) == [0, len(X_val)]


def test_heldout_grid_is_heldout_at_each_prior_precision(fitted_with_rows):
    """``heldout_grid`` is ``heldout`` at each prior precision of the grid, up to the order
    of the float64 sums (relative ``n_params eps64`` on each variance, and the summed
    log-likelihood moves by no more than that relative change per row and output)."""
    clf, X_val, y_val = fitted_with_rows
    obj = objectives(clf._fitted, X_val, y_val, None)
    grid = heldout.PRIOR_GRID
    values = obj.heldout_grid(grid, 1.0, 1.0, None)
    exact = np.array([obj.heldout(t, 1.0, 1.0, None) for t in grid])
    bound = 4 * clf._fitted.posterior.n_params * EPS[torch.float64] * y_val.size * 3
    np.testing.assert_allclose(values, exact, rtol=0, atol=bound)


def test_tuned_prior_is_the_one_at_a_time_grid_search(fitted_with_rows):
    """The prior precision tuned from the grid evaluated at once is the one the grid
    evaluated point by point gives: the same best grid point, then the same refinement (its
    comparison against the best point's own value)."""
    clf, X_val, y_val = fitted_with_rows
    obj = objectives(clf._fitted, X_val, y_val, None)

    def objective(t):
        return obj.heldout(t, 1.0, 1.0, None)

    one_at_a_time = heldout._maximize_prior(objective)
    at_once = heldout._maximize_prior(objective, lambda g: obj.heldout_grid(g, 1.0, 1.0, None))
    assert at_once == one_at_a_time


def test_prior_grid_costs_no_evaluation_per_grid_point(fitted_with_rows, monkeypatch):
    """Tuning the prior evaluates the grid in one call of ``moments_grid`` and the
    per-prior-precision ``moments`` only in the refinement: fewer calls than grid points
    (before: one per grid point and held-out batch)."""
    clf, X_val, y_val = fitted_with_rows
    calls = {"moments": 0, "grid": 0}
    moments, grid = LayerWise.moments, LayerWise.moments_grid

    def count_moments(self, *args, **kwargs):
        calls["moments"] += 1
        return moments(self, *args, **kwargs)

    def count_grid(self, *args, **kwargs):
        calls["grid"] += 1
        return grid(self, *args, **kwargs)

    monkeypatch.setattr(LayerWise, "moments", count_moments)
    monkeypatch.setattr(LayerWise, "moments_grid", count_grid)
    LaplaceClassifier(**clf.get_params(deep=False)).fit(*clf.rows_, X_val=X_val, y_val=y_val)
    assert calls["grid"] >= 1
    assert calls["moments"] < len(heldout.PRIOR_GRID), calls
