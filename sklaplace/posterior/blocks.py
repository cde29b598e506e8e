"""The posterior's blocks: diagonal, Kronecker-factored and full, one per layer.

Each stores the eigendecomposition of its curvature and nothing that depends on the
hyper-parameters; see :mod:`sklaplace.posterior` for the algebra.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import linalg
from .linalg import FLOAT32_SAFE as _FLOAT32_SAFE
from .linalg import eigh_psd, outer_moments, single_position_moments

__all__ = ["Block", "DiagBlock", "FullBlock", "KronBlock"]


class _Block:
    """What the blocks share: tensors derived from the eigendecomposition, made once.

    They are not pickled and not moved between devices (they are remade).
    """

    def _derived(self, key, make) -> Tensor:
        """A tensor computed from the block once (not pickled, not moved: remade)."""
        casts = self.__dict__.setdefault("_casts", {})
        if key not in casts:
            casts[key] = make()
        return casts[key]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_casts", None)
        return state

    def rotation_dtype(self, tau: Tensor, scale: Tensor) -> torch.dtype:
        """The dtype a float32 net's Jacobian factors are rotated in at ``(tau, scale)``:
        float64 unless a block says float32 is safe (see :mod:`sklaplace.posterior`)."""
        return torch.float64

    def _float32_moments(self, v: Tensor, u, tau: Tensor, scale: Tensor, cov: bool):
        """``jacobian_moments`` of float32 factors: the variances in float32 where
        :func:`~.linalg.float32_variances` can, else in float64."""
        var = None if cov else linalg.float32_variances(v, u, self.eigenvalues(tau, scale))
        if var is None:
            u = None if u is None else u.double()
            return self.jacobian_moments(v.double(), u, tau, scale, cov)
        return var

    def jacobian_variances_grid(
        self, v: Tensor, u, taus: Tensor, scale: Tensor, dtype=torch.float64
    ) -> Tensor:
        """Variances through this layer for many prior precisions at once: (T, m, c).

        ``taus`` (T,): as ``jacobian_moments(v, u, tau, scale, cov=False)`` for each ``tau``,
        but in one matrix product where the layout allows (a Jacobian given per row, or a
        single position): the variance is a sum of squared projections times ``1 / L``,
        linear in ``1 / L``, so the ``T`` inverse eigenvalue sets are contracted together
        (tuning's grid, :mod:`sklaplace.tuning.objectives`). Several positions: one
        ``jacobian_moments`` per ``tau``. In ``dtype`` (float32 for a grid search: the
        sums are of positive terms, accurate to ``n eps`` of it relative to themselves).
        """
        base = self.eigenvalues(torch.zeros((), dtype=taus.dtype, device=taus.device), scale)
        inv = (1.0 / (base[None] + taus.reshape(-1, *([1] * base.dim())))).to(dtype)
        n_tau = len(taus)
        if u is None:  # per-row Jacobians (c, m, D), or a one-row layout's gradients
            c, m = v.shape[:2]
            var = (v * v).to(dtype).reshape(c * m, -1) @ inv.reshape(n_tau, -1).T
            return var.reshape(c, m, n_tau).permute(2, 1, 0)
        if u.shape[1] == 1:  # (c, m, 1, n_out) and (m, 1, n_in): one matrix product
            n_out, n_in = base.shape
            u2 = (u[:, 0] * u[:, 0]).to(dtype)
            w = u2 @ inv.reshape(n_tau * n_out, n_in).T  # (m, T n_out)
            v2 = (v[:, :, 0] * v[:, :, 0]).to(dtype)  # (c, m, n_out)
            var = torch.bmm(v2.permute(1, 0, 2), w.reshape(-1, n_tau, n_out).transpose(1, 2))
            return var.permute(2, 0, 1)  # (m, c, T) -> (T, m, c)
        moments = [self.jacobian_moments(v, u, t, scale, False) for t in taus]
        return torch.stack(moments).to(dtype)


class DiagBlock(_Block):
    """Diagonal curvature of one layer: ``H = diag(vec(h))``.

    Parameters
    ----------
    h : Tensor of shape (n_out, n_in)
        The diagonal of the GGN, laid out like the layer's weight matrix.
    """

    structure = "diag"

    def __init__(self, h: Tensor) -> None:
        self.h = h.clamp_min(0.0)
        self.shape = tuple(h.shape)
        self.lam_max = float(self.h.max()) if self.h.numel() else 0.0

    @property
    def n_params(self) -> int:
        return self.h.numel()

    @property
    def lam_min(self) -> float:
        """The smallest eigenvalue of the curvature (0 if it is singular)."""
        return float(self.h.min()) if self.h.numel() else 0.0

    def eigenvalues(self, tau: Tensor, scale: Tensor) -> Tensor:
        """Eigenvalues of the posterior precision, shaped like the weight matrix."""
        return scale * self.h + tau

    def project(self, a: Tensor) -> Tensor:
        """Last layer: the part of the output covariance no hyper-parameter changes, ``a^2``."""
        a = a.to(torch.float64)
        return a * a

    def projected_moments(self, p: Tensor, tau: Tensor, scale: Tensor, cov: bool) -> Tensor:
        """Last layer: ``Var[z_k] = sum_j a_j^2 / L_kj``, no covariance between outputs."""
        var = p @ (1.0 / self.eigenvalues(tau, scale)).T
        return torch.diag_embed(var) if cov else var

    def projected_root(self, p: Tensor, tau: Tensor, scale: Tensor) -> tuple:
        """Last layer: ``(std, None)``, the outputs being independent (a root of their
        covariance, for Monte Carlo draws)."""
        return self.projected_moments(p, tau, scale, cov=False).sqrt(), None

    def output_cov(self, a: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Covariance of the layer output ``W a`` for each row of ``a``: (m, n_out, n_out)."""
        return self.projected_moments(self.project(a), tau, scale, cov=True)

    def row_cov(self, a: Tensor, tau: Tensor, scale: Tensor, b: Tensor | None = None) -> Tensor:
        """``Cov[z_k(x_n), z_k(x_m)] = sum_j a_nj b_mj / L_kj`` between the rows of ``a``
        and those of ``b`` (default ``a``): (n, m, n_out)."""
        b = a if b is None else b
        s = 1.0 / self.eigenvalues(tau, scale)
        return torch.einsum("nj,kj,mj->nmk", a, s, b)

    def rotation_dtype(self, tau: Tensor, scale: Tensor) -> torch.dtype:
        """float32 whenever ``1 / L`` fits in it: nothing is rotated, and the variances are
        sums of positive terms, accurate to ``(n_in + n_out) eps32`` of themselves."""
        return torch.float32 if float(tau) > 1.0 / _FLOAT32_SAFE else torch.float64

    def rotate(self, g: Tensor, a) -> tuple:
        """Inner layer: the eigenbasis is the identity, so ``(g, a)`` as they are.

        ``g`` (c, m, P, n_out) and ``a`` (m, P, n_in); or, for a module whose parameters
        are one flattened row, its per-row gradients ``g`` (c, m, D) and ``a=None``.
        """
        return g, a

    def jacobian_moments(self, v: Tensor, u, tau: Tensor, scale: Tensor, cov: bool) -> Tensor:
        """Moments of the net's outputs through this layer's weights.

        ``J_nk = sum_p g[k, n, p] a[n, p]^T``; with ``S = 1 / L``,
        ``Cov[f_k, f_l] = sum_ij J_nk,ij J_nl,ij S_ij``; for one position this is
        ``sum_i g_ki g_li sum_j a_j^2 S_ij``: O(m c^2 n_out + m n_out n_in).
        """
        if v.dtype == torch.float32:
            return self._float32_moments(v, u, tau, scale, cov)
        inv = 1.0 / self.eigenvalues(tau, scale)
        if u is None:  # per-row gradients (c, m, D) of a one-row layout
            inv = inv.reshape(-1)
            if cov:
                return torch.einsum("kmd,d,lmd->mkl", v, inv, v)
            return torch.einsum("kmd,d->mk", v * v, inv)
        if u.shape[1] == 1:
            w = (u[:, 0] * u[:, 0]) @ inv.T
            return single_position_moments(v[:, :, 0], w, cov)
        return outer_moments(v, u, inv, cov)

    def sample(self, z: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Map standard normal draws ``z`` (n, n_out, n_in) to posterior deviations."""
        return z * self.eigenvalues(tau, scale).rsqrt()


class KronBlock(_Block):
    """Kronecker-factored curvature of one layer: ``H = B (x) A``.

    ``A`` (n_in, n_in) is the input-side factor and ``B`` (n_out, n_out) the output-side
    one. With ``A = Q_A diag(a) Q_A^T`` and ``B = Q_B diag(b) Q_B^T``, the eigenvectors of
    ``B (x) A`` are ``Q_B (x) Q_A`` with eigenvalues ``b_i a_j``, so the posterior precision
    has eigenvalues ``L_ij = scale * b_i a_j + tau`` (Ritter et al. 2018, eq. 9, with the
    prior added exactly instead of to each factor).

    Parameters
    ----------
    A : Tensor of shape (n_in, n_in)
    B : Tensor of shape (n_out, n_out)
    """

    structure = "kron"

    def __init__(self, A: Tensor, B: Tensor) -> None:
        self.lam_A, self.Q_A = eigh_psd(A)
        self.lam_B, self.Q_B = eigh_psd(B)
        self.shape = (B.shape[0], A.shape[0])
        self.lam_max = float(self.lam_B.max()) * float(self.lam_A.max())

    @property
    def n_params(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def lam_min(self) -> float:
        """The smallest eigenvalue ``min_ij b_i a_j`` of ``B (x) A``."""
        ends = [float(x) for x in (self.lam_B.min(), self.lam_B.max())]
        return min(b * float(a) for b in ends for a in (self.lam_A.min(), self.lam_A.max()))

    def eigenvalues(self, tau: Tensor, scale: Tensor) -> Tensor:
        """Eigenvalues ``L_ij = scale * b_i a_j + tau`` of the posterior precision."""
        return scale * torch.outer(self.lam_B, self.lam_A) + tau

    def project(self, a: Tensor) -> Tensor:
        """Last layer: ``u^2`` with ``u = Q_A^T a`` (m, n_in), the part of the output
        covariance no hyper-parameter changes, and its largest cost (O(m n_in^2)).

        In float64 whatever ``a``'s dtype: a float32 product leaves ``|a| eps32`` along the
        null space of a singular ``A``, and ``(|a| eps32)^2 / tau`` swamps the variance at
        small priors (see the module docstring)."""
        u = a.to(torch.float64) @ self.Q_A
        p = u * u
        # ``u^2`` has no cancellation left: in a float32 net's precision it loses nothing
        # the net's own features carry, and the variances below are sums of positive terms
        return p.to(a.dtype) if a.dtype == torch.float32 else p

    def projected_moments(self, p: Tensor, tau: Tensor, scale: Tensor, cov: bool) -> Tensor:
        """Last layer: ``Cov[z] = Q_B diag(v) Q_B^T`` with ``v_i = sum_j u_j^2 / L_ij``.

        Variances ``Var[z_k] = sum_i Q_B[k, i]^2 v_i``: O(m n_out^2) after the O(m n_out
        n_in) product ``v``, and O(m n_out) memory. Covariances: one matrix product of
        ``v`` with the (n_out, n_out^2) products of ``Q_B``'s columns when those fit in
        ``linalg.CHUNK_ELEMENTS`` (four times faster than the batched product for ten outputs),
        else an einsum.

        In ``p``'s dtype (float32 for a float32 net, see ``project``): ``v`` and the
        variances are sums of positive terms, accurate to ``n eps`` of that dtype relative
        to themselves, whatever the conditioning; the covariances' off-diagonal terms
        cancel, so they are formed in float64. Returned in float64.
        """
        inv = (1.0 / self.eigenvalues(tau, scale)).T
        if not cov:
            # float32 while ``1 / L`` stays far inside its range (priors above ~1e-30)
            dtype = p.dtype if float(inv.max()) < _FLOAT32_SAFE else torch.float64
            v = p.to(dtype) @ inv.to(dtype)
            q2 = self._derived(
                ("Q_B^2 T", dtype), lambda: (self.Q_B * self.Q_B).T.contiguous().to(dtype)
            )
            return (v @ q2).to(torch.float64)
        v = p.to(torch.float64) @ inv
        n = self.shape[0]
        if n**3 > linalg.CHUNK_ELEMENTS:
            return torch.einsum("ki,ni,li->nkl", self.Q_B, v, self.Q_B)
        cols = self.Q_B.T
        return (v @ (cols[:, :, None] * cols[:, None, :]).reshape(n, n * n)).reshape(-1, n, n)

    def projected_root(self, p: Tensor, tau: Tensor, scale: Tensor) -> tuple:
        """Last layer: ``(sqrt(v), Q_B)``, a root of ``Cov[z] = Q_B diag(v) Q_B^T`` per row
        (for Monte Carlo draws: O(n_out^2) per draw and row, nothing decomposed)."""
        v = p.to(torch.float64) @ (1.0 / self.eigenvalues(tau, scale)).T
        return v.sqrt(), self.Q_B

    def output_cov(self, a: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Covariance of the layer output ``W a`` for each row of ``a``: (m, n_out, n_out)."""
        return self.projected_moments(self.project(a), tau, scale, cov=True)

    def row_cov(self, a: Tensor, tau: Tensor, scale: Tensor, b: Tensor | None = None) -> Tensor:
        """``Cov[z_k(x_n), z_k(x_m)] = sum_i Q_B[k, i]^2 sum_j u_nj w_mj / L_ij`` with
        ``u = Q_A^T a`` and ``w = Q_A^T b`` (default ``b = a``): (n, m, n_out)."""
        u = a.to(torch.float64) @ self.Q_A
        w = u if b is None else b.to(torch.float64) @ self.Q_A
        inv = 1.0 / self.eigenvalues(tau, scale)
        gram = torch.einsum("nj,ij,mj->inm", u, inv, w)
        return torch.einsum("ki,inm->nmk", self.Q_B**2, gram)

    def rotation_dtype(self, tau: Tensor, scale: Tensor) -> torch.dtype:
        """float32 where its rounding, amplified by the conditioning of ``P``, keeps the
        variances within ``10 (n_in + n_out + 2) eps32`` of themselves
        (:func:`~sklaplace.posterior.linalg.float32_rotation_is_safe`), else float64."""
        n_out, n_in = self.shape
        safe = linalg.float32_rotation_is_safe(n_in, n_out, self.lam_min, self.lam_max, tau, scale)
        return torch.float32 if safe else torch.float64

    def rotate(self, g: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        """Inner layer: ``(Q_B^T g, Q_A^T a)``, the Jacobian's factors in the eigenbasis, in
        the dtype of ``g`` and ``a`` (float32 only where ``rotation_dtype`` says so)."""
        if g.dtype == torch.float64:
            return g @ self.Q_B, a @ self.Q_A
        Q = self._derived("Q float32", lambda: (self.Q_B.float(), self.Q_A.float()))
        return g.float() @ Q[0], a.float() @ Q[1]

    def jacobian_moments(self, v: Tensor, u: Tensor, tau: Tensor, scale: Tensor, cov: bool):
        """Moments through this layer from ``(v, u) = rotate(g, a)``.

        In the eigenbasis ``Q_B (x) Q_A`` the Jacobian is ``sum_p v_kp u_p^T``, so for one
        position ``Cov[f_k, f_l] = sum_ij v_ki v_li u_j^2 / L_ij``: O(m (c n_out + n_in)
        n_out) per row block, no (m, c, n_params) Jacobian formed.
        """
        if v.dtype == torch.float32:
            return self._float32_moments(v, u, tau, scale, cov)
        inv = 1.0 / self.eigenvalues(tau, scale)
        if u.shape[1] == 1:
            w = (u[:, 0] * u[:, 0]) @ inv.T
            return single_position_moments(v[:, :, 0], w, cov)
        return outer_moments(v, u, inv, cov)

    def sample(self, z: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Matrix-normal draws: ``Q_B (z / sqrt(L)) Q_A^T`` for ``z`` of shape (n, n_out, n_in)."""
        return self.Q_B @ (z * self.eigenvalues(tau, scale).rsqrt()) @ self.Q_A.T


class FullBlock(_Block):
    """Dense curvature of one layer, ``H = Q diag(lam) Q^T`` over ``vec(W)``.

    Exact, and affordable for small heads: storage is ``(n_out n_in)^2``.

    Parameters
    ----------
    H : Tensor of shape (n_out * n_in, n_out * n_in)
    shape : tuple (n_out, n_in)
    """

    structure = "full"

    def __init__(self, H: Tensor, shape: tuple[int, int]) -> None:
        self.lam, self.Q = eigh_psd(H)
        self.shape = tuple(shape)
        self.lam_max = float(self.lam.max())

    @property
    def n_params(self) -> int:
        return self.lam.numel()

    @property
    def lam_min(self) -> float:
        """The smallest eigenvalue of the curvature (0 if it is singular)."""
        return float(self.lam.min())

    def eigenvalues(self, tau: Tensor, scale: Tensor) -> Tensor:
        return scale * self.lam + tau

    def covariance(self, tau: Tensor, scale: Tensor) -> Tensor:
        """Dense posterior covariance ``Q diag(1/L) Q^T``, (n_out, n_in, n_out, n_in).

        For inspection and tests; predictions never form it (see the module docstring).
        """
        sigma = (self.Q / self.eigenvalues(tau, scale)) @ self.Q.T
        return sigma.reshape(*self.shape, *self.shape)

    def project(self, a: Tensor) -> Tensor:
        """Last layer: the Jacobians ``e_k (x) a^T`` in the eigenbasis, ``R`` (m, c, P).

        ``R[n, k] = Q^T vec(e_k a_n^T) = Q[k-th row block]^T a_n``: O(m c^2 n_in^2).
        """
        c, d = self.shape
        a = a.to(torch.float64)
        return torch.einsum("nd,kdp->nkp", a, self.Q.reshape(c, d, -1))

    def projected_moments(self, p: Tensor, tau: Tensor, scale: Tensor, cov: bool) -> Tensor:
        """``Cov[f_k, f_l] = sum_p R_kp R_lp / L_p`` from ``R = project(a)``."""
        inv = 1.0 / self.eigenvalues(tau, scale)
        if cov:
            return torch.einsum("nkp,p,nlp->nkl", p, inv, p)
        return (p * p) @ inv

    def output_cov(self, a: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Covariance of the layer output ``W a`` for each row of ``a``: (m, n_out, n_out)."""
        return self.projected_moments(self.project(a), tau, scale, cov=True)

    def row_cov(self, a: Tensor, tau: Tensor, scale: Tensor, b: Tensor | None = None) -> Tensor:
        """``Cov[z_k(x_n), z_k(x_m)] = sum_p R_nkp S_mkp / L_p`` with ``R = project(a)`` and
        ``S = project(b)`` (default ``b = a``): (n, m, n_out)."""
        R = self.project(a)
        S = R if b is None else self.project(b)
        inv = 1.0 / self.eigenvalues(tau, scale)
        return torch.einsum("nkp,p,mkp->nmk", R, inv, S)

    def rotate(self, g: Tensor, a: Tensor) -> tuple[Tensor, None]:
        """Inner layer: the per-row Jacobians in the eigenbasis, (c, m, P), chunked by rows."""
        c, m = g.shape[:2]
        rows = max(1, linalg.CHUNK_ELEMENTS // max(1, c * self.n_params))
        out = []
        for s in range(0, m, rows):
            jac = torch.einsum("kmpo,mpi->kmoi", g[:, s : s + rows], a[s : s + rows])
            out.append(jac.reshape(c, jac.shape[1], -1) @ self.Q)
        return torch.cat(out, dim=1), None

    def jacobian_moments(self, v: Tensor, u, tau: Tensor, scale: Tensor, cov: bool) -> Tensor:
        """``Cov[f_k, f_l] = sum_p R_kp R_lp / L_p`` from ``(R, None) = rotate(g, a)``."""
        inv = 1.0 / self.eigenvalues(tau, scale)
        if cov:
            return torch.einsum("kmp,p,lmp->mkl", v, inv, v)
        return torch.einsum("kmp,p->mk", v * v, inv)

    def sample(self, z: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """``Q (z / sqrt(L))`` for ``z`` of shape (n, n_out, n_in)."""
        flat = z.reshape(z.shape[0], -1) * self.eigenvalues(tau, scale).rsqrt()
        return (flat @ self.Q.T).reshape(z.shape)


Block = DiagBlock | KronBlock | FullBlock
