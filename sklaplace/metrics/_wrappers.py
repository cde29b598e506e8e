"""What a scorer asks of the model inside scikit-learn's wrappers, in the units of y.

The scorers need ``predict(X, return_std=True)`` or ``predict_interval``, which a
:class:`~sklearn.pipeline.Pipeline`, a fitted search, a
:class:`~sklearn.frozen.FrozenEstimator` or a
:class:`~sklearn.compose.TransformedTargetRegressor` do not pass on. These helpers reach
the model through them (transforming X through the steps of a Pipeline) and map its
outputs back through a target transform when that is exact: an affine transform for
means and standard deviations, an increasing one for interval bounds.
"""

import inspect

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)
from sklearn.utils.validation import check_is_fitted

# Target transformers whose inverse is affine and increasing: a Gaussian predictive of the
# transformed target stays Gaussian in the units of y (mean and std map linearly).
_AFFINE_TRANSFORMERS = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)
# Target transformers whose inverse is non-decreasing: it maps interval bounds to bounds.
_INCREASING_TRANSFORMERS = (*_AFFINE_TRANSFORMERS, PowerTransformer, QuantileTransformer)
# Increasing numpy functions accepted as the ``inverse_func`` of a FunctionTransformer
# (``TransformedTargetRegressor(func=np.log, inverse_func=np.exp)``).
_INCREASING_UFUNCS = (
    np.exp,
    np.exp2,
    np.expm1,
    np.log,
    np.log2,
    np.log10,
    np.log1p,
    np.sqrt,
    np.cbrt,
    np.sinh,
    np.arcsinh,
    np.tanh,
    np.arctanh,
    np.arctan,
)
_AFFINE_NAMES = "StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler"


def _target_transform_kind(transformer):
    """Return "affine" or "increasing" if the inverse transform is known to be so, else None.

    Only exact classes are trusted (a subclass may change ``inverse_transform``).
    """
    if type(transformer) is Pipeline:
        kinds = {
            "affine" if step is None or step == "passthrough" else _target_transform_kind(step)
            for _, step in transformer.steps
        }
        if None in kinds:
            return None
        return "increasing" if "increasing" in kinds else "affine"
    if type(transformer) is FunctionTransformer:
        if transformer.func is None and transformer.inverse_func is None:
            return "affine"  # the identity: TransformedTargetRegressor without a transform
        if (
            any(transformer.inverse_func is ufunc for ufunc in _INCREASING_UFUNCS)
            and not transformer.inv_kw_args
        ):
            return "increasing"
        return None
    if type(transformer) in _AFFINE_TRANSFORMERS:
        return "affine"
    if type(transformer) in _INCREASING_TRANSFORMERS:
        return "increasing"
    return None


def _inverse_target(ttr, values):
    """``ttr.transformer_.inverse_transform`` of predictions, shaped like ``ttr.predict``."""
    values = np.asarray(values, dtype=np.float64)
    out = ttr.transformer_.inverse_transform(values.reshape(len(values), -1))
    out = np.asarray(out, dtype=np.float64)
    return out[:, 0] if values.ndim == 1 and out.ndim == 2 and out.shape[1] == 1 else out


def _check_target_transform(ttr, need, caller):
    """Raise unless the inverse target transform of ``ttr`` is of the kind ``need``."""
    kind = _target_transform_kind(ttr.transformer_)
    if kind == "affine" or (kind == "increasing" and need == "increasing"):
        return
    transform = (
        f"func={ttr.func!r}, inverse_func={ttr.inverse_func!r}"
        if ttr.transformer is None
        else f"transformer={ttr.transformer!r}"
    )
    if need == "affine":
        raise ValueError(
            f"{caller} cannot score this TransformedTargetRegressor ({transform}): the "
            "Gaussian NLL needs a Gaussian predictive in the units of y, and after a target "
            "transform that is not affine the predictive of y is not Gaussian. Use an affine "
            f"transformer ({_AFFINE_NAMES}) or none; or judge the intervals with "
            "make_interval_scorer, which only needs an increasing transform."
        )
    raise ValueError(
        f"{caller} cannot score this TransformedTargetRegressor ({transform}): its inverse "
        "target transform is not known to be increasing, so the inverse transforms of the "
        "interval bounds need not bound the interval of y. Use a transformer known to be "
        f"increasing ({_AFFINE_NAMES}, PowerTransformer, QuantileTransformer) or an increasing "
        "numpy function as inverse_func (e.g. func=np.log, inverse_func=np.exp; a lambda "
        "cannot be checked)."
    )


def _predict_through(estimator, X, leaf, from_target, caller):
    """``leaf(model, X_model)`` for the model inside Pipelines and other wrappers.

    Pipelines transform X with their steps before the last one; a fitted search gives its
    ``best_estimator_``, a FrozenEstimator its ``estimator``; a TransformedTargetRegressor
    gives its ``regressor_`` and maps the outputs with ``from_target(ttr, outputs)``.
    """
    if isinstance(estimator, Pipeline):
        last = estimator.steps[-1][1]
        if last is None or (isinstance(last, str) and last == "passthrough"):
            raise TypeError(
                f"{caller} got a Pipeline whose last step is {last!r}; it needs a model "
                "as the last step."
            )
        if len(estimator.steps) > 1:
            X = estimator[:-1].transform(X)
        return _predict_through(last, X, leaf, from_target, caller)
    if isinstance(estimator, FrozenEstimator):
        return _predict_through(estimator.estimator, X, leaf, from_target, caller)
    if isinstance(estimator, TransformedTargetRegressor):
        check_is_fitted(estimator, "regressor_")
        outputs = _predict_through(estimator.regressor_, X, leaf, from_target, caller)
        return from_target(estimator, outputs)
    if hasattr(estimator, "cv_results_") and hasattr(estimator, "best_estimator_"):
        return _predict_through(estimator.best_estimator_, X, leaf, from_target, caller)
    return leaf(estimator, X)


def _accepts_keyword(method, name):
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


_WHERE = (
    "a Laplace regressor, or a Pipeline, TransformedTargetRegressor, FrozenEstimator or "
    "fitted search whose model is one"
)


def _predict_mean_std(estimator, X, caller):
    """Predictive means and stds of ``estimator`` at X, in the units of y."""

    def leaf(model, X):
        predict = getattr(model, "predict", None)
        if predict is None or not _accepts_keyword(predict, "return_std"):
            raise TypeError(
                f"{caller} needs an estimator whose predict(X, return_std=True) returns "
                f"(mean, std), such as {_WHERE}; {type(model).__name__}.predict takes no "
                "return_std. Score it with a point metric (e.g. "
                'scoring="neg_mean_squared_error") instead.'
            )
        prediction = predict(X, return_std=True)
        if not isinstance(prediction, tuple) or len(prediction) != 2:
            raise ValueError(
                f"{caller} needs estimator.predict(X, return_std=True) to return a "
                f"(mean, std) tuple; {type(model).__name__} returned "
                f"{type(prediction).__name__}."
            )
        return prediction

    def from_target(ttr, moments):
        _check_target_transform(ttr, "affine", caller)
        mean, std = (np.asarray(a, dtype=np.float64) for a in moments)
        # The inverse transform is a * t + b with a > 0: N(m, s^2) -> N(a m + b, (a s)^2).
        # a = (inverse(1) - inverse(-1)) / 2 per target; its rounding error, eps * |b / a|
        # relative, is below that of (y - mean) / std itself.
        n_targets = 1 if mean.ndim == 1 else mean.shape[1]
        ends = ttr.transformer_.inverse_transform(np.array([[-1.0], [1.0]]).repeat(n_targets, 1))
        ends = np.asarray(ends, dtype=np.float64)
        slope = (ends[1] - ends[0]) / 2.0
        if mean.ndim == 1:
            slope = slope[0]
        return _inverse_target(ttr, mean), std * slope

    return _predict_through(estimator, X, leaf, from_target, caller)


def _predict_bounds(estimator, X, confidence, caller):
    """Prediction interval bounds of ``estimator`` at X, in the units of y."""

    def leaf(model, X):
        predict_interval = getattr(model, "predict_interval", None)
        if predict_interval is None:
            raise TypeError(
                f"{caller} needs an estimator with predict_interval(X, confidence=...) "
                f"returning (lower, upper), such as {_WHERE}; {type(model).__name__} has no "
                "predict_interval method."
            )
        bounds = predict_interval(X, confidence=confidence)
        if not isinstance(bounds, tuple) or len(bounds) != 2:
            raise ValueError(
                f"{caller} needs estimator.predict_interval(X, confidence=...) to return a "
                f"(lower, upper) tuple; {type(model).__name__} returned "
                f"{type(bounds).__name__}."
            )
        return bounds

    def from_target(ttr, bounds):
        _check_target_transform(ttr, "increasing", caller)
        lower, upper = (_inverse_target(ttr, bound) for bound in bounds)
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise ValueError(
                f"{caller}: the inverse target transform of {ttr.transformer_!r} gives NaN or "
                "infinite interval bounds (bounds outside the range it can invert, e.g. "
                "below the Box-Cox limit). Use a lower confidence or another transformer."
            )
        return lower, upper

    return _predict_through(estimator, X, leaf, from_target, caller)
