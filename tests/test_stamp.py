"""The stamp: a model changed after fit is refused, live, after pickle and after deepcopy.

Differential: each case changes a fitted estimator's net (or the fitted Pipeline steps
before it) in a way that changes what it computes, and checks that a fresh fit on the
changed model does predict something else (so the case cannot pass vacuously); then the
estimator must refuse to predict, live, after a pickle round trip and after a deep copy
(:mod:`sklaplace._runtime.stamp`). Unchanged estimators, and changes that do not change what the
net computes, must predict after the round trips exactly what a fresh fit predicts.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from skorch import NeuralNetClassifier, NeuralNetRegressor
from torch import nn

from sklaplace import LaplaceClassifier, LaplaceRegressor
from sklaplace._runtime import stamp as _stamp

REFUSED = "changed after fit"


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=200, n_features=5, n_informative=4, n_redundant=0, n_classes=3, random_state=0
    )
    return X.astype(np.float32), y


class Masked(nn.Module):
    """``Linear -> ReLU -> (x * mask) -> Linear``, the mask a plain tensor attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 16), nn.ReLU())
        self.mask = torch.ones(16)
        self.slope = 1.0
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(self.body(x) * self.mask * self.slope)


def trained(data, module=None):
    X, y = data
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        module or Masked(),
        criterion=nn.CrossEntropyLoss,
        max_epochs=5,
        lr=0.1,
        train_split=None,
        verbose=0,
    )
    return net.fit(X, y)


def laplace(model, **params):
    params = {"prior_precision": 1.0, "subset_of_weights": "last_layer", **params}
    return LaplaceClassifier(FrozenEstimator(model), **params)


def _pickled(est):
    return pickle.loads(pickle.dumps(est))


ROUND_TRIPS = {"live": lambda est: est, "pickle": _pickled, "deepcopy": copy.deepcopy}


# ---------------------------------------------------------------- changes of the net
def _step(net):
    with torch.no_grad():
        net.module_.body[0].weight.mul_(1.5)  # an in-place op: the version counter


def _retrain_head(net):
    with torch.no_grad():
        net.module_.out.weight.add_(0.5)


def _swap_activation(net):
    net.module_.body[1] = nn.Tanh()  # a submodule without parameters


def _forward_hook(net):
    net.module_.body[0].register_forward_hook(_double)


def _pre_hook(net):
    net.module_.out.register_forward_pre_hook(_double_input)


def _attribute(net):
    net.module_.slope = 2.0  # a plain number forward reads


def _plain_tensor(net):
    net.module_.mask[::2] = 0.0  # neither parameter nor buffer


def _data_write(net):
    net.module_.body[0].weight.data.mul_(1.5)  # bypasses the version counter


def _numpy_write(net):
    net.module_.body[0].weight.detach().numpy()[:] *= 1.5  # so does a numpy view


def _data_rebind(net):
    w = net.module_.body[0].weight
    w.data = w.data * 1.5  # new storage


def _no_op(*args):
    return None


def _double(module, inputs, output):
    return output * 2


def _double_input(module, inputs):
    return (inputs[0] * 2,)


NET_CHANGES = [
    _step,
    _retrain_head,
    _swap_activation,
    _forward_hook,
    _pre_hook,
    _attribute,
    _plain_tensor,
    _data_write,
    _numpy_write,
    _data_rebind,
]


def _predictions_of_a_fresh_fit(net, X, y, **params):
    return laplace(net, **params).fit(X, y).predict_proba(X)


@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
@pytest.mark.parametrize("change", NET_CHANGES, ids=lambda f: f.__name__.strip("_"))
def test_a_net_changed_after_fit_is_refused(data, change, round_trip):
    """Changed after fit (the last layer carries the posterior: the body's changes are
    changes of its features), then predicted live, after pickle, after deepcopy."""
    X, y = data
    net = trained(data)
    est = laplace(net).fit(X, y)
    before = est.predict_proba(X)
    change(net)
    fresh = _predictions_of_a_fresh_fit(net, X, y)
    assert np.abs(fresh - before).max() > 1e-3  # the change matters
    restored = ROUND_TRIPS[round_trip](est)
    with pytest.raises(ValueError, match=REFUSED) as info:
        restored.predict_proba(X)
    assert "Call fit again" in str(info.value)


def test_a_global_hook_registered_after_fit_is_refused(data):
    X, y = data
    net = trained(data)
    est = laplace(net).fit(X, y)
    handle = nn.modules.module.register_module_forward_hook(_double)
    try:
        with pytest.raises(ValueError, match="global module hooks"):
            est.predict_proba(X)
        restored = _pickled(est)  # the verdict travels
    finally:
        handle.remove()
    with pytest.raises(ValueError, match=REFUSED):
        restored.predict_proba(X)
    assert np.isfinite(est.predict_proba(X)).all()  # the hook removed: the net fit saw


@pytest.mark.parametrize("round_trip", ["pickle", "deepcopy"])
@pytest.mark.parametrize(
    "change", [_step, _swap_activation, _numpy_write], ids=lambda f: f.__name__.strip("_")
)
def test_a_loaded_estimator_refuses_a_change_made_after_loading(data, change, round_trip):
    X, y = data
    est = laplace(trained(data)).fit(X, y)
    restored = ROUND_TRIPS[round_trip](est)
    restored.predict_proba(X)
    change(restored._fitted.net)
    with pytest.raises(ValueError, match=REFUSED):
        restored.predict_proba(X)
    est.predict_proba(X)  # the original is not the copy


@pytest.mark.parametrize("subset", ["last_layer", "all"])
@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
def test_round_trips_predict_what_a_fresh_fit_predicts(data, round_trip, subset):
    X, y = data
    net = trained(data)
    est = laplace(net, subset_of_weights=subset).fit(X, y)
    restored = ROUND_TRIPS[round_trip](est)
    fresh = _predictions_of_a_fresh_fit(restored._fitted.net, X, y, subset_of_weights=subset)
    assert_array_equal(restored.predict_proba(X), fresh)
    assert_array_equal(restored.predict_proba(X), est.predict_proba(X))
    again = ROUND_TRIPS[round_trip](restored)  # and a second round trip
    assert_array_equal(again.predict_proba(X), fresh)


@pytest.mark.parametrize(
    "harmless",
    [
        lambda net: net.module_.train(),  # predictions run in evaluation mode anyway
        lambda net: net.module_.body[0].register_full_backward_hook(_no_op).remove(),
        lambda net: net.set_params(verbose=1),
    ],
    ids=["train_mode", "hook_added_and_removed", "net_setting"],
)
def test_changes_that_do_not_change_the_outputs_are_not_refused(data, harmless):
    X, y = data
    net = trained(data)
    est = laplace(net).fit(X, y)
    before = est.predict_proba(X)
    harmless(net)
    assert_array_equal(est.predict_proba(X), before)
    assert_array_equal(_pickled(est).predict_proba(X), before)


def test_the_regressor_round_trip_keeps_its_calibration():
    """Pickled and deep-copied, the conformal intervals are a fresh fit's."""
    X, y = make_regression(n_samples=300, n_features=4, noise=5.0, random_state=0)
    X, y = X.astype(np.float32), (y / y.std()).astype(np.float32)
    torch.manual_seed(0)
    net = NeuralNetRegressor(
        nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1)),
        max_epochs=10,
        lr=0.05,
        verbose=0,
    ).fit(X, y[:, None])
    params = {"random_state": 0, "subset_of_weights": "last_layer"}
    est = LaplaceRegressor(FrozenEstimator(net), **params).fit(X, y)
    assert est.interval_ == "conformal"
    fresh = LaplaceRegressor(FrozenEstimator(net), **params).fit(X, y).predict_interval(X)
    for trip in (_pickled, copy.deepcopy):
        restored = trip(est)
        for a, b in zip(restored.predict_interval(X), fresh, strict=True):
            assert_array_equal(a, b)
    _step_regressor(net)
    with pytest.raises(ValueError, match=REFUSED):
        _pickled(est).predict_interval(X)


def _step_regressor(net):
    with torch.no_grad():
        net.module_[0].weight.mul_(1.5)


# ---------------------------------------------------------------- Pipeline steps
@pytest.fixture(scope="module")
def frame(data):
    X, y = data
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    df["color"] = np.array(["red", "green", "blue"])[np.arange(len(df)) % 3]
    return df, y


def trained_pipeline(frame):
    X, y = frame
    prep = ColumnTransformer(
        [
            ("num", StandardScaler(), [f"x{i}" for i in range(5)]),
            ("cat", OneHotEncoder(), ["color"]),
        ]
    )
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    net = NeuralNetClassifier(
        module, criterion=nn.CrossEntropyLoss, max_epochs=5, lr=0.1, train_split=None, verbose=0
    )
    pipe = Pipeline([("prep", prep), ("to32", _Float32()), ("net", net)])
    return pipe.fit(X, y)


class _Float32(StandardScaler):
    """The net takes float32: a scaler that casts (fitted state: mean_, scale_)."""

    def transform(self, X, copy=None):
        return super().transform(X, copy=copy).astype(np.float32)


def _refit_step(pipe, frame):
    X, _ = frame
    pipe.named_steps["to32"].fit(pipe.named_steps["prep"].transform(X) * 2.0)


def _refit_nested(pipe, frame):
    X, _ = frame
    pipe.named_steps["prep"].named_transformers_["num"].fit(X[[f"x{i}" for i in range(5)]] + 3)


def _step_setting(pipe, frame):
    pipe.named_steps["to32"].set_params(with_mean=False)


@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
@pytest.mark.parametrize(
    "change", [_refit_step, _refit_nested, _step_setting], ids=lambda f: f.__name__.strip("_")
)
def test_a_pipeline_step_changed_after_fit_is_refused(frame, change, round_trip):
    X, y = frame
    pipe = trained_pipeline(frame)
    est = laplace(pipe).fit(X, y)
    before = est.predict_proba(X)
    assert_array_equal(est.predict_proba(X), before)  # a transform changes nothing
    change(pipe, frame)
    fresh = laplace(pipe).fit(X, y).predict_proba(X)
    assert np.abs(fresh - before).max() > 1e-3
    with pytest.raises(ValueError, match="steps before the net were changed after fit"):
        ROUND_TRIPS[round_trip](est).predict_proba(X)


@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
def test_a_pipeline_round_trip_predicts_what_a_fresh_fit_predicts(frame, round_trip):
    X, y = frame
    est = laplace(trained_pipeline(frame)).fit(X, y)
    restored = ROUND_TRIPS[round_trip](est)
    pipe = restored.estimator.estimator
    assert_array_equal(restored.predict_proba(X), laplace(pipe).fit(X, y).predict_proba(X))


# ---------------------------------------------------------------- the stamp itself
def test_the_sample_spans_the_tensor():
    """First and last values and ``SAMPLE`` in all, for any layout (a transposed view)."""
    t = torch.zeros(40, 30)
    stamp = _stamp.Stamp(nn.Linear(30, 40))
    assert len(stamp.tensors[0][4]) == _stamp.SAMPLE * 4  # float32 bytes
    for view in (t, t.T):
        for index in ((0, 0), (-1, -1)):
            before = _stamp._sample(view, dense=True)
            view[index] = 1.0
            assert _stamp._sample(view, dense=True) != before
            view[index] = 0.0


def test_a_portable_stamp_refuses_a_different_module():
    """After loading, what survived the pickle is compared with the loaded module."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    portable = _stamp.Stamp(module).portable([])
    assert _stamp.Stamp(module).changes(module) == []
    loaded = copy.deepcopy(module)
    assert portable.reloaded(loaded).changes(loaded) == []
    other = copy.deepcopy(module)
    other[1] = nn.Tanh()
    assert portable.reloaded(other).changes(other)
    other = copy.deepcopy(module)
    other[0].weight.data.fill_(0.0)
    assert portable.reloaded(other).changes(other) == ["tensor '0.weight'"]
    assert _stamp.Stamp(module).portable(["x"]).reloaded(module).changes(module) == ["x"]


def test_nan_weights_are_not_a_change(data):
    """Raw bytes are compared: a NaN stays equal to itself."""
    module = nn.Linear(3, 2)
    with torch.no_grad():
        module.weight.fill_(float("nan"))
    stamp = _stamp.Stamp(module)
    assert stamp.changes(module) == []
    loaded = copy.deepcopy(module)
    assert stamp.portable([]).reloaded(loaded).changes(loaded) == []


def test_tensors_that_numpy_cannot_view_are_sampled_through_torch():
    """bfloat16 (no numpy dtype) goes the way of an accelerator's tensors: sampled by
    torch, fetched in one transfer."""
    module = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).to(torch.bfloat16)
    stamp = _stamp.Stamp(module)
    assert all(
        len(entry[4]) == min(entry[1][0] * entry[1][-1], _stamp.SAMPLE) * 2
        for entry in stamp.tensors[:1]
    )
    assert stamp.changes(module) == []
    module[1].weight.data.mul_(2.0)
    assert stamp.changes(module) == ["tensor '1.weight'"]


def test_a_changed_attribute_is_named():
    module = nn.Sequential(nn.LeakyReLU(0.1))
    stamp = _stamp.Stamp(module)
    module[0].negative_slope = 0.2
    assert stamp.changes(module) == ["the attribute(s) ['negative_slope'] of module '0'"]


def test_a_fitted_array_written_in_place_is_seen(frame):
    X, y = frame
    pipe = trained_pipeline(frame)
    est = laplace(pipe).fit(X, y)
    pipe.named_steps["to32"].mean_ += 1.0  # not a refit: the same array, new values
    with pytest.raises(ValueError, match=r"Pipeline step\(s\) \['to32'\]"):
        est.predict_proba(X)
