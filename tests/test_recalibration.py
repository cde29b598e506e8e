"""The recalibration head (``calibration``): exact special cases, shrinkage, cross-fitting.

The head maps the Gaussian over the logits exactly, ``a f + b ~ N(a mean + b, a^2 cov)``,
before the link. With (numerically) zero posterior variance and the shrinkage off it is
Platt scaling (one logit) or temperature scaling (``b = 0``), fitted here independently
with scipy on the same float64 logits.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import log_expit, log_softmax
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier

from sklaplace import LaplaceClassifier
from sklaplace.links import affine, mc_log_link
from sklaplace.tuning import recalibration as _recalibration

F64 = torch.float64
EPS = np.finfo(np.float64).eps


class Linear(torch.nn.Module):
    """A logistic-regression net, ``f = W x + c``."""

    def __init__(self, n_in=4, n_out=3):
        super().__init__()
        self.out = torch.nn.Linear(n_in, n_out)

    def forward(self, X):
        return self.out(X)


def _linear_net(weight, bias, binary=False):
    """A frozen, float64 net whose logits are ``X @ weight.T + bias`` (no training)."""
    n_out, n_in = weight.shape
    cls = NeuralNetBinaryClassifier if binary else NeuralNetClassifier
    extra = {} if binary else {"criterion": torch.nn.CrossEntropyLoss, "classes": range(n_out)}
    net = cls(Linear, module__n_in=n_in, module__n_out=n_out, train_split=None, **extra)
    net.initialize()
    net.module_.double()
    with torch.no_grad():
        net.module_.out.weight.copy_(torch.as_tensor(weight))
        net.module_.out.bias.copy_(torch.as_tensor(bias))
    return net


def _logistic_rows(weight, bias, n, seed, binary=False):
    """Rows whose labels are drawn from the linear model itself (it is calibrated)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, weight.shape[1]))
    f = X @ weight.T + bias
    if binary:
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-f[:, 0]))).astype(np.int64)
    else:
        p = np.exp(log_softmax(f, axis=1))
        y = (rng.uniform(size=(n, 1)) > np.cumsum(p, axis=1)).sum(1)
    return X, y


W3 = np.array([[1.5, -1.0, 0.5, 0.0], [-0.5, 1.0, 0.0, 1.0], [0.0, 0.0, -1.0, -1.0]])
W1 = np.array([[2.0, -1.0, 0.5, 1.0]])


def test_the_gaussian_map_is_exact():
    """``affine`` gives ``N(a mean + b, a^2 cov)``: Monte Carlo moments of the link's input
    (here the log-normal mean ``E exp(g) = exp(mean + var / 2)``) against the closed form,
    within 5 Monte Carlo standard errors."""
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(4, 3, generator=g, dtype=F64)
    root = torch.randn(4, 3, 3, generator=g, dtype=F64) * 0.3
    cov = root @ root.transpose(1, 2)
    a, b = 0.7, torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    m2, c2 = affine(mean, cov, a, b)
    torch.testing.assert_close(m2, a * mean + b, rtol=0, atol=0)
    torch.testing.assert_close(c2, a**2 * cov, rtol=0, atol=0)
    n = 200_000
    log_mc = mc_log_link(lambda f: f, m2, c2, n, torch.Generator().manual_seed(1))
    var = torch.diagonal(c2, dim1=1, dim2=2)
    exact = m2 + var / 2
    # the relative standard error of a mean of n log-normal draws
    se = torch.sqrt((torch.exp(var) - 1) / n)
    assert (torch.abs(torch.exp(log_mc - exact) - 1) <= 5 * se).all()


def _zero_variance_fit(net, X, y, X_val, y_val, calibration, monkeypatch):
    monkeypatch.setattr(_recalibration, "SCALE_STD", math.inf)
    monkeypatch.setattr(_recalibration, "BIAS_STD", math.inf)
    return LaplaceClassifier(
        FrozenEstimator(net), prior_precision=1e12, calibration=calibration
    ).fit(X, y, X_val=X_val, y_val=y_val)


def _polished(loss, x0):
    """scipy's BFGS on ``loss``, then Newton steps with a finite-difference-free Hessian
    from the BFGS estimate: the reference optimum to float64 round-off."""
    res = minimize(loss, x0, method="BFGS", jac=True, options={"gtol": 1e-13, "maxiter": 500})
    return res.x


def test_zero_variance_bias_head_on_one_logit_is_platt_scaling(monkeypatch):
    """One logit, the prior precision so large that the posterior variance vanishes
    (1e-12 relative) and the shrinkage off: the head is Platt scaling, a logistic regression
    of the labels on the net's logit, fitted here with scipy on the same rows."""
    net = _linear_net(W1, np.array([1.0]), binary=True)  # its intercept is off by 1
    X, y = _logistic_rows(W1, np.zeros(1), 300, 0, binary=True)
    X_val, y_val = _logistic_rows(W1, np.zeros(1), 200, 1, binary=True)
    clf = _zero_variance_fit(net, X, y, X_val, y_val, "bias_temperature", monkeypatch)
    f = X_val @ W1[0] + 1.0
    s = 2.0 * y_val - 1

    def loss(x):
        z = s * (x[0] * f + x[1])
        p = np.exp(log_expit(-z))
        return -log_expit(z).sum(), np.array([-(s * p * f).sum(), -(s * p).sum()])

    a, b = _polished(loss, np.array([1.0, 0.0]))
    assert clf.calibration_ == "bias_temperature"
    # optimum of a smooth, strongly convex function: parameters to about sqrt(eps)
    np.testing.assert_allclose(
        [clf.calibration_scale_, clf.calibration_bias_[0]], [a, b], rtol=1e-7, atol=1e-7
    )
    X_new, _ = _logistic_rows(W1, np.zeros(1), 50, 2, binary=True)
    z = a * (X_new @ W1[0] + 1.0) + b
    want = np.c_[np.exp(log_expit(-z)), np.exp(log_expit(z))]
    # probabilities: the parameters' error, plus the 1e-12 variance left by the prior
    np.testing.assert_allclose(clf.predict_proba(X_new), want, rtol=1e-7, atol=1e-9)


def test_zero_variance_temperature_head_is_temperature_scaling(monkeypatch):
    """Several logits, no bias: the head is temperature scaling on the net's logits."""
    net = _linear_net(2.5 * W3, np.zeros(3))  # over-confident: logits 2.5 times too large
    X, y = _logistic_rows(W3, np.zeros(3), 300, 0)
    X_val, y_val = _logistic_rows(W3, np.zeros(3), 200, 1)
    clf = _zero_variance_fit(net, X, y, X_val, y_val, "temperature", monkeypatch)
    f = X_val @ (2.5 * W3).T

    def loss(x):
        lp = log_softmax(x[0] * f, axis=1)
        p = np.exp(lp)
        grad = -(f[np.arange(len(y_val)), y_val] - (p * f).sum(1)).sum()
        return -lp[np.arange(len(y_val)), y_val].sum(), np.array([grad])

    (a,) = _polished(loss, np.array([1.0]))
    assert clf.calibration_ == "temperature"
    np.testing.assert_allclose(clf.calibration_scale_, a, rtol=1e-7)
    assert abs(a - 0.4) < 0.1  # it undoes the factor 2.5
    np.testing.assert_array_equal(clf.calibration_bias_, np.zeros(3))
    X_new, _ = _logistic_rows(W3, np.zeros(3), 50, 2)
    want = np.exp(log_softmax(a * X_new @ (2.5 * W3).T, axis=1))
    np.testing.assert_allclose(clf.predict_proba(X_new), want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("calibration", ["temperature", "bias_temperature"])
def test_shrinkage_keeps_error_free_rows_from_an_edge(calibration, monkeypatch):
    """Unseen rows the net gets all right ask for ever sharper probabilities: without the
    head's prior the scale runs to the edge of its search box (the old logit temperature
    went to the bottom of its grid, a scale of 100); with it, it stays within a factor of
    about e^1.5 of 1 (prior std 1 on log a, against 12 rows' pull)."""
    net = _linear_net(W3, np.zeros(3))
    X, y = _logistic_rows(W3, np.zeros(3), 300, 0)
    X_val, _ = _logistic_rows(W3, np.zeros(3), 400, 1)
    right = np.argmax(X_val @ W3.T, axis=1)  # labels the net gets right, every one
    X_val, y_val = X_val[:12], right[:12]

    def fit():
        return LaplaceClassifier(FrozenEstimator(net), calibration=calibration).fit(
            X, y, X_val=X_val, y_val=y_val
        )

    clf = fit()
    assert 0.5 < clf.calibration_scale_ < 5.0
    assert np.abs(clf.calibration_bias_).max() < 2.0
    monkeypatch.setattr(_recalibration, "SCALE_STD", math.inf)
    monkeypatch.setattr(_recalibration, "BIAS_STD", math.inf)
    assert fit().calibration_scale_ > 100.0  # what the shrinkage prevents: runs off


def test_cross_fitting_is_deterministic_under_random_state():
    """The folds of "auto" come from ``random_state``: two fits agree to the bit; another
    seed draws other folds."""
    net = _linear_net(W3, np.array([0.0, 0.0, 1.0]))
    X, y = _logistic_rows(W3, np.zeros(3), 300, 0)
    X_val, y_val = _logistic_rows(W3, np.zeros(3), 200, 1)
    fits = [
        LaplaceClassifier(FrozenEstimator(net), random_state=seed).fit(
            X, y, X_val=X_val, y_val=y_val
        )
        for seed in (0, 0)
    ]
    assert fits[0].calibration_ == fits[1].calibration_
    assert fits[0].calibration_scale_ == fits[1].calibration_scale_
    np.testing.assert_array_equal(fits[0].calibration_bias_, fits[1].calibration_bias_)
    np.testing.assert_array_equal(fits[0].predict_proba(X_val), fits[1].predict_proba(X_val))
    seen = []
    original = _recalibration.tune

    def spy(*args, subset=None, **kwargs):
        if subset is not None:
            seen.append(tuple(subset))
        return original(*args, subset=subset, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_recalibration, "tune", spy)
        for seed in (0, 0, 1):
            LaplaceClassifier(FrozenEstimator(net), random_state=seed).fit(
                X, y, X_val=X_val, y_val=y_val
            )
    per_fit = len(seen) // 3
    first, again, other = (seen[i * per_fit : (i + 1) * per_fit] for i in range(3))
    assert first == again and first != other


@pytest.mark.parametrize("binary", [False, True])
def test_auto_keeps_no_head_on_a_calibrated_net_and_fixes_an_intercept(binary):
    """ "auto" on a net that is the model the labels were drawn from keeps no head; the
    same net with its output bias shifted gets one with biases, which moves the intercept
    back (and the test log loss down)."""
    W = W1 if binary else W3
    k = W.shape[0]
    X, y = _logistic_rows(W, np.zeros(k), 300, 0, binary)
    X_val, y_val = _logistic_rows(W, np.zeros(k), 600, 1, binary)
    X_new, y_new = _logistic_rows(W, np.zeros(k), 2000, 2, binary)
    fine = LaplaceClassifier(FrozenEstimator(_linear_net(W, np.zeros(k), binary)), random_state=0)
    fine.fit(X, y, X_val=X_val, y_val=y_val)
    assert fine.calibration_ is None
    shift = np.array([2.0]) if binary else np.array([0.0, 0.0, 2.0])
    off = _linear_net(W, shift, binary)
    clf = LaplaceClassifier(FrozenEstimator(off), random_state=0).fit(
        X, y, X_val=X_val, y_val=y_val
    )
    assert clf.calibration_ == "bias_temperature"
    bias = clf.calibration_bias_
    assert (bias - bias.mean() if not binary else bias)[-1] < -1.0  # undoes most of the +2
    none = LaplaceClassifier(FrozenEstimator(off), calibration=None).fit(
        X, y, X_val=X_val, y_val=y_val
    )

    def loss(model):
        p = model.predict_proba(X_new)
        return -np.log(p[np.arange(len(y_new)), y_new]).mean()

    assert loss(clf) < loss(none)


def test_without_unseen_rows_the_head_is_the_identity():
    """No unseen rows: "auto" keeps no head without a word, and the probabilities are the
    net's own; an explicit head says it cannot be tuned."""
    net = _linear_net(W3, np.array([0.0, 0.0, 2.0]))
    X, y = _logistic_rows(W3, np.zeros(3), 300, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
    assert clf.calibration_ is None and clf.calibration_scale_ == 1.0
    np.testing.assert_array_equal(clf.calibration_bias_, np.zeros(3))
    explicit = LaplaceClassifier(
        FrozenEstimator(net), prior_precision=1.0, calibration="temperature"
    )
    with pytest.warns(UserWarning, match="No rows the net has not seen.*'temperature'"):
        explicit.fit(X, y)
    with pytest.warns(UserWarning, match="No rows the net has not seen"):
        default = LaplaceClassifier(FrozenEstimator(net)).fit(X, y)
    with pytest.warns(UserWarning, match="No rows the net has not seen"):
        prior_only = LaplaceClassifier(FrozenEstimator(net), calibration=None).fit(X, y)
    np.testing.assert_array_equal(default.predict_proba(X), prior_only.predict_proba(X))
    assert default.calibration_ is None


def test_changing_the_head_after_fit_asks_for_a_new_fit():
    """``calibration`` is a mode, resolved in fit, like "holdout"."""
    net = _linear_net(W3, np.zeros(3))
    X, y = _logistic_rows(W3, np.zeros(3), 200, 0)
    X_val, y_val = _logistic_rows(W3, np.zeros(3), 100, 1)
    clf = LaplaceClassifier(FrozenEstimator(net), calibration="temperature").fit(
        X, y, X_val=X_val, y_val=y_val
    )
    for value in (None, "bias_temperature"):
        clf.set_params(calibration=value)
        with pytest.raises(ValueError, match=r"calibration was changed .*tuning mode"):
            clf.predict_proba(X)
    clf.set_params(calibration="temperature")
    clf.predict_proba(X)
    clf.set_params(prior_precision=3.0)  # a number is read at prediction time, head kept
    assert clf.prior_precision_[0] == 3.0 and clf.calibration_ == "temperature"


def test_logit_temperature_is_deprecated_and_still_works():
    """A number is a fixed temperature head; "holdout" is calibration="temperature"."""
    net = _linear_net(W3, np.zeros(3))
    X, y = _logistic_rows(W3, np.zeros(3), 200, 0)
    X_val, y_val = _logistic_rows(W3, np.zeros(3), 100, 1)
    with pytest.warns(FutureWarning, match="logit_temperature=2.0 is deprecated"):
        clf = LaplaceClassifier(
            FrozenEstimator(net), prior_precision=1e12, logit_temperature=2.0
        ).fit(X, y)
    assert clf.calibration_scale_ == 0.5
    with pytest.warns(FutureWarning, match="1 / calibration_scale_"):
        assert clf.logit_temperature_ == 2.0
    want = np.exp(log_softmax(X @ W3.T / 2, axis=1))
    np.testing.assert_allclose(clf.predict_proba(X), want, rtol=1e-9, atol=1e-12)
    with pytest.warns(FutureWarning, match="use calibration='temperature'"):
        old = LaplaceClassifier(FrozenEstimator(net), logit_temperature="holdout").fit(
            X, y, X_val=X_val, y_val=y_val
        )
    new = LaplaceClassifier(FrozenEstimator(net), calibration="temperature").fit(
        X, y, X_val=X_val, y_val=y_val
    )
    assert old.calibration_scale_ == new.calibration_scale_


def test_auto_takes_no_rows_out_of_an_unfitted_nets_training():
    """An unfitted net with ``train_split=None`` and a numeric prior: "auto" finds no unseen
    rows and keeps none back from the training for itself (the net trains on every row)."""
    X, y = _logistic_rows(W3, np.zeros(3), 200, 0)
    net = NeuralNetClassifier(
        Linear, criterion=torch.nn.CrossEntropyLoss, max_epochs=2, train_split=None, verbose=0
    )
    clf = LaplaceClassifier(net, prior_precision=1.0, random_state=0).fit(X.astype(np.float32), y)
    assert clf.validation_indices_ is None and clf.n_train_ == 200
    assert clf.calibration_ is None


def test_grid_search_over_the_prior_still_works():
    """GridSearchCV over ``prior_precision`` on a frozen net that held no rows out: the
    default head finds no unseen rows in any fold, says nothing, and the prior is chosen
    by the held-out score as before."""
    net = _linear_net(2.5 * W3, np.zeros(3))  # over-confident: the prior matters
    X, y = _logistic_rows(W3, np.zeros(3), 300, 0)
    X_val, y_val = _logistic_rows(W3, np.zeros(3), 200, 1)
    fold = np.r_[np.full(len(y), -1), np.zeros(len(y_val))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = GridSearchCV(
            LaplaceClassifier(FrozenEstimator(net)),
            {"prior_precision": np.logspace(-2, 4, 7)},
            scoring="neg_log_loss",
            cv=PredefinedSplit(fold),
        ).fit(np.r_[X, X_val], np.r_[y, y_val])
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and scores.max() > scores.min() + 1e-3
    assert search.best_estimator_.calibration_ is None


def _overfitted_binary_net(n_rows=300, seed=0):
    """A 6-64-2 softmax MLP trained 300 epochs on 300 rows (about 95 % test accuracy):
    over-confident, as nets trained that long are."""
    from sklearn.datasets import make_classification

    X, y = make_classification(3000, 6, n_informative=5, n_redundant=0, n_classes=2,
                               flip_y=0.03, class_sep=1.5, random_state=1)  # fmt: skip
    X = X.astype(np.float32)
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    net = NeuralNetClassifier(module, criterion=torch.nn.CrossEntropyLoss, lr=0.1,
                              max_epochs=300, train_split=None, verbose=0)  # fmt: skip
    return net.fit(X[:n_rows], y[:n_rows]), X, y


def test_auto_keeps_no_head_when_the_unseen_rows_hold_few_errors():
    """Rows an over-fitted net gets (almost) all right ask for ever sharper probabilities in
    every fold, so cross-fitting alone chose a sharpening head (test log loss up to 1.5x
    the net's) in 3 of 8 draws of 40 rows: "auto" needs ``MIN_ERRORS_AUTO`` rows the net
    gets wrong before it considers a head."""
    net, X, y = _overfitted_binary_net()
    rng = np.random.default_rng(0)
    chosen = []
    for t in range(8):
        idx = 300 + rng.choice(1000, 40, replace=False)
        errors = int((net.predict(X[idx]) != y[idx]).sum())
        assert errors < _recalibration.MIN_ERRORS_AUTO
        clf = LaplaceClassifier(FrozenEstimator(net), random_state=t)
        clf.fit(X[:300], y[:300], X_val=X[idx], y_val=y[idx])
        chosen.append(clf.calibration_)
    assert chosen == [None] * 8


def test_the_prior_edge_warning_leaves_the_head_out():
    """The warning that the widest posterior fits the unseen rows much better than the net
    compares the posterior with the net's own predictions; a temperature head that sharpens
    a healthy net (scale about 2) is no sign that the net is wrong, and used to make it fire
    (quoting 0.29 nats a row where the posterior alone gains 0.06)."""
    from sklearn.datasets import make_classification

    X, y = make_classification(3000, 6, n_informative=4, weights=[0.93, 0.07],
                               n_clusters_per_class=1, class_sep=0.8, random_state=5)  # fmt: skip
    X = X.astype(np.float32)

    class Logit(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = torch.nn.Sequential(
                torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)
            )

        def forward(self, x):
            return self.m(x).squeeze(-1)

    torch.manual_seed(0)
    net = NeuralNetBinaryClassifier(Logit, lr=0.1, max_epochs=30, train_split=None, verbose=0)
    net.fit(X[:600], y[:600].astype(np.float32))
    idx = np.random.default_rng(0).choice(np.arange(600, 2000), 40, replace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = LaplaceClassifier(FrozenEstimator(net), calibration="temperature", random_state=0)
        clf.fit(X[:600], y[:600], X_val=X[idx], y_val=y[idx])
    assert clf.calibration_scale_ > 1.5  # the head sharpens
    assert clf.prior_precision_[0] == pytest.approx(1e-4)  # at the bottom of the grid


def test_bias_heads_are_bounded_in_the_number_of_outputs(monkeypatch):
    """A bias head's exact Newton steps take a Hessian over 1 + n_outputs parameters through
    every unseen row and logit at once: with 1,000 classes the tuning ran out of 24 GB.
    Beyond ``MAX_BIAS_OUTPUTS`` "auto" does not consider biases, and asking for them raises
    with the alternatives (here the bound is lowered to 2, below the 3-class net's)."""
    monkeypatch.setattr(_recalibration, "MAX_BIAS_OUTPUTS", 2)
    W, k = W3, W3.shape[0]
    X, y = _logistic_rows(W, np.zeros(k), 300, 0, False)
    X_val, y_val = _logistic_rows(W, np.zeros(k), 600, 1, False)
    off = _linear_net(W, np.array([0.0, 0.0, 2.0]), False)  # "auto" took biases above
    clf = LaplaceClassifier(FrozenEstimator(off), random_state=0).fit(
        X, y, X_val=X_val, y_val=y_val
    )
    assert clf.calibration_ != "bias_temperature"
    with pytest.raises(ValueError, match="'temperature', or 'auto'"):
        LaplaceClassifier(FrozenEstimator(off), calibration="bias_temperature").fit(
            X, y, X_val=X_val, y_val=y_val
        )


def _check_head_derivatives(mean, var, link, negative_ll, kind, n_outputs, seed):
    """``HeadLikelihood``'s value, gradient and Hessian of the head's negative log posterior
    against autograd through ``negative_ll(a, b)`` (minus the summed log-likelihood), at a
    random ``x = (log a, b)``: a scale away from 1, biases away from 0. A wrong or missing
    term is off by order one; round-off is bounded by the rows' sum: each entry sums
    ``m c`` terms of order one, each to a few ulps."""
    n = 1 + (n_outputs if kind == "bias_temperature" else 0)
    x = 0.7 * torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    objective = _recalibration._closed_form(
        _recalibration.HeadLikelihood(mean, var, link), kind, shrink=True
    )
    value, derivatives = objective(x)
    grad, hess = derivatives()

    def negative(x):
        return negative_ll(*_recalibration._unpack(x, kind)) - _recalibration.log_prior(x)

    xg = x.clone().requires_grad_(True)
    (want_grad,) = torch.autograd.grad(negative(xg), xg)
    want_hess = torch.autograd.functional.hessian(negative, x)
    tol = 16 * mean.numel() * EPS
    assert value == pytest.approx(float(negative(x)), rel=tol)
    torch.testing.assert_close(grad, want_grad, rtol=tol, atol=tol)
    torch.testing.assert_close(hess, want_hess, rtol=tol, atol=tol)
    assert want_hess.abs().min() > 1e-3  # every entry is a term that can be wrong


@pytest.mark.parametrize("kind", ["temperature", "bias_temperature"])
@pytest.mark.parametrize("binary", [False, True])
def test_closed_form_head_derivatives_match_autograd(kind, binary):
    """The head's Newton steps take the gradient and Hessian of its negative log posterior
    in closed form (``HeadLikelihood``: the chain rule through the head, the probit and the
    likelihood's ``link_derivatives``), checked against autograd through the held-out
    likelihood the estimator computes (``heldout_row_log_likelihood`` under the head), in
    float64, where every term is of order one: variances comparable to the means (the
    probit's terms), labels drawn at random (the link's gradient)."""
    from sklaplace.likelihoods import Binary, Classification

    lik = Binary() if binary else Classification()
    m, c = 40, 1 if binary else 3
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        mean = 2.0 * torch.randn(m, c, generator=g, dtype=F64)
        var = 3.0 * torch.rand(m, c, generator=g, dtype=F64) + 0.1
        y = torch.randint(0, 2 if binary else c, (m,), generator=g)

        def link(z, y=y):
            return lik.link_derivatives(z, y)

        def negative_ll(a, b, y=y, mean=mean, var=var):
            return -lik.heldout_row_log_likelihood(mean, var, y, None, (a, b)).sum()

        _check_head_derivatives(mean, var, link, negative_ll, kind, c, seed)


@pytest.mark.parametrize("binary", [False, True])
def test_closed_form_head_derivatives_of_weighted_row_subsets(binary):
    """The same check on the held-out rows a fit tunes the head on (their
    ``link_derivatives`` and ``row_log_likelihood``): weighted rows (``sample_weight_val``)
    and the subsets of rows the cross-fitting of "auto" takes."""
    W = W1 if binary else W3
    k = W.shape[0]
    X, y = _logistic_rows(W, np.zeros(k), 100, 0, binary)
    X_val, y_val = _logistic_rows(W, np.zeros(k), 60, 1, binary)
    w_val = np.random.default_rng(2).uniform(0.5, 2.0, len(y_val))
    seen = []
    original = _recalibration.tune

    def spy(rows, *args, **kwargs):
        seen.append(rows)
        return original(rows, *args, **kwargs)

    net = _linear_net(2.0 * W, np.full(k, 0.5), binary)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_recalibration, "tune", spy)
        LaplaceClassifier(FrozenEstimator(net), calibration="bias_temperature").fit(
            X, y, X_val=X_val, y_val=y_val, sample_weight_val=w_val
        )
    rows = seen[0]
    for seed, subset in enumerate([None, np.arange(0, 60, 3)]):
        mean, var = rows.moments(np.ones(1), 1.0)
        var = var + 0.5  # variances comparable to the means, whatever the net's posterior
        if subset is not None:
            mean, var = mean[subset], var[subset]

        link = rows.link_derivatives(subset)

        def negative_ll(a, b, subset=subset, mean=mean, var=var):
            return -rows.row_log_likelihood(mean, var, (a, b), subset).sum()

        for kind in _recalibration.KINDS:
            _check_head_derivatives(mean, var, link, negative_ll, kind, k, seed)


def _auto_fit(off, spies, random_state=0):
    """A default ("auto") fit of a 3-class linear net on 300 unseen rows, with ``spies``
    ({name: wrapper}) set on the recalibration module during it."""
    X, y = _logistic_rows(W3, np.zeros(3), 300, 0)
    X_val, y_val = _logistic_rows(W3, np.zeros(3), 300, 1)
    net = _linear_net(W3, off)
    with pytest.MonkeyPatch.context() as mp:
        for name, wrap in spies.items():
            mp.setattr(_recalibration, name, wrap(getattr(_recalibration, name)))
        return LaplaceClassifier(FrozenEstimator(net), random_state=random_state).fit(
            X, y, X_val=X_val, y_val=y_val
        )


def test_auto_fits_each_head_once_per_prior_and_warm_starts_the_folds():
    """The cross-fitting of "auto" tunes a head on each of 5 folds: the coordinate ascent
    does not fit the head again at the prior where it already fitted it, and a fit at a
    prior where another fold's head was fitted starts from that head (their optima are
    close: Newton then takes a few steps, not the search from the identity), or from the
    head of the nearest prior. Main fitted every head twice at the final prior and started
    every fold from the identity."""
    fits = []

    def spy(original):
        def head_at(moments, rows, prior, kind, subset, start):
            key = (
                kind,
                tuple(np.asarray(prior).tolist()),
                None if subset is None else len(subset),
            )
            warm = start is not None or any(k[0] == kind for k in getattr(moments, "warm", {}))
            head, value = original(moments, rows, prior, kind, subset, start)
            fits.append((key, subset is None or tuple(subset), head, warm))
            return head, value

        return head_at

    clf = _auto_fit(np.array([0.0, 0.0, 2.0]), {"_head_at": spy})
    assert clf.calibration_ == "bias_temperature"
    heads = [f for f in fits if f[0][0] is not None]
    seen = set()
    for key, rows, _, _ in heads:  # one fit per (kind, prior, rows)
        assert (key, rows) not in seen
        seen.add((key, rows))
    # after the first fit of a kind, every fold starts from a head
    for kind in _recalibration.KINDS:
        of_kind = [warm for key, _, _, warm in heads if key[0] == kind]
        assert len(of_kind) >= 5 and all(of_kind[1:])


def test_auto_without_a_head_reads_the_final_grid_off_the_cross_fitting():
    """When "auto" keeps no head, the final tuning of the prior reads the grid's values off
    the table the cross-fitting computed (every row's held-out log-likelihood at each prior
    of the grid), instead of evaluating the grid again; the prior is calibration=None's."""
    from sklaplace.tuning import heldout as _heldout

    calls = []
    original = _heldout._known_grid

    def spy(obj, on_grid):
        def counted(*args):
            calls.append(args)
            return on_grid(*args)

        return original(obj, None if on_grid is None else counted)

    X, y = _logistic_rows(W3, np.zeros(3), 300, 0)
    X_val, y_val = _logistic_rows(W3, np.zeros(3), 300, 1)
    net = _linear_net(W3, np.zeros(3))  # the model itself: "auto" keeps no head
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_heldout, "_known_grid", spy)
        clf = LaplaceClassifier(FrozenEstimator(net), random_state=0).fit(
            X, y, X_val=X_val, y_val=y_val
        )
    assert clf.calibration_ is None
    assert calls == []  # no grid evaluated after the cross-fitting
    none = LaplaceClassifier(FrozenEstimator(net), calibration=None).fit(
        X, y, X_val=X_val, y_val=y_val
    )
    # the same grid values up to the order of the sums; the refinement evaluates alike
    np.testing.assert_allclose(clf.prior_precision_, none.prior_precision_, rtol=1e-6)
