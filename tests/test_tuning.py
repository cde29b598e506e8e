"""The tuning modes pick what they claim to pick, checked against independent computations.

* ``"marglik"``: the maximum of ``log_marginal_likelihood`` over a brute-force grid.
* ``"holdout"``: the optimum of ``GridSearchCV`` scored on exactly ``validation_indices_``;
  those rows never enter the curvature, and a net trained in ``fit`` never trains on them.
* ``"weight_decay"``: the trained head weights are a stationary point of the Laplace
  log posterior ``scale * summed_loss + tau / 2 * ||theta||^2`` (autograd on the head).
* A grid whose every candidate is numerically unusable fails loudly in ``GridSearchCV``.

The gradients of the evidence are checked against finite differences in test_math.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _nets import MLP, classifier_net, regressor_net
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import FitFailedWarning
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    PredefinedSplit,
    StratifiedKFold,
    train_test_split,
)
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import LRScheduler
from skorch.dataset import ValidSplit
from torch import nn

import sklaplace
from sklaplace import LaplaceClassifier as _LaplaceClassifier
from sklaplace import LaplaceRegressor
from sklaplace.metrics import neg_gaussian_nll


# ---------------------------------------------------------------- data and nets
@pytest.fixture(scope="module")
def noisy_cls_data():
    X, y = make_classification(
        n_samples=400, n_features=6, n_informative=4, n_redundant=0, n_classes=3,
        flip_y=0.1, random_state=0,
    )  # fmt: skip
    return X.astype(np.float32), y


def LaplaceClassifier(*args, **kwargs):
    """The classifier without a recalibration head: these tests are about the prior and
    the posterior temperature (the head and its tuning: tests/test_recalibration.py)."""
    kwargs.setdefault("calibration", None)
    return _LaplaceClassifier(*args, **kwargs)


@pytest.fixture(scope="module")
def overconfident_net(noisy_cls_data):
    """Trained hard on the first 100 rows: over-confident on the other 300."""
    X, y = noisy_cls_data
    torch.manual_seed(0)
    net = classifier_net(3, hidden=32, max_epochs=60, lr=0.05, optimizer=torch.optim.Adam)
    return net.fit(X[:100], y[:100])


@pytest.fixture(scope="module")
def noisy_reg_data():
    X, y = make_regression(n_samples=400, n_features=4, noise=20.0, random_state=0)
    return X.astype(np.float32), (y / y.std()).astype(np.float32)


@pytest.fixture(scope="module")
def noisy_reg_net(noisy_reg_data):
    """Trained on the first 200 rows."""
    X, y = noisy_reg_data
    torch.manual_seed(0)
    net = regressor_net(1, hidden=32, max_epochs=50, lr=0.01, optimizer=torch.optim.Adam)
    return net.fit(X[:200], y[:200, None])


def _log_step(grid):
    return float(np.diff(np.log10(grid))[0])


# ---------------------------------------------------------------- the evidence
@pytest.mark.parametrize("structure", ["kron", "diag", "full"])
def test_marglik_prior_is_the_maximum_of_the_evidence_on_a_grid(
    structure, noisy_cls_data, overconfident_net
):
    X, y = noisy_cls_data
    clf = LaplaceClassifier(
        FrozenEstimator(overconfident_net),
        hessian_structure=structure,
        prior_precision="marglik",
        subset_of_weights="last_layer",
    ).fit(X[:100], y[:100])
    grid = np.logspace(-4, 4, 161)
    values = np.array([clf.log_marginal_likelihood(prior_precision=p) for p in grid])
    best = int(np.argmax(values))
    assert 0 < best < len(grid) - 1  # an interior maximum, so the check means something
    tau = float(clf.prior_precision_[0])
    assert abs(np.log10(tau) - np.log10(grid[best])) <= _log_step(grid)
    assert clf.log_marginal_likelihood_value_ >= values.max() - 1e-8
    assert clf.log_marginal_likelihood_value_ == clf.log_marginal_likelihood()
    assert clf.log_marginal_likelihood() == clf.log_marginal_likelihood(prior_precision=tau)


@pytest.mark.parametrize(
    ("prior", "sigma", "temperature"),
    [("marglik", "marglik", 1.0), ("marglik", "marglik", 0.5), ("marglik", 0.4, 1.0),
     (3.0, "marglik", 1.0)],
)  # fmt: skip
def test_marglik_regressor_reaches_the_grid_maximum_jointly(
    prior, sigma, temperature, noisy_reg_data, noisy_reg_net
):
    X, y = noisy_reg_data
    reg = LaplaceRegressor(
        FrozenEstimator(noisy_reg_net),
        prior_precision=prior,
        sigma_noise=sigma,
        temperature=temperature,
    ).fit(X[:200], y[:200])
    priors = np.logspace(-3, 3, 61) if prior == "marglik" else np.array([prior])
    sigmas = np.logspace(-1.5, 0, 61) if sigma == "marglik" else np.array([sigma])
    values = np.array(
        [[reg.log_marginal_likelihood(prior_precision=p, sigma_noise=s) for s in sigmas]
         for p in priors]
    )  # fmt: skip
    i, j = np.unravel_index(np.argmax(values), values.shape)
    for grid, k, fitted in ((priors, i, reg.prior_precision_[0]), (sigmas, j, reg.sigma_noise_)):
        if len(grid) > 1:
            assert 0 < k < len(grid) - 1
            assert abs(np.log10(fitted) - np.log10(grid[k])) <= _log_step(grid)
    assert reg.log_marginal_likelihood_value_ >= values.max() - 1e-8
    assert reg.log_marginal_likelihood_value_ == reg.log_marginal_likelihood()


# ---------------------------------------------------------------- held-out rows
def _predefined_split(n, valid):
    fold = np.full(n, -1)
    fold[valid] = 0
    return PredefinedSplit(fold)


def _split(y, stratify=True, seed=0):
    """``(rest, valid)``: a fifth of the rows held out (indices, sorted)."""
    rest, valid = train_test_split(
        np.arange(len(y)), test_size=0.2, random_state=seed, stratify=y if stratify else None
    )
    return np.sort(rest), np.sort(valid)


def _fit_with_held_out_rows(est, X, y, valid):
    """Fit on the other rows, tuning on ``valid`` passed as X_val (a frozen net's route)."""
    rest = np.setdiff1d(np.arange(len(y)), valid)
    return est.fit(X[rest], y[rest], X_val=X[valid], y_val=y[valid])


def test_holdout_picks_the_grid_search_optimum_on_the_same_rows(noisy_cls_data, overconfident_net):
    """'holdout' with a frozen net and X_val = GridSearchCV scored by log loss on X_val.

    Both maximise the same function of the prior precision: the held-out log-likelihood of
    the probit predictive, with the curvature from the other rows (GridSearchCV's
    neg_log_loss is that sum divided by the number of held-out rows). "holdout" refines the
    best of its coarse grid with a bounded scalar search, so it can land between the points
    of any grid. The fair comparison: add its value to a fine grid; GridSearchCV must rank
    it first (up to round-off) and the best fine-grid point must be a neighbour of it.
    """
    X, y = noisy_cls_data[0][100:], noisy_cls_data[1][100:]  # rows the net never saw
    _, valid = _split(y)
    clf = LaplaceClassifier(FrozenEstimator(overconfident_net), prior_precision="holdout")
    _fit_with_held_out_rows(clf, X, y, valid)
    assert clf.validation_source_ == "X_val" and clf.validation_indices_ is None
    tau = float(clf.prior_precision_[0])
    fine = np.logspace(-4, 6, 81)  # the range "holdout" searches
    search = GridSearchCV(
        LaplaceClassifier(FrozenEstimator(overconfident_net)),
        {"prior_precision": [*fine, tau]},
        cv=_predefined_split(len(y), valid),
        scoring="neg_log_loss",
        refit=False,
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    best = int(np.argmax(scores[:-1]))
    assert 0 < best < len(fine) - 1  # an interior optimum: the net is over-confident here
    assert scores[-1] >= scores[:-1].max() - 1e-9
    assert abs(np.log10(tau) - np.log10(fine[best])) <= _log_step(fine)


def _holdout_classifiers():
    common = {"hidden": 16, "max_epochs": 5, "lr": 0.1}
    return {
        "frozen, its ValidSplit": lambda X, y: FrozenEstimator(
            classifier_net(3, train_split=ValidSplit(5, stratified=True), **common).fit(X, y)
        ),
        "unfitted, train_split=None": lambda X, y: classifier_net(3, **common),
        "unfitted, ValidSplit": lambda X, y: classifier_net(
            3, train_split=ValidSplit(5, stratified=True), **common
        ),
    }


@pytest.mark.parametrize("kind", list(_holdout_classifiers()))
def test_holdout_rows_never_enter_the_curvature(kind, noisy_cls_data, overconfident_net):
    """The posterior equals a fixed-prior fit on the other rows only, with the same net."""
    X, y = noisy_cls_data[0][100:], noisy_cls_data[1][100:]
    torch.manual_seed(0)
    estimator = _holdout_classifiers()[kind](X, y)
    clf = LaplaceClassifier(estimator, prior_precision="holdout", random_state=0).fit(X, y)
    valid = clf.validation_indices_
    rest = np.setdiff1d(np.arange(len(y)), valid)
    assert 0 < len(valid) < len(y)
    tau = float(clf.prior_precision_[0])
    ref = LaplaceClassifier(FrozenEstimator(clf.estimator_), prior_precision=tau).fit(
        X[rest], y[rest]
    )
    one = torch.tensor(1.0, dtype=torch.float64)
    eig, ref_eig = (c.posterior_.blocks[0].eigenvalues(one, one) for c in (clf, ref))
    torch.testing.assert_close(eig, ref_eig, rtol=1e-12, atol=1e-12)
    assert clf.n_train_ == ref.n_train_ == len(rest)
    assert clf.train_loss_ == pytest.approx(ref.train_loss_, rel=1e-12)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), rtol=1e-10)
    # and a fit on all rows is a different posterior: the held-out rows would change it
    full = LaplaceClassifier(FrozenEstimator(clf.estimator_), prior_precision=tau).fit(X, y)
    assert not torch.allclose(full.posterior_.blocks[0].eigenvalues(one, one), eig)


def _rows_trained_on(net):
    """Rows the net trained on in its last epoch (skorch records a dict per batch)."""
    return sum(b.get("train_batch_size", 0) for b in net.history[-1, "batches"])


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_holdout_uses_the_nets_own_validation_rows(kind, noisy_cls_data, noisy_reg_data):
    """With skorch's default ValidSplit(5), the held-out rows are the net's validation rows.

    Reproduced from the split itself (the first fold of a (Stratified)KFold(5)) and from the
    net's history: it trained on the other rows only, and its last recorded validation loss
    is the loss of the trained net on exactly validation_indices_.
    """
    if kind == "classifier":
        X, y = noisy_cls_data
        net = NeuralNetClassifier(
            MLP, module__n_out=3, criterion=nn.CrossEntropyLoss, max_epochs=4, lr=0.1,
            verbose=0,
        )  # fmt: skip
        laplace = LaplaceClassifier(net, prior_precision="holdout", random_state=0)
        folds = StratifiedKFold(5).split(np.arange(len(y)), y)
    else:
        X, y = noisy_reg_data
        net = NeuralNetRegressor(MLP, module__n_out=1, max_epochs=4, lr=0.05, verbose=0)
        laplace = LaplaceRegressor(net, prior_precision="holdout", random_state=0)
        folds = KFold(5).split(np.arange(len(y)))
    assert isinstance(net.train_split, ValidSplit)  # skorch's default, untouched
    laplace.fit(X, y)
    trained = laplace.estimator_
    valid = laplace.validation_indices_

    _, expected = next(iter(folds))
    np.testing.assert_array_equal(valid, expected)
    assert _rows_trained_on(trained) == len(y) - len(valid)
    batches = trained.history[-1, "batches"]
    assert sum(b.get("valid_batch_size", 0) for b in batches) == len(valid)
    target = y[valid] if kind == "classifier" else y[valid, None]
    with torch.no_grad():
        loss = trained.get_loss(
            trained.infer(torch.as_tensor(X[valid])), torch.as_tensor(target)
        ).item()
    assert loss == pytest.approx(trained.history[-1, "valid_loss"], rel=1e-5)
    assert isinstance(trained.train_split, ValidSplit)  # restored after training


def test_holdout_without_a_train_split_trains_without_the_held_out_rows(noisy_cls_data):
    X, y = noisy_cls_data
    net = classifier_net(3, max_epochs=3)  # train_split=None
    clf = LaplaceClassifier(
        net, prior_precision="holdout", validation_fraction=0.25, random_state=0
    ).fit(X, y)
    valid = clf.validation_indices_
    assert len(valid) == 100
    assert _rows_trained_on(clf.estimator_) == len(y) - 100
    assert clf.estimator_.train_split is None
    # stratified: every class is held out in proportion
    np.testing.assert_allclose(np.bincount(y[valid]) / 100, np.bincount(y) / len(y), atol=0.02)


@pytest.mark.parametrize("sigma", ["float", "marglik"])
def test_holdout_regressor(sigma, noisy_reg_data, noisy_reg_net):
    """The prior maximises the held-out Gaussian log-likelihood at ``sigma_noise_``.

    It is the GridSearchCV optimum scored by neg_gaussian_nll on validation_indices_ (as
    for the classifier). With "marglik", sigma_noise_ is the evidence's (maximised jointly
    with the prior precision, on the curvature rows) and the prior precision the held-out
    optimum at that sigma. (Alternating the two criteria instead was seen to cycle between
    two answers, so the result depended on the number of rounds.)
    """
    X, y = noisy_reg_data[0][200:], noisy_reg_data[1][200:]  # rows the net never saw
    if sigma == "float":
        # a little below the net's error on new rows, so that some weight uncertainty helps
        # and the optimum is interior (at 0.8 the held-out likelihood plateaus as tau -> 0)
        sigma = 0.9 * float(np.sqrt(np.mean((noisy_reg_net.predict(X)[:, 0] - y) ** 2)))
    rest, valid = _split(y, stratify=False)
    reg = LaplaceRegressor(
        FrozenEstimator(noisy_reg_net),
        prior_precision="holdout",
        sigma_noise=sigma,
        interval="gaussian",
    )  # gaussian: every held-out row tunes (a conformal interval would calibrate on half)
    _fit_with_held_out_rows(reg, X, y, valid)
    tau = float(reg.prior_precision_[0])
    if sigma == "marglik":  # the evidence's sigma, from the curvature rows alone
        evidence = LaplaceRegressor(
            FrozenEstimator(noisy_reg_net), prior_precision="marglik", sigma_noise="marglik"
        ).fit(X[rest], y[rest])  # checked against a brute-force grid above
        assert reg.sigma_noise_ == pytest.approx(evidence.sigma_noise_, rel=1e-6)
    else:
        assert reg.sigma_noise_ == sigma
    fine = np.logspace(-4, 6, 81)
    search = GridSearchCV(
        LaplaceRegressor(FrozenEstimator(noisy_reg_net), sigma_noise=reg.sigma_noise_),
        {"prior_precision": [*fine, tau]},
        cv=_predefined_split(len(y), valid),
        scoring=neg_gaussian_nll,
        refit=False,
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    best = int(np.argmax(scores[:-1]))
    assert scores[-1] >= scores[:-1].max() - 1e-9
    assert abs(np.log10(tau) - np.log10(fine[best])) <= _log_step(fine)
    if sigma != "marglik":
        assert 0 < best < len(fine) - 1
    assert reg.log_marginal_likelihood_value_ == reg.log_marginal_likelihood()


def test_a_float_prior_after_holdout_needs_no_refit(noisy_cls_data, overconfident_net):
    """Leaving the 'holdout' mode for a float is read at prediction time, like any float."""
    X, y = noisy_cls_data[0][100:], noisy_cls_data[1][100:]
    rest, valid = _split(y)
    clf = LaplaceClassifier(FrozenEstimator(overconfident_net), prior_precision="holdout")
    _fit_with_held_out_rows(clf, X, y, valid)
    ref = LaplaceClassifier(FrozenEstimator(overconfident_net), prior_precision=7.0)
    ref.fit(X[rest], y[rest])
    proba = clf.set_params(prior_precision=7.0).predict_proba(X)
    np.testing.assert_allclose(proba, ref.predict_proba(X), rtol=1e-10)
    # another mode is refused: modes are resolved in fit
    clf.set_params(prior_precision="weight_decay")
    with pytest.raises(ValueError, match="call fit again"):
        clf.predict_proba(X)


def _heldout_scores(estimator, X, y, valid, candidates, scoring="neg_log_loss"):
    """GridSearchCV's held-out score on ``valid`` for each {param: value} in candidates."""
    search = GridSearchCV(
        estimator,
        [{k: [v] for k, v in c.items()} for c in candidates],
        cv=_predefined_split(len(y), valid),
        scoring=scoring,
        refit=False,
    ).fit(X, y)
    return search.cv_results_["mean_test_score"]


def test_holdout_temperature_with_the_prior_beats_the_prior_alone(
    noisy_cls_data, overconfident_net
):
    """temperature="holdout" with prior_precision="holdout" (Ritter et al.'s tau and N).

    Coordinate ascent starts from the prior alone at T = 1, so its held-out log-likelihood
    is never below the prior-only optimum; here it is above it, with an interior
    temperature, and within 1e-3 of the best point of a 41 x 49 grid over both.
    """
    X, y = noisy_cls_data[0][100:], noisy_cls_data[1][100:]  # rows the net never saw
    rest, valid = _split(y)
    frozen = FrozenEstimator(overconfident_net)
    last = {"subset_of_weights": "last_layer"}
    clf = LaplaceClassifier(frozen, prior_precision="holdout", temperature="holdout", **last)
    _fit_with_held_out_rows(clf, X, y, valid)
    alone = _fit_with_held_out_rows(
        LaplaceClassifier(frozen, prior_precision="holdout", **last), X, y, valid
    )
    assert alone.temperature_ == 1.0
    grid = [
        {"prior_precision": p, "temperature": t}
        for p in np.logspace(-4, 6, 41)
        for t in np.logspace(-3, 3, 49)
    ]
    tuned = {"prior_precision": float(clf.prior_precision_[0]), "temperature": clf.temperature_}
    base = {"prior_precision": float(alone.prior_precision_[0]), "temperature": 1.0}
    scores = _heldout_scores(LaplaceClassifier(frozen, **last), X, y, valid, [*grid, tuned, base])
    ours, prior_only, best = scores[-2], scores[-1], scores[:-2].max()
    assert ours > prior_only + 1e-3  # the temperature helps on this over-confident net
    assert ours >= best - 1e-3
    assert 1e-3 < clf.temperature_ < 1e3
    # the tuned values are what predict uses
    same = LaplaceClassifier(frozen, **tuned, **last).fit(X[rest], y[rest])
    np.testing.assert_allclose(clf.predict_proba(X), same.predict_proba(X), rtol=1e-10)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_holdout_temperature_at_a_fixed_prior_is_the_grid_optimum(
    kind, noisy_cls_data, overconfident_net, noisy_reg_data, noisy_reg_net
):
    """With the prior (and sigma) fixed, the temperature maximises the held-out likelihood
    over any grid (the coarse grid is refined by a bounded search between its neighbours).

    Regressor: an interior optimum (sigma a little below the net's error on these rows).
    Classifier: at a fixed prior this over-confident net asks for the top of the range (the
    posterior becomes the prior), which a warning reports.
    """
    if kind == "classifier":
        (X, y), net, scoring = (
            (noisy_cls_data[0][100:], noisy_cls_data[1][100:]),
            overconfident_net,
            None,
        )
        make, fixed = LaplaceClassifier, {"prior_precision": 2.0}
    else:
        (X, y), net, scoring = (
            (noisy_reg_data[0][200:], noisy_reg_data[1][200:]),
            noisy_reg_net,
            neg_gaussian_nll,
        )
        rms = float(np.sqrt(np.mean((net.predict(X)[:, 0] - y) ** 2)))
        make, fixed = LaplaceRegressor, {"prior_precision": 30.0, "sigma_noise": 0.8 * rms}
        fixed["interval"] = "gaussian"  # every held-out row tunes
    _, valid = _split(y, stratify=kind == "classifier")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = make(FrozenEstimator(net), temperature="holdout", **fixed)
        _fit_with_held_out_rows(est, X, y, valid)
    at_edge = not 1e-3 * 1.001 < est.temperature_ < 1e3 * 0.999
    assert at_edge == (kind == "classifier")
    assert at_edge == any("temperature=" in str(w.message) for w in caught)
    fine = np.logspace(-3, 3, 61)
    scores = _heldout_scores(
        make(FrozenEstimator(net), **fixed),
        X,
        y,
        valid,
        [{"temperature": t} for t in [*fine, est.temperature_]],
        scoring or "neg_log_loss",
    )
    assert scores[-1] >= scores[:-1].max() - 1e-9
    assert abs(np.log10(est.temperature_) - np.log10(fine[np.argmax(scores[:-1])])) <= 0.1


def test_holdout_sigma_with_a_per_layer_prior(noisy_reg_data, noisy_reg_net):
    """A fixed prior, one value per layer, is kept as given while sigma is tuned on the
    held-out rows: the grid optimum of the held-out Gaussian log-likelihood."""
    X, y = noisy_reg_data[0][200:], noisy_reg_data[1][200:]
    frozen = FrozenEstimator(noisy_reg_net)
    n_blocks = LaplaceRegressor(
        frozen, subset_of_weights="all", prior_precision=1.0, sigma_noise=1.0
    )
    n_blocks = n_blocks.fit(X, y).posterior_.n_blocks
    assert n_blocks > 1
    prior = np.logspace(0, 2, n_blocks)
    _, valid = _split(y, stratify=False)
    reg = LaplaceRegressor(
        frozen,
        subset_of_weights="all",
        prior_precision=prior,
        sigma_noise="holdout",
        interval="gaussian",  # every held-out row tunes
    )
    _fit_with_held_out_rows(reg, X, y, valid)
    np.testing.assert_array_equal(reg.prior_precision_, prior)
    sigmas = reg.sigma_noise_ * np.logspace(-0.5, 0.5, 21)
    scores = _heldout_scores(
        LaplaceRegressor(frozen, subset_of_weights="all", prior_precision=prior),
        X,
        y,
        valid,
        [{"sigma_noise": s} for s in [*sigmas, reg.sigma_noise_]],
        neg_gaussian_nll,
    )
    assert 0 < np.argmax(scores[:-1]) < len(sigmas) - 1
    assert scores[-1] >= scores[:-1].max() - 1e-9


@pytest.mark.parametrize(
    ("kind", "params", "match"),
    [
        ("classifier", {"prior_precision": "marglik"}, "prior_precision='marglik'"),
        ("regressor", {"prior_precision": 1.0, "sigma_noise": "marglik"}, "sigma_noise='marg"),
    ],
)
def test_holdout_temperature_refuses_the_evidence_modes(
    kind, params, match, noisy_cls_data, overconfident_net, noisy_reg_data, noisy_reg_net
):
    if kind == "classifier":
        X, y, est = *noisy_cls_data, LaplaceClassifier(FrozenEstimator(overconfident_net))
    else:
        X, y, est = *noisy_reg_data, LaplaceRegressor(FrozenEstimator(noisy_reg_net))
    est.set_params(temperature="holdout", **params)
    with pytest.raises(ValueError, match=f"temperature='holdout' cannot be combined with {match}"):
        est.fit(X, y)


def test_holdout_temperature_set_after_a_fit_without_held_out_rows(
    noisy_cls_data, overconfident_net
):
    """The fitted temperature_ is the float given; asking for "holdout" later names it."""
    X, y = noisy_cls_data
    clf = LaplaceClassifier(
        FrozenEstimator(overconfident_net), prior_precision=1.0, temperature=0.5
    ).fit(X, y)
    assert clf.temperature_ == 0.5 and clf.validation_indices_ is None
    clf.set_params(temperature="holdout")
    with pytest.raises(ValueError, match="temperature='holdout' is a tuning mode"):
        clf.predict_proba(X)


# ---------------------------------------------------------------- weight decay
def _head_stationarity(laplace, X, y, likelihood, factor=1.0):
    """``|grad(scale * L + tau/2 |theta|^2)| / |grad(scale * L)|`` on the head weights.

    ``L`` is the summed loss (cross-entropy, or 0.5 * squared error), ``scale`` is
    ``1 / T`` or ``1 / (sigma^2 T)`` and ``tau = factor * prior_precision_``; computed here
    with autograd on copies of the head's weight and bias, from the body's features.
    """
    module = laplace.estimator_.module_
    with torch.no_grad():
        features = module.body(torch.as_tensor(X)).double()
    weight = module.out.weight.detach().double().clone().requires_grad_()
    bias = module.out.bias.detach().double().clone().requires_grad_()
    out = features @ weight.T + bias
    if likelihood == "classification":
        loss = nn.functional.cross_entropy(out, torch.as_tensor(y), reduction="sum")
        scale = 1.0 / laplace.temperature
    else:
        loss = 0.5 * ((out - torch.as_tensor(y).double().reshape(out.shape)) ** 2).sum()
        scale = 1.0 / (laplace.sigma_noise_**2 * laplace.temperature)
    tau = factor * float(laplace.prior_precision_[0])
    grads = torch.autograd.grad(scale * loss, (weight, bias))
    total = [g + tau * p for g, p in zip(grads, (weight, bias), strict=True)]

    def norm(gs):
        return float(torch.sqrt(sum((g.detach() ** 2).sum() for g in gs)))

    return norm(total) / norm(grads)


EPOCHS = 200
# The hidden layer gets lr=0 so that training converges within EPOCHS (the head's problem is
# then convex); the prior that weight decay implies does not depend on how the features were
# made. Minibatch runs anneal the learning rate to 0 so that SGD noise dies out.
FROZEN_BODY = {"optimizer__param_groups": [("body.*", {"lr": 0.0})], "max_epochs": EPOCHS}


def _annealed():
    return {"callbacks": [LRScheduler(policy="CosineAnnealingLR", T_max=EPOCHS)]}


SGD = {"optimizer": torch.optim.SGD, "optimizer__momentum": 0.9}
WEIGHT_DECAY_CASES = {
    # name: (likelihood, net kwargs, Laplace kwargs)
    "CE, SGD, full batch": ("classification", {**SGD, "lr": 0.5, "batch_size": -1}, {}),
    "CE, Adam, full batch": (
        "classification",
        {"optimizer": torch.optim.Adam, "lr": 0.05, "batch_size": -1, **_annealed()},
        {"temperature": 0.5},
    ),
    "CE, SGD, minibatch": (
        "classification", {**SGD, "lr": 0.2, "batch_size": 32, **_annealed()}, {}
    ),
    "CE, SGD, minibatch, reduction=sum": (
        "classification",
        {**SGD, "lr": 0.01, "batch_size": 32, "criterion__reduction": "sum",
         "optimizer__weight_decay": 1.0, **_annealed()},
        {},
    ),
    "MSE, SGD, full batch": (
        "regression",
        {**SGD, "lr": 0.1, "batch_size": -1},
        {"sigma_noise": 0.5, "temperature": 2.0},
    ),
    "MSE, SGD, full batch, sigma marglik": (
        "regression", {**SGD, "lr": 0.1, "batch_size": -1}, {"sigma_noise": "marglik"}
    ),
    "MSE, SGD, minibatch, reduction=sum": (
        "regression",
        {**SGD, "lr": 0.005, "batch_size": 32, "criterion__reduction": "sum",
         "optimizer__weight_decay": 1.0, **_annealed()},
        {"sigma_noise": 0.5, "temperature": 2.0},
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def wd_data():
    X, y = make_classification(
        n_samples=128, n_features=5, n_informative=4, n_redundant=0, n_classes=3, random_state=0
    )
    Xr, Y = make_regression(n_samples=128, n_features=5, n_targets=2, noise=10.0, random_state=0)
    return {
        "classification": (X.astype(np.float32), y),
        "regression": (Xr.astype(np.float32), (Y / Y.std(0)).astype(np.float32)),
    }


@pytest.mark.parametrize("case", list(WEIGHT_DECAY_CASES))
def test_weight_decay_prior_makes_the_trained_head_the_posterior_mode(case, wd_data):
    """The trained head is a stationary point of the Laplace objective with tau = prior_precision_.

    The gradient of ``scale * L + tau/2 |theta|^2`` is below 1% of the gradient of
    ``scale * L`` alone (which training balanced against the decay), while 1.5 * tau or
    tau / 1.5 leave a third or more of it: a wrong factor (N for n_batches, the 1/2 of the
    squared error, K outputs, sigma^2 or T) would fail. Regression has K=2 outputs.
    """
    likelihood, net_kwargs, laplace_kwargs = WEIGHT_DECAY_CASES[case]
    X, y = wd_data[likelihood]
    net_kwargs = {"optimizer__weight_decay": 0.05, **FROZEN_BODY, **net_kwargs}
    torch.manual_seed(0)
    if likelihood == "classification":
        net = classifier_net(3, hidden=8, **net_kwargs)
        cls = LaplaceClassifier
    else:
        net = regressor_net(2, hidden=8, **net_kwargs)
        cls = LaplaceRegressor
    if case == "CE, SGD, full batch":  # the net is trained inside fit
        laplace = cls(net, prior_precision="weight_decay", random_state=0, **laplace_kwargs)
    else:
        laplace = cls(FrozenEstimator(net.fit(X, y)), prior_precision="weight_decay")
        laplace.set_params(**laplace_kwargs)
    laplace.fit(X, y)
    assert _head_stationarity(laplace, X, y, likelihood) < 0.01
    for factor in (1.5, 1 / 1.5):
        assert _head_stationarity(laplace, X, y, likelihood, factor) > 0.3
    assert laplace.log_marginal_likelihood_value_ == laplace.log_marginal_likelihood()


@pytest.mark.parametrize(
    ("optimizer", "kwargs", "match"),
    [
        (torch.optim.AdamW, {"optimizer__weight_decay": 0.01}, "decoupled weight decay"),
        (
            torch.optim.Adam,
            {"optimizer__weight_decay": 0.01, "optimizer__decoupled_weight_decay": True},
            "decoupled weight decay",
        ),
        (torch.optim.SGD, {}, "without weight decay"),
        (torch.optim.Adam, {"optimizer__weight_decay": 0.0}, "without weight decay"),
    ],
)
def test_weight_decay_mode_refuses_what_implies_no_prior(optimizer, kwargs, match, wd_data):
    X, y = wd_data["classification"]
    net = classifier_net(3, hidden=8, max_epochs=1, optimizer=optimizer, **kwargs).fit(X, y)
    with pytest.raises(ValueError, match=match):
        LaplaceClassifier(FrozenEstimator(net), prior_precision="weight_decay").fit(X, y)


# ---------------------------------------------------------------- a badly scaled grid
@pytest.mark.parametrize(
    ("kind", "structure"),
    [
        ("classifier", "kron"),
        ("classifier", "diag"),
        ("classifier", "full"),
        ("regressor", "kron"),
    ],
)
def test_a_grid_of_unusable_priors_fails_loudly(kind, structure, noisy_cls_data, noisy_reg_data):
    """Subnormal prior precisions: every fit fails with our message, GridSearchCV raises.

    Without the check the diag posterior "worked" (its eigenvalues are positive) and the
    kron one failed on some folds only, depending on round-off: a silent pick.
    """
    if kind == "classifier":
        (X, y), net = noisy_cls_data, classifier_net(3, max_epochs=2)
        laplace, scoring = LaplaceClassifier, "neg_log_loss"
    else:
        (X, y), net = noisy_reg_data, regressor_net(1, max_epochs=2)
        laplace, scoring = LaplaceRegressor, neg_gaussian_nll
    net.fit(X, y if kind == "classifier" else y[:, None])
    search = GridSearchCV(
        laplace(FrozenEstimator(net), hessian_structure=structure),
        {"prior_precision": [1e-320, 1e-315]},
        cv=3,
        scoring=scoring,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        with pytest.raises(ValueError, match="All the 6 fits failed") as info:
            search.fit(X, y)
    assert "the prior variance 1 / prior_precision overflows float64" in str(info.value)

    # one usable candidate: the others fail with a warning, and it is picked
    search.set_params(param_grid={"prior_precision": [1e-320, 1.0]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(X, y)
    assert any(
        issubclass(w.category, FitFailedWarning) and "overflows float64" in str(w.message)
        for w in caught
    )
    assert search.best_params_ == {"prior_precision": 1.0}


@pytest.mark.filterwarnings("ignore:The held-out rows are fitted best")
@pytest.mark.parametrize("spill", [True, False], ids=["file", "no-file"])
@pytest.mark.parametrize("structure", ["kron", "diag"])
def test_held_out_projections_over_the_budget_are_computed_once(
    structure, spill, noisy_cls_data, overconfident_net, monkeypatch
):
    """Held-out projections too large to keep in memory go to a temporary file: one pass
    over the held-out rows for the whole tuning (there were 47, one per evaluation), and
    the tuned values and predictions of the kept projections, to the bit. Without a file
    (no disk space), each evaluation projects the rows again, to the same values."""
    from sklaplace.approximations import LastLayer, LayerWise
    from sklaplace.tuning import kept

    X, y = noisy_cls_data
    X_val, y_val = X[100:300], y[100:300]
    frozen = FrozenEstimator(overconfident_net)
    passes = []
    for cls in (LastLayer, LayerWise):
        original = cls._project_batches

        def counted(self, view, X, layers, original=original):
            passes.append(len(X))
            return original(self, view, X, layers)

        monkeypatch.setattr(cls, "_project_batches", counted)
    results = []
    for budget in (kept.TUNING_BYTES, 0):
        monkeypatch.setattr(kept, "TUNING_BYTES", budget)
        if budget == 0 and not spill:
            monkeypatch.setattr(kept._Spill, "open", classmethod(lambda cls: None))
        passes.clear()
        for subset in ("last_layer", "all"):
            with sklaplace.config_context(cache_bytes=0):  # every pass runs
                clf = LaplaceClassifier(
                    frozen, subset_of_weights=subset, hessian_structure=structure,
                    prior_precision="holdout", calibration="temperature", batch_size=64,
                ).fit(X[:100], y[:100], X_val=X_val, y_val=y_val)  # fmt: skip
                results.append((clf.prior_precision_, clf.predict_proba(X[300:])))
        held_out = passes.count(len(X_val))
        if budget == 0 and not spill:
            assert held_out > 20  # one per evaluation
        else:
            assert held_out == 2  # once per fit
    for (p_kept, proba_kept), (p_other, proba_other) in zip(results[:2], results[2:], strict=True):
        np.testing.assert_array_equal(p_other, p_kept)
        np.testing.assert_array_equal(proba_other, proba_kept)
