"""The checks every metric applies to its arrays and its ``sample_weight``."""

import numpy as np
from sklearn.utils.validation import _check_sample_weight


def _as_float(name, values):
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got an array of dtype {array.dtype}.")
    return array.astype(np.float64, copy=False)


def _check_weights(sample_weight, n_samples_like):
    """None, or float64 non-negative weights of shape (n_samples,) that do not all vanish."""
    if sample_weight is None:
        return None
    weights = _check_sample_weight(
        sample_weight, n_samples_like, dtype=np.float64, ensure_non_negative=True
    )
    if not weights.any():  # scikit-learn raises this itself from version 1.8 on
        raise ValueError("sample_weight must contain at least one non-zero weight.")
    return weights
