"""Mistakes a new user makes, each met by a message that names the problem and its fix
(issue 20), on the workflow a user has: a pandas frame with text columns, a
ColumnTransformer (OneHotEncoder + StandardScaler) and a skorch net in a Pipeline, fitted
and wrapped in FrozenEstimator. Each test asserts the message's key words, so a regression
to scikit-learn's, numpy's or torch's own message fails; and where a case is now accepted
(N-D arrays, bfloat16 nets), the result is compared with a reference.
"""

from __future__ import annotations

import copy
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from _nets import classifier_net, regressor_net
from sklearn.compose import make_column_transformer
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.class_weight import compute_sample_weight
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.dataset import Dataset, ValidSplit
from torch import nn

from sklaplace import LaplaceClassifier, LaplaceRegressor


# ---------------------------------------------------------------- the user's table
class TableNet(nn.Module):
    def __init__(self, n_out=3):
        super().__init__()
        self.body = nn.Sequential(nn.LazyLinear(16), nn.ReLU())
        self.out = nn.Linear(16, n_out)

    def forward(self, X):
        return self.out(self.body(X.float()))


def _table(n, seed):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "income": rng.normal(50, 10, n),
            "age": rng.integers(18, 80, n).astype(float),
            "city": rng.choice(["paris", "lyon", "nice"], n),
            "plan": rng.choice(["basic", "pro"], n),
        }
    )
    score = (X["income"] - 50) / 10 + (X["city"] == "paris") - 0.5 * (X["plan"] == "pro")
    y = np.digitize(score + rng.normal(0, 0.7, n), [-0.5, 0.8])  # classes 0, 1, 2
    return X, y


def _pipeline(n_out=3):
    prep = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
        remainder=StandardScaler(),
    )
    net = NeuralNetClassifier(
        TableNet,
        module__n_out=n_out,
        criterion=nn.CrossEntropyLoss,
        max_epochs=8,
        lr=0.01,
        optimizer=torch.optim.Adam,
        verbose=0,
    )  # fmt: skip  (skorch's default train_split)
    return make_pipeline(prep, net)


@pytest.fixture(scope="module")
def table():
    return _table(300, 0)


@pytest.fixture(scope="module")
def pipeline(table):
    X, y = table
    torch.manual_seed(0)
    return _pipeline().fit(X, y)


def _messages(record, pattern):
    return [str(w.message) for w in record if re.search(pattern, str(w.message))]


# ---------------------------------------------------------------- 1. unfitted Pipeline
def test_a_frozen_unfitted_pipeline_is_told_to_fit_it_first(table, pipeline):
    X, y = table
    fix = (
        r"Pipeline inside FrozenEstimator is not fitted\. Fit the pipeline first.*"
        "pass the unfitted pipeline itself"
    )
    with pytest.raises(NotFittedError, match=fix):
        LaplaceClassifier(FrozenEstimator(_pipeline())).fit(X, y)
    # the net fitted on its own, the steps before it not
    half = make_pipeline(_pipeline()[0], copy.deepcopy(pipeline[-1]))
    with pytest.raises(NotFittedError, match=fix):
        LaplaceClassifier(FrozenEstimator(half)).fit(X, y)


# ---------------------------------------------------------------- 2. X_val's form
def test_X_val_already_transformed_is_told_where_it_must_live(table, pipeline):
    X, y = table
    X_val, y_val = _table(60, 1)
    transformed = pipeline[:-1].transform(X_val)
    clf = LaplaceClassifier(FrozenEstimator(pipeline))
    with pytest.raises(ValueError, match=r"X_val has \d+ features.*X_val must be the raw rows "
                       r"the wrapped Pipeline takes, like X") as info:  # fmt: skip
        clf.fit(X, y, X_val=transformed, y_val=y_val)
    assert "not rows already transformed" in str(info.value)
    clf.fit(X, y, X_val=X_val, y_val=y_val)  # the raw rows are right
    assert clf.validation_source_ == "X_val"


def test_X_val_with_other_features_than_X_without_a_pipeline(cls_data, cls_net):
    X, y = cls_data
    clf = LaplaceClassifier(FrozenEstimator(cls_net))
    with pytest.raises(ValueError, match=r"X_val has 3 features.*X_val must be rows in the "
                       r"form of X \(the same features"):  # fmt: skip
        clf.fit(X, y, X_val=X[:20, :3], y_val=y[:20])


# ---------------------------------------------------------------- 3. labels without output
def test_labels_the_frozen_net_has_no_output_for(table):
    X, y = table
    torch.manual_seed(0)
    binary = _pipeline(n_out=2).fit(X, (y > 0).astype(np.int64))
    labels = np.array(["churn", "stay", "upgrade"])[y]
    with pytest.raises(ValueError, match=r"no output for: \['upgrade'\].*trained with fewer "
                       r"classes: it has 2 output\(s\), and y has 3 classes"):  # fmt: skip
        LaplaceClassifier(FrozenEstimator(binary)).fit(X, labels)


# ---------------------------------------------------------------- 4. images
class SmallConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.out = nn.Linear(3 * 4 * 4, 3)

    def forward(self, X):
        return self.out(torch.relu(self.conv(X)).flatten(1))


@pytest.mark.parametrize("subset", ["last_layer", "all"])
def test_a_4d_image_array_for_a_conv2d_net(subset):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 1, 6, 6)).astype(np.float32)
    y = (X[:, 0, 2:4, 2:4].mean((1, 2)) > 0).astype(np.int64) + (X[:, 0, 0, 0] > 1)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        SmallConv,
        criterion=nn.CrossEntropyLoss,
        max_epochs=5,
        lr=0.1,
        train_split=None,
        verbose=0,
    ).fit(X, y)  # fmt: skip  (skorch takes the 4-D array)
    kw = {"subset_of_weights": subset, "prior_precision": 1.0}
    clf = LaplaceClassifier(FrozenEstimator(net), **kw).fit(X, y)
    assert clf.n_features_in_ == 1
    proba = clf.predict_proba(X[:20])
    # the workaround that worked before: a dict with the forward's argument
    ref = LaplaceClassifier(FrozenEstimator(net), **kw).fit({"X": X}, y)
    np.testing.assert_allclose(proba, ref.predict_proba({"X": X[:20]}), rtol=1e-12, atol=0)
    assert not np.allclose(proba, net.predict_proba(X[:20]), atol=1e-3)  # not the net's own
    # rows of another shape than fit's (n_features_in_ only covers the channels)
    with pytest.raises(ValueError, match=r"X has 4 dimensions, rows of shape \(1, 5, 5\).*"
                       r"fitted on X of 4 dimensions, rows of shape \(1, 6, 6\)"):  # fmt: skip
        clf.predict_proba(X[:5, :, :5, :5])
    with pytest.raises(ValueError, match=r"X has 2 dimensions.*fitted on X of 4 dimensions"):
        clf.predict_proba(X[:5].reshape(5, -1))


# ---------------------------------------------------------------- 5. Datasets
@pytest.mark.parametrize(
    "make",
    [lambda X, y: Dataset(X, y), lambda X, y: torch.utils.data.TensorDataset(
        torch.as_tensor(X), torch.as_tensor(y))],
    ids=["skorch", "torch"],
)  # fmt: skip
def test_a_dataset_as_X_is_refused_with_the_fix(cls_data, cls_net, make):
    X, y = cls_data
    ds = make(X.astype(np.float32), y)
    fix = r"\(a torch Dataset\).*Pass the arrays instead, e\.g\. fit\(dataset\.X, dataset\.y\)"
    with pytest.raises(TypeError, match=r"X is a \w+ " + fix):
        LaplaceClassifier(FrozenEstimator(cls_net)).fit(ds, y)
    fitted = LaplaceClassifier(FrozenEstimator(cls_net), prior_precision=1.0).fit(X, y)
    with pytest.raises(TypeError, match=fix):
        fitted.predict_proba(ds)
    with pytest.raises(TypeError, match=r"X_val is a \w+ \("):
        LaplaceClassifier(FrozenEstimator(cls_net)).fit(X, y, X_val=ds, y_val=y)


# ---------------------------------------------------------------- 6. bfloat16
def test_a_bfloat16_net_gives_the_float32_net_s_predictions():
    """The same weights (bfloat16 values are float32 values) in both nets; only the
    forward passes differ, each layer's output rounded to bfloat16 (a relative 2^-8): the
    probabilities move by less than bfloat16's eps, while the posterior moves them by far
    more than that from the net's own."""
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.normal(size=(150, 4)), dtype=torch.bfloat16).float().numpy()
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    torch.manual_seed(0)
    net = classifier_net(3, max_epochs=20).fit(X, y)
    net.module_.bfloat16().float()
    net16 = copy.deepcopy(net)
    net16.module_.bfloat16()
    eps = torch.finfo(torch.bfloat16).eps
    for subset in ("last_layer", "all"):
        kw = {"subset_of_weights": subset, "prior_precision": 1.0}
        want = LaplaceClassifier(FrozenEstimator(net), **kw).fit(X, y).predict_proba(X[:40])
        got = LaplaceClassifier(FrozenEstimator(net16), **kw).fit(X, y).predict_proba(X[:40])
        np.testing.assert_allclose(got, want, atol=eps, rtol=0)
        assert np.abs(want - net.predict_proba(X[:40])).max() > 5 * eps
    # a regressor too (its targets are float32 arrays for a bfloat16 net)
    reg_net = regressor_net(max_epochs=5).fit(X, X[:, :1] * 2)
    reg_net.module_.bfloat16()
    reg = LaplaceRegressor(FrozenEstimator(reg_net), random_state=0).fit(X, X[:, 0] * 2)
    mean, std = reg.predict(X[:5], return_std=True)
    assert np.isfinite(mean).all() and (std > 0).all()


# ---------------------------------------------------------------- 7. logit_temperature
@pytest.mark.parametrize("t", [1e-200, 1e300, 0.0, -1.0])
def test_an_extreme_logit_temperature_is_refused_up_front(cls_data, cls_net, t):
    X, y = cls_data
    clf = LaplaceClassifier(FrozenEstimator(cls_net), prior_precision=1.0, logit_temperature=t)
    with pytest.raises(ValueError, match=r"'logit_temperature' parameter .* in the range"):
        clf.fit(X, y)


@pytest.mark.parametrize("t", [1e-200, 1e300])
def test_an_extreme_logit_temperature_set_after_fit(cls_data, cls_net, t):
    X, y = cls_data
    clf = LaplaceClassifier(FrozenEstimator(cls_net), prior_precision=1.0).fit(X, y)
    clf.set_params(logit_temperature=t)
    with pytest.raises(ValueError, match=r"logit_temperature=.* choose a value in \[1e-06"):
        clf.predict_proba(X[:3])


# ---------------------------------------------------------------- 8. one unseen row
def test_one_unseen_row_for_a_regressor_says_what_calibration_needs(reg_data, reg_net):
    X, y = reg_data
    calibration = r"1 unseen row \(X_val\) is too few.*needs at least 9 calibration rows"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        reg = LaplaceRegressor(FrozenEstimator(reg_net), random_state=0)
        reg.fit(X, y, X_val=X[:1], y_val=y[:1])
    said = _messages(record, calibration)
    assert len(said) == 1 and "interval_='gaussian'" in said[0]
    assert "interval='gaussian'" in said[0] and "give the hyper-parameters as numbers" in said[0]
    assert reg.interval_ == "gaussian"
    lower, upper = reg.predict_interval(X[:3])
    assert np.isfinite(lower).all() and np.isfinite(upper).all()
    with pytest.raises(ValueError, match=r"interval='conformal': " + calibration):
        LaplaceRegressor(FrozenEstimator(reg_net), interval="conformal").fit(
            X, y, X_val=X[:1], y_val=y[:1]
        )


# ---------------------------------------------------------------- 9. a 1-D y for the net
def test_a_regression_net_trained_on_a_1d_y_is_named(reg_data):
    X, y = reg_data
    X = X.astype(np.float32)
    y = y.astype(np.float32)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: "Using a target size ..."
        flat = regressor_net(max_epochs=5, train_split=ValidSplit(5)).fit(X, y)
    with pytest.raises(ValueError, match=r"trained on a 1-D y.*broadcast.*y\.reshape\(-1, 1\)"):
        LaplaceRegressor(FrozenEstimator(flat)).fit(X, y)
    torch.manual_seed(0)
    right = regressor_net(max_epochs=5, train_split=ValidSplit(5)).fit(X, y.reshape(-1, 1))
    reg = LaplaceRegressor(FrozenEstimator(right), random_state=0).fit(X, y)
    assert reg.validation_source_ == "train_split"


# ---------------------------------------------------------------- 10. the prior's bottom
EDGE = "fitted best at the smallest prior precision"


def _wave(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2)) + shift
    y = np.sin(2 * X[:, :1]) + 0.5 * X[:, 1:] ** 2 + 0.1 * rng.normal(size=(n, 1))
    return X.astype(np.float32), y.astype(np.float32)


def _wave_net(seed):
    X, y = _wave(600, seed)
    torch.manual_seed(seed)
    module = nn.Sequential(
        nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)
    )
    net = NeuralNetRegressor(
        module, max_epochs=300, lr=0.01, optimizer=torch.optim.Adam, batch_size=64, verbose=0
    )  # skorch's default train_split
    return net.fit(X, y), X, y


@pytest.mark.slow
def test_the_prior_bottom_warning_is_silent_on_healthy_fits_and_speaks_on_a_bad_one():
    bottoms = 0
    for seed in (0, 3):  # seeds whose prior lands at the bottom of its range
        net, X, y = _wave_net(seed)
        X_test, y_test = _wave(400, 100 + seed)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            reg = LaplaceRegressor(
                FrozenEstimator(net), subset_of_weights="last_layer", random_state=0
            ).fit(X, y)
        assert not _messages(record, EDGE)
        bottoms += bool(reg.prior_precision_.min() <= 1e-4 * 1.001)
        rmse = np.sqrt(np.mean((reg.predict(X_test).ravel() - y_test.ravel()) ** 2))
        assert rmse < 0.2  # healthy: the noise is 0.1
    assert bottoms  # the case the warning fired on, before
    # a bad case: rows from elsewhere, the noise fixed at the training noise
    X_far, y_far = _wave(100, 200, shift=1.0)
    with pytest.warns(UserWarning, match=EDGE + r".*nats per row better than the net's own"
                      r".*another distribution.*give prior_precision as a number"):  # fmt: skip
        LaplaceRegressor(
            FrozenEstimator(net), subset_of_weights="last_layer", sigma_noise=0.1, random_state=0
        ).fit(X, y, X_val=X_far, y_val=y_far)


def test_the_prior_bottom_warning_on_a_classifier_wrong_on_the_held_out_rows(cls_data, cls_net):
    X, y = cls_data
    y_wrong = (y + 1) % 3  # every held-out label is another class
    with pytest.warns(UserWarning, match=EDGE):
        LaplaceClassifier(FrozenEstimator(cls_net)).fit(X, y, X_val=X[:80], y_val=y_wrong[:80])


# ---------------------------------------------------------------- 11. weights' scale
WEIGHTS = (
    r"sample_weight sums to .* the sum of the weights.*sample_weight / sample_weight\.mean\(\)"
)


def test_weights_far_from_mean_one_say_what_they_do_to_the_posterior(table, pipeline):
    X, y = table
    counts = np.bincount(y)
    for w in (1.0 / counts[y], np.full(len(y), 50.0)):  # one over the count; large
        with pytest.warns(UserWarning, match=WEIGHTS):
            LaplaceClassifier(FrozenEstimator(pipeline)).fit(X, y, sample_weight=w)
    for name, w in [
        ("balanced", compute_sample_weight("balanced", y)),
        ("rare class twice", np.where(y == 2, 2.0, 1.0)),
        ("importance", np.random.default_rng(0).uniform(0.2, 3.0, len(y))),
    ]:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            LaplaceClassifier(FrozenEstimator(pipeline)).fit(X, y, sample_weight=w)
        assert not _messages(record, "sample_weight sums"), name


def test_the_curvature_scales_with_the_sum_of_the_weights(cls_data, cls_net):
    """What the warning says: weights of 10 give ten times the curvature."""
    X, y = cls_data
    kw = {"prior_precision": 1.0, "subset_of_weights": "last_layer", "hessian_structure": "full"}
    one = LaplaceClassifier(FrozenEstimator(cls_net), **kw).fit(X, y)
    with pytest.warns(UserWarning, match=WEIGHTS):
        ten = LaplaceClassifier(FrozenEstimator(cls_net), **kw).fit(
            X, y, sample_weight=np.full(len(y), 10.0)
        )
    lam_one = one.posterior_.blocks[0].lam_max
    lam_ten = ten.posterior_.blocks[0].lam_max
    np.testing.assert_allclose(float(lam_ten), 10 * float(lam_one), rtol=1e-10)
