"""Property-based fuzzing of the public API with malformed inputs (hypothesis).

Every call either returns a correct result (checked against the same call on clean input,
or against its defining property) or raises a scikit-learn-style ``ValueError`` /
``TypeError`` raised outside torch and skorch (``assert_clean_error``): never a raw torch
traceback, never NaN in place of an answer. One estimator of each kind is fitted per module
and the predict-side inputs are fuzzed; fit-side inputs are fuzzed with few examples.

``BAD_INPUT_KINDS`` lists the kinds of malformed input covered (each is exercised below).
"""

import os
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import skorch
import torch
from _nets import classifier_net, regressor_net
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.datasets import make_classification, make_regression
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score

from sklaplace import LaplaceClassifier, LaplaceRegressor

N_FEATURES = 4
_FOREIGN = tuple(os.path.dirname(m.__file__) + os.sep for m in (torch, skorch))
# no example database: nothing is written into the working tree
FAST = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.too_slow]}
FEW = settings(max_examples=4, **FAST)
SOME = settings(max_examples=30, **FAST)


def assert_clean_error(exc):
    """A ValueError/TypeError raised by our code, scikit-learn or numpy: not by torch/skorch."""
    assert isinstance(exc, ValueError | TypeError), f"{type(exc).__name__}: {exc}"
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename
    assert not where.startswith(_FOREIGN), f"raised inside {where}: {exc}"
    assert "mat1 and mat2" not in str(exc) or exc.__cause__ is not None


def outcome(fn, *args, **kwargs):
    """``(result, None)`` or ``(None, exception)`` after checking the exception is clean."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs), None
    except Exception as exc:  # every exception is checked
        assert_clean_error(exc)
        return None, exc


def expect_error(match, fn, *args, **kwargs):
    _, exc = outcome(fn, *args, **kwargs)
    assert exc is not None, f"expected an error matching {match!r}, got a result"
    assert match.lower() in str(exc).lower(), f"{match!r} not in {exc!r}"


# ---------------------------------------------------------------- fitted estimators
@pytest.fixture(scope="module")
def fuzz_cls_data():
    X, y = make_classification(
        n_samples=120,
        n_features=N_FEATURES,
        n_informative=3,
        n_redundant=0,
        n_classes=3,
        random_state=0,
    )
    return X, y


@pytest.fixture(scope="module")
def net(fuzz_cls_data):
    X, y = fuzz_cls_data
    torch.manual_seed(0)
    return classifier_net(3, max_epochs=5).fit(X.astype(np.float32), y)


@pytest.fixture(scope="module")
def clf(fuzz_cls_data, net):
    X, y = fuzz_cls_data
    return LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def clf_pandas(fuzz_cls_data, net):
    X, y = fuzz_cls_data
    frame = pd.DataFrame(X, columns=list("abcd"))
    return LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(frame, pd.Series(y))


@pytest.fixture(scope="module")
def fuzz_reg_data():
    X, y = make_regression(n_samples=120, n_features=N_FEATURES, random_state=0)
    return X, y / y.std()


@pytest.fixture(scope="module")
def fuzz_reg_net(fuzz_reg_data):
    X, y = fuzz_reg_data
    torch.manual_seed(0)
    return regressor_net(max_epochs=5).fit(X.astype(np.float32), y[:, None].astype(np.float32))


@pytest.fixture(scope="module")
def reg(fuzz_reg_data, fuzz_reg_net):
    X, y = fuzz_reg_data
    return LaplaceRegressor(
        FrozenEstimator(fuzz_reg_net), prior_precision=1.0, sigma_noise=1.0
    ).fit(X, y)


def predictions(clf, reg, X):
    """Outcomes of the prediction methods on X, each ``(result, exception)``."""
    return {
        "proba": outcome(clf.predict_proba, X),
        "predict": outcome(clf.predict, X),
        "std": outcome(reg.predict, X, return_std=True),
        "interval": outcome(reg.predict_interval, X),
    }


def assert_valid(out, m):
    proba, _ = out["proba"]
    assert proba.shape == (m, 3) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-12)
    mean, std = out["std"][0]
    assert mean.shape == std.shape == (m,)
    assert np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    lower, upper = out["interval"][0]
    assert (lower < mean).all() and (mean < upper).all()


def assert_same(out, ref):
    for key in ref:
        a, b = out[key][0], ref[key][0]
        a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


finite_X = arrays(
    np.float64,
    st.tuples(st.integers(1, 8), st.just(N_FEATURES)),
    elements=st.floats(-5, 5, allow_nan=False, allow_infinity=False),
)


# ---------------------------------------------------------------- predict: values
@SOME
@given(
    X=arrays(
        np.float64,
        st.tuples(st.integers(1, 8), st.just(N_FEATURES)),
        elements=st.floats(allow_nan=True, allow_infinity=True)
        | st.sampled_from([1e38, 3.5e38, 1e300, -1e300, 5e-324, -0.0]),
    )
)
def test_predict_on_arbitrary_float_values(clf, reg, X):
    """NaN, +-inf, values beyond float32, subnormals: a clean error or a finite answer."""
    out = predictions(clf, reg, X)
    if not np.isfinite(X).all():
        for _, exc in out.values():
            assert exc is not None
            assert "nan" in str(exc).lower() or "infinity" in str(exc)
        return
    for key, (_, exc) in out.items():
        if exc is not None:  # only for values the float32 net cannot hold
            assert np.abs(X).max() > 3e38 or "nan or inf" in str(exc), (key, exc)
    if all(exc is None for _, exc in out.values()):
        assert_valid(out, len(X))


@SOME
@given(X=finite_X, data=st.data())
def test_predictions_do_not_depend_on_the_other_rows(clf, reg, X, data):
    """Row order and batch boundaries never change a row's answer (no batch mixing)."""
    perm = data.draw(st.permutations(range(len(X))))
    out, shuffled = predictions(clf, reg, X), predictions(clf, reg, X[perm])
    assert_valid(out, len(X))
    # A float32 net's variances may be summed in float32 (KronBlock.rotation_dtype), each
    # within 11 gamma of the exact one, gamma = (n_in + n_out + 2) eps32, and the kernels
    # round a row by its place in the batch: two answers for one row differ by up to
    # 22 gamma in the variance, half of that in a std and in the scale of the probit's
    # logits, which moves log p_k by at most that times max_j |log p_k - log p_j|.
    eps32 = float(np.finfo(np.float32).eps)

    def gamma(est):
        return max((sum(b.shape) + 2) * eps32 for b in est.posterior_.blocks)

    proba = out["proba"][0]
    spread = np.log(proba).max(1) - np.log(proba).min(1)
    rtol = 1e-12 + 11 * gamma(clf) * spread.max()
    np.testing.assert_allclose(shuffled["proba"][0], proba[perm], rtol=rtol)
    rtol = 1e-12 + 11 * gamma(reg)
    np.testing.assert_allclose(shuffled["std"][0][1], out["std"][0][1][perm], rtol=rtol)
    small = clf.set_params(batch_size=1).predict_proba(X)
    clf.set_params(batch_size=None)
    # One row per batch runs other float32 kernels than a whole batch: each hidden feature
    # (a dot product of at most 16 terms) may round differently, by up to 16 * eps32
    # relative, and the probabilities inherit that; nothing else depends on the batch.
    np.testing.assert_allclose(small, out["proba"][0], rtol=16 * np.finfo(np.float32).eps)


# ---------------------------------------------------------------- predict: shapes and types
def _readonly(X):
    X = X.copy()
    X.setflags(write=False)
    return X


def _object_with_none(X):
    X = X.astype(object)
    X[0, 0] = None
    return X


def _frame_with_text(X):
    frame = pd.DataFrame(X)
    frame[0] = "text"
    return frame


def _frame_with_na(X):
    frame = pd.DataFrame(X)
    frame[0] = pd.array([pd.NA] + [1] * (len(X) - 1), dtype="Int64")
    return frame


# kind -> (make the input from clean X, equivalent clean input or the expected error)
PREDICT_KINDS = {
    "1-D X": (lambda X: X[0], "Expected 2D array"),
    "3-D X": (lambda X: X.reshape(len(X), 2, 2), "X has 3 dimensions, rows of shape"),
    "0-D X": (lambda X: X[0, 0], "Expected 2D array, got scalar"),
    "empty X": (lambda X: X[:0], "0 sample"),
    "X without features": (lambda X: X[:, :0], "0 feature"),
    "too few features": (lambda X: X[:, :3], "X has 3 features"),
    "too many features": (lambda X: np.c_[X, X[:, :1]], "X has 5 features"),
    "ragged nested list": (lambda X: [list(X[0]), list(X[0, :2])], "inhomogeneous"),
    "non-numeric strings": (lambda X: np.full(X.shape, "a"), "could not convert"),
    "bytes": (lambda X: np.full(X.shape, b"a"), "could not convert"),
    "complex": (lambda X: X.astype(complex), "Complex data not supported"),
    "sparse CSR matrix": (sp.csr_matrix, lambda X: X),  # as skorch takes them
    "sparse COO array": (sp.coo_array, lambda X: X),
    "object array with None": (_object_with_none, "NaN"),
    "DataFrame with a text column": (_frame_with_text, "could not convert"),
    "DataFrame with pd.NA": (_frame_with_na, "NaN"),
    "numeric strings": (lambda X: X.astype(str), lambda X: X),
    "object array of floats": (lambda X: X.astype(object), lambda X: X),
    "bool": (lambda X: X > 0, lambda X: (X > 0).astype(float)),
    "int64": (lambda X: np.round(X).astype(np.int64), lambda X: np.round(X)),
    "uint8": (lambda X: np.abs(X).astype(np.uint8), lambda X: np.floor(np.abs(X))),
    "float16": (lambda X: X.astype(np.float16), lambda X: X.astype(np.float16).astype(float)),
    "float32": (lambda X: X.astype(np.float32), lambda X: X.astype(np.float32).astype(float)),
    "list of lists": (lambda X: X.tolist(), lambda X: X),
    "Fortran order": (np.asfortranarray, lambda X: X),
    "strided view": (lambda X: np.repeat(X, 2, axis=0)[::2], lambda X: X),
    "read-only array": (_readonly, lambda X: X),
    "torch tensor": (torch.as_tensor, lambda X: X),
    "DataFrame into a numpy-fitted estimator": (pd.DataFrame, lambda X: X),
}


@pytest.mark.parametrize("kind", list(PREDICT_KINDS))
@FEW
@given(X=finite_X.filter(lambda X: len(X) >= 2))
def test_predict_on_malformed_input(clf, reg, kind, X):
    make, expected = PREDICT_KINDS[kind]
    bad = make(X)
    if isinstance(expected, str):
        for method in (clf.predict_proba, clf.predict, reg.predict, reg.predict_interval):
            expect_error(expected, method, bad)
        expect_error(expected, reg.predict, bad, return_std=True)
        return
    out = predictions(clf, reg, bad)
    for key, (_, exc) in out.items():
        assert exc is None, (key, exc)
    assert_same(out, predictions(clf, reg, expected(X)))


@FEW
@given(X=finite_X)
def test_pandas_columns_must_match_fit(clf_pandas, X):
    frame = pd.DataFrame(X, columns=list("abcd"))
    expected = clf_pandas.predict_proba(frame)
    # changed column order: scikit-learn refuses rather than silently permuting features
    expect_error("same order", clf_pandas.predict_proba, frame[list("dcba")])
    expect_error(
        "unseen at fit time", clf_pandas.predict_proba, frame.set_axis(list("abce"), axis=1)
    )
    expect_error("yet now missing", clf_pandas.predict_proba, frame[list("abc")])
    # numpy into a DataFrame-fitted estimator: position is all there is (with a warning)
    result, exc = outcome(clf_pandas.predict_proba, X)
    assert exc is None
    np.testing.assert_array_equal(result, expected)


# ---------------------------------------------------------------- score: labels
@FEW
@given(labels=st.lists(st.integers(-2, 6), min_size=5, max_size=5))
def test_score_with_labels_unseen_at_fit(clf, fuzz_cls_data, labels):
    """Unseen labels are simply never predicted: accuracy counts them as wrong."""
    X, _ = fuzz_cls_data
    y = np.resize(np.asarray(labels), 20)
    score, exc = outcome(clf.score, X[:20], y)
    assert exc is None
    assert score == np.mean(clf.predict(X[:20]) == y)
    # a column vector of labels is the same labels
    assert outcome(clf.score, X[:20], y[:, None])[0] == score
    # string labels for a net of integer classes: whatever accuracy_score does with them
    # (scikit-learn refuses the mix; at the floors, scikit-learn 1.6 with numpy 1.24, it
    # counts no match)
    strings = np.resize(["a", "b"], 20)
    expected, refused = outcome(accuracy_score, strings, clf.predict(X[:20]))
    if refused is None:
        assert outcome(clf.score, X[:20], strings) == (expected, None)
    else:
        expect_error("Mix of label input types", clf.score, X[:20], strings)
    expect_error("inconsistent numbers of samples", clf.score, X[:20], y[:10])


# ---------------------------------------------------------------- fit
def _fit_kinds(X, y):
    """kind -> (X, y, expected error or None for a valid fit)."""
    nan_X = X.copy()
    nan_X[1, 1] = np.nan
    inf_X = X.copy()
    inf_X[-1, 0] = np.inf
    huge_X = X.copy()
    huge_X[-1, 0] = 1e300  # finite in float64, inf for the float32 net: after the first batch
    y_nan = y.astype(float)
    y_nan[2] = np.nan
    return {
        "NaN in X at fit": (nan_X, y, "NaN"),
        "inf in X at fit": (inf_X, y, "infinity"),
        "X too large for the net's dtype": (huge_X, y, "nan or inf"),
        "NaN in y": (X, y_nan, "NaN"),
        "continuous y for a classifier": (X, y + 0.5, "Unknown label type"),
        "2-D y with two columns for a classifier": (X, np.c_[y, y], "1d array"),
        "y of another length": (X, y[:-3], "inconsistent numbers of samples"),
        "more classes than the net's outputs": (X, np.r_[y[:-1], 3], "has 3 output"),
        "one class": (X, np.zeros_like(y), "only one class"),
        "X with other features than the net's": (X[:, :3], y, "Does X have the features"),
        "sparse X at fit": (sp.csr_matrix(X), y, None),
        "1-D X at fit": (X[:, 0], y, "Expected 2D array"),
        "3-D X at fit": (X.reshape(len(X), 2, 2), y, "Does X have the features"),
        "complex X at fit": (X.astype(complex), y, "Complex data"),
        "empty X at fit": (X[:0], y[:0], "0 sample"),
        "y None": (X, None, "requires y"),
        "2-D y with one column": (X, y[:, None], None),
        "string labels": (X, np.array(["x", "y", "z"])[y], None),
        "bool X at fit": (X > 0, y, None),
        # a frozen net's own classes_ are kept when y uses a subset of them
        "fewer classes than the net's outputs": (X, np.minimum(y, 1), None),
    }


@pytest.mark.parametrize("kind", list(_fit_kinds(np.zeros((12, N_FEATURES)), np.arange(12) % 3)))
@settings(max_examples=2, **FAST)
@given(seed=st.integers(0, 2**16))
def test_fit_on_malformed_input(net, kind, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(90, N_FEATURES))
    y = np.arange(90) % 3
    bad_X, bad_y, expected = _fit_kinds(X, y)[kind]
    est = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0)
    if expected is not None:
        expect_error(expected, est.fit, bad_X, bad_y)
        return
    fitted, exc = outcome(est.fit, bad_X, bad_y)
    assert exc is None
    dense = bad_X.toarray() if sp.issparse(bad_X) else np.asarray(bad_X, dtype=float)
    reference = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(
        dense, np.ravel(bad_y)
    )
    np.testing.assert_array_equal(fitted.predict_proba(X), reference.predict_proba(X))
    classes = ["x", "y", "z"] if kind == "string labels" else [0, 1, 2]
    np.testing.assert_array_equal(fitted.classes_, classes)
    assert fitted.predict_proba(X).shape == (len(X), 3)


@settings(max_examples=3, **FAST)
@given(seed=st.integers(0, 2**16))
def test_regressor_fit_on_malformed_targets(fuzz_reg_net, seed):
    X = np.random.default_rng(seed).normal(size=(60, N_FEATURES))
    y = X @ np.arange(1.0, 5.0) / 5
    reg = LaplaceRegressor(FrozenEstimator(fuzz_reg_net), prior_precision=1.0, sigma_noise=1.0)
    expect_error("infinity", reg.fit, X, np.r_[y[:-1], np.inf])
    expect_error("could not convert", reg.fit, X, np.full(60, "a"))
    expect_error("Complex data", reg.fit, X, y.astype(complex))
    expect_error("dim 3", reg.fit, X, y.reshape(-1, 1, 1))
    expect_error("has 1 output", reg.fit, X, np.c_[y, y])
    # 1-D vs 2-D y: the same numbers, shaped like y
    mean1, std1 = reg.fit(X, y).predict(X, return_std=True)
    mean2, std2 = reg.fit(X, y[:, None]).predict(X, return_std=True)
    assert mean1.shape == (60,) and mean2.shape == (60, 1)
    np.testing.assert_array_equal(mean2[:, 0], mean1)
    np.testing.assert_array_equal(std2[:, 0], std1)


# ---------------------------------------------------------------- hyper-parameters
HYPER_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-3, 3),
    st.sampled_from(["", "abc", "marglik", None, [1.0, 2.0], [-1.0], np.array([np.nan])]),
)


@SOME
@given(
    name=st.sampled_from(["prior_precision", "temperature", "n_samples", "link_approx"]),
    value=HYPER_VALUES,
)
def test_hyper_parameters_set_after_fit(clf, fuzz_cls_data, name, value):
    """Anything set with set_params after fit is validated when predicting."""
    X, _ = fuzz_cls_data
    old = clf.get_params()[name]
    try:
        clf.set_params(**{name: value})
        proba, exc = outcome(clf.predict_proba, X[:5])
        lml, exc_lml = outcome(clf.log_marginal_likelihood)
    finally:
        clf.set_params(**{name: old})
    if exc is None:
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-12)
    if exc_lml is None:
        assert np.isfinite(lml)


@SOME
@given(
    confidence=st.one_of(st.floats(allow_nan=True), st.sampled_from(["a", None, [0.5]])),
    n_samples=st.one_of(st.integers(-3, 3), st.floats(allow_nan=True), st.just("2")),
    sigma=st.one_of(st.floats(allow_nan=True), st.sampled_from(["a", None, [1.0]])),
)
def test_regressor_method_arguments(reg, fuzz_reg_data, confidence, n_samples, sigma):
    X, _ = fuzz_reg_data
    lower_upper, exc = outcome(reg.predict_interval, X[:5], confidence=confidence)
    if exc is None:
        assert 0 < confidence < 1 and (lower_upper[0] <= lower_upper[1]).all()
    draws, exc = outcome(reg.sample_y, X[:5], n_samples=n_samples)
    if exc is None:
        assert draws.shape == (5, n_samples) and np.isfinite(draws).all()
    lml, exc = outcome(reg.log_marginal_likelihood, sigma_noise=sigma)
    if exc is None:
        assert np.isfinite(lml)


BAD_INPUT_KINDS = sorted(
    {"NaN in X", "+inf in X", "-inf in X", "values beyond float32", "subnormal values"}
    | {k for k, (_, e) in PREDICT_KINDS.items() if isinstance(e, str)}
    | {k for k, v in _fit_kinds(np.zeros((12, N_FEATURES)), np.arange(12) % 3).items() if v[2]}
    | {"pandas columns reordered", "pandas unknown column names", "pandas missing column"}
    | {"labels unseen at fit in score", "string labels into int classes in score"}
    | {"y of another length in score", "inf in y", "string y for a regressor", "complex y"}
    | {"3-D y", "2-D y with more targets than outputs"}
    | {"hyper-parameter of wrong type/range set after fit", "bad predict_interval confidence"}
    | {"bad sample_y n_samples", "bad sigma_noise in log_marginal_likelihood"}
)


def test_bad_input_kinds_are_counted():
    assert len(BAD_INPUT_KINDS) >= 40
