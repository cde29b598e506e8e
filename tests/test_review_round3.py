"""Adversarial review, round 3 (issues 22 and 23): each test pins a defect found in the
merged code (an ``xfail(strict=True)`` where it is not fixed yet)."""

from __future__ import annotations

import importlib
import re
import threading
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from _nets import binary_net, classifier_net
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetClassifier
from torch import nn

import sklaplace
from sklaplace import LaplaceClassifier

ROOT = Path(__file__).resolve().parents[1]


def _resolves(ref: str) -> bool:
    parts = ref.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_docstring_cross_references_name_modules_that_exist():
    """A ``:mod:``/``:func:``/``:class:`` reference to ``sklaplace.x`` in the package names
    something importable after the regrouping (``sklaplace.resolve`` moved to
    ``sklaplace.tuning.resolve``)."""
    role = re.compile(r":(?:mod|func|class|meth|attr):`~?(sklaplace(?:\.\w+)+)`")
    bad = []
    for path in sorted((ROOT / "sklaplace").rglob("*.py")):
        for ref in role.findall(path.read_text()):
            if not _resolves(ref):
                bad.append(f"{path.relative_to(ROOT)}: {ref}")
    assert bad == []


class FocalLoss(nn.CrossEntropyLoss):
    """A user's loss that subclasses ``CrossEntropyLoss`` for its arguments but computes
    another objective (focal loss, gamma = 2)."""

    def forward(self, input, target):
        logp = torch.log_softmax(input, dim=1).gather(1, target[:, None])[:, 0]
        return -((1 - logp.exp()) ** 2 * logp).mean()


@pytest.fixture(scope="module")
def rows():
    X, y = make_classification(120, 4, random_state=0)
    return X.astype(np.float32), y


@pytest.mark.parametrize(
    "kind, criterion_kw",
    [
        ("multi", {"criterion__weight": torch.tensor([1.0, 5.0])}),
        ("multi", {"criterion__label_smoothing": 0.2}),
        ("binary", {"criterion__pos_weight": torch.tensor([5.0])}),
        ("multi", {"criterion": FocalLoss}),
    ],
)
def test_a_criterion_whose_arguments_change_the_likelihood_is_not_taken_silently(
    rows, kind, criterion_kw
):
    """A net trained with class weights, label smoothing, ``pos_weight`` or a subclass of a
    supported loss that overrides ``forward`` (``issubclass`` is all the registry checks,
    :func:`sklaplace.likelihoods.base.for_criterion`) minimised another
    objective than the plain categorical/Bernoulli likelihood that sklaplace's curvature,
    tuning and log-likelihood assume (``Categorical.row_loss`` ignores them): fit must say
    so (an error or a warning), not return a posterior of a different model."""
    X, y = rows
    torch.manual_seed(0)
    if kind == "multi":
        net = classifier_net(max_epochs=2, **criterion_kw).fit(X, y)
    else:
        net = binary_net(max_epochs=2, **criterion_kw).fit(X, y.astype(np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
        except (TypeError, ValueError) as exc:
            assert "criterion" in str(exc)
            return
    assert any("criterion" in str(w.message) for w in caught), [str(w.message) for w in caught]


def test_class_weights_given_back_per_row_are_not_warned_about(rows):
    """Class weights passed again as row weights are the loss the net was trained with:
    no warning (a warning on a healthy model teaches users to ignore warnings)."""
    X, y = rows
    torch.manual_seed(0)
    weight = torch.tensor([1.0, 3.0])
    net = classifier_net(max_epochs=2, criterion__weight=weight).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(
            X, y, sample_weight=weight.numpy()[y]
        )


# ---------------------------------------------------------------- torch threads
class _Gate(nn.Module):
    """A small MLP whose forward pass, in the thread named "A", waits until thread B's
    call is over: two calls overlap for certain."""

    gate: ClassVar[dict] = {"inside": None, "release": None}

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, X):
        gate = type(self).gate
        if gate["release"] is not None and threading.current_thread().name == "A":
            gate["inside"].set()
            gate["release"].wait(30)
        return self.out(torch.tanh(self.body(X)))


def test_overlapping_calls_restore_each_threads_own_torch_count(rows):
    """torch keeps a thread count per thread. A call in thread B that overlaps a call in
    thread A (which lowered A's count first) must leave B with the count B had, not the
    one A found (``_ThreadScope`` restored the first call's count in every thread)."""
    X, y = rows
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        _Gate, criterion=nn.CrossEntropyLoss, max_epochs=1, train_split=None, verbose=0
    ).fit(X, y)
    est = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0, subset_of_weights="all")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    gate, seen = _Gate.gate, {}

    def call(name, n_threads):
        torch.get_num_threads()  # torch initialises a thread's count at its first use
        torch.set_num_threads(n_threads)
        if name == "B":
            gate["inside"].wait(30)  # A's call has lowered A's count
        with sklaplace.config_context(pass_threads=1, cache_bytes=0):
            est.predict_proba(X)
        seen[name] = torch.get_num_threads()
        if name == "B":
            gate["release"].set()

    before = torch.get_num_threads()
    gate["inside"], gate["release"] = threading.Event(), threading.Event()
    try:
        threads = [threading.Thread(target=call, args=a, name=a[0]) for a in [("A", 2), ("B", 3)]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        gate["inside"] = gate["release"] = None
        torch.set_num_threads(before)
    assert seen == {"A": 2, "B": 3}


# ---------------------------------------------------------------- in-place forward passes
class _MaxNormEmbedding(nn.Module):
    """Two category codes through an ``nn.Embedding(max_norm=...)``, whose forward pass
    renormalises the weight rows it reads in place (``torch.embedding_renorm_``)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4, max_norm=0.5)
        self.out = nn.Linear(8, 2)

    def forward(self, X):
        return self.out(self.emb(X).flatten(1))


@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_an_embedding_with_max_norm_is_refused_clearly_and_left_as_it_is(subset):
    """An embedding with ``max_norm`` writes into its weights at every forward pass, and
    sklaplace's passes run the user's tensors (pre-existing, not from today's merge). With
    every layer, fit fails with torch's "vmap: aten::embedding_renorm_ ... is not
    possible"; with the last layer, fit's passes renormalise the user's weights in place,
    and a prediction may then say "The net was changed after fit ... Call fit again" (the
    renorm bumps the weight's version), which a refit does not cure. Fit should say what
    is unsupported and how to proceed, and leave the user's weights as they were."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 10, (120, 2))
    y = (X.sum(1) > 9).astype(np.int64)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        _MaxNormEmbedding, criterion=nn.CrossEntropyLoss, max_epochs=2, verbose=0
    ).fit(X, y)
    with torch.no_grad():  # rows beyond max_norm, as an optimiser step leaves them
        net.module_.emb.weight.mul_(3.0)
    weights = net.module_.emb.weight.detach().clone()
    est = LaplaceClassifier(FrozenEstimator(net), subset_of_weights=subset, prior_precision=1.0)
    with pytest.raises(ValueError, match="max_norm"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
            est.predict_proba(X[:10])
    assert torch.equal(net.module_.emb.weight, weights)
