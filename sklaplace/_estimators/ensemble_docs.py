"""The parameter documentation the two ensembles share."""

import inspect


def member_params(single: type) -> str:
    """The single estimator's parameters every member gets, in its signature's order
    (the ensemble's ``__init__`` repeats them, with the same defaults: scikit-learn
    needs explicit signatures; ``tests/test_ensemble_params.py`` holds them equal)."""
    return ", ".join(p for p in inspect.signature(single).parameters if p != "estimator")


ENSEMBLE_PARAMS = """
    estimators : list of (str, estimator) pairs, or one unfitted net
        The members, as in scikit-learn's ``VotingClassifier``: each an unfitted skorch
        net (or a ``Pipeline`` ending in one), trained in ``fit``, or a fitted one in
        ``sklearn.frozen.FrozenEstimator``. All nets of one kind (class and criterion),
        with the same number of outputs. A pair may be a list of two (``[name, net]``).
        A member's parameters are nested parameters, ``<name>__<param>``
        (``set_params(member0__lr=0.01)``, ``GridSearchCV``). Or ONE unfitted net (or
        ``Pipeline`` ending in one): ``n_members`` copies of it, named ``member0``,
        ``member1``, ..., each trained from its own seed (see ``random_state``);
        ``estimators__<param>`` then sets the net's parameters for every member.
        ``from_net(net, n_members)`` lists such copies as pairs instead.
    n_members : int, default=None
        With one net as ``estimators``, the number of members (None: 5), a parameter
        ``GridSearchCV`` can tune; with a list, None or the list's length.
    {single_params}
        Each member gets them and they mean what they mean for ``{single}``: every
        member has its own posterior (its own curvature) and tunes its own
        hyper-parameters on its unseen rows; then, on the unseen rows they share, one
        factor on all the tuned prior precisions (and noise stds) may be tuned for the
        mixture (``prior_shift_``; see the user guide). The members share one integer
        ``random_state`` (drawn from the one given when it is not an int), so that the
        rows ``validation_fraction`` holds out are the same for all of them; member 0's
        net is initialised and trained as ``{single}`` would, member ``i > 0``'s with the
        torch seed ``SeedSequence([random_state, i])`` (the global torch generator is
        left as it was), so copies of one net start from different weights (a module
        given to skorch as an instance is re-initialised by its submodules'
        ``reset_parameters``).
    n_jobs : int, default=None
        The members fitted in parallel (joblib, as in scikit-learn; None: 1 unless in a
        ``joblib.parallel_backend`` context, -1: all processors). The result does not
        depend on it. With one job the members are fitted in this process, one after the
        other; with more, in joblib's workers, whose warnings joblib's backend may not
        show here.
"""

ENSEMBLE_ATTRIBUTES = """
    estimators_ : list of {single}
        The fitted members, in the order of ``estimators``.
    named_estimators_ : sklearn.utils.Bunch
        The fitted members by name.
    prior_precision_ : ndarray of shape (n_members, n_layers)
        Each member's prior precision (tuned in fit, or the number given).
    prior_shift_ : float
        The factor the mixture step put on every member's tuned prior precision (each
        kept within the range tuning searches); 1.0: no step (see the user guide).
    temperature_ : ndarray of shape (n_members,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Only when X has feature names (pandas input).
"""

ENSEMBLE_FIT_DOC = """Fit every member (see ``{single}.fit``): its net trained if it is not
        frozen, then its Laplace posterior and its hyper-parameters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        {y}
        sample_weight : array-like of shape (n_samples,), default=None
        X_val, y_val, sample_weight_val : default=None
            Rows no member trained on, for every member's tuning (as for ``{single}``).

        Returns
        -------
        self
        """
