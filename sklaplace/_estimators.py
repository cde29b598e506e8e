"""scikit-learn-facing classes: parameters, validation, fit/predict plumbing. No math here."""

from __future__ import annotations

import copy
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from scipy.stats import norm
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    _fit_context,
    clone,
    is_classifier,
)
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _passes, _skorch
from ._hyper import _PRIOR_MODES, _HyperParameterMixin
from .predictive import mc_probabilities, probit_probabilities, sample_probabilities

__all__ = ["LaplaceClassifier", "LaplaceRegressor"]

# Held-out rows scored when tuning (a random subset of them when there are more).
_MAX_TUNING_ROWS = 10_000
# Parameters that define the curvature: changing them after fit needs a new fit.
_CURVATURE_PARAMS = ("subset_of_weights", "hessian_structure", "validation_fraction")


class _BaseLaplace(_HyperParameterMixin, BaseEstimator):
    """Shared plumbing: the net, the data pass, the posterior and its hyper-parameters."""

    _parameter_constraints: ClassVar[dict] = {
        "estimator": [object],
        "subset_of_weights": [StrOptions({"last_layer", "all"}), list, tuple],
        "hessian_structure": [StrOptions({"diag", "kron", "full"})],
        "prior_precision": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions(set(_PRIOR_MODES)),
            "array-like",
            dict,
        ],
        "temperature": [Interval(Real, 0, None, closed="neither"), StrOptions({"holdout"})],
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "predictive": [StrOptions({"glm", "nn"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    }

    # ---------------------------------------------------------------- the net
    def _check_likelihood(self, net):
        """The net's ``(likelihood, output_kind)``; TypeError if this estimator can't use it."""
        likelihood, output_kind = _skorch.likelihood_of(net)
        if likelihood not in self._likelihoods:
            raise TypeError(
                f"{type(self).__name__} needs a net for {' or '.join(self._likelihoods)}, got "
                f"a {type(net).__name__}; use "
                f"{'LaplaceRegressor' if likelihood == 'regression' else 'LaplaceClassifier'}."
            )
        return likelihood, output_kind

    def _is_holdout(self) -> bool:
        """Whether a hyper-parameter is tuned on held-out rows (fit then holds rows out)."""
        params = (self.prior_precision, getattr(self, "sigma_noise", None), self.temperature)
        return any(isinstance(p, str) and p == "holdout" for p in params)

    def _holdout_split(self, y) -> np.ndarray:
        """Indices of the rows held out for tuning (stratified for classifiers if possible)."""
        n = len(y)
        n_valid = int(np.ceil(self.validation_fraction * n))
        if n_valid < 1 or n - n_valid < 1:
            raise ValueError(
                f"Tuning on held-out rows ('holdout', the default) with validation_fraction="
                f"{self.validation_fraction} leaves no rows for tuning or for the curvature "
                f"out of {n} sample{'s' if n != 1 else ''} (n_samples={n}); pass more rows, "
                "change validation_fraction, or give prior_precision (and sigma_noise) as "
                "numbers."
            )
        rng = check_random_state(self.random_state)
        if is_classifier(self):
            classes, counts = np.unique(y, return_counts=True)
            if counts.min() >= 2 and n_valid >= len(classes):
                # stratified: each class gives its share of the n_valid rows (largest
                # remainders round), drawn without replacement; O(n) memory, no n-sized
                # permutation per class
                share = counts * n_valid / n
                take = np.floor(share).astype(int)
                take[np.argsort(take - share)[: n_valid - take.sum()]] += 1
                parts = [
                    rng.choice(np.flatnonzero(y == c), k, replace=False)
                    for c, k in zip(classes, take, strict=True)
                ]
                return np.sort(np.concatenate(parts))
        return np.sort(rng.choice(n, n_valid, replace=False))

    def _fitted_net(self, X, y_net, n_outputs_expected):
        """The trained net and, in 'holdout' mode, the rows it never trained on.

        A frozen net is used as is. An unfitted one is cloned and trained on (X, y_net);
        in 'holdout' mode it trains without the held-out rows: they are its own
        ``train_split`` validation rows when it has one, else an internal split.
        """
        est = self.estimator
        if isinstance(est, FrozenEstimator):
            net = est.estimator
            self._check_likelihood(net)
            _skorch.check_fitted_net(net)
            return net, (self._holdout_split(y_net) if self._is_holdout() else None)
        self._check_likelihood(est)
        net = clone(est)
        train_rows, recorder, valid = slice(None), None, None
        if self._is_holdout():
            if net.train_split:
                recorder = _skorch.RecordingSplit(net.train_split)
                net.set_params(train_split=recorder)
            else:
                valid = self._holdout_split(y_net)
                train_rows = _complement(valid, len(y_net))
        seed = None
        if self.random_state is not None:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        # with a seed, training leaves the global torch RNG as it was; without, it uses it
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            net.initialize()
            X_net = _skorch.to_net_input(net, X)
            try:
                net.fit(X_net[train_rows], y_net[train_rows])
            except IndexError as exc:  # torch's "Target 3 is out of bounds." from the loss
                if "out of bounds" not in str(exc):
                    raise
                raise ValueError(
                    f"Training the {type(net).__name__} failed ({exc}): its output layer has "
                    f"fewer units than y has classes ({n_outputs_expected}). Give the output "
                    "layer one unit per class (for example through a module__ parameter of "
                    "the net)."
                ) from exc
        if recorder is not None:
            valid = recorder.valid_indices
            net.set_params(train_split=recorder.split)
            if valid is None:
                raise ValueError(
                    "prior_precision='holdout' could not tell which rows the net's "
                    f"train_split ({recorder.split!r}) held out; use skorch's ValidSplit or "
                    "train_split=None (then sklaplace holds out validation_fraction of the rows)."
                )
        return net, valid

    # ---------------------------------------------------------------- fit
    def _validate_structure(self):
        subset = self.subset_of_weights
        if not isinstance(subset, str) and (
            len(subset) == 0 or not all(isinstance(n, str) for n in subset)
        ):
            raise ValueError(
                "subset_of_weights must be 'last_layer', 'all' or a non-empty list of module "
                f"names (as in net.module_.named_modules()), got {subset!r}."
            )
        if subset != "last_layer" and self.hessian_structure == "full":
            raise ValueError(
                "hessian_structure='full' is only available with "
                "subset_of_weights='last_layer': a dense covariance over all weights "
                "costs (n_params)^2 memory. Use hessian_structure='kron' or 'diag' for "
                "all layers, or keep the last layer with 'full'."
            )

    def _fit_posterior(self, X, y_net, n_outputs_expected):
        """Train or take the net, find its head, run the one curvature pass."""
        self._validate_structure()
        net, valid = self._fitted_net(X, y_net, n_outputs_expected)
        likelihood, output_kind = self._check_likelihood(net)
        X_net = X  # cast to the net's dtype batch by batch (_skorch.iter_batches), not copied
        fingerprint = _passes.net_fingerprint(net)
        head = _passes.find_head(net, X_net, output_kind, fingerprint)
        n_out_expected = 1 if likelihood == "binary" else n_outputs_expected
        if head.n_out != n_out_expected:
            raise ValueError(self._output_mismatch_message(head, n_out_expected, likelihood))

        train = None  # all rows; else indices, so that X is never copied
        if valid is not None:
            train = _complement(valid, len(y_net))
        posterior, loss, n_rows = _passes.fit_posterior(
            net,
            head,
            X_net,
            y_net,
            likelihood,
            self.hessian_structure,
            self.subset_of_weights,
            self.batch_size,
            fingerprint,
            train,
        )
        self.estimator_ = net
        self.likelihood_ = likelihood
        self.head_name_ = head.name
        self.posterior_ = posterior
        self.n_train_ = n_rows
        self.n_outputs_ = head.n_out
        self.train_loss_ = float(loss)
        self.validation_indices_ = valid
        self._heldout_ = None
        if valid is not None:
            # the held-out rows and their targets; each candidate prior is scored on them.
            # At most _MAX_TUNING_ROWS of them (a random subset): a few hyper-parameters need
            # no more, and the rows are kept with the estimator (predict may re-tune).
            tune = valid
            if len(valid) > _MAX_TUNING_ROWS:
                rng = check_random_state(self.random_state)
                tune = np.sort(rng.choice(valid, _MAX_TUNING_ROWS, replace=False))
            self._heldout_ = (X_net[tune], torch.as_tensor(y_net[tune]))
        self._weight_decay_ = None
        if isinstance(self.prior_precision, str) and self.prior_precision == "weight_decay":
            modules = dict(net.module_.named_modules())
            self._weight_decay_ = np.array(
                [
                    _skorch.weight_decay_coefficient(
                        net,
                        [p for p in modules[name].parameters(recurse=False) if p.requires_grad],
                        name,
                        likelihood,
                        head.n_out,
                    )
                    for name in posterior.names
                ]
            )
        self._fitted_structure_ = {p: getattr(self, p) for p in _CURVATURE_PARAMS}
        self._resolved_key_ = None
        resolved = self._resolve_hyperparameters()
        self.prior_precision_ = resolved["prior_precision"]
        self.sigma_noise_ = resolved["sigma_noise"]
        self.temperature_ = resolved["temperature"]
        self._resolved_key_ = resolved["key"]
        self.log_marginal_likelihood_value_ = self.log_marginal_likelihood()
        return self

    def _output_mismatch_message(self, head, expected, likelihood):
        what = "targets" if likelihood == "regression" else "classes"
        return (
            f"The net's last layer {head.name!r} has {head.n_out} output(s), but y has "
            f"{expected} {what}. Give the output layer one unit per "
            f"{'target' if likelihood == 'regression' else 'class'} "
            "(for example through a module__ parameter of the net)."
        )

    def _head(self) -> _skorch.Head:
        """The fitted net's head module, looked up by name (it survives pickling)."""
        modules = dict(self.estimator_.module_.named_modules())
        return _skorch.Head(self.head_name_, modules[self.head_name_])

    def log_marginal_likelihood(self, prior_precision=None, sigma_noise=None):
        """Laplace approximation of the log evidence ``log p(D | prior_precision, sigma)``.

        Computed from the stored eigendecomposition: no pass over the data.

        Parameters
        ----------
        prior_precision : float or array-like of shape (n_layers,), default=None
            Defaults to the fitted ``prior_precision_``.
        sigma_noise : float, default=None
            Observation noise std (regression only). Defaults to ``sigma_noise_``.

        Returns
        -------
        float
        """
        check_is_fitted(self)
        self._validate_params_after_fit()
        prior = self.prior_precision_ if prior_precision is None else prior_precision
        prior = self._prior_array(prior)
        sigma = self.sigma_noise_ if sigma_noise is None else sigma_noise
        if self.likelihood_ == "regression" and (
            not isinstance(sigma, Real) or not np.isfinite(sigma) or sigma <= 0
        ):
            raise ValueError(f"sigma_noise must be a positive float, got {sigma!r}.")
        self._check_numerics(prior, float(sigma), self.temperature_)
        with torch.no_grad():
            return float(self._evidence(prior, float(sigma), self.temperature_))

    # ---------------------------------------------------------------- predict plumbing
    def _validate_params_after_fit(self):
        """Check, as fit does, the parameters read at prediction time (set_params may have
        changed them after fit); prior_precision has its own check (``_prior_array``)."""
        constraints = {
            k: v for k, v in self._parameter_constraints.items() if k != "prior_precision"
        }
        validate_parameter_constraints(
            constraints,
            {k: getattr(self, k) for k in constraints},
            caller_name=type(self).__name__,
        )

    def _check_structure_unchanged(self):
        for p, fitted in self._fitted_structure_.items():
            if getattr(self, p) != fitted:
                raise ValueError(
                    f"{p} was changed from {fitted!r} to {getattr(self, p)!r} after fit; it "
                    "defines the curvature, so call fit again."
                )

    def _prepare_prediction(self, X):
        """Validate X and resolve the hyper-parameters, eagerly (errors surface here).

        Returns X, the resolved hyper-parameters, the prior precision per block and the
        curvature scale as float64 tensors on the posterior's device, and the net's
        fingerprint (the cache key of its passes).
        """
        check_is_fitted(self)
        self._validate_params_after_fit()
        self._check_structure_unchanged()
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        self._to_net_device()  # the net may have been moved since fit or loading
        hyper = self._resolve_hyperparameters()
        device = self.posterior_.means[0].device
        tau = torch.as_tensor(hyper["prior_precision"], dtype=torch.float64, device=device)
        scale = self._scale(hyper["sigma_noise"], hyper["temperature"]).to(device)
        return X, hyper, tau, scale, _passes.net_fingerprint(self.estimator_)

    def _predictive_batches(self, X, features=False):
        """The resolved hyper-parameters and an iterator of ``(mean, cov, a)`` per batch.

        The GLM mean (b, c) and output covariance (b, c, c), float64 on the net's device,
        and if ``features`` (last layer only) the head's input features (b, d) (else None,
        which lets the pass come from the cache). Callers reduce
        each batch before taking the next, so prediction memory does not grow with the rows
        of X beyond the returned arrays. X is cast to the net's dtype batch by batch.
        """
        X, hyper, tau, scale, fingerprint = self._prepare_prediction(X)
        batches = _passes.glm_batches(
            self.estimator_,
            self._head(),
            self.posterior_,
            X,
            tau,
            scale,
            self.subset_of_weights,
            self.batch_size,
            fingerprint,
            features,
        )
        return hyper, batches

    def _sample_batches(self, X):
        """The resolved hyper-parameters and head outputs (n_samples, b, c) per batch, under
        ``n_samples`` weight draws from the posterior shared by every row (predictive="nn")."""
        X, hyper, tau, scale, _ = self._prepare_prediction(X)
        batches = _passes.sampled_batches(
            self.estimator_,
            self._head(),
            self.posterior_,
            X,
            self.n_samples,
            tau,
            scale,
            self._seed(),
            self.batch_size,
        )
        return hyper, batches

    def _predictive_moments(self, X, full_row_cov=False):
        """All rows at once: the mean (m, c), the output covariance (m, c, c), the
        covariance across rows (m, m, c) if ``full_row_cov`` (else None) and the resolved
        hyper-parameters."""
        if full_row_cov and self.subset_of_weights != "last_layer":
            raise ValueError(
                "Covariances across rows (return_cov=True, sample_y) are available for "
                "subset_of_weights='last_layer' only; use return_std=True, or "
                "predictive='nn' to draw whole functions from the posterior."
            )
        hyper, batches = self._predictive_batches(X, features=full_row_cov)
        means, covs, feats = [], [], []
        for mean, cov, a in batches:
            means.append(mean)
            covs.append(cov)
            if full_row_cov:
                feats.append(a)
        row_cov = None
        if full_row_cov:
            device = self.posterior_.means[0].device
            tau = torch.as_tensor(hyper["prior_precision"][0], dtype=torch.float64, device=device)
            scale = self._scale(hyper["sigma_noise"], hyper["temperature"]).to(device)
            row_cov = self.posterior_.blocks[0].row_cov(torch.cat(feats), tau, scale)
        return torch.cat(means), torch.cat(covs), row_cov, hyper

    def _seed(self) -> int:
        """One seed per prediction call: every batch then shares the same Monte Carlo draws."""
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _generator(self, seed=None) -> torch.Generator:
        return torch.Generator().manual_seed(self._seed() if seed is None else seed)

    # ---------------------------------------------------------------- pickling
    def __getstate__(self):
        """The state to pickle, with every posterior tensor copied to the CPU.

        A posterior fitted on a GPU then loads on a machine without one (skorch does the same
        for the net: it maps a CUDA net to the CPU on load, with a warning); ``__setstate__``
        moves the tensors back to the net's device. The live estimator is not changed.
        """
        return {k: _tensors_to(v, torch.device("cpu")) for k, v in super().__getstate__().items()}

    def __setstate__(self, state):
        super().__setstate__(state)
        self._to_net_device()

    def _to_net_device(self) -> None:
        """Move the fitted tensors (posterior, held-out features) to the net's device."""
        net = self.__dict__.get("estimator_")
        posterior = self.__dict__.get("posterior_")
        if net is None or posterior is None:
            return
        device = _skorch.net_device(net)
        if posterior.means[0].device != device:
            for k, v in list(self.__dict__.items()):
                self.__dict__[k] = _tensors_to(v, device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.random_state is None
        return tags


_COMMON_PARAMS_DOC = """
    estimator : skorch net or sklearn.frozen.FrozenEstimator
        The network. An unfitted skorch net is cloned and trained in ``fit``;
        ``FrozenEstimator(fitted_net)`` is used as is and never retrained (the pattern for
        tuning hyper-parameters with ``GridSearchCV`` without retraining the net). The last
        ``torch.nn.Linear`` the module applies must produce its output.
    subset_of_weights : {"last_layer", "all"}, default="last_layer"
        Which weights get a posterior; the others stay at their trained values.
    hessian_structure : {"kron", "diag", "full"}, default="kron"
        Structure of the curvature: Kronecker-factored (Ritter et al. 2018), diagonal, or
        dense (exact; last layer only, memory grows as (n_features * n_outputs)^2).
    prior_precision : float, array-like of shape (n_layers,), dict or str, \
default="holdout"
        Precision of the isotropic Gaussian prior on the weights (one value, one per layer
        of ``posterior_.names`` as an array or a dict keyed by module name), or how ``fit``
        chooses it:

        - "marglik": maximise the Laplace evidence (cheap: through stored eigenvalues, no
          data pass). Needs no held-out data, but on over-fitted nets it tends to pick
          under-confident posteriors.
        - "holdout": maximise the log-likelihood of held-out rows under the predictive (as
          ``LogisticRegressionCV`` tunes ``C``). The rows are the net's own ``train_split``
          validation rows when ``fit`` trains a net that has one; otherwise
          ``validation_fraction`` of the rows, held out from training (unfitted net) and
          always from the curvature; at most 10,000 of them are scored. With a frozen net,
          pass rows it was not trained on, or the tuning sees its over-confidence on rows
          it memorised.
        - "weight_decay": the prior implied by the L2 weight decay the net was trained with
          (coupled ``weight_decay`` of SGD, Adam, ...), so that the posterior mode is the
          trained weights: ``N * weight_decay`` for a mean-reduced loss over ``N`` rows per
          epoch (see the user guide). Not for decoupled decay (AdamW).
    temperature : float or "holdout", default=1.0
        Divides the likelihood's curvature: ``P = H / (sigma^2 T) + prior_precision``.
        "holdout": chosen with the prior precision (and, for the regressor, a
        ``sigma_noise="holdout"``) by the held-out log-likelihood, on the rows that
        ``prior_precision="holdout"`` uses (Ritter et al. 2018 tune the prior and a
        data-size factor ``N = 1 / T`` on a validation set). The prior and the
        temperature then set the posterior's width and shape together. Not with the
        evidence modes ("marglik", "weight_decay").
    predictive : {"glm", "nn"}, default="glm"
        "glm": the linearised net, whose outputs are Gaussian (closed form; the mean is the
        net's prediction). "nn": run the net itself with ``n_samples`` weight draws from
        the posterior (via ``torch.func.functional_call``; the live weights are never
        written) and average; reproducible with ``random_state``.
    n_samples : int, default=100
        Number of Monte Carlo draws where sampling is used.
    validation_fraction : float in (0, 1), default=0.2
        Share of the rows held out for ``prior_precision="holdout"`` when the net has no
        validation split of its own.
    batch_size : int, default=None
        Rows per forward pass in ``fit`` and prediction; default: the net's own.
    random_state : int, RandomState instance or None, default=None
        Seeds the training of an unfitted net and the Monte Carlo draws.
"""

_HYPER_NOTE = """
    Hyper-parameters that do not change the curvature (``prior_precision``,
    ``temperature``, ``sigma_noise``, ``link_approx``, ``n_samples``) are read when
    predicting, as ``KNeighborsClassifier`` reads ``n_neighbors``: after
    ``set_params(prior_precision=...)`` the next prediction uses the new value without
    refitting and without a pass over the training data. The fitted ``prior_precision_``
    and ``log_marginal_likelihood_value_`` describe the values at fit time.
"""


class LaplaceClassifier(ClassifierMixin, _BaseLaplace):
    __doc__ = f"""Laplace-approximated Bayesian classifier around a skorch net.

    ``fit`` computes a Gaussian posterior over the net's last-layer weights, centred on the
    trained weights, and ``predict_proba`` averages the softmax over it with the
    linearised (GLM) predictive: less over-confident probabilities, most of all away from
    the training data, at the cost of one forward pass.

    Parameters
    ----------{_COMMON_PARAMS_DOC}    link_approx : {{"probit", "mc"}}, default="probit"
        How the Gaussian over logits becomes probabilities: the probit approximation
        (deterministic) or an average over ``n_samples`` draws.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    estimator_ : skorch net
        The trained net used (the frozen one itself when given FrozenEstimator).
    posterior_ : sklaplace.posterior.Posterior
    prior_precision_ : ndarray of shape (n_layers,)
    temperature_ : float
        The temperature used (the one given, or the one tuned by "holdout").
    log_marginal_likelihood_value_ : float
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Only when X has feature names (pandas input).

    Notes
    -----
    Supported nets: ``NeuralNetClassifier`` with ``CrossEntropyLoss`` on logits, or with
    skorch's default ``NLLLoss`` and a module ending in ``nn.Softmax``: then the logits
    are the last Linear layer's outputs (the softmax's input), which is what the posterior
    is placed on. ``NeuralNetBinaryClassifier`` with ``BCEWithLogitsLoss``.
    {_HYPER_NOTE}
    Examples
    --------
    >>> import torch
    >>> from skorch import NeuralNetClassifier
    >>> from sklearn.datasets import load_iris
    >>> from sklaplace import LaplaceClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> module = torch.nn.Sequential(
    ...     torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> net = NeuralNetClassifier(module, criterion=torch.nn.CrossEntropyLoss,
    ...                           max_epochs=30, lr=0.1, verbose=0)
    >>> clf = LaplaceClassifier(net, prior_precision=1.0, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    _likelihoods = ("classification", "binary")
    _parameter_constraints: ClassVar[dict] = {
        **_BaseLaplace._parameter_constraints,
        "link_approx": [StrOptions({"probit", "mc"})],
    }

    def __init__(
        self,
        estimator,
        *,
        subset_of_weights="last_layer",
        hessian_structure="kron",
        prior_precision="holdout",
        temperature=1.0,
        link_approx="probit",
        predictive="glm",
        n_samples=100,
        validation_fraction=0.2,
        batch_size=None,
        random_state=None,
    ):
        self.estimator = estimator
        self.subset_of_weights = subset_of_weights
        self.hessian_structure = hessian_structure
        self.prior_precision = prior_precision
        self.temperature = temperature
        self.link_approx = link_approx
        self.predictive = predictive
        self.n_samples = n_samples
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Train the net if needed, then compute the Laplace posterior.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels, of any type (encoded with a LabelEncoder).

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        classes = encoder.classes_
        if len(classes) < 2:
            raise ValueError(
                f"y contains only one class ({classes.tolist()[0]!r}); a classifier needs "
                "samples of at least 2 classes."
            )
        y_enc = encoder.transform(y)
        net = self.estimator.estimator if isinstance(self.estimator, FrozenEstimator) else None
        if net is not None and hasattr(net, "classes_") and not _is_binary_net(net):
            classes, y_enc = _frozen_classes(net, y, classes, y_enc)
        y_net = y_enc.astype(np.float32) if _is_binary_net(self._net()) else y_enc
        self.classes_ = classes
        n_expected = len(classes)
        if _is_binary_net(self._net()) and n_expected != 2:
            raise ValueError(
                "Only binary classification is supported with a NeuralNetBinaryClassifier "
                f"(one logit); y has {n_expected} classes. Use NeuralNetClassifier with one "
                "output per class."
            )
        return self._fit_posterior(X, y_net, n_expected)

    def _net(self):
        est = self.estimator
        return est.estimator if isinstance(est, FrozenEstimator) else est

    def predict_proba(self, X):
        """Posterior predictive class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        if self.predictive == "nn":
            _, samples = self._sample_batches(X)
            return np.concatenate(
                [sample_probabilities(self.likelihood_, f).cpu().numpy() for f in samples]
            )
        _, batches = self._predictive_batches(X)
        seed = self._seed()
        parts = []
        for mean, cov, _ in batches:
            if self.link_approx == "probit":
                var = torch.diagonal(cov, dim1=1, dim2=2)
                proba = probit_probabilities(self.likelihood_, mean, var)
            else:
                proba = mc_probabilities(
                    self.likelihood_, mean, cov, self.n_samples, self._generator(seed)
                )
            parts.append(proba.cpu().numpy())
        return np.concatenate(parts)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Class with the highest posterior predictive probability.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)  # checks that self is fitted before classes_ is read
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # a NeuralNetBinaryClassifier has a single logit: two classes only
        tags.classifier_tags.multi_class = not _is_binary_net(self._net())
        return tags


def _complement(rows: np.ndarray, n: int) -> np.ndarray:
    """The indices in range(n) that are not in ``rows`` (sorted)."""
    keep = np.ones(n, dtype=bool)
    keep[rows] = False
    return np.flatnonzero(keep)


def _is_binary_net(net) -> bool:
    from skorch import NeuralNetBinaryClassifier

    return isinstance(net, NeuralNetBinaryClassifier)


def _frozen_classes(net, y, classes, y_enc):
    """Align labels with a frozen net's own ``classes_`` when y uses those labels."""
    net_classes = np.asarray(net.classes_)
    if np.isin(classes, net_classes).all() and (
        len(net_classes) != len(classes) or not np.array_equal(net_classes, classes)
    ):
        return net_classes, np.searchsorted(net_classes, y)
    return classes, y_enc


class LaplaceRegressor(RegressorMixin, _BaseLaplace):
    __doc__ = f"""Laplace-approximated Bayesian regressor around a skorch net.

    The predictive mean is the trained net's prediction (the linearised model is exact at
    the trained weights); the predictive standard deviation combines the weight
    uncertainty of the Laplace posterior with the observation noise ``sigma_noise``.

    Parameters
    ----------{_COMMON_PARAMS_DOC}    sigma_noise : float, "holdout" or "marglik", \
default="holdout"
        Standard deviation of the Gaussian observation noise (same for every output).
        "holdout" maximises the held-out log-likelihood (jointly with the prior precision
        when that is "holdout" too; see ``prior_precision``); "marglik" maximises the
        evidence in ``fit`` (jointly with the prior precision when that is "marglik" too).
        The evidence's sigma follows the training residuals, so it is too small for an
        over-fitted net; the held-out one is not.
        ``sigma_noise="marglik"`` with ``prior_precision="holdout"`` takes sigma from the
        evidence (maximised jointly with the prior) and then tunes the prior on the held-out
        rows at that sigma.

    Attributes
    ----------
    estimator_ : skorch net
    posterior_ : sklaplace.posterior.Posterior
    prior_precision_ : ndarray of shape (n_layers,)
    sigma_noise_ : float
    temperature_ : float
        The temperature used (the one given, or the one tuned by "holdout").
    log_marginal_likelihood_value_ : float
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Only when X has feature names (pandas input).

    Notes
    -----
    Shapes follow ``GaussianProcessRegressor`` and the shape of ``y`` at fit: a 1-D ``y``
    gives 1-D means and stds, a 2-D ``y`` of shape (n, K) gives (m, K).
    {_HYPER_NOTE}
    Examples
    --------
    >>> import numpy as np, torch
    >>> from skorch import NeuralNetRegressor
    >>> from sklaplace import LaplaceRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(200, 1))
    >>> y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=200)
    >>> module = torch.nn.Sequential(
    ...     torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    >>> net = NeuralNetRegressor(module, max_epochs=50, lr=0.05, verbose=0)
    >>> reg = LaplaceRegressor(net, sigma_noise="marglik", random_state=0).fit(X, y)
    >>> mean, std = reg.predict(X[:3], return_std=True)
    >>> mean.shape, std.shape
    ((3,), (3,))
    """

    _likelihoods = ("regression",)
    _parameter_constraints: ClassVar[dict] = {
        **_BaseLaplace._parameter_constraints,
        "sigma_noise": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"marglik", "holdout"}),
        ],
    }

    def __init__(
        self,
        estimator,
        *,
        subset_of_weights="last_layer",
        hessian_structure="kron",
        prior_precision="holdout",
        sigma_noise="holdout",
        temperature=1.0,
        predictive="glm",
        n_samples=100,
        validation_fraction=0.2,
        batch_size=None,
        random_state=None,
    ):
        self.estimator = estimator
        self.subset_of_weights = subset_of_weights
        self.hessian_structure = hessian_structure
        self.prior_precision = prior_precision
        self.sigma_noise = sigma_noise
        self.temperature = temperature
        self.predictive = predictive
        self.n_samples = n_samples
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Train the net if needed, then compute the Laplace posterior.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)

        Returns
        -------
        self
        """
        X, y = validate_data(
            self, X, y, dtype=[np.float64, np.float32], multi_output=True, y_numeric=True
        )
        self._y_ndim_ = y.ndim
        y2 = y.reshape(len(y), -1)
        dtype = np.float32
        est = self.estimator
        net = est.estimator if isinstance(est, FrozenEstimator) else None
        if net is not None and getattr(net, "initialized_", False):
            dtype = _skorch.to_net_input(net, y2[:1]).dtype
        y_net = y2.astype(dtype)
        return self._fit_posterior(X, y_net, y2.shape[1])

    def predict(self, X, return_std=False, return_cov=False):
        """Predictive mean, optionally with its standard deviation or covariance.

        The std and covariance are those of a new observation ``y``: they include the
        observation noise ``sigma_noise`` (``var = Var[f] + sigma_noise^2``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False
        return_cov : bool, default=False
            Covariance across the rows of X (per target). At most one of ``return_std``
            and ``return_cov`` may be True.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_targets)
        y_std : ndarray of the same shape, if ``return_std``
        y_cov : ndarray of shape (n_samples, n_samples) or (n_samples, n_samples, n_targets),
            if ``return_cov``
        """
        if return_std and return_cov:
            raise RuntimeError(
                "At most one of return_std or return_cov can be requested, not both."
            )
        if self.predictive == "nn":
            return self._predict_sampled(X, return_std, return_cov)
        if return_cov:
            mean, _, row_cov, hyper = self._predictive_moments(X, full_row_cov=True)
            noise = hyper["sigma_noise"] ** 2
            m = row_cov.shape[0]
            eye = torch.eye(m, dtype=row_cov.dtype, device=row_cov.device)[:, :, None]
            y_cov = (row_cov + noise * eye).cpu().numpy()
            y_mean = self._shape(mean.cpu().numpy())
            return y_mean, (y_cov[:, :, 0] if self._y_ndim_ == 1 else y_cov)
        hyper, batches = self._predictive_batches(X)
        noise = hyper["sigma_noise"] ** 2
        means, stds = [], []
        for mean, cov, _ in batches:  # one batch at a time: memory O(output)
            means.append(mean.cpu().numpy())
            if return_std:
                var = torch.diagonal(cov, dim1=1, dim2=2) + noise
                stds.append(var.sqrt().cpu().numpy())
        y_mean = self._shape(np.concatenate(means))
        if return_std:
            return y_mean, self._shape(np.concatenate(stds))
        return y_mean

    def _predict_sampled(self, X, return_std, return_cov):
        """predict() with predictive="nn": moments of the outputs of sampled nets + noise."""
        hyper, samples = self._sample_batches(X)
        f = torch.cat(list(samples), dim=1)  # (n_samples, m, K)
        noise = hyper["sigma_noise"] ** 2
        y_mean = self._shape(f.mean(0).cpu().numpy())
        if return_std:
            std = (f.var(0, correction=0) + noise).sqrt()
            return y_mean, self._shape(std.cpu().numpy())
        if return_cov:
            centred = f - f.mean(0)
            cov = torch.einsum("snk,smk->nmk", centred, centred) / f.shape[0]
            cov = cov + noise * torch.eye(f.shape[1], dtype=f.dtype, device=f.device)[:, :, None]
            cov = cov.cpu().numpy()
            return y_mean, (cov[:, :, 0] if self._y_ndim_ == 1 else cov)
        return y_mean

    def _shape(self, arr):
        return arr[:, 0] if self._y_ndim_ == 1 else arr

    def predict_interval(self, X, confidence=0.9):
        """Central predictive interval of a new observation at each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        confidence : float in (0, 1), default=0.9

        Returns
        -------
        lower, upper : ndarrays shaped like ``predict(X)``
        """
        if not (isinstance(confidence, Real) and 0 < confidence < 1):
            raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
        mean, std = self.predict(X, return_std=True)
        z = norm.ppf(0.5 + confidence / 2)
        return mean - z * std, mean + z * std

    def sample_y(self, X, n_samples=1, random_state=0):
        """Draw joint samples of new observations at the rows of X.

        Samples come from ``N(mean, cov)`` with ``mean, cov = predict(X, return_cov=True)``
        (observation noise included), as in ``GaussianProcessRegressor.sample_y``.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        n_samples : int, default=1
        random_state : int, RandomState instance or None, default=0

        Returns
        -------
        ndarray of shape (n_samples_X, n_samples) or (n_samples_X, n_targets, n_samples)
        """
        if not isinstance(n_samples, Integral) or n_samples < 0:
            raise ValueError(f"n_samples must be a non-negative int, got {n_samples!r}.")
        rng = check_random_state(random_state)
        mean, cov = self.predict(X, return_cov=True)
        if self._y_ndim_ == 1:
            return _gaussian_draws(rng, mean, cov, n_samples)
        draws = [
            _gaussian_draws(rng, mean[:, k], cov[:, :, k], n_samples) for k in range(mean.shape[1])
        ]
        return np.stack(draws, axis=1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


def _tensors_to(obj, device: torch.device, memo=None):
    """``obj`` with every tensor it holds on ``device``: a copy where anything moves.

    Walks lists, tuples (named ones too), dicts and sklaplace's own objects (posterior
    blocks); anything else (the skorch net, numpy arrays) is returned as is. Objects are
    copied, never changed, and shared objects stay shared.
    """
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, torch.Tensor):
        out = obj.to(device)
    elif isinstance(obj, list):
        out = [_tensors_to(o, device, memo) for o in obj]
    elif isinstance(obj, tuple):
        items = [_tensors_to(o, device, memo) for o in obj]
        out = type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    elif isinstance(obj, dict):
        out = {k: _tensors_to(v, device, memo) for k, v in obj.items()}
    elif type(obj).__module__.startswith("sklaplace.") and hasattr(obj, "__dict__"):
        out = copy.copy(obj)
        memo[id(obj)] = out
        out.__dict__.update({k: _tensors_to(v, device, memo) for k, v in vars(obj).items()})
    else:
        out = obj
    memo[id(obj)] = out
    return out


def _gaussian_draws(rng, mean, cov, n_samples):
    """(m, n_samples) draws of N(mean, cov) through the symmetric root of cov."""
    lam, vec = np.linalg.eigh(cov)
    root = vec * np.sqrt(np.clip(lam, 0.0, None))
    return mean[:, None] + root @ rng.standard_normal((len(mean), n_samples))
