"""Which rows tune: X_val, a frozen net's own validation rows (recovered and verified), none.

A fitted skorch net trained with a ``train_split`` (skorch's default is ``ValidSplit(5)``)
never trained on its validation rows. ``fit`` re-derives them by calling the net's split on
the rows it receives and uses them only if the net's loss on them reproduces, batch by
batch, the validation losses its history recorded. These tests cover a match (classifier,
regressor, a shuffled split with a random state), the mismatches (other rows, a random
split without a random state, a history without validation losses, a net without a
split) and the explicit ``X_val``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from _nets import classifier_net, regressor_net
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from sklearn.datasets import make_classification, make_regression
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import log_loss
from sklearn.model_selection import KFold, StratifiedKFold
from skorch.dataset import ValidSplit

from sklaplace import LaplaceClassifier, LaplaceRegressor
from sklaplace.tuning import recalibration as _recalibration


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=300, n_features=6, n_informative=4, n_redundant=0, n_classes=3,
        flip_y=0.05, random_state=0,
    )  # fmt: skip
    return X.astype(np.float32), y


def _net(split, **kw):
    torch.manual_seed(0)
    params = {"hidden": 32, "max_epochs": 30, "lr": 0.05, "optimizer": torch.optim.Adam}
    return classifier_net(3, train_split=split, **{**params, **kw})


def _no_rows_warning(record) -> str:
    messages = [str(w.message) for w in record if "No rows the net has not seen" in str(w.message)]
    assert len(messages) == 1, [str(w.message) for w in record]
    return messages[0]


def test_a_frozen_nets_own_validation_rows_are_recovered(data):
    X, y = data
    net = _net(ValidSplit(5, stratified=True)).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: the rows were found and verified
        clf = LaplaceClassifier(FrozenEstimator(net)).fit(X, y)
    _, expected = next(StratifiedKFold(5).split(X, y))
    assert clf.validation_source_ == "train_split"
    np.testing.assert_array_equal(clf.validation_indices_, expected)
    assert clf.n_train_ == len(y) - len(expected)  # the validation rows tune, not curve
    # the net is over-confident on rows it never saw: the prior is not at the top
    assert clf.prior_precision_[0] < 1e5


def test_a_shuffled_split_with_a_random_state_is_recovered(data):
    X, y = data
    net = _net(ValidSplit(0.25, stratified=True, random_state=3)).fit(X, y)
    clf = LaplaceClassifier(FrozenEstimator(net)).fit(X, y)
    assert clf.validation_source_ == "train_split"
    assert len(clf.validation_indices_) == 75
    _, ds_valid = net.train_split(net.get_dataset(X, y), y)
    np.testing.assert_array_equal(clf.validation_indices_, np.sort(ds_valid.indices))


def test_a_regressors_validation_rows_are_recovered():
    X, y = make_regression(n_samples=250, n_features=4, noise=10.0, random_state=0)
    X, y = X.astype(np.float32), (y / y.std()).astype(np.float32)
    torch.manual_seed(0)
    net = regressor_net(1, train_split=ValidSplit(5), max_epochs=20, lr=0.01,
                        optimizer=torch.optim.Adam).fit(X, y[:, None])  # fmt: skip
    reg = LaplaceRegressor(FrozenEstimator(net), random_state=0).fit(X, y)
    _, expected = next(KFold(5).split(X))
    assert reg.validation_source_ == "train_split"
    np.testing.assert_array_equal(reg.validation_indices_, expected)
    assert reg.interval_ == "conformal"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("other rows", "fit did not receive the rows"),
        ("other labels", "fit did not receive the rows"),
        ("random split", "its split is random"),
        ("no valid_loss", "history records no validation loss"),
        ("no split", "train_split=None"),
    ],
)
def test_rows_that_cannot_be_verified_are_not_used(data, case, reason):
    X, y = data
    X_fit, y_fit = X, y
    if case == "random split":
        net = _net(ValidSplit(0.2)).fit(X, y)  # a new shuffle at every call
    elif case == "no split":
        net = _net(None).fit(X, y)
    elif case == "no valid_loss":
        net = _net(None).fit(X, y)
        net.set_params(train_split=ValidSplit(5, stratified=True))  # set after training
    else:
        net = _net(ValidSplit(5, stratified=True)).fit(X, y)
        if case == "other rows":
            X_fit = X + np.float32(0.5)
        else:
            y_fit = (y + 1) % 3
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        clf = LaplaceClassifier(FrozenEstimator(net)).fit(X_fit, y_fit)
    message = _no_rows_warning(record)
    assert reason in message and "X_val=" in message
    assert record[0].filename == __file__  # the warning points at the user's line
    assert clf.validation_source_ is None and clf.validation_indices_ is None
    assert clf.n_train_ == len(y)
    # no unseen rows: the predictions are the net's own
    np.testing.assert_allclose(clf.predict_proba(X), net.predict_proba(X), atol=2e-4)


def test_explicit_rows_win_and_the_curvature_uses_all_of_X(data):
    X, y = data
    net = _net(ValidSplit(5, stratified=True)).fit(X[:200], y[:200])
    clf = LaplaceClassifier(FrozenEstimator(net)).fit(
        X[:200], y[:200], X_val=X[200:], y_val=y[200:]
    )
    assert clf.validation_source_ == "X_val" and clf.validation_indices_ is None
    assert clf.n_train_ == 200
    with pytest.raises(ValueError, match="X_val and y_val go together"):
        LaplaceClassifier(FrozenEstimator(net)).fit(X, y, X_val=X[:5])
    with pytest.raises(ValueError, match="y_val has labels that y does not have"):
        LaplaceClassifier(FrozenEstimator(net)).fit(X, y, X_val=X[:5], y_val=np.full(5, 7))
    with pytest.raises(
        ValueError, match="X_val has 5 features, but LaplaceClassifier is expecting 6"
    ):
        LaplaceClassifier(FrozenEstimator(net)).fit(X, y, X_val=X[:5, :5], y_val=y[:5])
    with pytest.warns(UserWarning, match="no hyper-parameter is tuned on held-out rows"):
        LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0, calibration=None).fit(
            X, y, X_val=X[:5], y_val=y[:5]
        )


def test_temperature_head_contains_temperature_scaling(data, monkeypatch):
    """Tuned jointly with the prior (the head's shrinkage off), a temperature head can do
    no worse than temperature scaling on the rows it is tuned on; predictions use the
    fitted values."""
    monkeypatch.setattr(_recalibration, "SCALE_STD", math.inf)
    X, y = data
    net = _net(None, max_epochs=80).fit(X[:150], y[:150])  # over-confident on new rows
    X_val, y_val = X[150:], y[150:]
    clf = LaplaceClassifier(FrozenEstimator(net), calibration="temperature").fit(
        X[:150], y[:150], X_val=X_val, y_val=y_val
    )
    # temperature scaling in float64 on the net's logits (scikit-learn's
    # CalibratedClassifierCV works from float32 probabilities, whose underflow flatters it)
    logits = net.forward(X_val).double().numpy()

    def ts_loss(log_t):
        z = logits / np.exp(log_t)
        return log_loss(y_val, np.exp(z - logsumexp(z, axis=1, keepdims=True)))

    theirs = minimize_scalar(ts_loss, bounds=(-3, 3), method="bounded").fun
    ours = log_loss(y_val, clf.predict_proba(X_val))
    # both minimise the same rows' log loss; ours over a superset (prior precision and
    # T), the prior refined to 1e-3 in log: at most second order in that step
    assert ours <= theirs + 1e-5
    assert clf.calibration_ == "temperature" and clf.calibration_scale_ != 1.0
    with pytest.warns(FutureWarning, match="logit_temperature=.* is deprecated.*calibration="):
        same = LaplaceClassifier(
            FrozenEstimator(net),
            prior_precision=clf.prior_precision_,
            logit_temperature=1 / clf.calibration_scale_,
        ).fit(X[:150], y[:150])
    np.testing.assert_allclose(same.predict_proba(X), clf.predict_proba(X), rtol=1e-12)


def _synthetic_rows(fn):
    """Held-out rows whose log-likelihood is ``fn(log10 prior, log T)`` with ``T = 1 / a``
    the head's temperature (one row; its 'variance' carries the prior)."""
    from sklaplace.tuning import resolve as _hyper

    def moments(prior, temperature):
        x = float(np.log10(np.asarray(prior, dtype=float).ravel()[0]))
        return torch.zeros(1, 1, dtype=torch.float64), torch.full((1, 1), x, dtype=torch.float64)

    def row_log_likelihood(mean, var, head, rows=None):
        x = var[:, 0]
        y = torch.zeros_like(x) if head is None else -torch.log(head[0]) * torch.ones_like(x)
        return fn(x, y)

    return _hyper.HeldOutRows(moments, row_log_likelihood, np.zeros(1, dtype=int), 1)


class _Objective:
    """A synthetic held-out objective of the prior and the head's temperature."""

    def __init__(self, fn):
        self.names = ["out"]
        self.head_rows = _synthetic_rows(fn)
        self.heldout_rows = 1.0

    def heldout(self, prior, sigma, temperature, head):
        x = float(np.log10(np.asarray(prior, dtype=float).ravel()[0]))
        y = 0.0 if head is None else -np.log(head.scale)
        return float(self.fn_np(x, y))


@pytest.mark.parametrize("winner", ["posterior", "temperature scaling"])
def test_the_better_of_the_posterior_and_temperature_scaling_is_kept(winner, monkeypatch):
    """The joint tuning of the prior and a temperature head compares its coordinate-ascent
    result with temperature scaling (the prior at the top of its grid, the best head
    there) and keeps the better. Two objectives where either wins by a wide margin: keeping
    the worse one (a flipped comparison) gives the other's values. (The head's prior is off:
    it would move the peaks.)"""
    from sklaplace.tuning import resolve as _hyper

    monkeypatch.setattr(_recalibration, "SCALE_STD", math.inf)
    top = np.log10(_hyper.PRIOR_GRID[-1])

    def bump(x, y, x0, y0, height, width, exp=np.exp):
        return height * exp(-((x - x0) ** 2 + (y - y0) ** 2) / width**2)

    if winner == "posterior":  # a peak at prior 1, T = e^0.3; nothing at the top

        def fn(x, y, exp=np.exp):
            return bump(x, y, 0.0, 0.3, 1.0, 1.0, exp)
    else:  # coordinate ascent from T = 1 finds the low peak; the top holds a higher one

        def fn(x, y, exp=np.exp):
            return bump(x, y, 0.0, 0.0, 1.0, 0.5, exp) + bump(x, y, top, 1.5, 2.0, 0.5, exp)

    obj = _Objective(lambda x, y: fn(x, y, torch.exp))
    obj.fn_np = fn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an edge of the prior grid may warn
        prior, _, _, head = _hyper._tune_on_heldout(
            obj, None, 1.0, False, 1.0, False, None, "temperature"
        )
    x, y = float(np.log10(prior[0])), float(-np.log(head.scale))
    if winner == "posterior":
        assert abs(x) < 0.05 and abs(y - 0.3) < 0.05
    else:
        assert x == pytest.approx(top) and abs(y - 1.5) < 0.05
    assert fn(x, y) >= max(fn(0.0, 0.3), fn(top, 1.5)) - 1e-3  # the best of the two kept


@pytest.fixture(scope="module")
def wide_batch_net():
    """A net trained with batch 512 for a few epochs: not over-fitted, so its loss on rows
    it trained on is close to its loss on its validation rows (the first 200 of 1,000)."""
    X, y = make_classification(
        n_samples=1000, n_features=6, n_informative=4, n_redundant=0, n_classes=3,
        flip_y=0.05, random_state=1,
    )  # fmt: skip
    X = X.astype(np.float32)
    torch.manual_seed(0)
    net = classifier_net(3, train_split=ValidSplit(5), batch_size=512, max_epochs=5, lr=0.05)
    return X, y, net.fit(X, y)


def _relative_gap(net, X, y):
    """How far the net's loss on the rows its split re-derives from ``(X, y)`` is from the
    validation loss its history recorded (last epoch), relative."""
    from sklaplace.fitting.holdout import _batch_losses, _recorded_valid_batches

    recorded = _recorded_valid_batches(net)[-1]
    _, ds_valid = net.train_split(net.get_dataset(X, y), y)
    got = _batch_losses(net, X, y, np.asarray(ds_valid.indices), recorded[0][0])
    want = np.array([v for _, v in recorded])
    return float(np.max(np.abs(np.array([v for _, v in got]) - want) / want))


@pytest.mark.parametrize("case", ["shuffled", "one row swapped"])
def test_near_misses_are_not_taken_for_the_validation_rows(wide_batch_net, case):
    """Rows the net trained on must not pass for held-out rows, even when its loss on them
    is within a few percent of the recorded validation loss: after a shuffle (80 % of the
    re-derived rows are training rows) or with one training row swapped in. The check's
    tolerance is sqrt(eps) of the net's dtype; a loose one (5 %) would accept both."""
    X, y, net = wide_batch_net
    if case == "shuffled":
        order = np.random.default_rng(0).permutation(len(y))
    else:  # the training row whose loss differs most from validation row 0's
        with torch.no_grad():
            logits = net.forward(X).double()
        row_loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y), reduction="none")
        j = 200 + int((row_loss[200:] - row_loss[0]).abs().argmax())
        order = np.arange(len(y))
        order[[0, j]] = order[[j, 0]]
    X_fit, y_fit = X[order], y[order]
    gap = _relative_gap(net, X_fit, y_fit)
    rtol = float(np.sqrt(np.finfo(np.float32).eps))
    assert rtol < gap < 0.05, gap  # a near miss: a loose tolerance would take it
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        clf = LaplaceClassifier(FrozenEstimator(net)).fit(X_fit, y_fit)
    assert "fit did not receive the rows" in _no_rows_warning(record)
    assert clf.validation_source_ is None and clf.validation_indices_ is None
    # the unmoved rows are recovered (the check is not merely strict)
    assert LaplaceClassifier(FrozenEstimator(net)).fit(X, y).validation_source_ == "train_split"
