"""Bad input gets a clear error of ours: never a raw torch error, never an AttributeError.

Every test asserts the exception type (ValueError, TypeError or NotFittedError) and a part
of the message that says what was wrong, so a regression to a torch or skorch message fails.
"""

import numpy as np
import pytest
import torch
from _nets import MLP, binary_net, classifier_net, regressor_net
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from skorch import NeuralNetClassifier

from sklaplace import LaplaceClassifier, LaplaceRegressor

N_FEATURES = 5


@pytest.fixture(scope="module")
def bad_cls_data():
    X, y = make_classification(
        n_samples=120,
        n_features=N_FEATURES,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        random_state=0,
    )
    return X, y


@pytest.fixture(scope="module")
def bad_reg_data():
    X, y = make_regression(n_samples=120, n_features=N_FEATURES, noise=0.1, random_state=0)
    return X, y / y.std()


@pytest.fixture(scope="module")
def fitted_cls_net(bad_cls_data):
    X, y = bad_cls_data
    torch.manual_seed(0)
    return classifier_net(3, max_epochs=3).fit(X.astype(np.float32), y)


@pytest.fixture
def fitted_clf(bad_cls_data, fitted_cls_net):
    X, y = bad_cls_data
    return LaplaceClassifier(FrozenEstimator(fitted_cls_net)).fit(X, y)


@pytest.fixture(scope="module")
def fitted_reg_net(bad_reg_data):
    X, y = bad_reg_data
    torch.manual_seed(0)
    return regressor_net(max_epochs=3).fit(X.astype(np.float32), y[:, None].astype(np.float32))


def _with(X, value):
    X = X.copy()
    X[3, 1] = value
    return X


# ---------------------------------------------------------------- X and y
@pytest.mark.parametrize(("value", "match"), [(np.nan, "contains NaN"), (np.inf, "infinity")])
def test_non_finite_X_at_fit(bad_cls_data, fitted_cls_net, value, match):
    X, y = bad_cls_data
    clf = LaplaceClassifier(FrozenEstimator(fitted_cls_net))
    with pytest.raises(ValueError, match=match):
        clf.fit(_with(X, value), y)


@pytest.mark.parametrize(("value", "match"), [(np.nan, "contains NaN"), (np.inf, "infinity")])
def test_non_finite_X_at_predict(bad_cls_data, fitted_clf, value, match):
    X, _ = bad_cls_data
    with pytest.raises(ValueError, match=match):
        fitted_clf.predict_proba(_with(X, value))


@pytest.mark.parametrize(("value", "match"), [(np.nan, "contains NaN"), (np.inf, "infinity")])
def test_non_finite_X_regressor(bad_reg_data, fitted_reg_net, value, match):
    X, y = bad_reg_data
    reg = LaplaceRegressor(FrozenEstimator(fitted_reg_net))
    with pytest.raises(ValueError, match=match):
        reg.fit(_with(X, value), y)
    reg.fit(X, y)
    with pytest.raises(ValueError, match=match):
        reg.predict(_with(X, value), return_std=True)


def test_wrong_number_of_features_at_predict(bad_cls_data, fitted_clf):
    X, _ = bad_cls_data
    with pytest.raises(ValueError, match=f"X has 3 features, but .* expecting {N_FEATURES}"):
        fitted_clf.predict_proba(X[:, :3])


def test_empty_X(bad_cls_data, fitted_cls_net, fitted_clf):
    X, y = bad_cls_data
    with pytest.raises(ValueError, match="0 sample"):
        LaplaceClassifier(FrozenEstimator(fitted_cls_net)).fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="0 sample"):
        fitted_clf.predict_proba(X[:0])


def test_y_of_different_length(bad_cls_data, fitted_cls_net):
    X, y = bad_cls_data
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        LaplaceClassifier(FrozenEstimator(fitted_cls_net)).fit(X, y[:-5])


def test_single_class_y(bad_cls_data):
    X, _ = bad_cls_data
    clf = LaplaceClassifier(classifier_net(max_epochs=1))
    with pytest.raises(ValueError, match=r"only one class \('a'\)"):
        clf.fit(X, np.full(len(X), "a"))


def test_binary_net_with_three_classes(bad_cls_data):
    X, y = bad_cls_data
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        LaplaceClassifier(binary_net(max_epochs=1)).fit(X, y)


# ---------------------------------------------------------------- the estimator
def test_frozen_unfitted_net(bad_cls_data):
    X, y = bad_cls_data
    clf = LaplaceClassifier(FrozenEstimator(classifier_net(3)))
    with pytest.raises(NotFittedError, match=r"inside FrozenEstimator is not fitted.*net\.fit"):
        clf.fit(X, y)
    # initialized, never trained: its LazyLinear has no weights, and fit must not create them
    net = classifier_net(3).initialize()
    with pytest.raises(NotFittedError, match=r"inside FrozenEstimator is not fitted.*net\.fit"):
        LaplaceClassifier(FrozenEstimator(net)).fit(X, y)
    assert isinstance(net.module_.body[0].weight, torch.nn.parameter.UninitializedParameter)


@pytest.mark.parametrize(
    ("estimator", "match"),
    [
        (
            NeuralNetClassifier(MLP, criterion=torch.nn.MultiMarginLoss, max_epochs=1),
            "Unsupported net/criterion: NeuralNetClassifier with MultiMarginLoss",
        ),
        (LogisticRegression(), "estimator must be a skorch net, got LogisticRegression"),
    ],
    ids=["MultiMarginLoss", "LogisticRegression"],
)
def test_unsupported_estimator(bad_cls_data, estimator, match):
    X, y = bad_cls_data
    with pytest.raises(TypeError, match=match):
        LaplaceClassifier(estimator).fit(X, y)
    with pytest.raises(TypeError, match=match):
        LaplaceClassifier(FrozenEstimator(estimator)).fit(X, y)


def test_classifier_given_regressor_net(bad_cls_data, fitted_reg_net):
    X, y = bad_cls_data
    match = (
        "LaplaceClassifier needs a net for classification.*NeuralNetRegressor.*LaplaceRegressor"
    )
    with pytest.raises(TypeError, match=match):
        LaplaceClassifier(FrozenEstimator(fitted_reg_net)).fit(X, y)
    with pytest.raises(TypeError, match=match):  # before training it
        LaplaceClassifier(regressor_net(max_epochs=1)).fit(X, y)


def test_regressor_given_classifier_net(bad_reg_data, fitted_cls_net):
    X, y = bad_reg_data
    match = "LaplaceRegressor needs a net for regression.*NeuralNetClassifier.*LaplaceClassifier"
    with pytest.raises(TypeError, match=match):
        LaplaceRegressor(FrozenEstimator(fitted_cls_net)).fit(X, y)
    with pytest.raises(TypeError, match=match):  # before training it
        LaplaceRegressor(classifier_net(max_epochs=1)).fit(X, y)


def test_full_hessian_with_all_weights(bad_cls_data, fitted_cls_net):
    X, y = bad_cls_data
    clf = LaplaceClassifier(
        FrozenEstimator(fitted_cls_net), subset_of_weights="all", hessian_structure="full"
    )
    with pytest.raises(ValueError, match=r"'full' is only available with .*'last_layer'"):
        clf.fit(X, y)


@pytest.mark.parametrize("prior", [0, -1.0])
def test_non_positive_prior_precision(bad_cls_data, fitted_cls_net, prior):
    X, y = bad_cls_data
    clf = LaplaceClassifier(FrozenEstimator(fitted_cls_net), prior_precision=prior)
    with pytest.raises(ValueError, match=r"'prior_precision' parameter .* must be a float in"):
        clf.fit(X, y)


def test_prior_precision_array_with_a_zero(bad_cls_data, fitted_cls_net, fitted_clf):
    X, y = bad_cls_data
    clf = LaplaceClassifier(FrozenEstimator(fitted_cls_net), prior_precision=np.array([0.0]))
    with pytest.raises(ValueError, match="prior_precision must be positive and finite"):
        clf.fit(X, y)
    # set after fit, read at predict time
    fitted_clf.set_params(prior_precision=np.array([0.0]))
    with pytest.raises(ValueError, match="prior_precision must be positive and finite"):
        fitted_clf.predict_proba(X)
    fitted_clf.set_params(prior_precision=-1.0)
    with pytest.raises(ValueError, match="prior_precision must be positive and finite"):
        fitted_clf.predict_proba(X)
    with pytest.raises(ValueError, match="prior_precision must be positive and finite"):
        fitted_clf.log_marginal_likelihood(prior_precision=0.0)


def test_prior_precision_array_of_wrong_length(bad_cls_data, fitted_cls_net):
    X, y = bad_cls_data
    clf = LaplaceClassifier(
        FrozenEstimator(fitted_cls_net), prior_precision=[1.0, 2.0], subset_of_weights="last_layer"
    )
    with pytest.raises(ValueError, match=r"prior_precision has 2 values but .* 1 layer"):
        clf.fit(X, y)


def test_output_not_from_a_linear_layer(bad_reg_data):
    X, y = bad_reg_data
    reg = LaplaceRegressor(regressor_net(max_epochs=1, module__final="tanh"))
    with pytest.raises(
        ValueError, match=r"last Linear layer 'out'.*applied after it: \['final'\]"
    ):
        reg.fit(X, y)


def test_diverged_net(bad_reg_data):
    X, y = bad_reg_data
    reg = LaplaceRegressor(regressor_net(max_epochs=3, lr=1e6), random_state=0)
    with pytest.raises(ValueError, match=r"output contains NaN or inf.*diverged"):
        reg.fit(X, 1e3 * y)


@pytest.mark.parametrize("n_out", [2, 4])
def test_outputs_differ_from_classes(bad_cls_data, n_out):
    X, y = bad_cls_data  # 3 classes
    mismatch = f"last layer 'out' has {n_out} output.*y has 3 classes"
    torch.manual_seed(0)
    net = classifier_net(n_out, max_epochs=1).fit(X[y < n_out].astype(np.float32), y[y < n_out])
    with pytest.raises(ValueError, match=mismatch):
        LaplaceClassifier(FrozenEstimator(net)).fit(X, y)
    # an unfitted net is trained first; too few outputs make torch's loss fail in training
    in_training = r"fewer units than y has classes \(3\)" if n_out < 3 else mismatch
    with pytest.raises(ValueError, match=in_training):
        LaplaceClassifier(classifier_net(n_out, max_epochs=1)).fit(X, y)


def test_outputs_differ_from_targets(bad_reg_data, fitted_reg_net):
    X, y = bad_reg_data
    with pytest.raises(ValueError, match=r"last layer 'out' has 1 output.*y has 2 targets"):
        LaplaceRegressor(FrozenEstimator(fitted_reg_net)).fit(X, np.c_[y, y])


def test_invalid_hyper_parameter_values(bad_cls_data, fitted_cls_net):
    X, y = bad_cls_data
    for params, name in [
        ({"hessian_structure": "block"}, "hessian_structure"),
        ({"link_approx": "laplace"}, "link_approx"),
        ({"temperature": 0.0}, "temperature"),
        ({"n_samples": 0}, "n_samples"),
    ]:
        clf = LaplaceClassifier(FrozenEstimator(fitted_cls_net), **params)
        with pytest.raises(ValueError, match=f"'{name}' parameter of LaplaceClassifier"):
            clf.fit(X, y)


def test_curvature_param_changed_after_fit(bad_cls_data, fitted_clf):
    X, _ = bad_cls_data
    fitted_clf.set_params(hessian_structure="diag")
    with pytest.raises(ValueError, match=r"hessian_structure was changed .* call fit again"):
        fitted_clf.predict_proba(X)


def test_not_fitted(bad_cls_data):
    X, _ = bad_cls_data
    with pytest.raises(NotFittedError):
        LaplaceClassifier(classifier_net()).predict(X)
    with pytest.raises(NotFittedError):
        LaplaceRegressor(regressor_net()).predict(X, return_std=True)


def test_regressor_interval_and_std_cov_arguments(bad_reg_data, fitted_reg_net):
    X, y = bad_reg_data
    reg = LaplaceRegressor(FrozenEstimator(fitted_reg_net)).fit(X, y)
    with pytest.raises(RuntimeError, match="At most one of return_std or return_cov"):
        reg.predict(X, return_std=True, return_cov=True)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        reg.predict_interval(X, confidence=1.5)
