"""The estimators with subset_of_weights="all" or a list of modules, end to end."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV
from skorch import NeuralNetClassifier, NeuralNetRegressor
from torch import nn

from sklaplace import LaplaceClassifier, LaplaceRegressor
from sklaplace._runtime.passes import NetView
from sklaplace.approximations import LayerWise
from sklaplace.likelihoods import Classification
from sklaplace.links import probit_logits


def _mlp(n_in, n_out):
    return nn.Sequential(nn.Linear(n_in, 12), nn.Tanh(), nn.Linear(12, 8), nn.Tanh(),
                         nn.Linear(8, n_out))  # fmt: skip


@pytest.fixture(scope="module")
def cls_setup():
    X, y = make_classification(
        n_samples=160, n_features=5, n_informative=4, n_redundant=0, n_classes=3,
        random_state=0,
    )  # fmt: skip
    X = X.astype(np.float32)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        _mlp(5, 3),
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.02,
        max_epochs=30,
        train_split=None,
        verbose=0,
    ).fit(X, y)
    return X, y, net


@pytest.mark.parametrize("structure", ["kron", "diag"])
def test_classifier_matches_the_approximation(cls_setup, structure):
    X, y, net = cls_setup
    clf = LaplaceClassifier(
        FrozenEstimator(net),
        subset_of_weights="all",
        hessian_structure=structure,
        prior_precision=[2.0, 3.0, 4.0],
    ).fit(X, y)
    assert clf.posterior_.names == ["0", "2", "4"]
    # the approximation on all rows in one batch; the probit link on the diagonal of the
    # covariances (the estimator asks for the variances alone)
    lik = Classification()
    view = NetView(net, len(X))
    approx = LayerWise(structure, "all").fit(view, "4", lik, X, y)
    tau = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)
    scale = torch.tensor(1.0, dtype=torch.float64)
    (proj,) = approx.project(view, X)
    var = torch.diagonal(approx.moments(proj, tau, scale, cov=True), dim1=1, dim2=2)
    expected = torch.exp(lik.log_link(probit_logits(proj.mean, var))).numpy()
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-6, atol=1e-9)


def test_subnetwork_and_dict_prior(cls_setup):
    X, y, net = cls_setup
    clf = LaplaceClassifier(
        FrozenEstimator(net), subset_of_weights=["2", "4"], prior_precision={"2": 1.5, "4": 3.0}
    ).fit(X, y)
    assert clf.posterior_.names == ["2", "4"]
    np.testing.assert_array_equal(clf.prior_precision_, [1.5, 3.0])
    same = LaplaceClassifier(
        FrozenEstimator(net), subset_of_weights=["2", "4"], prior_precision=[1.5, 3.0]
    ).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), same.predict_proba(X))
    with pytest.raises(ValueError, match=r"unknown: \['9'\], missing: \['4'\]"):
        clf.set_params(prior_precision={"2": 1.0, "9": 1.0}).predict_proba(X)


def test_unknown_module_name_is_a_clear_error(cls_setup):
    X, y, net = cls_setup
    with pytest.raises(ValueError, match="nope"):
        LaplaceClassifier(
            FrozenEstimator(net), subset_of_weights=["nope"], prior_precision=1.0
        ).fit(X, y)


def test_marglik_gives_one_prior_per_layer(cls_setup):
    X, y, net = cls_setup
    clf = LaplaceClassifier(
        FrozenEstimator(net), subset_of_weights="all", prior_precision="marglik"
    ).fit(X, y)
    assert clf.prior_precision_.shape == (3,)
    for scale in (0.5, 2.0):  # a maximum: moving any layer's prior lowers the evidence
        for i in range(3):
            moved = clf.prior_precision_.copy()
            moved[i] *= scale
            assert clf.log_marginal_likelihood(moved) < clf.log_marginal_likelihood_value_


def test_weight_sampling_predictive(cls_setup):
    X, y, net = cls_setup
    weights = {k: v.clone() for k, v in net.module_.state_dict().items()}
    clf = LaplaceClassifier(
        FrozenEstimator(net),
        subset_of_weights="all",
        prior_precision=1.0,
        predictive="nn",
        n_samples=30,
        random_state=0,
    ).fit(X, y)
    first = clf.predict_proba(X)
    np.testing.assert_array_equal(first, clf.predict_proba(X))  # reproducible
    np.testing.assert_allclose(first.sum(1), 1.0, rtol=1e-6)
    # each row's draws do not depend on the other rows predicted with it
    np.testing.assert_allclose(clf.predict_proba(X[::-1])[::-1], first, rtol=1e-5, atol=1e-7)
    assert not np.allclose(clf.set_params(random_state=1).predict_proba(X), first)
    # a very narrow posterior gives the net's own probabilities
    sharp = clf.set_params(prior_precision=1e8).predict_proba(X)
    np.testing.assert_allclose(sharp, net.predict_proba(X), atol=1e-3)
    for k, v in net.module_.state_dict().items():  # live weights never written
        assert torch.equal(v, weights[k])


def test_grid_search_and_holdout_with_all_layers(cls_setup):
    X, y, net = cls_setup
    search = GridSearchCV(
        LaplaceClassifier(FrozenEstimator(net), subset_of_weights="all"),
        {"prior_precision": [0.1, 10.0, 1000.0]},
        scoring="neg_log_loss",
        cv=3,
    ).fit(X, y)
    assert search.best_params_["prior_precision"] in (0.1, 10.0, 1000.0)
    unfitted = NeuralNetClassifier(
        _mlp(5, 3),
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.02,
        max_epochs=10,
        verbose=0,
    )
    clf = LaplaceClassifier(unfitted, subset_of_weights="all", random_state=0).fit(X, y)
    assert np.all(np.isfinite(clf.prior_precision_)) and len(clf.validation_indices_) > 0


def test_regressor_all_layers():
    X, y = make_regression(n_samples=120, n_features=3, noise=5.0, random_state=0)
    X, y = X.astype(np.float32), (y / y.std()).astype(np.float32)
    torch.manual_seed(0)
    net = NeuralNetRegressor(
        _mlp(3, 1), optimizer=torch.optim.Adam, lr=0.02, max_epochs=40, train_split=None,
        verbose=0,
    ).fit(X, y[:, None])  # fmt: skip
    reg = LaplaceRegressor(
        FrozenEstimator(net), subset_of_weights="all", prior_precision=1.0, sigma_noise=0.3
    ).fit(X, y)
    far = X * 20
    mean, std = reg.predict(far, return_std=True)
    np.testing.assert_allclose(mean, net.predict(far)[:, 0], rtol=1e-5, atol=1e-5)
    mean_in, std_in = reg.predict(X, return_std=True)
    assert np.all(std > 0.3) and std.mean() > std_in.mean()  # wider away from the data
    # the covariance across rows (its dense reference is in test_projections.py)
    mean5, cov = reg.predict(X[:5], return_cov=True)
    _, std5 = reg.predict(X[:5], return_std=True)
    eps32 = np.finfo(np.float32).eps  # another batch size rounds the float32 net differently
    np.testing.assert_allclose(mean5, mean_in[:5], rtol=16 * eps32, atol=16 * eps32)
    np.testing.assert_allclose(np.diag(cov), std5**2, rtol=1e-10)
    np.testing.assert_allclose(cov, cov.T, rtol=0, atol=0)
    assert np.linalg.eigvalsh(cov).min() > 0


def test_a_net_whose_rows_depend_on_their_batch(cls_setup):
    """A batch norm without running statistics mixes a batch's rows: per-row gradients are
    undefined, so "all" refuses with the reason, and "auto" takes the last layer."""
    X, y, _ = cls_setup
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8, track_running_stats=False),
                           nn.Tanh(), nn.Linear(8, 3))  # fmt: skip
    net = NeuralNetClassifier(
        module, criterion=nn.CrossEntropyLoss, max_epochs=3, train_split=None, verbose=0
    ).fit(X, y)
    with pytest.raises(ValueError, match=r"\['1'\].*track_running_stats=False"):
        LaplaceClassifier(FrozenEstimator(net), subset_of_weights="all").fit(X, y)
    with pytest.warns(
        UserWarning, match=r"takes the last layer.*\['1'\].*track_running_st"
    ) as rec:
        clf = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
    assert len(rec) == 1 and rec[0].filename == __file__  # points at the caller's line
    assert "subset_of_weights='last_layer'" in str(rec[0].message)  # and says what to do
    assert clf.subset_of_weights_ == "last_layer"
    assert np.isfinite(clf.predict_proba(X)).all()
    # chosen explicitly, the last layer needs no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LaplaceClassifier(
            FrozenEstimator(net), prior_precision=1.0, subset_of_weights="last_layer"
        ).fit(X, y)


def test_auto_does_not_warn_on_a_batch_norm_with_running_statistics(cls_setup):
    """In eval mode a batch norm with running statistics treats rows on their own: "auto"
    takes every layer, silently."""
    X, y, _ = cls_setup
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))
    net = NeuralNetClassifier(
        module, criterion=nn.CrossEntropyLoss, max_epochs=3, train_split=None, verbose=0
    ).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
        assert np.isfinite(clf.predict_proba(X)).all()
    assert clf.subset_of_weights_ == "all"


def test_auto_takes_every_layer_of_a_small_net_and_the_last_of_a_large_one(cls_setup, monkeypatch):
    """The default: all layers up to AUTO_MAX_PARAMS weights and AUTO_MAX_OUTPUTS outputs
    (the same posterior as subset_of_weights="all"), the last layer beyond, and for "full"."""
    from sklaplace import approximations

    X, y, net = cls_setup
    frozen = FrozenEstimator(net)
    auto = LaplaceClassifier(frozen, prior_precision=1.0).fit(X, y)
    every = LaplaceClassifier(frozen, prior_precision=1.0, subset_of_weights="all").fit(X, y)
    assert auto.subset_of_weights == "auto" and auto.subset_of_weights_ == "all"
    np.testing.assert_array_equal(auto.predict_proba(X), every.predict_proba(X))
    full = LaplaceClassifier(frozen, prior_precision=1.0, hessian_structure="full").fit(X, y)
    assert full.subset_of_weights_ == "last_layer"
    n_params = sum(p.numel() for p in net.module_.parameters())
    monkeypatch.setattr(approximations, "AUTO_MAX_PARAMS", n_params - 1)
    large = LaplaceClassifier(frozen, prior_precision=1.0).fit(X, y)
    last = LaplaceClassifier(frozen, prior_precision=1.0, subset_of_weights="last_layer").fit(X, y)
    assert large.subset_of_weights_ == "last_layer"
    np.testing.assert_array_equal(large.predict_proba(X), last.predict_proba(X))
    monkeypatch.setattr(approximations, "AUTO_MAX_PARAMS", n_params)
    monkeypatch.setattr(approximations, "AUTO_MAX_OUTPUTS", 2)  # the net has 3 outputs
    assert LaplaceClassifier(frozen).fit(X, y).subset_of_weights_ == "last_layer"


class _CentreOnBatch(nn.Module):
    """Subtracts the batch mean: no parameters and no batch norm, yet batch-dependent."""

    def forward(self, x):
        return x - x.mean(0, keepdim=True)


class _AlwaysDropout(nn.Module):
    """Dropout kept on in evaluation mode (MC dropout): random from call to call."""

    def forward(self, x):
        return nn.functional.dropout(x, 0.5, training=True)


@pytest.mark.parametrize("odd", [_CentreOnBatch, _AlwaysDropout], ids=["batch-mean", "dropout"])
def test_a_net_whose_rows_are_not_its_own_is_found_by_its_outputs(cls_setup, odd):
    """What no module type reveals, the outputs do: two rows run alone differ from the same
    rows in their batch. "all" refuses with the reason; "auto" warns and takes the last
    layer, whose posterior is the one a plain last-layer fit gives."""
    X, y, _ = cls_setup
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(5, 8), odd(), nn.Tanh(), nn.Linear(8, 3))
    net = NeuralNetClassifier(
        module, criterion=nn.CrossEntropyLoss, max_epochs=3, train_split=None, verbose=0
    ).fit(X, y)
    frozen = FrozenEstimator(net)
    with pytest.raises(ValueError, match=r"change by .* when they are run without the other"):
        LaplaceClassifier(frozen, subset_of_weights="all", prior_precision=1.0).fit(X, y)
    with pytest.warns(UserWarning, match="'auto' takes the last layer instead"):
        auto = LaplaceClassifier(frozen, prior_precision=1.0).fit(X, y)
    assert auto.subset_of_weights_ == "last_layer"
    if odd is _CentreOnBatch:  # deterministic: the same posterior as asking for it
        last = LaplaceClassifier(frozen, prior_precision=1.0, subset_of_weights="last_layer")
        np.testing.assert_array_equal(auto.predict_proba(X), last.fit(X, y).predict_proba(X))
