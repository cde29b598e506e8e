"""The fitted state of a Laplace estimator: everything ``fit`` produces, read by predictions.

Like scikit-learn's ``_CalibratedClassifier`` behind ``CalibratedClassifierCV``, the public
estimators are a thin scikit-learn face over one private object, :class:`FittedLaplace`:
the trained net, its likelihood, the fitted approximation (posterior, training loss, row
count) and the resolved hyper-parameters. Its prediction methods take the hyper-parameters
as arguments and never tune anything; each call runs the net through a fresh private view
(:class:`~sklaplace._passes.NetView`), so threads can share one fitted state.

It also offers the two objectives that tuning needs (:class:`~sklaplace._hyper.Objectives`):
the evidence through the stored eigenvalues, and the held-out log-likelihood through
projections computed once per held-out row.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator

try:
    import resource
except ImportError:  # Windows
    resource = None

import numpy as np
import torch

from . import _skorch
from ._cache import nbytes
from ._config import get_config
from ._hyper import HeldOutRows, Hyper, Objectives, curvature_scale
from ._passes import NetView, n_rows_of, torch_context
from ._stamp import STEPS_CHANGED, Stamp
from .approximations import Approximation, find_head
from .approximations.base import MERGED_ELEMENTS, row_cov, tile_rows
from .likelihoods import Likelihood

__all__ = ["FittedLaplace"]


# Bytes of held-out projections kept in memory while tuning (beyond, they go to a file).
TUNING_BYTES = 256 * 2**20


class _Kept:
    """The held-out rows' projections, computed once (one pass over the rows).

    Kept in memory while they fit in ``TUNING_BYTES``; beyond, written to an unlinked
    temporary file and read back one batch at a time at each evaluation, so memory stays
    bounded and the tuning's many evaluations cost no pass over the rows. If the file
    cannot be written (no disk space), each evaluation projects the rows again.
    """

    def __init__(self, fitted: FittedLaplace, X) -> None:
        self.fitted, self.X = fitted, X
        self.kept: list | None = []
        self.spill: _Spill | None = None
        sizes, size = [], 0
        for proj in fitted.approximation.project(fitted.view(), X):
            sizes.append(len(proj.mean))
            size += nbytes(proj)
            if self.kept is not None and self.spill is None and size > TUNING_BYTES:
                self.spill = _Spill.open()
                if self.spill is None:  # no file: re-project at each evaluation
                    self.kept = None
                else:
                    for kept in self.kept:
                        self.spill.write(kept)
                    self.kept = []
            if self.spill is not None:
                self.spill.write(proj)
            elif self.kept is not None:
                self.kept.append(proj)
        if self.spill is not None and not self.spill.ok:
            self.spill, self.kept = None, None
        self.bounds = np.cumsum([0, *sizes])

    def __iter__(self):
        if self.spill is not None:
            return self.spill.read()
        if self.kept is not None:
            return iter(self.kept)
        return self.fitted.approximation.project(self.fitted.view(), self.X)


class _Spill:
    """Projections written to an unlinked temporary file, read back in order."""

    def __init__(self, file) -> None:
        self.file, self.records, self.ok = file, [], True

    @classmethod
    def open(cls) -> _Spill | None:
        try:
            return cls(tempfile.TemporaryFile())
        except OSError:
            return None

    def write(self, proj) -> None:
        if not self.ok:
            return
        tensors, layout = _flatten(proj)
        entries = []
        try:
            for t in tensors:
                array = t.detach().cpu().contiguous().numpy()
                entries.append((self.file.tell(), array.shape, array.dtype, t.device))
                self.file.write(memoryview(array).cast("B"))
        except OSError:  # the disk is full: give the file up
            self.ok = False
            self.file.close()
            return
        self.records.append((entries, layout))

    def read(self):
        for entries, layout in self.records:
            tensors = []
            for offset, shape, dtype, device in entries:
                array = np.empty(shape, dtype)
                self.file.seek(offset)
                self.file.readinto(memoryview(array).cast("B"))
                tensors.append(torch.from_numpy(array).to(device))
            yield _unflatten(tensors, layout)


def _flatten(obj):
    """The tensors of nested tuples (NamedTuples included) and their layout."""
    if isinstance(obj, torch.Tensor):
        return [obj], "t"
    if obj is None:
        return [], None
    tensors, layouts = [], []
    for item in obj:
        ts, lay = _flatten(item)
        tensors += ts
        layouts.append(lay)
    return tensors, (type(obj), tuple(layouts))


def _unflatten(tensors: list, layout):
    it = iter(tensors)

    def build(lay):
        if lay == "t":
            return next(it)
        if lay is None:
            return None
        kind, items = lay
        values = [build(item) for item in items]
        return kind(*values) if hasattr(kind, "_fields") else kind(values)

    return build(layout)


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


def _has_integers(X) -> bool:
    """Whether X (an array, a sparse matrix or a dict of them) holds integers."""
    arrays = X.values() if isinstance(X, dict) else [X]
    return any(np.dtype(getattr(a, "dtype", np.float64)).kind in "iu" for a in arrays)


def _heldout_rows(y_val, w_val) -> float:
    """The held-out rows' count (the sum of their weights, if weighted); 0 without any."""
    if y_val is None:
        return 0.0
    return float(len(y_val) if w_val is None else np.sum(w_val))


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


class FittedLaplace:
    """The trained net, its likelihood, the fitted approximation and the hyper-parameters.

    Parameters
    ----------
    net : skorch NeuralNet (fitted)
    likelihood : Likelihood
    approximation : Approximation (fitted)
    batch_size : int or None
        Rows per forward pass (None: the net's own).
    """

    def __init__(self, net, likelihood: Likelihood, approximation: Approximation, batch_size):
        self.net = net
        self.likelihood = likelihood
        self.approximation = approximation
        self.batch_size = batch_size
        self.hyper: Hyper | None = None
        self.conformal = None  # ConformalScores of the regressor's calibration rows
        self.stamp: Stamp | None = None  # the net (and prep) as fit saw them
        self.int_codes = None  # integer X reaches the net as integers (decided in fit)
        self.prep = None  # the fitted steps of a wrapped Pipeline before the net

    @classmethod
    @torch_context
    def fit(
        cls, net, likelihood, approximation, X, y, rows, batch_size, n_outputs, sample_weight=None
    ):
        """Find the head, check its outputs, and fit the approximation on ``rows`` of X.

        Integer X reaches the net as integers, as skorch passes it (codes for an embedding,
        ``F.one_hot`` or a lookup table), unless the net fails on integers and runs on X cast
        to its floating dtype (a net of ``nn.Linear`` layers given integer features); the
        choice is kept for predictions.
        """
        view = NetView(net, batch_size, int_codes=_has_integers(X) or None)
        try:
            head = find_head(view, X, likelihood)
        except ValueError as exc:
            if not _has_integers(X):
                raise
            view = NetView(net, batch_size, int_codes=False)
            try:
                head = find_head(view, X, likelihood)
            except ValueError:
                raise exc from None
        n_out = view.module.get_submodule(head).out_features
        if n_out != n_outputs:
            raise ValueError(
                f"The net's last layer {head!r} has {n_out} output(s), but "
                f"{likelihood.outputs_needed(n_outputs)}. Give the output layer that many "
                "units (for example through a module__ parameter of the net)."
            )
        approximation.fit(view, head, likelihood, X, y, rows, sample_weight)
        fitted = cls(net, likelihood, approximation, batch_size)
        fitted.stamp = Stamp(net.module_)
        fitted.int_codes = view.takes_codes
        return fitted

    def set_prep(self, prep) -> None:
        """Keep the fitted steps of a Pipeline before the net, and stamp them with it."""
        self.prep = prep
        self.stamp = Stamp(self.net.module_, prep)

    def changes(self) -> list[str]:
        """What changed in the net or the steps before it since fit (empty: nothing the
        stamp can see; see :mod:`sklaplace._stamp`)."""
        if self.stamp is None:
            return []
        return self.stamp.changes(self.net.module_, self.prep)

    def with_batch_size(self, batch_size) -> FittedLaplace:
        """A shallow copy that runs batches of ``batch_size`` rows (sharing the stamp and
        the posterior: not through ``__getstate__``, which prepares a pickle)."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.batch_size = batch_size
        return out

    @property
    def posterior(self):
        return self.approximation.posterior

    def _n_outputs(self) -> int:
        return self.net.module_.get_submodule(self.approximation.head_name).out_features

    def view(self) -> NetView:
        """A private view of the net; moves the posterior to the net's device first (the net
        may have been moved since fit). Refuses a net, or Pipeline steps before it, changed
        since fit (see :mod:`sklaplace._stamp`): its posterior would be mixed with another
        model."""
        changed = self.changes()
        if changed:
            net = [c for c in changed if not c.startswith(STEPS_CHANGED)]
            what = (
                "The net was changed after fit (trained, reloaded or modified: "
                if net
                else "The Pipeline's steps before the net were changed after fit (refitted "
                "or modified: "
            )
            raise ValueError(
                f"{what}{'; '.join(changed[:5])}), so the posterior no longer describes the "
                "model. Call fit again."
            )
        device = _skorch.net_device(self.net)
        if self.posterior.means[0].device != device:
            self.approximation = self.approximation.to(device)
        return NetView(self.net, self.batch_size, self.int_codes)

    # ---------------------------------------------------------------- hyper-parameters
    def tensors(self, hyper: Hyper) -> tuple[torch.Tensor, torch.Tensor]:
        """``tau`` (one per block) and the curvature scale, float64 on the posterior's device."""
        device = self.posterior.means[0].device
        tau = torch.tensor(np.array(hyper.prior_precision, dtype=np.float64), device=device)
        noise = self.likelihood.noise_variance(hyper.sigma_noise)
        scale = torch.tensor(curvature_scale(noise, hyper.temperature), dtype=torch.float64)
        return tau, scale.to(device)

    def evidence(self, tau, sigma, temperature: float) -> torch.Tensor:
        """The Laplace log evidence, differentiable in ``tau`` and ``sigma`` (tensors)."""
        post = self.posterior
        device = post.means[0].device
        tau = torch.as_tensor(tau, dtype=torch.float64, device=device)
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=device)
        loss = torch.tensor(self.approximation.loss, dtype=torch.float64, device=device)
        data = self.likelihood.data_log_likelihood(
            loss, self.approximation.weight_sum, self._n_outputs(), sigma, float(temperature)
        )
        scale = 1.0 / (self.likelihood.noise_variance(sigma) * float(temperature))
        return post.log_evidence(data, tau, torch.as_tensor(scale, dtype=torch.float64))

    def sigma_mle(self) -> float:
        """The maximum-likelihood noise std of the training residuals, ``sqrt(SSE / (N K))``
        (1.0 for a likelihood without a noise scale: there the summed loss is not a sum of
        squares, and a heteroscedastic net's Gaussian NLL can be negative)."""
        if not self.likelihood.has_noise:
            return 1.0
        n, k = self.approximation.weight_sum, self._n_outputs()
        return max(math.sqrt(2 * self.approximation.loss / (n * k)), 1e-6)

    def objectives(self, X_val, y_val, weight_decay, train=None, w_val=None) -> Objectives:
        """What tuning needs; ``heldout`` is None when there are no held-out rows.

        ``train``: ``(X, y, w)`` rows the curvature came from, for the leave-one-out noise
        estimate used when there are no held-out rows; ``w_val`` the held-out rows' weights.
        """
        heldout, rms, rows = (
            (None, None, None) if X_val is None else self._heldout(X_val, y_val, w_val)
        )
        loo = None
        if train is not None and self.likelihood.has_noise:
            loo = self._leave_one_out_sigma(*train)
        return Objectives(
            names=list(self.posterior.names),
            evidence=self.evidence,
            heldout=heldout,
            heldout_rms=rms,
            head_rows=rows,
            sigma_mle=self.sigma_mle(),
            weight_decay=weight_decay,
            noise=self.likelihood.noise_variance,
            loo_sigma=loo,
            heldout_rows=_heldout_rows(y_val, w_val),
        )

    def _leave_one_out_sigma(self, X, y, w=None):
        """``f(tau, T, sigma0)``: the noise std from linearised leave-one-out residuals.

        For the linearised model with Gaussian noise, leaving row ``i`` out moves its
        residual from ``r_i`` to ``r_i / (1 - h_i)``, with the leverage ``h_i = J_i Sigma
        J_i^T / sigma^2`` (the hat matrix's diagonal; ``J_i Sigma J_i^T`` is the GLM output
        variance). Training residuals of a flexible net are too small to estimate the noise;
        the leave-one-out ones are not. ``sigma`` solves ``sigma^2 = mean((r / (1 - h))^2)``
        by fixed-point iteration (``h`` depends on ``sigma`` through the posterior).
        At most ``MAX_TUNING_ROWS`` rows (a random subset, seeded) are projected, once.
        """
        from ._holdout import MAX_TUNING_ROWS, take

        n = len(y)
        if n > MAX_TUNING_ROWS:
            rows = np.sort(np.random.default_rng(0).choice(n, MAX_TUNING_ROWS, replace=False))
            X, y = take(X, rows), y[rows]
            w = None if w is None else w[rows]
        projections = _Kept(self, X)  # once; kept, or in a file beyond TUNING_BYTES
        device = self.posterior.means[0].device
        mean = torch.cat([p.mean for p in projections])
        resid = torch.as_tensor(np.asarray(y)).to(device).reshape(mean.shape).double() - mean
        weights = None if w is None else torch.as_tensor(w, dtype=torch.float64, device=device)
        n_blocks = self.posterior.n_blocks

        def solve(tau, temperature, sigma) -> float:
            tau = np.broadcast_to(np.asarray(tau, dtype=np.float64), (n_blocks,))
            for _ in range(50):
                tau_t, scale = self.tensors(Hyper(tau, sigma, temperature))
                var = torch.cat(
                    [self.approximation.moments(p, tau_t, scale, cov=False) for p in projections]
                )
                h = (var / sigma**2).clamp(0.0, 1.0 - 1e-6)
                sq = (resid / (1 - h)) ** 2
                mean_sq = (
                    sq.mean()
                    if weights is None
                    else (weights[:, None] * sq).sum() / (weights.sum() * sq.shape[1])
                )
                new = max(float(mean_sq.sqrt()), 1e-6)
                if abs(new - sigma) <= 1e-6 * sigma:
                    return new
                sigma = new
            return sigma

        return solve

    def _heldout(self, X_val, y_val, w_val=None):
        """``f(tau, sigma, T, head)``, the held-out log-likelihood; the residuals' RMS; and,
        for a classifier's recalibration head, the held-out rows' moments and per-row
        log-likelihood under a head (:class:`~sklaplace._hyper.HeldOutRows`).

        The held-out rows are projected once (the projection does not depend on the
        hyper-parameters) and kept while they fit in ``TUNING_BYTES``, beyond in a
        temporary file (many held-out rows through many wide layers): every evaluation
        then costs no pass over them.
        """
        projections = _Kept(self, X_val)
        device = self.posterior.means[0].device
        y_val = torch.as_tensor(np.asarray(y_val)).to(device)
        w = None if w_val is None else torch.as_tensor(w_val, dtype=torch.float64, device=device)
        bounds = projections.bounds
        lik, approx = self.likelihood, self.approximation
        n_blocks = self.posterior.n_blocks

        def evaluate(tau, sigma, temperature, head=None) -> float:
            tau = np.broadcast_to(np.asarray(tau, dtype=np.float64), (n_blocks,))
            tau_t, scale = self.tensors(Hyper(tau, float(sigma), float(temperature)))
            head_t = None if head is None else head.tensors(device)
            total = 0.0
            for proj, lo, hi in zip(projections, bounds[:-1], bounds[1:], strict=True):
                var = approx.moments(proj, tau_t, scale, cov=False)
                total += float(
                    lik.heldout_log_likelihood(
                        proj.mean,
                        var,
                        y_val[lo:hi],
                        sigma,
                        head_t,
                        None if w is None else w[lo:hi],
                    )
                )
            return total

        def rms() -> float:
            mean = torch.cat([p.mean for p in projections])
            sq = ((y_val.reshape(mean.shape) - mean) ** 2).mean(1)
            avg = sq.mean() if w is None else (w * sq).sum() / w.sum()
            return max(float(avg) ** 0.5, 1e-6)

        if not lik.is_classifier:
            return evaluate, rms, None

        def moments(tau, temperature) -> tuple[torch.Tensor, torch.Tensor]:
            tau = np.broadcast_to(np.asarray(tau, dtype=np.float64), (n_blocks,))
            tau_t, scale = self.tensors(Hyper(tau, 1.0, float(temperature)))
            means, variances = [], []
            for proj in projections:
                means.append(proj.mean)
                variances.append(approx.moments(proj, tau_t, scale, cov=False))
            return torch.cat(means), torch.cat(variances)

        def row_log_likelihood(mean, var, head, rows=None) -> torch.Tensor:
            target = y_val if rows is None else y_val[rows]
            ll = lik.heldout_row_log_likelihood(mean, var, target, None, head)
            if w is not None:
                ll = ll * (w if rows is None else w[rows])
            return ll

        rows = HeldOutRows(
            moments=moments,
            row_log_likelihood=row_log_likelihood,
            labels=y_val.long().cpu().numpy().reshape(-1),
            n_outputs=self._n_outputs(),
        )
        return evaluate, rms, rows

    # ---------------------------------------------------------------- predictions
    def moments(self, X, hyper: Hyper, cov) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(mean (b, c), var (b, c) or cov (b, c, c))`` per chunk of rows, float64.

        Covariances come in chunks of at most ``MERGED_ELEMENTS / c^2`` rows, so memory
        stays bounded for many outputs; variances need O(b c). ``cov="root"``: an
        ``OutputRoot`` per batch where the approximation gives one, else covariances.
        """
        view = self.view()
        approx = self.approximation
        tau, scale = self.tensors(hyper)
        want_root, cov = cov == "root", bool(cov)
        for proj in approx.project(view, X):
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

    def draws(self, X, hyper: Hyper, n_samples: int, seed: int) -> Iterator[Iterator]:
        """Per batch, chunks of outputs ``(k, b, c)`` under weights drawn from the posterior."""
        tau, scale = self.tensors(hyper)
        yield from self.approximation.draws(self.view(), X, n_samples, tau, scale, seed)

    @torch_context
    def log_proba(self, X, hyper, *, predictive, link_approx, n_samples, seed) -> np.ndarray:
        """Log predictive class probabilities (m, n_classes), computed in log space."""
        lik = self.likelihood
        device = self.posterior.means[0].device
        head = None if hyper.head is None else hyper.head.tensors(device)
        parts = []
        if predictive == "nn":
            for chunks in self.draws(X, hyper, n_samples, seed):
                total = None  # log of the summed link over the draws, chunk by chunk
                for f in chunks:
                    if head is not None:
                        f = f * head[0] if head[1] is None else f * head[0] + head[1]
                    part = torch.logsumexp(lik.log_link(f), dim=0)
                    total = part if total is None else torch.logaddexp(total, part)
                parts.append((total - math.log(n_samples)).cpu().numpy())
        else:
            for mean, second in self.moments(
                X, hyper, cov="root" if link_approx == "mc" else False
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
    def y_moments(self, X, hyper, *, predictive, n_samples, seed) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance (m, K) of a new observation ``y`` (observation noise included)."""
        lik, sigma = self.likelihood, hyper.sigma_noise
        means, variances = [], []
        if predictive == "nn":
            parts = (
                _draw_moments(lik, chunks, sigma)
                for chunks in self.draws(X, hyper, n_samples, seed)
            )
        else:
            parts = (lik.observation(m, v, sigma) for m, v in self.moments(X, hyper, cov=False))
        for mean, var_mean, noise in parts:
            means.append(mean.cpu().numpy())
            variances.append((var_mean + noise).cpu().numpy())
        return np.concatenate(means), np.concatenate(variances)

    @torch_context
    def y_joint_moments(self, X, hyper, *, predictive, n_samples, seed, draws=False):
        """Mean (m, K) and covariance across rows (m, m, K) of new observations ``y``.

        The covariance is filled tile by tile (:func:`.approximations.base.row_cov`), the
        observation noise added on its diagonal in place: memory is the result and O(m)
        besides. Refused before any pass (``MemoryError``) when the result cannot fit
        (:func:`check_joint_size`; ``draws``: ``sample_y``, which needs one (m, m) more).
        """
        lik, sigma = self.likelihood, hyper.sigma_noise
        c = self._n_outputs()
        zeros = torch.zeros((1, c), dtype=torch.float64)
        n_targets = lik.observation(zeros, zeros, sigma)[0].shape[1]
        check_joint_size(n_rows_of(X), n_targets, draws)
        view = self.view()
        device = self.posterior.means[0].device
        if predictive == "nn":
            # every draw for every row (S, m, c): O(m) memory, then the tiles
            tau, scale = self.tensors(hyper)
            draws_ = self.approximation.draws(view, X, n_samples, tau, scale, seed)
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
            tau, scale = self.tensors(hyper)
            mean_f, var_f, cov = self.approximation.joint_moments(view, X, tau, scale, n_targets)
            mean, _, noise = lik.observation(mean_f, var_f, sigma)
        cov.diagonal(dim1=0, dim2=1).add_(noise.T)  # in place: no second (m, m, K)
        return mean.cpu().numpy(), cov.cpu().numpy()

    # ---------------------------------------------------------------- pickling
    def __getstate__(self):
        """The state to pickle, with the posterior's tensors on the CPU.

        A posterior fitted on a GPU then loads on a machine without one (skorch maps the net
        to the CPU the same way); ``__setstate__`` moves it to the net's device.

        The stamp's storage addresses, version counters and identities would mean nothing
        after loading: what survives (shapes, sampled values, structure) is pickled, with
        the verdict of a check made now, so that a model changed since fit is still refused
        after a round trip.
        """
        state = dict(self.__dict__)
        state["approximation"] = self.approximation.to(torch.device("cpu"))
        if self.stamp is not None:
            state["stamp"] = self.stamp.portable(self.changes())
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        device = _skorch.net_device(self.net)
        self.approximation = self.approximation.to(device)
        if self.stamp is not None:  # the loaded objects' stamp, and the verdict
            self.stamp = self.stamp.reloaded(self.net.module_, self.prep)
