"""The uniform mixture of the members' predictives (the ensembles' math, numpy only).

A mixture of ``k`` Laplace approximations (Eschenhagen et al., 2021) predicts with
``p(y | x) = (1 / k) sum_i p_i(y | x)``, each ``p_i`` a member's own predictive (its
posterior, its noise, its link). Its class probabilities are the members' averaged; its
mean and variance are the law of total variance over the members::

    mean = (1 / k) sum_i m_i
    var  = (1 / k) sum_i v_i  +  (1 / k) sum_i (m_i - mean)^2

(``v_i`` a member's predictive variance, observation noise included): each member's
uncertainty plus the spread of their means. The covariance across rows is the same with
outer products. See the user guide's section on ensembles.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

__all__ = ["draw_members", "joint_moments", "log_proba", "moments"]


def log_proba(log_probas) -> np.ndarray:
    """The mixture's log class probabilities, ``log((1 / k) sum_i p_i)``, in log space.

    Parameters
    ----------
    log_probas : sequence of k ndarrays of shape (n, n_classes)

    Examples
    --------
    >>> import numpy as np
    >>> p = log_proba([np.log([[0.2, 0.8]]), np.log([[0.6, 0.4]])])
    >>> np.exp(p).round(6).tolist()
    [[0.4, 0.6]]
    """
    stacked = np.stack([np.asarray(lp, dtype=np.float64) for lp in log_probas])
    return logsumexp(stacked, axis=0) - np.log(len(stacked))


def moments(means, variances) -> tuple[np.ndarray, np.ndarray]:
    """The mixture's mean and variance per row from the members' (law of total variance).

    Parameters
    ----------
    means, variances : sequences of k ndarrays of the same shape

    Examples
    --------
    >>> import numpy as np
    >>> m, v = moments([np.array([0.0]), np.array([2.0])], [np.array([1.0]), np.array([1.0])])
    >>> m.tolist(), v.tolist()
    ([1.0], [2.0])
    """
    m = np.stack([np.asarray(a, dtype=np.float64) for a in means])
    v = np.stack([np.asarray(a, dtype=np.float64) for a in variances])
    mean = m.mean(axis=0)
    return mean, v.mean(axis=0) + ((m - mean) ** 2).mean(axis=0)


def joint_moments(means, covs) -> tuple[np.ndarray, np.ndarray]:
    """The mixture's mean and covariance across rows.

    Parameters
    ----------
    means : sequence of k ndarrays of shape (n,) or (n, K)
    covs : sequence of k ndarrays of shape (n, n) or (n, n, K)

    Returns
    -------
    mean : ndarray like a member's mean
    cov : ndarray like a member's covariance: ``(1 / k) sum_i (C_i + d_i d_i^T)`` with
        ``d_i = m_i - mean`` (per target)
    """
    m = np.stack([np.asarray(a, dtype=np.float64) for a in means])
    mean = m.mean(axis=0)
    cov = np.mean([np.asarray(c, dtype=np.float64) for c in covs], axis=0)
    d = m - mean  # (k, n) or (k, n, K)
    if d.ndim == 2:
        cov += np.einsum("ia,ib->ab", d, d) / len(d)
    else:
        cov += np.einsum("iak,ibk->abk", d, d) / len(d)
    return mean, cov


def draw_members(rng: np.random.RandomState, k: int, n_samples: int) -> list[np.ndarray]:
    """Which draws of ``n_samples`` come from which of ``k`` equally likely members: one
    array of draw positions per member (the mixture's first stage)."""
    which = rng.randint(k, size=n_samples)
    return [np.flatnonzero(which == i) for i in range(k)]
