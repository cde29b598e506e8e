"""Numerical robustness: extreme logits, saturated softmax, degenerate features, extreme
hyper-parameters, and float32 curvature accumulated over many rows.

Every case checks the same contract (``check_healthy``): the posterior precision's
eigenvalues are finite and positive, probabilities are finite and sum to 1, predictive
standard deviations are finite and positive, and the log evidence is finite. Out of the
numerically safe range the error is a ValueError that names the parameter.
"""

import copy

import numpy as np
import pytest
import torch
from _nets import binary_net, classifier_net, regressor_net
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator

from sklaplace import LaplaceClassifier, LaplaceRegressor, prediction

STRUCTURES = ["kron", "diag", "full"]


@pytest.fixture(scope="module")
def binary(cls_data):
    X, y = cls_data
    torch.manual_seed(0)
    yb = (y == 0).astype(np.float32)
    return binary_net(max_epochs=20, lr=0.02, optimizer=torch.optim.Adam).fit(
        X.astype(np.float32), yb
    ), yb


def scaled_head(net, factor):
    """A copy of the net whose last layer (weights and bias) is multiplied by ``factor``."""
    net = copy.deepcopy(net)
    with torch.no_grad():
        net.module_.out.weight.mul_(factor)
        net.module_.out.bias.mul_(factor)
    return net


def max_abs_output(net, X):
    with torch.no_grad():
        return float(net.module_(torch.as_tensor(X, dtype=torch.float32)).abs().max())


def eigenvalues(est, tau, sigma=1.0):
    """Eigenvalues of the posterior precision ``H / (sigma^2 T) + tau``."""
    s = sigma**2 if isinstance(est, LaplaceRegressor) else 1.0
    scale = torch.tensor(1.0 / (s * est.temperature), dtype=torch.float64)
    tau = torch.tensor(float(tau), dtype=torch.float64)
    return est.posterior_.blocks[0].eigenvalues(tau, scale)


def check_healthy(est, X, tau, sigma=1.0):
    """The shared contract: finite positive eigenvalues, valid probabilities, stds > 0."""
    lam = eigenvalues(est, tau, sigma)
    assert torch.isfinite(lam).all() and (lam > 0).all()
    assert np.isfinite(est.log_marginal_likelihood(tau, *([sigma] if sigma != 1.0 else [])))
    if isinstance(est, LaplaceClassifier):
        for link in ("probit", "mc"):
            proba = est.set_params(link_approx=link).predict_proba(X)
            assert np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all()
            np.testing.assert_allclose(proba.sum(1), 1.0, rtol=0, atol=1e-12)
        est.set_params(link_approx="probit")
        # the logits' predictive std (the classifier's counterpart of return_std)
        moments = prediction.moments(est._fitted, X, est._hyper(), cov=False)
        std = torch.cat([v for _, v in moments]).sqrt()
        assert torch.isfinite(std).all() and (std > 0).all()
    else:
        mean, std = est.predict(X, return_std=True)
        assert np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
        assert (std >= sigma * (1 - 1e-12)).all()  # std includes the observation noise


# ---------------------------------------------------------------- extreme outputs
@pytest.mark.parametrize("structure", STRUCTURES)
def test_extreme_logits(cls_data, cls_net, structure):
    X, y = cls_data
    net = scaled_head(cls_net, 1e4 / max_abs_output(cls_net, X))
    assert 5e3 < max_abs_output(net, X) <= 1e4 * (1 + 1e-6)
    for prior in (1e-6, 1.0, 1e8, "marglik", "holdout"):
        clf = LaplaceClassifier(
            FrozenEstimator(net), hessian_structure=structure, prior_precision=prior
        ).fit(X, y)
        check_healthy(clf, X, clf.prior_precision_[0])
        # predict is the most probable class of the predictive (which may differ from the
        # net's: the probit link shrinks each logit by its own variance) ...
        np.testing.assert_array_equal(clf.predict(X), clf.predict_proba(X).argmax(axis=1))
        if prior == 1e8:  # ... and is the net's when the posterior is tight
            np.testing.assert_array_equal(clf.predict(X), net.predict(X.astype(np.float32)))


def _margin(net, X):
    """Gap between the largest and second largest logit (|logit| for one logit)."""
    with torch.no_grad():
        f = net.module_(torch.as_tensor(X, dtype=torch.float32))
    if f.shape[1] == 1:
        return f[:, 0].abs().numpy()
    top = torch.topk(f, 2, dim=1).values
    return (top[:, 0] - top[:, 1]).numpy()


def test_saturated_softmax_leaves_the_prior(cls_data, cls_net, binary):
    """Saturated probabilities have zero curvature: the posterior is the prior."""
    X, y = cls_data
    clf = LaplaceClassifier(
        FrozenEstimator(cls_net), prior_precision=1.0, hessian_structure="full"
    ).fit(X, y)
    assert float(eigenvalues(clf, 1.0).max()) > 10.0  # the unscaled net has curvature
    net_b, yb = binary
    for net, target in ((cls_net, y), (net_b, yb)):
        # rows away from the decision boundary, then logits up to 1e4: every margin >= 500
        margin = _margin(net, X)
        rows = margin > 0.05 * max_abs_output(net, X)
        saturated = scaled_head(net, 1e4 / max_abs_output(net, X))
        assert _margin(saturated, X[rows]).min() >= 500 and rows.sum() > 50
        for structure in STRUCTURES:
            clf = LaplaceClassifier(
                FrozenEstimator(saturated), prior_precision=1.0, hessian_structure=structure
            )
            clf.fit(X[rows], target[rows])
            np.testing.assert_allclose(eigenvalues(clf, 1.0), 1.0, rtol=1e-12)
            check_healthy(clf, X, 1.0)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_extreme_regression_outputs(reg_data, reg_net, structure):
    X, y = reg_data
    net = scaled_head(reg_net, 1e4)
    for sigma in (1.0, "marglik"):
        for prior in (1.0, "marglik"):
            reg = LaplaceRegressor(
                FrozenEstimator(net),
                hessian_structure=structure,
                prior_precision=prior,
                sigma_noise=sigma,
            ).fit(X, y)
            check_healthy(reg, X, reg.prior_precision_[0], reg.sigma_noise_)


# ---------------------------------------------------------------- degenerate features
def _degenerate(X):
    """X with a duplicated, a constant, an all-zero and a 1e-12-scaled column added."""
    return np.c_[X, X[:, 0], np.full(len(X), 3.0), np.zeros(len(X)), 1e-12 * X[:, 1]]


@pytest.mark.parametrize("structure", STRUCTURES)
def test_rank_deficient_and_constant_features(cls_data, reg_data, structure):
    X, y = cls_data
    Xd = _degenerate(X)
    torch.manual_seed(0)
    clf = LaplaceClassifier(
        classifier_net(3, max_epochs=5), prior_precision=1.0, hessian_structure=structure
    )
    check_healthy(clf.fit(Xd, y), Xd, 1.0)
    # more features into the last layer (64 + bias) than rows (20): A is singular
    torch.manual_seed(0)
    few = LaplaceClassifier(
        classifier_net(3, hidden=64, max_epochs=5), hessian_structure=structure
    )
    check_healthy(few.fit(Xd[:20], y[:20]), Xd, 1.0)
    lam = eigenvalues(few, 1e-6)
    assert int((lam < 1e-5).sum()) > 0  # unconstrained directions sit at the prior

    X, y = reg_data
    Xd = _degenerate(X)
    torch.manual_seed(0)
    reg = LaplaceRegressor(
        regressor_net(max_epochs=5),
        prior_precision=1.0,
        sigma_noise=1.0,
        hessian_structure=structure,
    )
    reg.set_params(sigma_noise="marglik", prior_precision="marglik").fit(Xd, y)
    check_healthy(reg, Xd, reg.prior_precision_[0], reg.sigma_noise_)


def test_constant_X(cls_data, cls_net):
    """Every row the same: rank-one features, one predicted class, still a valid posterior."""
    X, y = cls_data
    X_const = np.tile(X[:1], (len(X), 1))
    for structure in STRUCTURES:
        clf = LaplaceClassifier(
            FrozenEstimator(cls_net), prior_precision=1.0, hessian_structure=structure
        )
        check_healthy(clf.fit(X_const, y), X, 1.0)


# ---------------------------------------------------------------- extreme hyper-parameters
@pytest.mark.parametrize("structure", STRUCTURES)
def test_prior_precision_from_1e_minus_6_to_1e8(cls_data, reg_data, cls_net, reg_net, structure):
    X, y = cls_data
    clf = LaplaceClassifier(
        FrozenEstimator(cls_net), prior_precision=1.0, hessian_structure=structure
    ).fit(X, y)
    X_r, y_r = reg_data
    reg = LaplaceRegressor(
        FrozenEstimator(reg_net), prior_precision=1.0, sigma_noise=1.0, hessian_structure=structure
    ).fit(X_r, y_r)
    for prior in np.logspace(-6, 8, 8):
        check_healthy(clf.set_params(prior_precision=prior), X, prior)
        check_healthy(reg.set_params(prior_precision=prior), X_r, prior)
    # the prior dominates as it grows: probabilities converge to the net's own
    clf.set_params(prior_precision=1e8)
    np.testing.assert_allclose(
        clf.predict_proba(X), cls_net.predict_proba(X.astype(np.float32)), atol=1e-5
    )


def test_out_of_range_hyper_parameters_give_clear_errors(cls_data, reg_data, cls_net, reg_net):
    X, y = cls_data
    clf = LaplaceClassifier(FrozenEstimator(cls_net), prior_precision=1.0).fit(X, y)
    for prior, match in [
        (1e-320, "prior_precision=1e-320 .* too small"),
        # set_params: scikit-learn's parameter check; as an argument: ours
        (np.inf, r"prior_precision.*(positive and finite|Got inf instead)"),
        (np.nan, r"prior_precision.*(positive and finite|Got nan instead)"),
    ]:
        with pytest.raises(ValueError, match=match):
            clf.set_params(prior_precision=prior).predict_proba(X)
        with pytest.raises(ValueError, match=match):
            clf.log_marginal_likelihood(prior)
    with pytest.raises(ValueError, match="temperature=1e-320 are too small"):
        clf.set_params(prior_precision=1.0, temperature=1e-320).predict_proba(X)
    # huge ones are fine: the posterior collapses onto the trained weights
    check_healthy(clf.set_params(temperature=1.0, prior_precision=1e300), X, 1e300)

    X, y = reg_data
    reg = LaplaceRegressor(FrozenEstimator(reg_net), prior_precision=1.0, sigma_noise=1.0).fit(
        X, y
    )
    for sigma, match in [
        (1e-200, "sigma_noise=1e-200 and temperature=1 are too small"),
        (1e200, "sigma_noise=1e.200 is too large"),
    ]:
        with pytest.raises(ValueError, match=match):
            reg.set_params(sigma_noise=sigma).predict(X, return_std=True)
        with pytest.raises(ValueError, match=match):
            reg.set_params(sigma_noise=1.0).log_marginal_likelihood(sigma_noise=sigma)
    for sigma in (1e-100, 1e-8, 1e8, 1e100):
        check_healthy(reg.set_params(sigma_noise=sigma), X, 1.0, sigma)


# ---------------------------------------------------------------- float32 over many rows
def test_float32_curvature_over_many_rows_matches_float64(cls_net):
    """Curvature is accumulated in float64: a float32 net agrees with its float64 twin.

    Over 10^6 rows in 977 batches (the scale the scale benchmark goes to), accumulating
    ``A = sum a a^T`` in float32 would be off by about 1e-7 relative (measured at 40,000
    rows, and it grows with the number of batches); the float64 accumulators agree to a few
    1e-9, the rounding of the float32 features themselves.
    """
    X, y = make_classification(
        n_samples=1_000_000, n_features=5, n_informative=4, n_redundant=0, n_classes=3,
        random_state=1,
    )  # fmt: skip
    net64 = copy.deepcopy(cls_net)
    net64.module_.double()
    fitted = [
        LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0, batch_size=1024).fit(X, y)
        for net in (cls_net, net64)
    ]
    b32, b64 = (clf.posterior_.blocks[0] for clf in fitted)
    for f32, f64 in ((b32.lam_A, b64.lam_A), (b32.lam_B, b64.lam_B)):
        assert float((f32 - f64).abs().max() / f64.abs().max()) < 3e-8
    assert fitted[0].n_train_ == fitted[1].n_train_ == 1_000_000
    np.testing.assert_allclose(fitted[0].train_loss_, fitted[1].train_loss_, rtol=1e-6)
    for clf in fitted:
        check_healthy(clf, X[:200], 1.0)
    np.testing.assert_allclose(
        fitted[0].predict_proba(X[:500]), fitted[1].predict_proba(X[:500]), atol=1e-6
    )


@pytest.mark.parametrize("structure", STRUCTURES)
def test_priors_below_the_tuning_grid_keep_predictions_finite(cls_data, reg_data, structure):
    """Below the grid (1e-4) a prior no longer outweighs the curvature's round-off: its
    null space (the softmax's shift, a duplicated feature) must sit at exactly zero, or
    ``scale * lam + tau`` turns negative and variances NaN. Both estimators, every
    structure, a curvature made large (many rows, a small noise) so that round-off
    eigenvalues exceed the priors tested."""
    X, y = cls_data
    Xd = np.c_[X, X[:, 0]].astype(np.float32)  # a duplicated feature: a singular factor
    torch.manual_seed(0)
    net = classifier_net(3, max_epochs=5).fit(np.tile(Xd, (20, 1)), np.tile(y, 20))
    clf = LaplaceClassifier(
        FrozenEstimator(net), prior_precision=1.0, hessian_structure=structure
    ).fit(np.tile(Xd, (20, 1)), np.tile(y, 20))
    X_r, y_r = reg_data
    torch.manual_seed(0)
    X_r, y_r = X_r.astype(np.float32), y_r.astype(np.float32)
    reg_net = regressor_net(max_epochs=5).fit(X_r, y_r[:, None])
    reg = LaplaceRegressor(
        FrozenEstimator(reg_net),
        prior_precision=1.0,
        sigma_noise=1e-3,
        hessian_structure=structure,
    ).fit(X_r, y_r)
    for prior in (1e-10, 1e-13, 1e-16):
        check_healthy(clf.set_params(prior_precision=prior), Xd, prior)
        check_healthy(reg.set_params(prior_precision=prior), X_r, prior, 1e-3)


def test_check_numerics_refuses_a_precision_that_is_not_positive(cls_data, cls_net):
    """A curvature eigenvalue below zero that the prior does not outweigh would give
    negative variances (NaN stds): refused with the prior and the layer named."""
    from sklaplace.posterior import Posterior
    from sklaplace.tuning.resolve import Hyper, check_numerics

    X, y = cls_data
    clf = LaplaceClassifier(
        FrozenEstimator(cls_net), prior_precision=1.0, hessian_structure="full"
    ).fit(X, y)
    block = copy.deepcopy(clf.posterior_.blocks[0])
    block.lam = block.lam.clone()
    block.lam[0] = -1e-9  # as an eigendecomposition without the floor at zero leaves
    post = Posterior([block], clf.posterior_.means, clf.posterior_.names)
    check_numerics(post, Hyper(np.array([1e-8]), 1.0, 1.0), 1.0)  # outweighed: fine
    with pytest.raises(ValueError, match=r"prior_precision=1e-13 .*'out'.*below zero"):
        check_numerics(post, Hyper(np.array([1e-13]), 1.0, 1.0), 1.0)
