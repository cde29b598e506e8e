"""The plumbing both Laplace ensembles share: the members, their fits, their parameters.

An ensemble holds one single Laplace estimator per member (``LaplaceClassifier`` or
``LaplaceRegressor``, built with the ensemble's parameters), so each member is fitted by
the one path of fit (:func:`sklaplace.fitting.steps.fit`) with its own curvature, and
predicts with its own predictive; the ensemble mixes those (:mod:`sklaplace.mixture`).
"""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from numbers import Integral
from typing import ClassVar

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, clone
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted

from .._runtime import skorch as _skorch
from .._runtime.passes import torch_state
from ..fitting import inputs
from ..tuning import mixture as _mixture
from .base import docs_url
from .ensemble_conformal import _same

__all__ = ["BaseLaplaceEnsemble"]

_INT32 = np.iinfo(np.int32).max


class BaseLaplaceEnsemble(BaseEstimator):
    """Shared plumbing of ``LaplaceEnsembleClassifier`` and ``LaplaceEnsembleRegressor``;
    ``_single``: the estimator class of one member."""

    _single: ClassVar[type]
    # the link of the HTML repr: the ensemble's entry on the API page (docs/api.rst)
    _doc_link_module = "sklaplace"

    @property
    def _doc_link_template(self) -> str:
        from .. import __version__

        return docs_url(__version__) + "api.html#{estimator_module}.{estimator_name}"

    # the ensemble's own parameters (the others are the single estimator's)
    _ensemble_constraints: ClassVar[dict] = {
        "estimators": [list, tuple, HasMethods(["fit", "get_params"])],
        "n_members": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Integral, None],
    }
    # the members' parameters the ensemble sets itself (not its own parameters)
    _fixed_member_params: ClassVar[dict] = {}
    # whether the members keep their calibration rows for the ensemble (the regressor's)
    _keeps_calibration: ClassVar[bool] = False

    @classmethod
    def _member_params(cls) -> list[str]:
        skip = {"estimator", *cls._fixed_member_params}
        return [p for p in cls._single._get_param_names() if p not in skip]

    @classmethod
    def from_net(cls, net, n_members=5, **params):
        """An ensemble of ``n_members`` copies of one skorch net, each initialised and
        trained with its own torch seed (derived from ``random_state``; see
        ``random_state``), with the copies listed by name.

        ``cls(net, n_members=k, **params)`` builds the same members (the same names,
        seeds and fits) with ``n_members`` a parameter (tunable, ``estimators__<param>``
        reaching the one net for every member); ``from_net`` lists the copies, so that
        ``member<i>__<param>`` reaches the net of member ``i`` alone.

        Parameters
        ----------
        net : skorch net, or Pipeline ending in one, unfitted
        n_members : int, default=5
        **params
            The ensemble's other parameters.

        Returns
        -------
        ensemble : unfitted, with ``estimators=[("member0", clone(net)), ...]``
        """
        return cls(_copies(net, n_members, "from_net"), **params)

    # ---------------------------------------------------------------- parameters
    def _pairs(self) -> list[tuple[str, object]] | None:
        """``estimators`` as ``(name, estimator)`` tuples when it is a list of pairs (None
        for one net, or for a value fit will refuse)."""
        est = self.estimators
        if not isinstance(est, (list, tuple)) or not all(_is_pair(item) for item in est):
            return None
        return [tuple(item) for item in est]

    def get_params(self, deep=True):
        """Parameters of the ensemble; with ``deep`` and a list of ``estimators``, each
        member's estimator as ``<name>`` and its parameters as ``<name>__<param>`` (as for
        scikit-learn's ``VotingClassifier``). With one net, ``estimators__<param>``.

        Parameters
        ----------
        deep : bool, default=True

        Returns
        -------
        params : dict
        """
        out = super().get_params(deep=deep)
        pairs = self._pairs() if deep else None
        for name, est in pairs or ():
            out[name] = est
            if hasattr(est, "get_params"):
                out.update({f"{name}__{k}": v for k, v in est.get_params(deep=True).items()})
        return out

    def set_params(self, **params):
        """Set parameters: the ensemble's, a member's estimator by its name (``<name>``),
        or its parameters (``<name>__<param>``, or ``estimators__<param>`` with one net).

        Parameters
        ----------
        **params

        Returns
        -------
        self
        """
        if "estimators" in params:
            self.estimators = params.pop("estimators")
        pairs = self._pairs()
        if pairs and any(name in params for name, _ in pairs):
            self.estimators = [(name, params.pop(name, est)) for name, est in pairs]
        return super().set_params(**params)

    # ---------------------------------------------------------------- the members
    def _check_estimators(self) -> list[tuple[str, object]]:
        """The ``(name, estimator)`` pairs, checked: a clear error for each bad input.

        One net (not a list) gives ``n_members`` copies of it (5 when None), named
        ``member0``, ``member1``, ...; with a list, ``n_members`` is None or its length.
        """
        est, n_members = self.estimators, self.n_members
        if not isinstance(est, (list, tuple)) and hasattr(est, "fit"):
            return self._check_kinds(
                _copies(est, 5 if n_members is None else n_members, "estimators", copy=False)
            )
        if not isinstance(est, (list, tuple)) or len(est) == 0:
            raise ValueError(
                "estimators must be a non-empty list of (name, estimator) pairs or one "
                f"unfitted net, got {est!r}. For k copies of one net use "
                f"{type(self).__name__}(net, n_members=k)."
            )
        bad = [item for item in est if not _is_pair(item)]
        if bad:
            raise ValueError(
                f"each entry of estimators must be a (name, estimator) pair with a str "
                f"name, got {bad[0]!r}."
            )
        pairs = self._pairs()
        if n_members is not None and n_members != len(pairs):
            raise ValueError(
                f"n_members={n_members!r} but estimators lists {len(pairs)} members. "
                "n_members counts the copies of one net (estimators=net); with a list of "
                "members leave it None."
            )
        names = [name for name, _ in pairs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"estimators has duplicate names {dup}; give each member its own.")
        clash = sorted(set(names) & set(self._get_param_names()))
        if clash or any("__" in n for n in names):
            raise ValueError(
                f"member names must differ from the ensemble's parameters and contain no "
                f"'__' (they name nested parameters, <name>__<param>); got {names}."
            )
        return self._check_kinds(pairs)

    def _check_kinds(self, pairs):
        """The members' nets: each for this ensemble's task, all of one kind."""
        kinds = []
        for name, member in pairs:
            net, likelihood = _net_and_likelihood(member, f"member {name!r}")
            if likelihood.is_classifier != self._single._is_classifier:
                raise TypeError(
                    f"member {name!r} is a {type(net).__name__}, a net for "
                    f"{'classification' if likelihood.is_classifier else 'regression'}; "
                    f"{type(self).__name__} needs nets for "
                    f"{'classification' if self._single._is_classifier else 'regression'}."
                )
            kinds.append((name, type(net).__name__, type(likelihood).__name__))
        if len({k[1:] for k in kinds}) > 1:
            raise ValueError(
                "the members must be nets of one kind with one likelihood, got "
                + ", ".join(f"{n!r}: {net} ({lik})" for n, net, lik in kinds)
                + "."
            )
        return pairs

    def _make_members(self, pairs) -> list:
        """One unfitted single estimator per member, with the ensemble's parameters.

        Every member gets the same integer ``random_state`` (the same held-out rows, so
        that the members' unseen rows are shared); member 0 trains as the single estimator
        would, member ``i > 0`` with the torch seed ``SeedSequence([random_state, i])``.
        """
        rs = self.random_state
        if not isinstance(rs, Integral):
            rs = int(check_random_state(rs).randint(_INT32))
        params = {p: getattr(self, p) for p in self._member_params()}
        params["random_state"] = int(rs)
        params.update(self._fixed_member_params)
        members = []
        for i, (_, est) in enumerate(pairs):
            member = self._single(est, **params)
            member._keep_calibration_rows = self._keeps_calibration
            if i > 0:
                seq = np.random.SeedSequence([int(rs), i])
                member._net_seed = int(seq.generate_state(1)[0] % _INT32)
            members.append(member)
        return members

    def _fit_members(self, X, y, sample_weight, **fit_params):
        pairs = self._check_estimators()
        members = self._make_members(pairs)
        for member in members:  # the mixture step tunes on the rows they tuned on
            member._keep_tuning_rows = True
        if effective_n_jobs(self.n_jobs) == 1:  # in this process: warnings name the caller
            fitted = [_fit_one(m, X, y, sample_weight, fit_params) for m in members]
        else:
            try:
                fitted = Parallel(n_jobs=self.n_jobs)(
                    delayed(_fit_one)(m, X, y, sample_weight, fit_params) for m in members
                )
            except pickle.PicklingError as exc:
                # a fitted skorch net pickles its module's class by reference: a class
                # defined in a script or notebook (__main__) cannot come back from a worker
                raise ValueError(
                    f"n_jobs={self.n_jobs!r}: the fitted members could not be sent back from "
                    f"joblib's workers ({exc}). A net's module class defined in __main__ (a "
                    "script or a notebook) cannot travel between processes: define it in an "
                    "importable module, or fit with n_jobs=1."
                ) from exc
        sizes = {name: m._fitted.n_outputs() for (name, _), m in zip(pairs, fitted, strict=True)}
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"the members' nets have different numbers of outputs ({sizes}); a mixture "
                "needs members that predict the same quantity."
            )
        self._tune_mixture(fitted)
        self.estimators_ = fitted
        self.named_estimators_ = Bunch(
            **{name: m for (name, _), m in zip(pairs, fitted, strict=True)}
        )
        first = fitted[0]
        self.n_features_in_ = first.n_features_in_
        if hasattr(first, "feature_names_in_"):
            self.feature_names_in_ = first.feature_names_in_
        return self

    def _tune_mixture(self, members) -> None:
        """The mixture step, after the members' own tuning: shared factors on the members'
        tuned prior precisions (and noise stds) maximising the mixture's held-out
        log-likelihood on the unseen rows all the members tuned on
        (:mod:`sklaplace.tuning.mixture`); sets ``prior_shift_`` (and a regressor's
        ``noise_shift_``).

        No step (both 1.0) for a single member (the mixture is the member, tuned as the
        single estimator), when no hyper-parameter was tuned on held-out rows (a number,
        "marglik", "weight_decay"), or when the members tuned on different rows (frozen
        nets each with its own validation rows): then no rows are unseen by the whole
        mixture, and each member keeps its own tuning.
        """
        rows = [m.__dict__.pop("_tuning_rows", None) for m in members]
        self._set_shifts(1.0, 1.0)
        likelihood = members[0]._fitted.likelihood
        prior = _is_holdout(self.prior_precision)
        noise = _is_holdout(getattr(self, "sigma_noise", None)) and likelihood.has_noise
        if len(members) < 2 or not (prior or noise) or any(r is None for r in rows):
            return
        X, y, w = rows[0]
        if not all(_same(r[0], X) and _same(r[1], y) and _same(r[2], w) for r in rows[1:]):
            return
        with torch_state():
            c, d = _mixture.step(
                [m._fitted for m in members], X, y, w, prior, noise, members[0].random_state
            )
        self._set_shifts(c, d)

    def _set_shifts(self, prior: float, noise: float) -> None:
        self.prior_shift_ = float(prior)
        if "sigma_noise" in self._member_params():  # (a regressor's)
            self.noise_shift_ = float(noise)

    def _members(self) -> list:
        """The fitted members, with the parameters predictions read set as the ensemble's
        are now (a number set after fit is read at prediction, as for a single estimator)."""
        check_is_fitted(self, "estimators_")
        now = {p: getattr(self, p) for p in self._member_params() if p != "random_state"}
        for member in self.estimators_:
            member.set_params(**now)
        return self.estimators_

    @contextmanager
    def _predicting(self, X):
        """The fitted members (see ``_members``), with X checked here once against the
        ensemble's fit: a warning or an error about X's features names the ensemble and
        is said once, not by each member again."""
        members = self._members()
        inputs.check_features(self, X)
        with inputs.features_checked():  # per thread: no process-wide warnings filter
            yield members

    # ---------------------------------------------------------------- fitted attributes
    @property
    def prior_precision_(self) -> np.ndarray:
        """The prior precision of each member, shape (n_members, n_layers)."""
        return np.stack([m.prior_precision_ for m in self._members()])

    @property
    def temperature_(self) -> np.ndarray:
        """The posterior temperature of each member, shape (n_members,)."""
        return np.array([m.temperature_ for m in self._members()])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        tags.non_deterministic = self.random_state is None
        return tags


def _is_holdout(value) -> bool:
    return isinstance(value, str) and value == "holdout"


def _is_pair(item) -> bool:
    """A ``(name, estimator)`` entry: a tuple or a list of two (as scikit-learn takes)."""
    return isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)


def _net_and_likelihood(estimator, what: str):
    net = inputs.split_model(estimator).net
    try:
        return net, _skorch.likelihood_of(net)
    except TypeError as exc:
        raise TypeError(f"{what}: {exc}") from exc


def _copies(net, n_members, where: str, copy: bool = True) -> list[tuple[str, object]]:
    """``n_members`` unfitted copies of one net, ``member0``, ``member1``, ...: the one
    spelling of an ensemble from one net (``from_net`` and ``estimators=net``).

    ``copy=False``: the one net itself for every member, for ``estimators=net`` (each
    member's fit trains a clone of it and leaves it as it was); ``from_net`` lists
    clones, so that ``member<i>__<param>`` sets member ``i``'s net alone."""
    if isinstance(n_members, bool) or not isinstance(n_members, Integral) or n_members < 1:
        raise ValueError(f"n_members must be a positive int, got {n_members!r}.")
    model = inputs.split_model(net)
    if model.frozen or getattr(model.net, "initialized_", False):
        raise ValueError(
            f"{where}: one net is trained as n_members copies from different seeds, so it "
            "must be an unfitted net; got a fitted net. Pass the unfitted net, or list "
            "fitted nets, each in FrozenEstimator, as (name, estimator) pairs."
        )
    _net_and_likelihood(net, where)
    return [(f"member{i}", clone(net) if copy else net) for i in range(n_members)]


def _fit_one(member, X, y, sample_weight, fit_params):
    return member.fit(X, y, sample_weight, **fit_params)
