"""Stale-cache attacks: every pass must give with the cache on exactly what it gives off.

Each case changes something that changes what the net computes (a buffer that is not in
the ``state_dict``, an attribute or a global that ``forward`` reads, a hook, torch's global
hooks, the code of a module class, the net's input pipeline, the batch size under a
batch-dependent module, ``requires_grad`` flags), either between two nets with identical
weights or in place between two fits of one net. With the cache on, the first fit fills the
cache; the second must then give bit for bit what a run with the cache off gives (same
machine, same settings, same operations: ``assert_array_equal``). Every case also checks
that the change does change the result, so that it cannot pass vacuously. A change of
something that cannot be fingerprinted (a module holding a lock) is covered too: such a net
is simply not cached.

Predictions after fit are attacked too: a fitted estimator whose net is then changed must
predict for the changed net exactly as a cache-off run does, or refuse both ways; when the
weights that carry the posterior changed (``.data``, a numpy view, retraining, a frozen
bias) it must refuse; and a last-layer posterior must not be silently combined with a body
whose weights changed since fit.
"""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetClassifier
from skorch.dataset import Dataset
from torch import nn
from torch.utils.data import default_collate

import sklaplace
from sklaplace import LaplaceClassifier
from sklaplace._runtime import cache as _cache
from sklaplace._runtime import passes as _passes

N_ROWS = 300  # above sklaplace._runtime.passes.MIN_CACHED_ROWS (256): these passes are cached


# ---------------------------------------------------------------- cache switches
def cache_off():
    """The cache turned off inside a ``with`` block."""
    return sklaplace.config_context(cache_bytes=0)


@pytest.fixture(autouse=True, params=["always", "reuse"])
def fresh_cache(monkeypatch, request):
    """An empty cache, on, caching passes of any size (restored afterwards), under both
    admissions: every pass stored from its first request, or from its second."""
    monkeypatch.setattr(_passes, "MIN_CACHED_ROWS", 0, raising=False)
    old = sklaplace.get_config()["cache_admission"]
    sklaplace.set_config(cache_admission=request.param)  # (threads too)
    cache = _cache.get_cache()
    cache.clear()
    assert sklaplace.get_config()["cache_bytes"] > 0
    yield cache
    sklaplace.set_config(cache_admission=old)
    cache.clear()


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=N_ROWS,
        n_features=5,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        random_state=0,
    )
    return X.astype(np.float32), y


# ---------------------------------------------------------------- modules
class Plain(nn.Module):
    """``Linear(5, 16) -> ReLU -> Linear(16, 3)``; the base of the cases below."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(5, 16)
        self.out = nn.Linear(16, 3)

    def hidden(self, x):
        return torch.relu(self.l1(x))

    def forward(self, x):
        return self.out(self.hidden(x))


class ShiftBuffer(Plain):
    """An input shift held in a buffer that is not in the state_dict."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(5), persistent=False)

    def forward(self, x):
        return self.out(self.hidden(x - self.shift))


class Activation(Plain):
    """An activation chosen by a string attribute."""

    def __init__(self, act: str = "relu") -> None:
        super().__init__()
        self.act = act

    def forward(self, x):
        h = self.l1(x)
        return self.out(torch.relu(h) if self.act == "relu" else torch.tanh(h))


class Scale(Plain):
    """A float attribute scaling the hidden features."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = 1.0

    def forward(self, x):
        return self.out(self.hidden(x) * self.scale)


class PlainTensorAttr(Plain):
    """A mask held as a plain tensor attribute (neither parameter nor buffer)."""

    def __init__(self) -> None:
        super().__init__()
        self.mask = torch.ones(16)

    def forward(self, x):
        return self.out(self.hidden(x) * self.mask)


class ScaledOutput(Plain):
    """Scales the head's output: with ``scale != 1`` the output is not the head's."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = 1.0

    def forward(self, x):
        return self.out(self.hidden(x)) * self.scale


class LockedScale(Scale):
    """Holds a lock, which cannot be fingerprinted: its passes are never cached."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


GAIN = 1.0  # a module-level constant read by GlobalGain.forward


class GlobalGain(Plain):
    def forward(self, x):
        return self.out(self.hidden(x) * GAIN)


# a configuration module, as ``import config`` would give, read by ConfigGain.forward
config = types.ModuleType("sklaplace_test_config")
config.gain = 1.0


class ConfigGain(Plain):
    def forward(self, x):
        return self.out(self.hidden(x) * config.gain)


class BatchDependent(Plain):
    """Batch statistics in evaluation mode: the output of a row depends on its batch."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(16, track_running_stats=False)

    def forward(self, x):
        return self.out(self.norm(self.hidden(x)))


class WithReLUModule(Plain):
    """The activation is a torch module (nn.ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        self.act = nn.ReLU()

    def forward(self, x):
        return self.out(self.act(self.l1(x)))


def same_name_classes():
    """Two module classes with the same module and qualified name, different code."""

    def make(use_tanh: bool):
        if use_tanh:

            class Net(Plain):
                def forward(self, x):
                    return self.out(torch.tanh(self.l1(x)))

        else:

            class Net(Plain):
                def forward(self, x):
                    return self.out(torch.relu(self.l1(x)))

        Net.__qualname__ = "Net"
        return Net

    return make(False), make(True)


def closure_classes():
    """Two module classes, same name, same code, different values in their closures."""

    def make(gain: float):
        class Net(Plain):
            def forward(self, x):
                return self.out(torch.relu(self.l1(x) * gain))

        Net.__qualname__ = "Net"
        return Net

    return make(1.0), make(2.5)


# ---------------------------------------------------------------- skorch pipelines
def doubling_collate(batch):
    Xb, yb = default_collate(batch)
    return Xb * 2, yb


class ShiftedDataset(Dataset):
    def transform(self, X, y):
        X, y = super().transform(X, y)
        return X + 1.0, y


class DoublingNet(NeuralNetClassifier):
    """A skorch net whose ``infer`` doubles the input."""

    def infer(self, x, **fit_params):
        return super().infer(x * 2, **fit_params)


# ---------------------------------------------------------------- helpers
def make_net(module, data, *, cls=NeuralNetClassifier, epochs=5, seed=0, **kwargs):
    """A small trained net (or, with ``epochs=0``, an initialized one)."""
    X, y = data
    torch.manual_seed(seed)
    params = {
        "criterion": nn.CrossEntropyLoss,
        "max_epochs": epochs,
        "lr": 0.1,
        "batch_size": 64,
        "train_split": None,
        "verbose": 0,
    }
    params.update(kwargs)
    net = cls(module, **params)
    if epochs:
        return net.fit(X, y)
    return net.initialize()


def copy_of(net, data, **kwargs):
    """Another net of ``net``'s kind (``kwargs`` changing it) with the same weights."""
    module = kwargs.pop("module", type(net.module_))
    other = make_net(module, data, cls=kwargs.pop("cls", type(net)), epochs=0, **kwargs)
    other.module_.load_state_dict(net.module_.state_dict())
    for name, buf in net.module_.named_buffers():
        other.module_.get_buffer(name).copy_(buf)
    return other


def run(net, data, **params):
    """Fit a LaplaceClassifier on the frozen net; probabilities and evidence."""
    X, y = data
    params.setdefault("prior_precision", 1.0)
    est = LaplaceClassifier(FrozenEstimator(net), **params).fit(X, y)
    return est.predict_proba(X), est.log_marginal_likelihood()


def assert_same(on, off) -> None:
    assert_array_equal(on[0], off[0])
    assert on[1] == off[1]


def assert_differs(a, b) -> None:
    """The change must change the result (else the case proves nothing)."""
    assert np.abs(a[0] - b[0]).max() > 1e-6 or abs(a[1] - b[1]) > 1e-6


def two_nets(net_a, net_b, data, **params):
    """Fill the cache with net_a, then run net_b; net_b with the cache off; net_a alone."""
    run(net_a, data, **params)
    on = run(net_b, data, **params)
    with cache_off():
        off = run(net_b, data, **params)
        a_alone = run(net_a, data, **params)
    assert_same(on, off)
    assert_differs(off, a_alone)


def in_place(net, data, change, **params):
    """Fit (filling the cache), change the net in place, fit again; same as cache off."""
    before = run(net, data, **params)
    change(net)
    on = run(net, data, **params)
    with cache_off():
        off = run(net, data, **params)
    assert_same(on, off)
    assert_differs(on, before)


# ---------------------------------------------------------------- two nets, same weights
def test_non_persistent_buffer_differs(data):
    net_a = make_net(ShiftBuffer, data)
    net_b = copy_of(net_a, data)
    net_b.module_.shift.fill_(1.5)
    two_nets(net_a, net_b, data)


def test_activation_chosen_by_a_string_differs(data):
    net_a = make_net(Activation, data, module__act="relu")
    net_b = copy_of(net_a, data, module__act="tanh")
    two_nets(net_a, net_b, data)


def test_collate_fn_differs(data):
    net_a = make_net(Plain, data)
    net_b = copy_of(net_a, data, iterator_valid__collate_fn=doubling_collate)
    two_nets(net_a, net_b, data)


def test_dataset_differs(data):
    net_a = make_net(Plain, data)
    net_b = copy_of(net_a, data, dataset=ShiftedDataset)
    two_nets(net_a, net_b, data)


def test_overridden_infer_differs(data):
    net_a = make_net(Plain, data)
    net_b = copy_of(net_a, data, cls=DoublingNet)
    two_nets(net_a, net_b, data)


def test_batch_size_of_a_batch_dependent_module(data):
    net_a = make_net(BatchDependent, data)
    net_b = copy_of(net_a, data, batch_size=50)
    two_nets(net_a, net_b, data)


def test_estimator_batch_size_of_a_batch_dependent_module(data):
    net = make_net(BatchDependent, data)
    run(net, data, batch_size=64)
    on = run(net, data, batch_size=50)
    with cache_off():
        off = run(net, data, batch_size=50)
        other = run(net, data, batch_size=64)
    assert_same(on, off)
    assert_differs(on, other)


@pytest.mark.parametrize("classes", [same_name_classes, closure_classes])
def test_same_name_same_weights_different_forward(classes, data):
    cls_a, cls_b = classes()
    assert (cls_a.__module__, cls_a.__qualname__) == (cls_b.__module__, cls_b.__qualname__)
    net_a = make_net(cls_a, data)
    net_b = copy_of(net_a, data, module=cls_b)
    assert repr(net_a.module_) == repr(net_b.module_)
    two_nets(net_a, net_b, data)


# ---------------------------------------------------------------- one net, changed in place
def _set_shift(net):
    net.module_.shift.fill_(1.5)


def _set_act(net):
    net.module_.act = "tanh"


def _set_scale(net):
    net.module_.scale = 3.0


def _set_mask(net):
    net.module_.mask[::2] = 0.0


def _copy_data(net):
    w = net.module_.l1.weight
    w.data.copy_(w.data * 1.5)


def _numpy_view(net):
    # writes through a numpy view do not bump torch's version counters
    net.module_.l1.weight.detach().numpy()[:] *= 1.5


def _batch_size(net):
    net.set_params(batch_size=50)


def _iterator_batch_size(net):
    # (skorch's set_params refuses this key on an initialized net)
    net.iterator_valid__batch_size = 50


def _replace_forward(net):
    def forward(self, x):
        return self.out(torch.tanh(self.l1(x)))

    type(net.module_).forward = forward


IN_PLACE = {
    "non_persistent_buffer": (ShiftBuffer, _set_shift),
    "string_attribute": (Activation, _set_act),
    "float_attribute": (Scale, _set_scale),
    "float_attribute_beside_a_lock": (LockedScale, _set_scale),
    "plain_tensor_attribute": (PlainTensorAttr, _set_mask),
    "param_data_copy": (Plain, _copy_data),
    "numpy_view_write": (Plain, _numpy_view),
    "net_batch_size": (BatchDependent, _batch_size),
    "iterator_valid_batch_size": (BatchDependent, _iterator_batch_size),
}


@pytest.mark.parametrize("case", list(IN_PLACE))
def test_changed_in_place_between_fits(case, data):
    module, change = IN_PLACE[case]
    in_place(make_net(module, data), data, change)


def test_class_forward_replaced_between_fits(data):
    # a class of its own, so that replacing its forward touches no other test
    cls = type("Replaceable", (Plain,), {"forward": Plain.forward})
    in_place(make_net(cls, data), data, _replace_forward)


def test_module_global_changed_between_fits(data, monkeypatch):
    def change(net):
        monkeypatch.setattr(sys.modules[__name__], "GAIN", 2.5)

    in_place(make_net(GlobalGain, data), data, change)


def test_attribute_of_a_config_module_changed_between_fits(data, monkeypatch):
    def change(net):
        monkeypatch.setattr(config, "gain", 2.5)

    in_place(make_net(ConfigGain, data), data, change)


def test_user_forward_hook_added_after_a_fit(data):
    handles = []

    def change(net):
        handles.append(net.module_.l1.register_forward_hook(lambda mod, inp, out: out * 2.0))

    try:
        in_place(make_net(Plain, data), data, change)
    finally:
        for h in handles:
            h.remove()


def test_user_forward_pre_hook_added_after_a_fit(data):
    handles = []

    def change(net):
        hook = net.module_.register_forward_pre_hook(lambda mod, args: (args[0] * 2.0,))
        handles.append(hook)

    try:
        in_place(make_net(Plain, data), data, change)
    finally:
        for h in handles:
            h.remove()


def test_global_module_forward_hook_added_after_a_fit(data):
    """torch's global hooks (``register_module_forward_hook``) act on every module."""
    handles = []

    def double_hidden(mod, inputs, output):
        if isinstance(mod, nn.Linear) and mod.out_features == 16:
            return output * 2.0
        return None

    def change(net):
        handles.append(nn.modules.module.register_module_forward_hook(double_hidden))

    try:
        in_place(make_net(Plain, data), data, change)
    finally:
        for h in handles:
            h.remove()


def test_library_module_class_patched_between_fits(data, monkeypatch):
    """The code of every module class in the tree, nn.ReLU's included."""

    def change(net):
        monkeypatch.setattr(nn.ReLU, "forward", lambda self, x: torch.relu(x) * 2.0)

    in_place(make_net(WithReLUModule, data), data, change)


@pytest.mark.parametrize("structure", ["diag", "kron"])
def test_freezing_a_layer_between_fits(structure, data):
    def freeze(net):
        net.module_.l1.requires_grad_(False)

    in_place(
        make_net(Plain, data), data, freeze, subset_of_weights="all", hessian_structure=structure
    )


def test_unfreezing_a_layer_between_fits(data):
    net = make_net(Plain, data)
    net.module_.l1.bias.requires_grad_(False)

    def unfreeze(net):
        net.module_.l1.bias.requires_grad_(True)

    in_place(net, data, unfreeze, subset_of_weights="all", hessian_structure="diag")


def test_freezing_the_head_bias_between_last_layer_fits(data):
    def freeze(net):
        net.module_.out.bias.requires_grad_(False)

    in_place(make_net(Plain, data), data, freeze, hessian_structure="diag")


# ---------------------------------------------------------------- validation on a hit
def test_head_check_runs_on_a_cache_hit(data):
    """A module whose output stops being its head's output is refused on every fit."""
    net = make_net(ScaledOutput, data)
    run(net, data)
    net.module_.scale = 3.0
    with pytest.raises(ValueError, match="last Linear"):
        run(net, data)  # (before the cache is turned off: turning it off may empty it)
    with cache_off(), pytest.raises(ValueError, match="last Linear"):
        run(net, data)


# ---------------------------------------------------------------- predictions after fit
def predict_or_refuse(est, X):
    """``est.predict_proba(X)``, or the ValueError it raises."""
    try:
        return est.predict_proba(X)
    except ValueError as exc:
        return exc


@pytest.mark.parametrize(
    "module, change",
    [(ShiftBuffer, _set_shift), (Activation, _set_act), (BatchDependent, _batch_size)],
    ids=["non_persistent_buffer", "string_attribute", "batch_size"],
)
def test_predictions_after_the_net_changed_are_never_stale(module, change, data):
    """Last-layer posterior, the body's computation changed after fit (the cache filled
    before the change): predictions are the changed net's, the same with the cache on
    and off, or refused both ways; never the cached answer of the net before."""
    X, y = data
    net = make_net(module, data)
    est = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
    before = est.predict_proba(X)
    change(net)
    on = predict_or_refuse(est, X)
    with cache_off():
        off = predict_or_refuse(est, X)
    if isinstance(on, ValueError) or isinstance(off, ValueError):
        assert isinstance(on, ValueError) and isinstance(off, ValueError)
        return
    assert_array_equal(on, off)
    assert np.abs(on - before).max() > 1e-3


def _body_step(net):
    with torch.no_grad():
        next(net.module_.parameters()).mul_(1.5)  # an in-place op on the body's first layer


def _body_reload(net):
    state = {k: v * 1.5 if "0." in k else v for k, v in net.module_.state_dict().items()}
    net.module_.load_state_dict(state)


@pytest.mark.parametrize("change", [_body_step, _body_reload], ids=["in_place", "reload"])
def test_a_body_changed_after_fit_is_not_mixed_with_the_old_posterior(data, change):
    """A last-layer posterior was computed from the features of the body at fit. With the
    body's weights changed in place afterwards (fine-tuned, reloaded), predictions refuse:
    the old curvature would be applied to new features. (Detected through torch's version
    counters; writes that bypass them, through ``.data`` or a numpy view, through a sample
    of each tensor's values: tests/test_stamp.py.)"""
    X, y = data
    net = make_net(Plain, data)
    est = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
    est.predict_proba(X)
    change(net)
    with pytest.raises(ValueError, match="The net was changed after fit"):
        est.predict_proba(X)
    with cache_off(), pytest.raises(ValueError, match="The net was changed after fit"):
        est.predict_proba(X)
    refit = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
    assert np.isfinite(refit.predict_proba(X)).all()  # a new fit describes the new net


def _retrain(net, data):
    X, y = data
    net.partial_fit(X, y)


def _head_data_copy(net, data):
    w = net.module_.out.weight
    w.data.copy_(w.data * 1.5)


def _head_numpy_view(net, data):
    net.module_.out.weight.detach().numpy()[:] *= 1.5


def _freeze_bias(net, data):
    net.module_.out.bias.requires_grad_(False)


@pytest.mark.parametrize("subset", ["last_layer", "all"])
@pytest.mark.parametrize(
    "change", [_retrain, _head_data_copy, _head_numpy_view, _freeze_bias], ids=lambda f: f.__name__
)
def test_predict_refuses_when_the_posterior_weights_changed(change, subset, data):
    X, y = data
    net = make_net(Plain, data)
    est = LaplaceClassifier(
        FrozenEstimator(net), prior_precision=1.0, subset_of_weights=subset
    ).fit(X, y)
    est.predict_proba(X)  # fills the cache
    change(net, data)
    with pytest.raises(ValueError, match=r"changed since fit|fit again"):
        est.predict_proba(X)
    with cache_off(), pytest.raises(ValueError, match=r"changed since fit|fit again"):
        est.predict_proba(X)


def test_refit_after_retraining_in_place(data):
    """Fit, retrain the same net object in place, fit again: the second fit is the new
    net's (cache on) as with the cache off."""
    net = make_net(Plain, data)
    in_place(net, data, lambda n: _retrain(n, data))
