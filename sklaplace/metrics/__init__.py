"""Metrics and scorers for predictive uncertainty.

scikit-learn already covers the proper scoring rules for classifiers
(:func:`sklearn.metrics.log_loss` and, for several classes too,
:func:`sklearn.metrics.brier_score_loss` with ``scale_by_half=False``). This module adds
what it lacks for judging the *uncertainty* of a model: the top-label calibration error of
a classifier, the Gaussian negative log predictive density of a regressor that reports a
standard deviation, and the coverage and width of prediction intervals. The math is plain
numpy.

Which score to use for what
---------------------------
Regressors
    The predictive mean of a Laplace regressor is the network's own prediction, so the
    regressor's default ``score`` (R^2) and ``neg_mean_squared_error`` do not depend on the
    prior precision or any other setting of the approximation: tuning them with those
    scores selects nothing. Tune with :func:`neg_gaussian_nll`, which rewards standard
    deviations that match the observed errors. Report interval quality with
    :func:`make_interval_scorer` (``kind="coverage"`` next to ``kind="neg_width"``; or
    ``kind="neg_coverage_error"`` for a single number).
Classifiers
    Tune with scikit-learn's ``scoring="neg_log_loss"`` (a proper scoring rule) and report
    :func:`expected_calibration_error` or use :func:`neg_expected_calibration_error`
    for monitoring. ECE is not a proper scoring rule: a model that always predicts the
    class frequencies has ECE near zero, so do not select a model on ECE alone.

Scorers
-------
:func:`neg_gaussian_nll`, :func:`neg_expected_calibration_error` and the objects made by
:func:`make_interval_scorer` and :func:`make_calibration_error_scorer` are called as
``scorer(estimator, X, y, sample_weight=None)`` (greater is better) and can be passed as
``scoring=`` to :class:`~sklearn.model_selection.GridSearchCV`,
:func:`~sklearn.model_selection.cross_validate` and friends, also inside a dict of several
scorers. :func:`sklearn.metrics.make_scorer` is not used for them because it can neither
pass ``return_std=True`` or ``confidence=`` to the prediction method nor hand the
estimator's ``classes_`` to the metric.

The estimator may be a Laplace estimator or a :class:`~sklearn.pipeline.Pipeline` (also
nested) whose last step is one: a :class:`~sklearn.pipeline.Pipeline` exposes neither
``predict_interval`` nor, with metadata routing enabled, ``predict(X, return_std=True)``,
so the scorers transform ``X`` through the steps before the last one and ask the last
step. They also look through a fitted search's ``best_estimator_``, a
:class:`~sklearn.frozen.FrozenEstimator` and a
:class:`~sklearn.compose.TransformedTargetRegressor`: they ask its ``regressor_`` and map
the outputs back to the units of y when that is exact (an affine target transform for
the Gaussian NLL, an increasing one for interval bounds) and raise otherwise. An estimator
that cannot produce what a scorer needs makes it raise a ``TypeError`` that says what is
needed (pass ``error_score="raise"`` to a search to see it: with the default
``error_score=np.nan`` scikit-learn turns it into a warning and NaN scores).

Sample weights
--------------
Every metric takes ``sample_weight`` (one non-negative weight per row, validated like
scikit-learn does) and then computes weighted means; for the calibration error the bin
weights, accuracies and confidences are weighted, so integer weights equal repeating
rows. The scorers pass ``sample_weight`` on when scikit-learn hands it to them: without
metadata routing, :class:`~sklearn.model_selection.GridSearchCV` does so whenever
``fit`` gets ``sample_weight``; with routing enabled
(``sklearn.set_config(enable_metadata_routing=True)``), request it with
``scoring=neg_gaussian_nll.set_score_request(sample_weight=True)``. Unlike
scikit-learn's scorers, ``set_score_request`` returns a new scorer and leaves the one it
is called on unchanged (so the shared :func:`neg_gaussian_nll` is never modified): use
its return value.

Precision
---------
Every metric casts probabilities, means, standard deviations and bounds to float64 before
computing, and computes in float64. skorch nets predict in float32, where a probability
of 1e-46 underflows to 0 and a probability within ~6e-8 of 1 rounds to 1. Log-loss style
metrics must then clip, and :func:`sklearn.metrics.log_loss` clips at the resolution of
its input's dtype: on float32 probabilities at ~1.2e-7, which caps the loss of a
confidently wrong prediction at about 16 nats (36 in float64). That flatters exactly the
over-confident nets a Laplace approximation is meant to fix, so cast before calling
scikit-learn's metrics too: ``log_loss(y, np.asarray(proba, dtype=np.float64))``.
"""

# The public face of the metrics, which live in private modules: _calibration (top-label
# calibration of classifiers), _regression (Gaussian NLL, interval coverage and width),
# _validation (the checks they share), _wrappers (predictions of the model inside a
# Pipeline, search, FrozenEstimator or TransformedTargetRegressor), _scorer_base (the
# sample_weight protocol every scorer shares) and _scorers (the scorers themselves).
from ._calibration import expected_calibration_error, reliability_curve
from ._regression import gaussian_nll, interval_coverage, interval_width
from ._scorers import (
    make_calibration_error_scorer,
    make_interval_scorer,
    neg_expected_calibration_error,
    neg_gaussian_nll,
)

__all__ = [
    "expected_calibration_error",
    "gaussian_nll",
    "interval_coverage",
    "interval_width",
    "make_calibration_error_scorer",
    "make_interval_scorer",
    "neg_expected_calibration_error",
    "neg_gaussian_nll",
    "reliability_curve",
]

# Private names still importable from here, where they were defined before the module
# became a package: pickles of scorer objects made then refer to sklaplace.metrics._...
# (new pickles refer to the private module that defines the class), and the tests reach
# the predictive moments of a wrapped model here.
from ._scorer_base import _FunctionScorer as _FunctionScorer
from ._scorers import _CalibrationErrorScorer as _CalibrationErrorScorer
from ._scorers import _IntervalScorer as _IntervalScorer
from ._wrappers import _predict_mean_std as _predict_mean_std
