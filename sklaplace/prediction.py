"""Predictions from a fitted state: output moments, draws, class probabilities, and the
moments of new observations (marginal, or jointly across rows).

Each function takes the fitted state (:class:`~sklaplace.fitting.state.FittedLaplace`) and
the resolved hyper-parameters (:class:`~sklaplace.tuning.resolve.Hyper`) and never tunes;
each runs the net through a fresh private view, so threads can share one fitted state.
The links themselves (probit, Monte Carlo) are in :mod:`sklaplace.links`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

try:
    import resource
except ImportError:  # Windows
    resource = None

import numpy as np
import torch

from ._runtime.config import get_config
from ._runtime.passes import n_rows_of, torch_context
from .approximations.base import MERGED_ELEMENTS, row_cov, tile_rows
from .tuning.resolve import Hyper

__all__ = ["draws", "log_proba", "moments", "y_joint_moments", "y_moments"]


def available_bytes() -> int | None:
    """The memory the system can give this process now, in bytes, or None if unknown.

    Linux: ``MemAvailable`` of ``/proc/meminfo``, lowered to what a cgroup (v2) memory
    limit (a container's bound) or an address-space limit (``ulimit -v``) leaves.
    Elsewhere: None.
    """
    found = _meminfo("/proc/meminfo", "MemAvailable:")
    if found is None:
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            found = min(found, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS) if resource else (None, None)
    size = _meminfo("/proc/self/status", "VmSize:")
    if soft not in (None, getattr(resource, "RLIM_INFINITY", None)) and size is not None:
        found = min(found, max(0, soft - size))
    return found


def _meminfo(path: str, field: str) -> int | None:
    """The value in bytes of a ``field: N kB`` line of a /proc file, or None."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_joint_size(n_rows: int, n_targets: int, draws: bool = False) -> None:
    """Refuse (``MemoryError``) a covariance across ``n_rows`` rows that cannot fit.

    The result holds ``n_rows^2 * n_targets`` float64 numbers (``sample_y`` needs one
    (n_rows, n_rows) matrix more, for the eigenvectors). The bound is the setting
    ``max_result_bytes`` (:func:`sklaplace.set_config`), or else the memory the system
    reports available (:func:`available_bytes`).
    """
    need = 8 * n_rows * n_rows * (n_targets + int(draws))
    bound = get_config()["max_result_bytes"]
    source = "max_result_bytes (sklaplace.set_config)"
    if bound == "available":
        bound, source = available_bytes(), "the memory available"
    if bound is None or need <= bound:
        return
    fits = math.isqrt(bound // (8 * (n_targets + int(draws))))
    what = "sample_y" if draws else "predict(X, return_cov=True)"
    raise MemoryError(
        f"{what} on {n_rows:,} rows builds the covariance across them: "
        f"{n_rows:,} x {n_rows:,}"
        + (f" x {n_targets} targets" if n_targets > 1 else "")
        + f" float64 numbers{' and its eigenvectors' if draws else ''}, {_size(need)}, "
        f"more than {source} ({_size(bound)}). For each row's own uncertainty use "
        f"predict(X, return_std=True) (memory linear in the rows); for covariances or "
        f"joint draws, pass at most {fits:,} rows at a time."
    )


def _size(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _draw_moments(likelihood, chunks, sigma):
    """``(mean of y, variance of its mean, mean noise variance)`` from chunks of draws,
    combined chunk by chunk (Chan et al.'s pairwise update), so memory does not grow with
    the number of draws."""
    n, mean, m2, noise = 0, None, None, None
    for f in chunks:
        mu, nz = likelihood.observation_draw(f, sigma)
        k, mu_mean = len(mu), mu.mean(0)
        mu_m2, nz_sum = ((mu - mu_mean) ** 2).sum(0), nz.sum(0)
        if n == 0:
            n, mean, m2, noise = k, mu_mean, mu_m2, nz_sum
            continue
        delta, total = mu_mean - mean, n + k
        mean = mean + delta * (k / total)
        m2 = m2 + mu_m2 + delta**2 * (n * k / total)
        noise, n = noise + nz_sum, total
    return mean, m2 / n, noise / n


def moments(fitted, X, hyper: Hyper, cov) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(mean (b, c), var (b, c) or cov (b, c, c))`` per chunk of rows, float64.

    Covariances come in chunks of at most ``MERGED_ELEMENTS / c^2`` rows, so memory
    stays bounded for many outputs; variances need O(b c). ``cov="root"``: an
    ``OutputRoot`` per batch where the approximation gives one, else covariances.
    """
    view = fitted.view()
    approx = fitted.approximation
    tau, scale = fitted.tensors(hyper)
    want_root, cov = cov == "root", bool(cov)
    for proj in approx.project(view, X, tau, scale):
        if want_root:
            root = approx.output_root(proj, tau, scale)
            if root is not None:
                yield proj.mean, root
                continue
        m, c = proj.mean.shape
        step = max(1, MERGED_ELEMENTS // (c * c)) if cov else m
        for s in range(0, m, step):
            part = proj if step >= m else approx.rows(proj, slice(s, s + step))
            yield part.mean, approx.moments(part, tau, scale, cov)


def draws(fitted, X, hyper: Hyper, n_samples: int, seed: int) -> Iterator[Iterator]:
    """Per batch, chunks of outputs ``(k, b, c)`` under weights drawn from the posterior."""
    tau, scale = fitted.tensors(hyper)
    yield from fitted.approximation.draws(fitted.view(), X, n_samples, tau, scale, seed)


@torch_context
def log_proba(fitted, X, hyper, *, predictive, link_approx, n_samples, seed) -> np.ndarray:
    """Log predictive class probabilities (m, n_classes), computed in log space."""
    lik = fitted.likelihood
    device = fitted.posterior.means[0].device
    head = None if hyper.head is None else hyper.head.tensors(device)
    parts = []
    if predictive == "nn":
        for chunks in draws(fitted, X, hyper, n_samples, seed):
            total = None  # log of the summed link over the draws, chunk by chunk
            for f in chunks:
                if head is not None:
                    f = f * head[0] if head[1] is None else f * head[0] + head[1]
                part = torch.logsumexp(lik.log_link(f), dim=0)
                total = part if total is None else torch.logaddexp(total, part)
            parts.append((total - math.log(n_samples)).cpu().numpy())
    else:
        for mean, second in moments(
            fitted, X, hyper, cov="root" if link_approx == "mc" else False
        ):
            generator = torch.Generator().manual_seed(seed)  # the same draws for every row
            log_p = lik.log_predict(
                mean,
                second,
                link_approx=link_approx,
                head=head,
                n_samples=n_samples,
                generator=generator,
            )
            parts.append(log_p.cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, 2))


@torch_context
def y_moments(fitted, X, hyper, *, predictive, n_samples, seed) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance (m, K) of a new observation ``y`` (observation noise included)."""
    lik, sigma = fitted.likelihood, hyper.sigma_noise
    means, variances = [], []
    if predictive == "nn":
        parts = (
            _draw_moments(lik, chunks, sigma)
            for chunks in draws(fitted, X, hyper, n_samples, seed)
        )
    else:
        parts = (lik.observation(m, v, sigma) for m, v in moments(fitted, X, hyper, cov=False))
    for mean, var_mean, noise in parts:
        means.append(mean.cpu().numpy())
        variances.append((var_mean + noise).cpu().numpy())
    return np.concatenate(means), np.concatenate(variances)


@torch_context
def y_joint_moments(fitted, X, hyper, *, predictive, n_samples, seed, draws=False):
    """Mean (m, K) and covariance across rows (m, m, K) of new observations ``y``.

    The covariance is filled tile by tile (:func:`.approximations.base.row_cov`), the
    observation noise added on its diagonal in place: memory is the result and O(m)
    besides. Refused before any pass (``MemoryError``) when the result cannot fit
    (:func:`check_joint_size`; ``draws``: ``sample_y``, which needs one (m, m) more).
    """
    lik, sigma = fitted.likelihood, hyper.sigma_noise
    c = fitted.n_outputs()
    zeros = torch.zeros((1, c), dtype=torch.float64)
    n_targets = lik.observation(zeros, zeros, sigma)[0].shape[1]
    check_joint_size(n_rows_of(X), n_targets, draws)
    view = fitted.view()
    device = fitted.posterior.means[0].device
    if predictive == "nn":
        # every draw for every row (S, m, c): O(m) memory, then the tiles
        tau, scale = fitted.tensors(hyper)
        draws_ = fitted.approximation.draws(view, X, n_samples, tau, scale, seed)
        f = torch.cat([torch.cat(list(chunks)) for chunks in draws_], 1)
        mu, noise = lik.observation_draw(f, sigma)
        del f
        mean, noise = mu.mean(0), noise.mean(0)
        centred = (mu - mean) / math.sqrt(mu.shape[0])
        del mu

        def tile(A, B):
            return torch.einsum("snk,smk->nmk", centred[:, A], centred[:, B])

        m = len(mean)
        rows = tile_rows(m, n_targets, len(centred))
        cov = row_cov(m, n_targets, rows, tile, device)
    else:
        tau, scale = fitted.tensors(hyper)
        mean_f, var_f, cov = fitted.approximation.joint_moments(view, X, tau, scale, n_targets)
        mean, _, noise = lik.observation(mean_f, var_f, sigma)
    cov.diagonal(dim1=0, dim2=1).add_(noise.T)  # in place: no second (m, m, K)
    return mean.cpu().numpy(), cov.cpu().numpy()
