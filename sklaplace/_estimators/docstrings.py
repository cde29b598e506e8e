"""Docstring fragments shared by ``LaplaceClassifier`` and ``LaplaceRegressor``."""

COMMON_PARAMS = """
    estimator : skorch net or sklearn.frozen.FrozenEstimator
        The network. An unfitted skorch net is cloned and trained in ``fit``;
        ``FrozenEstimator(fitted_net)`` is used as is and never retrained (the pattern for
        tuning hyper-parameters with ``GridSearchCV`` without retraining the net). The last
        ``torch.nn.Linear`` the module applies must produce its output.
    subset_of_weights : "auto", "last_layer", "all" or list of str, default="auto"
        Which weights get a posterior; the others stay at their trained values:
        the last ``nn.Linear`` ("last_layer"), every layer with trainable parameters
        ("all"), or the modules named in a list (as in ``net.module_.named_modules()``; a
        container's name stands for the modules inside it). Parameters with
        ``requires_grad=False`` never get a posterior. "auto": "all" for a net of at most
        1,000,000 trainable parameters and 32 outputs whose Kronecker factors are cheap
        next to it (at most 8 factor entries, ``n_in^2 + n_out^2`` per layer, per weight,
        or 2^18 in all: the tabular MLPs where every layer's posterior gave the best
        out-of-distribution detection in the quality benchmark, at a fit of a few
        epochs), else "last_layer" (whose cost hardly depends on the net's size or the
        number of classes). A wide first layer (one-hot columns of thousands of
        categories) thus takes the last layer under "kron": its input factor would cost
        dozens of training epochs and memory growing as the square of its inputs.
        ``subset_of_weights_`` tells which was taken.
    hessian_structure : {"kron", "diag", "full"}, default="kron"
        Structure of the curvature: Kronecker-factored (Ritter et al. 2018), diagonal, or
        dense (exact; last layer only, memory grows as (n_features * n_outputs)^2).
    prior_precision : float, array-like of shape (n_layers,), dict or str, \
default="holdout"
        Precision of the isotropic Gaussian prior on the weights (one value, one per layer
        of ``posterior_.names`` as an array or a dict keyed by module name), or how ``fit``
        chooses it:

        - "holdout": maximise the log-likelihood of rows the net never trained on under
          the predictive (as ``LogisticRegressionCV`` tunes ``C``). The rows are, in
          order: ``X_val``/``y_val`` given to ``fit``; for an unfitted net, its own
          ``train_split`` validation rows (or ``validation_fraction`` of the rows, kept out
          of its training); for ``FrozenEstimator(net)``, the rows the net's own
          ``train_split`` held out of X, re-derived and verified against the validation
          losses in its history. Held-out rows never enter the curvature; at most 10,000
          are scored. Without such rows ``fit`` warns and the predictions are the net's
          own.
        - "marglik": maximise the Laplace evidence (cheap: through stored eigenvalues, no
          data pass). Needs no held-out data, but on over-fitted nets it tends to pick
          under-confident posteriors.
        - "weight_decay": the prior implied by the L2 weight decay the net was trained with
          (coupled ``weight_decay`` of SGD, Adam, ...), so that the posterior mode is the
          trained weights: ``N * weight_decay`` for a mean-reduced loss over ``N`` rows per
          epoch (see the user guide). Not for decoupled decay (AdamW).
    temperature : float or "holdout", default=1.0
        The posterior temperature: divides the likelihood's curvature,
        ``P = H / (sigma^2 T) + prior_precision`` (Ritter et al. 2018's data-size factor
        ``N = 1 / T``). "holdout": tuned with the prior precision on the held-out rows.
        Not with the evidence modes ("marglik", "weight_decay").
    predictive : {"glm", "nn"}, default="glm"
        "glm": the linearised net, whose outputs are Gaussian (closed form; the mean is the
        net's prediction). "nn": run the net itself with ``n_samples`` weight draws from
        the posterior and average (the draws go into a private copy of the module's
        parameter tables, never into the net; with the last layer the body runs once and
        only the head is sampled); reproducible with ``random_state``.
    n_samples : int, default=100
        Number of Monte Carlo draws where sampling is used.
    validation_fraction : float in (0, 1), default=0.2
        Share of the rows held out of an unfitted net's training for "holdout" tuning when
        the net has no validation split of its own.
    batch_size : int, default=None
        Rows per forward pass in ``fit`` and prediction; default: the net's own (the
        all-layer predictive then merges up to 8 of the net's batches, within 32 MB).
    random_state : int, RandomState instance or None, default=None
        Seeds the training of an unfitted net, the held-out split, the regressor's split
        of the unseen rows into a half that tunes and a half that calibrates the conformal
        interval, and the Monte Carlo draws. With None, every call to ``fit`` draws these
        anew: fitting the same net on the same rows twice can tune a different prior
        precision and noise and give different intervals. Pass an int for fits that
        repeat.
"""

HYPER_NOTE = """
    Tuning modes ("holdout", "marglik", "weight_decay") are resolved in ``fit``;
    predictions never tune. A *number* set with ``set_params`` after ``fit``
    (``prior_precision``, ``temperature``, ``sigma_noise``) is read
    at prediction time, without a pass over the training data, as ``KNeighborsClassifier``
    reads ``n_neighbors``; the fitted attributes (``prior_precision_``, ...) always show
    the values predictions use. Asking for a different mode after ``fit`` raises an error
    asking for a new fit.
"""

FIT_DOC = """Train the net if it is not frozen, then compute the Laplace posterior.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The rows the net was (or is to be) trained on.
        {y}
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows of X: each row's loss and curvature count that many times
            (as in a weighted training loss), and held-out rows taken from X tune with
            their weights. A net trained by ``fit`` is trained without them (skorch does
            not weigh rows; a warning says so): train it with them yourself and wrap it in
            ``FrozenEstimator``. Conformal intervals are calibrated without weights.
        X_val : array-like of shape (n_val, n_features), default=None
            Rows the net was not trained on, to tune the "holdout" hyper-parameters (as
            ``HistGradientBoostingClassifier.fit`` takes a validation set). The curvature
            then uses all of X. When this estimator is the last step of a ``Pipeline``,
            ``X_val`` is in that step's input space: transform it with the preceding steps
            first (``pipe[:-1].transform(X_val)``).
        y_val : array-like, default=None
            The targets of ``X_val`` (labels that ``y`` has, for a classifier).
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the rows of ``X_val`` in the held-out log-likelihood.

        Notes
        -----
        With scikit-learn's metadata routing on (``sklearn.set_config(
        enable_metadata_routing=True)``), ``set_fit_request(sample_weight=True,
        X_val=True, y_val=True)`` lets ``Pipeline``, ``GridSearchCV`` and
        ``cross_validate`` pass them to this estimator. A ``GridSearchCV`` splits a fit
        parameter whose length equals the number of rows of X along with X, so give
        ``X_val`` a different number of rows than X (or pass it to ``fit`` directly).

        Returns
        -------
        self
"""
