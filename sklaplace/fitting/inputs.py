"""Inputs: what the wrapped model may be, what X may be, and how X reaches the net.

The wrapped model is a skorch net or a scikit-learn ``Pipeline`` whose last step is one,
either of them unfitted or fitted inside ``FrozenEstimator``. With a Pipeline, the steps
before the net are applied to X (fitted in ``fit`` when the Pipeline is not frozen) and
the posterior sits on the net; ``n_features_in_`` and ``feature_names_in_`` describe the
raw X, as for the Pipeline itself.

X reaches the net as skorch would take it:

* arrays of numbers (integers stay integers for a net with an embedding, see
  :class:`sklaplace._runtime.passes.NetView`); strings that spell numbers are converted;
* scipy sparse matrices, kept sparse (CSR) until a batch goes to the net;
* dicts of arrays with one entry per argument of a multi-input module's ``forward``;
* pandas frames of numbers (as arrays); a frame with text columns is refused with the
  fix (encode them in a Pipeline step before the net, and wrap the Pipeline);
* arrays of any number of dimensions (images of shape (n, channels, height, width) for a
  net with ``nn.Conv2d``), as skorch takes them; the rows are the first axis.

A torch or skorch ``Dataset`` is refused with the fix (pass its arrays): ``fit`` selects
rows by index, fingerprints their content for its cache and needs ``y`` as an array for
the labels and the net's own validation split, none of which a ``Dataset`` offers.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch.utils.data
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array
from sklearn.utils.validation import (
    _check_sample_weight,
    check_consistent_length,
    validate_data,
)

from .._runtime import skorch as _skorch
from .._runtime.warnings import warn

__all__ = [
    "INPUT_DTYPES",
    "Model",
    "check_X",
    "check_targets",
    "split_model",
    "warn_weight_scale",
]

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
        message = (
            "The Pipeline inside FrozenEstimator is not fitted. Fit the pipeline first "
            "(pipeline.fit(X, y)) and then wrap it, or pass the unfitted pipeline itself "
            "so that fit trains it."
        )
        _skorch.check_fitted_net(model.net, message)
        try:
            return model.prep, model.prep.transform(X)
        except NotFittedError as exc:
            raise NotFittedError(f"{message} ({exc})") from exc
    prep = clone(model.prep)
    return prep, prep.fit_transform(X, y)


def check_X(estimator, X, *, reset: bool, prep=None, input_name: str = "X"):
    """Validate X (recording or checking ``n_features_in_``) and bring it to the net.

    ``input_name="X_val"``: X_val at fit, whose errors say that it takes the form of X.
    """
    _refuse_dataset(X, input_name)
    try:
        if prep is not None:
            if reset or not _FEATURES_CHECKED.get():
                validate_data(estimator, X, reset=reset, skip_check_array=True)
            return _net_ready(prep.transform(X))
        if _is_dict(X):
            return _check_dict(X)
        return _validate_array(estimator, X, reset)
    except ValueError as exc:
        if input_name == "X" or not any(s in str(exc) for s in _FEATURE_ERRORS):
            raise
        where = (
            "the raw rows the wrapped Pipeline takes, like X (the same columns: it goes "
            "through the Pipeline's steps before the net), not rows already transformed"
            if prep is not None
            else "rows in the form of X (the same features, in the same order)"
        )
        said = str(exc).replace("X has", f"{input_name} has", 1)
        raise ValueError(
            f"{input_name} does not match X: {said} {input_name} must be {where}."
        ) from exc


# True while an ensemble predicts (features_checked): it checked X's feature names and
# count against its fit, which are its members' (each fitted on the same X)
_FEATURES_CHECKED: ContextVar[bool] = ContextVar("sklaplace_features_checked", default=False)


@contextmanager
def features_checked():
    """Within it, ``check_X`` at prediction skips the feature checks (names and count)
    that the caller made once for several estimators (an ensemble's members: their
    warnings would repeat the ensemble's). A context variable, not a warnings filter:
    each thread (and task) has its own, and no process-wide state changes."""
    token = _FEATURES_CHECKED.set(True)
    try:
        yield
    finally:
        _FEATURES_CHECKED.reset(token)


def check_features(estimator, X) -> None:
    """Check X's feature names and count against ``estimator``'s fit (scikit-learn's
    warning and error, naming ``estimator``) without converting X; a dict of arrays has
    no features to check here."""
    _refuse_dataset(X, "X")
    if _is_dict(X):
        return
    try:
        validate_data(estimator, X, reset=False, skip_check_array=True)
    except ValueError as exc:
        # X of one dimension: the check of the array says how to fix it (reshape)
        if "does not contain any features" not in str(exc):
            raise


def check_fit_X(estimator, X, y, model: Model, **y_params):
    """Validate ``(X, y)`` at fit; returns the fitted prep, X for the net and y."""
    _refuse_dataset(X, "X")
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


# The mean sample weight beyond which (or below its inverse) fit says what the weights do
# to the posterior: its variances scale as 1 / mean weight, so its stds by more than 2.
WEIGHT_SCALE = 4.0


def warn_weight_scale(w: np.ndarray) -> None:
    """Say what weights far from mean 1 do: the curvature is their weighted sum, so the
    posterior is that of ``sum(w)`` rows."""
    n, total = len(w), float(np.sum(w))
    mean = total / n
    if 1 / WEIGHT_SCALE <= mean <= WEIGHT_SCALE or total == 0:
        return
    factor, way = (mean, "narrower") if mean > 1 else (1 / mean, "wider")
    warn(
        f"sample_weight sums to {total:.3g} over {n} rows (mean {mean:.3g}): the posterior "
        "counts a row of weight w as w rows, so its curvature (the data's weight against "
        f"the prior) scales with the sum of the weights, as if there were {total:.3g} rows "
        f"instead of {n}; its variances are then about {factor:.3g} times {way} than with "
        "weights of mean 1 (at the prior precision divided by the mean weight), which a "
        "prior precision alone cannot undo. If the weights "
        "only balance classes or rows, normalise them to mean 1: sample_weight / "
        "sample_weight.mean()."
    )


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


# parts of scikit-learn's messages about X's features not matching those seen in fit
_FEATURE_ERRORS = ("features, but", "feature names", "dimensions, rows of shape")


def _refuse_dataset(X, name: str) -> None:
    """A torch or skorch Dataset is refused with the fix (see the module docstring)."""
    if isinstance(X, torch.utils.data.Dataset):
        raise TypeError(
            f"{name} is a {type(X).__name__} (a torch Dataset). sklaplace takes the arrays "
            "skorch takes, not a Dataset: it selects rows by index, fingerprints them for "
            "its cache and needs the targets as an array. Pass the arrays instead, e.g. "
            "fit(dataset.X, dataset.y) for a skorch Dataset (a dict of arrays for a module "
            "with several inputs)."
        )


def _is_dict(X) -> bool:
    """A dict of arrays (scipy's DOK sparse format is a dict too, and is not one)."""
    return isinstance(X, Mapping) and not sp.issparse(X)


def _net_ready(X):
    """The output of a Pipeline's steps, checked as the net's input."""
    if _is_dict(X):
        return _check_dict(X)
    out = check_array(X, accept_sparse="csr", dtype=INPUT_DTYPES, allow_nd=True, input_name="X")
    return _own(_csr_matrix(out), X)


def _own(out, given):
    """``out``, copied when it is read-only memory (a pandas frame's columns under
    copy-on-write, a read-only memory map): torch takes no memory it may not write to (its
    warning), and skorch hands torch the arrays it is given. Writable memory is not copied
    (a second copy of a large X would double fit's memory): every pass of ours copies each
    batch (``sklaplace._runtime.passes``), and skorch's loader stacks rows into new
    tensors, so no ``forward`` writes to the caller's X."""
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        return out.copy()
    return out


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
        out[key], lengths[key] = _own(arr, value), len(arr)
    if len(set(lengths.values())) != 1:
        raise ValueError(f"The arrays in the dict X have different numbers of rows: {lengths}.")
    return out


def _validate_array(estimator, X, reset, *args, **kwargs):
    """``validate_data`` with array inputs; a frame with text gets the fix in its error."""
    if not reset and len(getattr(X, "shape", ())) >= 2:  # the shape of a row first: it
        _check_row_shape(estimator, X, reset)  # says more (1-D X: scikit-learn's message)
    checks = dict(accept_sparse="csr", dtype=INPUT_DTYPES, allow_nd=True, **kwargs)
    try:
        if not reset and not args and _FEATURES_CHECKED.get():  # checked by the caller
            out = check_array(X, input_name="X", estimator=estimator, **checks)
        else:
            out = validate_data(estimator, X, *args, reset=reset, **checks)
    except ValueError as exc:
        if "could not convert" not in str(exc) or not hasattr(X, "columns"):
            raise
        raise ValueError(
            f"X has non-numeric columns ({exc}): a net takes numbers. Encode them in a step "
            "before the net and wrap the whole model, e.g. LaplaceClassifier(FrozenEstimator("
            "make_pipeline(make_column_transformer((OneHotEncoder(), [...]), "
            "remainder=StandardScaler()), net)))."
        ) from exc
    _check_row_shape(estimator, out[0] if isinstance(out, tuple) else out, reset)
    if isinstance(out, tuple):
        return _own(_csr_matrix(out[0]), X), out[1]
    return _own(_csr_matrix(out), X)


def _check_row_shape(estimator, X, reset: bool) -> None:
    """Record the shape of a row at fit (an array of any number of dimensions); refuse X
    whose rows have another shape at prediction time (``n_features_in_`` covers only the
    second axis)."""
    if reset:
        estimator._row_shape = tuple(X.shape[1:])
        return
    fitted = getattr(estimator, "_row_shape", None)
    shape = tuple(X.shape[1:])
    # (the second axis alone differing is scikit-learn's n_features_in_ error)
    if fitted is not None and (len(shape) != len(fitted) or shape[1:] != fitted[1:]):
        raise ValueError(
            f"X has {len(X.shape)} dimensions, rows of shape {shape}, but "
            f"{type(estimator).__name__} was fitted on X of {len(fitted) + 1} dimensions, "
            f"rows of shape {fitted}. Give X in the shape fit had (the shape the net was "
            "trained on)."
        )


def check_pair(X_val, y_val, sample_weight_val=None) -> None:
    if (X_val is None) != (y_val is None):
        raise ValueError(
            "X_val and y_val go together: pass both (rows the net was not trained on and "
            "their targets) or neither."
        )
    if sample_weight_val is not None and X_val is None:
        raise ValueError(
            "sample_weight_val weighs the rows of X_val, but no X_val was given. Pass X_val "
            "and y_val with it; without them the held-out rows are taken from X and weighed "
            "by sample_weight."
        )
