"""What every scorer shares: scikit-learn's scorer protocol for ``sample_weight``.

:class:`_UncertaintyScorer` is the base of the scorer objects, and
:func:`_scorer_function` gives the public scorer functions the same methods, so that
scikit-learn passes ``sample_weight`` to all of them with and without metadata routing.
"""

import copy

from sklearn import get_config
from sklearn.utils.metadata_routing import UNCHANGED, MetadataRequest


class _UncertaintyScorer:
    """What the scorers share: scikit-learn's scorer protocol for ``sample_weight``.

    scikit-learn passes ``sample_weight`` to a scorer when its ``_accept_sample_weight()``
    says so (no metadata routing) or when its ``get_metadata_routing()`` requests it
    (routing enabled).
    """

    _sample_weight_request = None  # unset: routing raises if sample_weight is passed

    def __call__(self, estimator, X, y, *, sample_weight=None):
        return self._score(estimator, X, y, sample_weight)

    def set_score_request(self, *, sample_weight=UNCHANGED):
        """A copy of this scorer that requests ``sample_weight`` (metadata routing).

        Only available when metadata routing is enabled, with
        ``sklearn.set_config(enable_metadata_routing=True)``. Unlike the method of
        scikit-learn's scorers, this one returns a new scorer and leaves this one
        unchanged, so that the module's shared scorers are never modified: pass its
        return value as ``scoring=``.

        Parameters
        ----------
        sample_weight : bool, None or str, default=sklearn.utils.metadata_routing.UNCHANGED
            True: the scorer receives ``sample_weight`` when it is passed (e.g. to
            ``GridSearchCV.fit``); False: it does not; None: passing it raises; a
            string: the scorer receives the metadata of that name as ``sample_weight``.

        Returns
        -------
        scorer : object
            The new scorer.

        Examples
        --------
        >>> import sklearn
        >>> from sklaplace.metrics import neg_gaussian_nll
        >>> with sklearn.config_context(enable_metadata_routing=True):
        ...     weighted = neg_gaussian_nll.set_score_request(sample_weight=True)
        ...     weighted.get_metadata_routing().score.requests
        {'sample_weight': True}
        """
        if not get_config()["enable_metadata_routing"]:
            raise RuntimeError(
                "set_score_request is only available when metadata routing is enabled: "
                "call sklearn.set_config(enable_metadata_routing=True) first. Without "
                "routing, GridSearchCV already passes the sample_weight of fit to these "
                "scorers."
            )
        scorer = copy.copy(self)
        if sample_weight is not UNCHANGED:
            scorer._sample_weight_request = sample_weight
            scorer.get_metadata_routing()  # validates the alias
        return scorer

    def get_metadata_routing(self):
        """The metadata this scorer requests: ``sample_weight`` for its ``score``.

        Returns
        -------
        routing : sklearn.utils.metadata_routing.MetadataRequest
            With the request set by :meth:`set_score_request` (None, i.e. unset, by
            default).
        """
        request = MetadataRequest(owner=self)
        request.score.add_request(param="sample_weight", alias=self._sample_weight_request)
        return request

    def _accept_sample_weight(self):
        # Read by scikit-learn (without metadata routing) to decide whether to pass it.
        return True

    def _routing_repr(self):
        return repr(self)


class _FunctionScorer(_UncertaintyScorer):
    """A scorer function as a scorer object (what its ``set_score_request`` returns)."""

    def __init__(self, function):
        self._function = function

    def _score(self, estimator, X, y, sample_weight):
        return self._function(estimator, X, y, sample_weight=sample_weight)

    def __repr__(self):
        return self._function.__name__


def _scorer_function(function):
    """Give a scorer function the scorer protocol of :class:`_UncertaintyScorer`.

    The public scorers stay functions (documented and pickled as such); the methods
    scikit-learn looks for are attributes of the function.
    """
    as_object = _FunctionScorer(function)
    function.set_score_request = as_object.set_score_request
    function.get_metadata_routing = as_object.get_metadata_routing
    function._accept_sample_weight = as_object._accept_sample_weight
    function._routing_repr = as_object._routing_repr
    return function
