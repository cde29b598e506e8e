"""Inputs: what the wrapped model may be, what X may be, and how X reaches the net.

The wrapped model is a skorch net or a scikit-learn ``Pipeline`` whose last step is one,
either of them unfitted or fitted inside ``FrozenEstimator``. With a Pipeline, the steps
before the net are applied to X (fitted in ``fit`` when the Pipeline is not frozen) and
the posterior sits on the net; ``n_features_in_`` and ``feature_names_in_`` describe the
raw X, as for the Pipeline itself.

X reaches the net as skorch would take it:

* arrays of numbers (integers stay integers for a net with an embedding, see
  :class:`sklaplace._passes.NetView`); strings that spell numbers are converted;
* scipy sparse matrices, kept sparse (CSR) until a batch goes to the net;
* dicts of arrays with one entry per argument of a multi-input module's ``forward``;
* pandas frames of numbers (as arrays); a frame with text columns is refused with the
  fix (encode them in a Pipeline step before the net, and wrap the Pipeline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array
from sklearn.utils.validation import (
    _check_sample_weight,
    check_consistent_length,
    validate_data,
)

__all__ = ["INPUT_DTYPES", "Model", "check_X", "check_targets", "split_model"]

# Input dtypes kept as they are (integers: category codes for an embedding, or numbers the
# net casts); anything else (strings, objects, bools) is converted to float64.
INPUT_DTYPES = [np.float64, np.float32, np.int64, np.int32, np.int16, np.int8, np.uint8]


@dataclass
class Model:
    """The wrapped model's parts: the steps before the net (or None), the net, frozen?"""

    prep: Pipeline | None
    net: object
    frozen: bool


def split_model(estimator) -> Model:
    """Unwrap ``FrozenEstimator`` and a ``Pipeline`` ending in the net."""
    frozen = isinstance(estimator, FrozenEstimator)
    inner = estimator.estimator if frozen else estimator
    if isinstance(inner, Pipeline):
        prep = inner[:-1] if len(inner.steps) > 1 else None
        return Model(prep, inner.steps[-1][1], frozen)
    return Model(None, inner, frozen)


def fit_prep(model: Model, X, y):
    """The fitted steps before the net and X through them (fitted here unless frozen)."""
    if model.prep is None:
        return None, X
    if model.frozen:
        return model.prep, model.prep.transform(X)
    prep = clone(model.prep)
    return prep, prep.fit_transform(X, y)


def check_X(estimator, X, *, reset: bool, prep=None):
    """Validate X (recording or checking ``n_features_in_``) and bring it to the net."""
    if prep is not None:
        validate_data(estimator, X, reset=reset, skip_check_array=True)
        return _net_ready(prep.transform(X))
    if _is_dict(X):
        return _check_dict(X)
    return _validate_array(estimator, X, reset)


def check_fit_X(estimator, X, y, model: Model, **y_params):
    """Validate ``(X, y)`` at fit; returns the fitted prep, X for the net and y."""
    if model.prep is None and not _is_dict(X):
        X, y = _validate_array(estimator, X, True, y, **y_params)
        return None, X, y
    if _is_dict(X):
        X = _check_dict(X)
        y = check_targets(y, **y_params)
        check_consistent_length(next(iter(X.values())), y)
        return None, X, y
    validate_data(estimator, X, reset=True, skip_check_array=True)
    y = check_targets(y, **y_params)
    check_consistent_length(X, y)
    prep, X = fit_prep(model, X, y)
    return prep, _net_ready(X), y


def check_weights(sample_weight, X):
    """Sample weights as a float64 array of one non-negative weight per row of X, or None."""
    if sample_weight is None or X is None:
        return None
    n = n_rows(X)
    weights = _check_sample_weight(
        sample_weight, np.empty((n, 0)), dtype=np.float64, ensure_non_negative=True
    )
    if n and not np.any(weights):  # scikit-learn refuses this itself only from 1.8
        raise ValueError(
            "Sample weights must contain at least one non-zero number: every weight is 0, "
            "so no row would count. Give the rows to use a positive weight."
        )
    return weights


def n_rows(X) -> int:
    """The number of rows of an input the net takes."""
    if _is_dict(X):
        return len(next(iter(X.values())))
    return X.shape[0]


def check_targets(y, multi_output=False, y_numeric=False):
    """y as scikit-learn's ``check_X_y`` would return it."""
    y = check_array(
        y,
        ensure_2d=False,
        dtype="numeric" if y_numeric else None,
        ensure_all_finite=True,
        input_name="y",
    )
    if not multi_output and y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    return y


def _is_dict(X) -> bool:
    """A dict of arrays (scipy's DOK sparse format is a dict too, and is not one)."""
    return isinstance(X, Mapping) and not sp.issparse(X)


def _net_ready(X):
    """The output of a Pipeline's steps, checked as the net's input."""
    if _is_dict(X):
        return _check_dict(X)
    return _csr_matrix(check_array(X, accept_sparse="csr", dtype=INPUT_DTYPES, input_name="X"))


def _csr_matrix(X):
    """A scipy sparse array as a CSR *matrix*: skorch's Dataset indexes rows as matrices."""
    if sp.issparse(X) and not sp.isspmatrix_csr(X):
        return sp.csr_matrix(X)
    return X


def _check_dict(X: Mapping) -> dict:
    """A dict of arrays for a multi-input module: every entry an array of the same rows."""
    if not X:
        raise ValueError("X is an empty dict; give one array per argument of the module.")
    out, lengths = {}, {}
    for key, value in X.items():
        arr = check_array(value, ensure_2d=False, allow_nd=True, dtype=INPUT_DTYPES,
                          input_name=f"X[{key!r}]")  # fmt: skip
        out[key], lengths[key] = arr, len(arr)
    if len(set(lengths.values())) != 1:
        raise ValueError(f"The arrays in the dict X have different numbers of rows: {lengths}.")
    return out


def _validate_array(estimator, X, reset, *args, **kwargs):
    """``validate_data`` with array inputs; a frame with text gets the fix in its error."""
    try:
        out = validate_data(
            estimator, X, *args, reset=reset, accept_sparse="csr", dtype=INPUT_DTYPES, **kwargs
        )
        return (_csr_matrix(out[0]), out[1]) if isinstance(out, tuple) else _csr_matrix(out)
    except ValueError as exc:
        if "could not convert" not in str(exc) or not hasattr(X, "columns"):
            raise
        raise ValueError(
            f"X has non-numeric columns ({exc}): a net takes numbers. Encode them in a step "
            "before the net and wrap the whole model, e.g. LaplaceClassifier(FrozenEstimator("
            "make_pipeline(make_column_transformer((OneHotEncoder(), [...]), "
            "remainder=StandardScaler()), net)))."
        ) from exc
