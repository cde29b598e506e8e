"""The ensembles' mixture step (issue 21, item 3): shared factors on the members' tuned
prior precisions (and noise stds) chosen for the mixture's held-out log-likelihood,
against direct float64 computations from the members' own predictions."""

import math

import numpy as np
import pytest
import torch
from _nets import TanhMLP64
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetClassifier, NeuralNetRegressor
from torch import nn

from sklaplace import (
    LaplaceClassifier,
    LaplaceEnsembleClassifier,
    LaplaceEnsembleRegressor,
    LaplaceRegressor,
)
from sklaplace.fitting.holdout import halves
from sklaplace.tuning import mixture as mix

EPS = np.finfo(np.float64).eps


class Net64(TanhMLP64):
    """A small float64 MLP."""

    def __init__(self, n_in=4, n_out=3, hidden=16):
        super().__init__(n_in, n_out, hidden)


def _frozen(net, X, y, seed):
    torch.manual_seed(seed)
    return FrozenEstimator(clone(net).fit(X, y))


@pytest.fixture(scope="module")
def cls_case():
    """Five float64 nets (own seeds, over-fitted on 200 rows of 4 overlapping classes):
    members that disagree, so the mixture of members each tuned alone is under-confident;
    400 unseen rows."""
    X, y = make_classification(
        n_samples=600, n_features=6, n_informative=4, n_redundant=0, n_classes=4,
        class_sep=0.6, flip_y=0.05, random_state=1,
    )  # fmt: skip
    net = NeuralNetClassifier(
        Net64, module__n_in=6, module__n_out=4, module__hidden=32, max_epochs=300, lr=0.2,
        criterion=nn.CrossEntropyLoss, train_split=None, verbose=0, batch_size=32,
    )  # fmt: skip
    tr, va = slice(0, 200), slice(200, 600)
    nets = [(f"m{i}", _frozen(net, X[tr], y[tr], i)) for i in range(5)]
    return nets, X[tr], y[tr], X[va], y[va]


@pytest.fixture(scope="module")
def reg_case():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(400, 1))
    y = np.sin(2 * X[:, 0]) + 0.2 * rng.normal(size=400)
    net = NeuralNetRegressor(
        Net64, module__n_in=1, module__n_out=1, module__hidden=32, max_epochs=200,
        lr=0.05, train_split=None, verbose=0, batch_size=16,
    )  # fmt: skip
    tr, va = slice(0, 60), slice(60, 400)
    nets = [(f"m{i}", _frozen(net, X[tr], y[tr, None], i)) for i in range(3)]
    return nets, X[tr], y[tr], X[va], y[va]


def _cls_rows(members, X_val, y_val):
    """Each member's log predictive probability of each unseen label, (k, m), from its
    own predict_log_proba (the probit predictive tuning scores with)."""
    return np.stack([m.predict_log_proba(X_val)[np.arange(len(y_val)), y_val] for m in members])


def _mixed(rows):
    return float((logsumexp(rows, axis=0) - math.log(len(rows))).sum())


def _member_rows(ens, singles, X, y):
    """The module's per-member rows at factors on the members' OWN tuning (each member's
    single estimator fitted alone on the same rows: its prior, noise and head)."""
    out = []
    for m, single in zip(ens.estimators_, singles, strict=True):
        rows = mix.MemberRows(m._fitted, X, y)
        rows.hyper = single._fitted.hyper
        out.append(rows)
    return out


def _singles(cls, nets, X, y, X_val, y_val, **kw):
    return [cls(n, random_state=0, **kw).fit(X, y, X_val=X_val, y_val=y_val) for _, n in nets]


def _objective(rows, c, d=1.0):
    return float(mix.mixture_values([r.values([c], d).numpy() for r in rows])[0])


# ---------------------------------------------------------------- classification
def test_classifier_mixture_step_beats_per_member_tuning(cls_case):
    """FAILS on per-member tuning: the mixture's held-out log-likelihood (from the
    ensemble's own predict_log_proba) is strictly above the mixture of the single
    estimators, each tuned alone on the same rows."""
    nets, X, y, X_val, y_val = cls_case
    ens = LaplaceEnsembleClassifier(nets, calibration=None, random_state=0)
    ens.fit(X, y, X_val=X_val, y_val=y_val)
    singles = [
        LaplaceClassifier(n, calibration=None, random_state=0).fit(X, y, X_val=X_val, y_val=y_val)
        for _, n in nets
    ]
    own = _mixed(_cls_rows(singles, X_val, y_val))
    mixed = float(ens.predict_log_proba(X_val)[np.arange(len(y_val)), y_val].sum())
    assert ens.prior_shift_ != 1.0
    # the gain asked for: more than the float64 round-off of the two sums (|sum| m eps)
    assert mixed - own > 10 * len(y_val) * EPS * abs(own)
    for m, s in zip(ens.estimators_, singles, strict=True):
        np.testing.assert_allclose(
            m.prior_precision_, mix.shifted(s.prior_precision_, ens.prior_shift_), rtol=4 * EPS
        )


def test_classifier_objective_is_the_mixture_of_members_predictions(cls_case):
    """The module's objective at the chosen prior equals the members' own
    predict_log_proba mixed with logsumexp (an independent float64 path: the predictive
    through the net's forward pass and the posterior's moments per batch)."""
    nets, X, y, X_val, y_val = cls_case
    ens = LaplaceEnsembleClassifier(nets, calibration=None, random_state=0)
    ens.fit(X, y, X_val=X_val, y_val=y_val)
    direct = _cls_rows(ens.estimators_, X_val, y_val)
    singles = _singles(LaplaceClassifier, nets, X, y, X_val, y_val, calibration=None)
    rows = _member_rows(ens, singles, X_val, y_val)
    module = np.stack([r.values([ens.prior_shift_]).numpy()[0] for r in rows])
    # per row: the same probit formula from moments computed in two orders of summation
    # (float64 round-off of a few hundred products, relative 1e3 eps of each term)
    np.testing.assert_allclose(module, direct, rtol=1e3 * EPS, atol=1e3 * EPS)
    assert _objective(rows, ens.prior_shift_) == pytest.approx(
        _mixed(direct), rel=1e3 * EPS, abs=1e3 * EPS
    )


def test_chosen_prior_factor_maximises_on_a_fine_grid(cls_case):
    nets, X, y, X_val, y_val = cls_case
    ens = LaplaceEnsembleClassifier(nets, calibration=None, random_state=0)
    ens.fit(X, y, X_val=X_val, y_val=y_val)
    singles = _singles(LaplaceClassifier, nets, X, y, X_val, y_val, calibration=None)
    rows = _member_rows(ens, singles, X_val, y_val)
    c = ens.prior_shift_
    best = _objective(rows, c)
    # the factors the search may reach (every member's prior in the tuned range)
    taus = np.concatenate([r.hyper.prior_precision for r in rows])
    low, high = mix.TAU_RANGE[0] / taus.max(), mix.TAU_RANGE[1] / taus.min()
    fine = np.exp(np.linspace(math.log(low), math.log(high), 801))
    values = mix.mixture_values([r.values(fine).numpy() for r in rows])
    # Brent's bounded search stops within 2 (sqrt(eps) |t| + XATOL / 3) of the optimum in
    # t = log c; the objective there is below its maximum by at most L'' dt^2 / 2 (L''
    # from a central difference at the chosen point), plus the sums' round-off
    h = 1e-2
    second = (
        _objective(rows, c * math.exp(h)) - 2 * best + _objective(rows, c * math.exp(-h))
    ) / h**2
    dt = 2 * (math.sqrt(EPS) * abs(math.log(c)) + mix.XATOL / 3)
    tol = 0.5 * abs(second) * dt**2 + 1e3 * EPS * abs(best)
    assert values.max() <= best + tol
    assert best >= _objective(rows, 1.0)  # never below the members' own tuning


def test_no_step_for_one_member_numeric_prior_or_rows_not_shared(cls_case):
    nets, X, y, X_val, y_val = cls_case
    one = LaplaceEnsembleClassifier(nets[:1], calibration=None, random_state=0)
    one.fit(X, y, X_val=X_val, y_val=y_val)
    single = LaplaceClassifier(nets[0][1], calibration=None, random_state=0)
    single.fit(X, y, X_val=X_val, y_val=y_val)
    assert one.prior_shift_ == 1.0
    np.testing.assert_array_equal(one.predict_proba(X_val), single.predict_proba(X_val))
    fixed = LaplaceEnsembleClassifier(nets, prior_precision=3.0, calibration=None)
    fixed.fit(X, y)
    assert fixed.prior_shift_ == 1.0
    np.testing.assert_array_equal(fixed.prior_precision_, 3.0)
    # no member keeps the rows it tuned on
    assert all("_tuning_rows" not in m.__dict__ for m in one.estimators_ + fixed.estimators_)


def test_clone_and_refit_are_unaffected(cls_case):
    nets, X, y, X_val, y_val = cls_case
    ens = LaplaceEnsembleClassifier(nets, calibration=None, random_state=0)
    ens.fit(X, y, X_val=X_val, y_val=y_val)
    copy = clone(ens)
    assert not hasattr(copy, "prior_shift_")
    copy.fit(X, y, X_val=X_val, y_val=y_val)
    assert copy.prior_shift_ == ens.prior_shift_
    np.testing.assert_array_equal(copy.predict_proba(X_val), ens.predict_proba(X_val))


# ---------------------------------------------------------------- regression
def _reg_rows(members, X_val, y_val):
    """Each member's Gaussian log density of each unseen target, from its own
    predict(return_std=True) (the std with the noise)."""
    out = []
    for m in members:
        mean, std = m.predict(X_val, return_std=True)
        out.append(norm.logpdf(y_val, mean, std))
    return np.stack(out)


def test_regressor_objective_and_noise_factor(reg_case):
    """The module's objective at prior and noise factors equals the Gaussian mixture of
    the members' own predict(return_std=True) with those values set (an independent
    float64 path); the noise factor tune returns is at its optimum along its coordinate
    within the refinement's tolerance; the step never loses against the members' own."""
    nets, X, y, X_val, y_val = reg_case
    singles = _singles(LaplaceRegressor, nets, X, y, X_val, y_val, interval="gaussian")
    rows = [mix.MemberRows(s._fitted, X_val, y_val) for s in singles]
    c, d, value = mix.tune(rows, prior=True, noise=True)
    assert value >= _objective(rows, 1.0, 1.0)
    for cc, dd in ((c, d), (3.0, 0.7)):
        for s in singles:
            s.set_params(
                prior_precision=mix.shifted(s._fitted.hyper.prior_precision, cc),
                sigma_noise=s._fitted.hyper.sigma_noise * dd,
            )
        direct = _mixed(_reg_rows(singles, X_val, y_val))
        assert _objective(rows, cc, dd) == pytest.approx(direct, rel=1e3 * EPS, abs=1e3 * EPS)
        for s in singles:
            s.set_params(prior_precision="holdout", sigma_noise="holdout")
    h = 1e-2
    second = (
        _objective(rows, c, d * math.exp(h)) - 2 * value + _objective(rows, c, d * math.exp(-h))
    ) / h**2
    dt = 2 * (math.sqrt(EPS) * abs(math.log(d)) + mix.XATOL / 3)
    tol = 0.5 * abs(second) * dt**2 + 1e3 * EPS * abs(value)
    along = [_objective(rows, c, f) for f in d * np.exp(np.linspace(-1.0, 1.0, 201))]
    assert max(along) <= value + tol


def test_regressor_conformal_is_calibrated_after_the_mixture_step(reg_case, monkeypatch):
    """The conformal scores are the mixture's at the hyper-parameters the mixture step
    set (factors forced here, to see the order)."""
    nets, X, y, X_val, y_val = reg_case
    monkeypatch.setattr(mix, "choose", lambda *a, **k: (0.5, 0.7))
    ens = LaplaceEnsembleRegressor(nets, interval="conformal", random_state=0)
    ens.fit(X, y, X_val=X_val, y_val=y_val)
    assert (ens.prior_shift_, ens.noise_shift_) == (0.5, 0.7)
    _, cal = halves(len(y_val), ens.estimators_[0].random_state)
    mean, std = ens.predict(X_val[cal], return_std=True)
    scores = np.sort(np.abs(y_val[cal] - mean) / std)
    np.testing.assert_allclose(ens._conformal.scores[:, 0], scores, rtol=1e3 * EPS)


def test_regressor_step_kept_out_when_the_gain_does_not_cross_fit(reg_case):
    """Members each tuned alone are already close to the mixture's optimum here: the
    gain of the tuned factors on all the rows does not survive cross-fitting, and the
    members keep their own tuning (the single estimators' values, exactly)."""
    nets, X, y, X_val, y_val = reg_case
    ens = LaplaceEnsembleRegressor(nets, interval="gaussian", random_state=0)
    ens.fit(X, y, X_val=X_val, y_val=y_val)
    singles = _singles(LaplaceRegressor, nets, X, y, X_val, y_val, interval="gaussian")
    rows = [mix.MemberRows(s._fitted, X_val, y_val) for s in singles]
    c, d, value = mix.tune(rows, prior=True, noise=True)
    assert (c, d) != (1.0, 1.0) and value > _objective(rows, 1.0, 1.0)  # a gain in-sample
    assert (ens.prior_shift_, ens.noise_shift_) == (1.0, 1.0)  # that does not cross-fit
    np.testing.assert_array_equal(ens.sigma_noise_, [s.sigma_noise_ for s in singles])
    np.testing.assert_array_equal(
        ens.prior_precision_, np.stack([s.prior_precision_ for s in singles])
    )


def test_grids_hold_the_members_own_values():
    """Each search starts from the members' own tuning, a point of its grid (exactly 1.0:
    the factor kept when nothing beats it)."""
    assert 1.0 in mix.PRIOR_GRID and 1.0 in mix.NOISE_GRID


# ---------------------------------------------------------------- cost (issue 21, item 5)
class _Direct(mix.MemberRows):
    """The step's reference path: every point by :meth:`MemberRows.values` (the scale at
    each noise std, one call per point), nothing kept."""

    def points(self, points):
        return np.concatenate([self.values([c], d).numpy() for c, d in points])


def _ensemble_rows(kind, case, **kw):
    nets, X, y, X_val, y_val = case
    ens = kind(nets, random_state=0, **kw).fit(X, y, X_val=X_val, y_val=y_val)
    return ens, [mix.MemberRows(m._fitted, X_val, y_val) for m in ens.estimators_], y_val


def test_batched_points_equal_direct_values(reg_case):
    """One call for many (prior factor, noise factor) points, the noise as a rescaled
    prior (``MemberRows.pairs``), equals each point computed at its own noise std,
    including factors whose shifted prior is clipped to ``TAU_RANGE``."""
    _, rows, _ = _ensemble_rows(LaplaceEnsembleRegressor, reg_case, interval="gaussian")
    # the step is not kept here: each member's fitted hyper is its own tuning
    points = [(c, d) for c in (1e-9, 0.03, 1.0, 7.0, 1e9) for d in (0.1, 0.45, 1.0, 3.2, 10.0)]
    for r in rows:
        batched = r.pairs(points)
        direct = np.concatenate([r.values([c], d).numpy() for c, d in points])
        np.testing.assert_allclose(
            batched, direct, rtol=1e3 * EPS, atol=1e3 * EPS * np.abs(direct).max()
        )


@pytest.mark.parametrize("which", ["cls", "reg"])
def test_choose_equals_the_direct_path(which, cls_case, reg_case, monkeypatch):
    """The kept points and grid-only folds choose what the reference path (every point
    computed directly, folds refined as the final tuning) chooses: the same decision
    (classifier: kept; regressor: not kept) and the same factors to the refinement's
    tolerance."""
    kind, case = (
        (LaplaceEnsembleClassifier, cls_case)
        if which == "cls"
        else (LaplaceEnsembleRegressor, reg_case)
    )
    kw = {} if which == "cls" else {"interval": "gaussian"}
    nets, X, y, X_val, y_val = case
    singles_kind = LaplaceClassifier if which == "cls" else LaplaceRegressor
    singles = _singles(singles_kind, nets, X, y, X_val, y_val, **kw)
    noise = which == "reg"
    new = mix.choose(
        [mix.MemberRows(s._fitted, X_val, y_val) for s in singles], prior=True, noise=noise,
        random_state=0,
    )  # fmt: skip
    monkeypatch.setattr(mix, "REFINE_FOLDS", True)
    ref = mix.choose(
        [_Direct(s._fitted, X_val, y_val) for s in singles], prior=True, noise=noise,
        random_state=0,
    )  # fmt: skip
    assert (new == (1.0, 1.0)) == (ref == (1.0, 1.0)) == (which == "reg")
    np.testing.assert_allclose(np.log(new), np.log(ref), rtol=0, atol=mix.XATOL)
    monkeypatch.setattr(mix, "REFINE_FOLDS", False)
    ens = kind(nets, random_state=0, **kw).fit(X, y, X_val=X_val, y_val=y_val)
    assert (ens.prior_shift_, getattr(ens, "noise_shift_", 1.0)) == new


@pytest.mark.parametrize("which", ["cls", "reg"])
def test_folds_cost_little_beside_the_members_fits(which, cls_case, reg_case, monkeypatch):
    """FAILS with a grid per fold and round, refinements in the folds, or a noise grid
    one point at a time: the cross-fitting's ``moments_grid`` contractions, per member,
    are at most one for the members' own values plus one per coordinate search of each
    fold (each grid in one call; here every member's unseen rows are one projection
    batch and each grid one contraction), whatever the folds' points."""
    kind, case = (
        (LaplaceEnsembleClassifier, cls_case)
        if which == "cls"
        else (LaplaceEnsembleRegressor, reg_case)
    )
    kw = {} if which == "cls" else {"interval": "gaussian"}
    nets, X, y, X_val, y_val = case
    count = {"grid": 0, "at_final": None}
    single = LaplaceClassifier if which == "cls" else LaplaceRegressor
    fitted_kind = type(
        single(nets[0][1]).fit(X, y, X_val=X_val, y_val=y_val)._fitted.approximation
    )
    original = fitted_kind.moments_grid

    def counted(self, *args, **kwargs):
        count["grid"] += 1
        return original(self, *args, **kwargs)

    tune = mix.tune

    def final(members, w=None, **kwargs):
        if kwargs.get("subset") is None and count["at_final"] is None:
            count["at_final"] = count["grid"]
        return tune(members, w, **kwargs)

    starts = {}
    choose = mix.choose

    def start(members, *args, **kwargs):
        assert all(len(m.projections.bounds) == 2 for m in members)  # one batch of rows
        starts["grid"] = count["grid"]
        return choose(members, *args, **kwargs)

    monkeypatch.setattr(fitted_kind, "moments_grid", counted)
    monkeypatch.setattr(mix, "tune", final)
    monkeypatch.setattr(mix, "choose", start)
    ens = kind(nets, random_state=0, **kw).fit(X, y, X_val=X_val, y_val=y_val)
    end = count["grid"] if count["at_final"] is None else count["at_final"]
    searches = (2 * mix._ROUNDS) if which == "reg" else 1
    assert end - starts["grid"] <= len(nets) * (1 + mix.N_FOLDS * searches)
    assert (ens.prior_shift_ != 1.0) == (which == "cls")


def test_regressor_conformal_reuses_the_members_moments_when_not_kept(reg_case, monkeypatch):
    """FAILS when the calibration recomputes the members' moments: with the mixture step
    not kept, each member's calibration moments from its own fit are the mixture's
    (``y_moments`` once per member in the whole fit), and the scores are still the
    mixture's of the members' own predictions."""
    from sklaplace import prediction

    nets, X, y, X_val, y_val = reg_case
    calls = {"n": 0}
    original = prediction.y_moments

    def counted(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(prediction, "y_moments", counted)
    ens = LaplaceEnsembleRegressor(nets, interval="conformal", random_state=0)
    ens.fit(X, y, X_val=X_val, y_val=y_val)
    assert (ens.prior_shift_, ens.noise_shift_) == (1.0, 1.0)
    assert calls["n"] == len(nets)
    monkeypatch.setattr(prediction, "y_moments", original)
    _, cal = halves(len(y_val), ens.estimators_[0].random_state)
    mean, std = ens.predict(X_val[cal], return_std=True)
    scores = np.sort(np.abs(y_val[cal] - mean) / std)
    np.testing.assert_allclose(ens._conformal.scores[:, 0], scores, rtol=1e3 * EPS)
    assert all("_calibration_moments" not in m.__dict__ for m in ens.estimators_)
