"""Gaussian posteriors over the weights of one or more layers, eigendecomposed once.

Every layer's parameters are viewed as a matrix ``W`` of shape ``(n_out, n_in)``, with the
bias absorbed as the last input column (the input activation gets a trailing 1). Vectors
over a layer's parameters use the row-major flattening of ``W``, so the Jacobian of the
layer's output ``z = W a`` with respect to ``vec(W)`` is ``I (x) a^T``.

A block stores the eigendecomposition of its curvature ``H`` (a GGN) and nothing that
depends on the hyper-parameters. The posterior precision of a block is

    P = scale * H + tau * I,      scale = 1 / (sigma_noise^2 * temperature),

so its eigenvectors are those of ``H`` and its eigenvalues are ``L = scale * lam + tau``.
Every covariance is computed in that eigenbasis, as a sum of squared projections divided
by ``L``: never as a dense ``P^-1`` whose entries cancel (with a singular curvature and a
small prior, forming ``Q diag(1/L) Q^T`` and then contracting it loses every digit).
Changing ``tau``, ``sigma_noise`` or ``temperature`` costs no data pass and no new
decomposition: every method takes them as arguments.

Two ways into the predictive covariance of the net's outputs ``f``:

* the last layer (``f`` is the layer's output): ``project(a)`` (independent of the
  hyper-parameters, cacheable) then ``projected_moments``; ``row_cov`` across rows;
* any layer inside the net: the vectors ``g`` backpropagated from each output to the
  layer's output and the layer input ``a`` give the Jacobians as outer products;
  ``rotate(g, a)`` (independent of the hyper-parameters) then ``jacobian_moments``;
  ``jacobian_factors`` for covariances across rows.

``cov=False`` returns the variances (m, c) only, at a cost and memory linear in the number
of outputs (the probit link needs no more); ``cov=True`` the covariances (m, c, c).

The eigenvalues of ``H`` (or of its Kronecker factors) are float64 and clamped at zero
(:func:`null_floor`): a GGN is positive semi-definite, and an eigenvalue below the
decomposition's round-off ``n eps lam_max`` cannot be told from zero, so it is zero. A
singular curvature (a duplicated hidden unit, one-hot columns that sum to the bias column)
then leaves exactly the prior along its null space, as it should, instead of a round-off
eigenvalue that swamps a small ``tau``. ``P`` is positive definite whenever ``tau > 0``.
Projections onto the eigenbasis are formed in float64 too: in float32, a row inside the
span of the curvature picks up a component ``|a| eps32`` along the null space, whose
variance ``(|a| eps32)^2 / tau`` swamps the true one at small priors.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Below this, ``1 / L`` times a projection stays inside float32's range (3.4e38).
_FLOAT32_SAFE = 1e30

__all__ = [
    "DiagBlock",
    "FullBlock",
    "KronBlock",
    "Posterior",
    "eigh_psd",
    "jacobian_factors",
    "null_floor",
]

# Elements of a per-chunk Jacobian (rows x outputs x layer parameters) formed at once.
_CHUNK_ELEMENTS = 2**22


def eigh_psd(M: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (floored by :func:`null_floor`) and eigenvectors of a symmetric positive
    semi-definite matrix, computed in float64 whatever ``M``'s dtype."""
    M = M.to(torch.float64)
    lam, Q = torch.linalg.eigh(0.5 * (M + M.T))
    return null_floor(lam), Q


def null_floor(lam: Tensor) -> Tensor:
    """Eigenvalues of a positive semi-definite matrix with round-off zeros set to zero.

    ``eigh`` returns the exact eigenvalues of ``M + E`` with ``||E|| <= n eps ||M||``, so
    a computed eigenvalue below ``n eps lam_max`` (or negative) is zero to the precision
    of the decomposition.

    Examples
    --------
    >>> import torch
    >>> null_floor(torch.tensor([-1e-18, 3e-17, 1e-3, 1.0], dtype=torch.float64))
    tensor([0.0000, 0.0000, 0.0010, 1.0000], dtype=torch.float64)
    """
    if lam.numel() == 0:
        return lam
    floor = lam.numel() * torch.finfo(lam.dtype).eps * float(lam.max().clamp_min(0.0))
    return torch.where(lam > floor, lam, torch.zeros_like(lam))


def _single_position_moments(v: Tensor, w: Tensor, cov: bool) -> Tensor:
    """``sum_i v_ki v_li w_i`` per row: ``v`` (c, m, n_out), ``w`` (m, n_out)."""
    if cov:
        return torch.einsum("kmi,mi,lmi->mkl", v, w, v)
    return torch.einsum("kmi,mi->mk", v * v, w)


def _outer_moments(v: Tensor, u: Tensor, inv: Tensor, cov: bool) -> Tensor:
    """Moments through ``J_k = sum_p v_kp u_p^T`` (several positions), chunked by rows.

    ``Cov[f_k, f_l] = sum_ij J_k,ij J_l,ij inv_ij``; at most ``_CHUNK_ELEMENTS`` Jacobian
    entries are formed at once.
    """
    c, m = v.shape[:2]
    rows = max(1, _CHUNK_ELEMENTS // max(1, c * inv.numel()))
    out = []
    for s in range(0, m, rows):
        jac = torch.einsum("kmpo,mpi->mkoi", v[:, s : s + rows], u[s : s + rows])
        if cov:
            scaled = (jac * inv.sqrt()).flatten(2)
            out.append(scaled @ scaled.transpose(1, 2))
        else:
            out.append((jac * jac * inv).sum((2, 3)))
    return torch.cat(out)


def jacobian_factors(v: Tensor, u, root: Tensor, k: int) -> Tensor:
    """Each row's Jacobian of output ``k`` in the eigenbasis, scaled by ``1 / sqrt(L)``:
    ``F`` (m, D) with ``Cov[f_k(x_n), f_k(x_m)] = F_n . F_m`` through this layer.

    From ``(v, u) = rotate(g, a)``: ``J_nk = sum_p v_knp u_np^T`` (``u`` None: ``v`` holds
    the per-row Jacobians, (c, m, D)); ``root`` is ``L^(-1/2)``, shaped like the
    eigenvalues. For covariances across rows (``return_cov``, ``sample_y``), one tile of
    rows at a time.
    """
    if u is None:
        return v[k] * root.reshape(-1)
    if u.shape[1] == 1:
        jac = v[k, :, 0, :, None] * u[:, 0, None, :]
    else:
        jac = torch.einsum("mpo,mpi->moi", v[k], u)
    return (jac * root).flatten(1)


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
        inv = 1.0 / self.eigenvalues(tau, scale)
        if u is None:  # per-row gradients (c, m, D) of a one-row layout
            inv = inv.reshape(-1)
            if cov:
                return torch.einsum("kmd,d,lmd->mkl", v, inv, v)
            return torch.einsum("kmd,d->mk", v * v, inv)
        if u.shape[1] == 1:
            w = (u[:, 0] * u[:, 0]) @ inv.T
            return _single_position_moments(v[:, :, 0], w, cov)
        return _outer_moments(v, u, inv, cov)

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
        ``_CHUNK_ELEMENTS`` (four times faster than the batched product for ten outputs),
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
        if n**3 > _CHUNK_ELEMENTS:
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

    def rotate(self, g: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        """Inner layer: ``(Q_B^T g, Q_A^T a)``, the Jacobian's factors in the eigenbasis."""
        return g @ self.Q_B, a @ self.Q_A

    def jacobian_moments(self, v: Tensor, u: Tensor, tau: Tensor, scale: Tensor, cov: bool):
        """Moments through this layer from ``(v, u) = rotate(g, a)``.

        In the eigenbasis ``Q_B (x) Q_A`` the Jacobian is ``sum_p v_kp u_p^T``, so for one
        position ``Cov[f_k, f_l] = sum_ij v_ki v_li u_j^2 / L_ij``: O(m (c n_out + n_in)
        n_out) per row block, no (m, c, n_params) Jacobian formed.
        """
        inv = 1.0 / self.eigenvalues(tau, scale)
        if u.shape[1] == 1:
            w = (u[:, 0] * u[:, 0]) @ inv.T
            return _single_position_moments(v[:, :, 0], w, cov)
        return _outer_moments(v, u, inv, cov)

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
        rows = max(1, _CHUNK_ELEMENTS // max(1, c * self.n_params))
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


class Posterior:
    """A block-diagonal Laplace posterior ``N(theta*, P^-1)``, one block per layer.

    Parameters
    ----------
    blocks : list of DiagBlock, KronBlock or FullBlock
    means : list of Tensor
        The MAP weights of each block, shaped ``(n_out, n_in)`` (bias as last column).
    names : list of str
        The module name of each block, for messages and per-layer prior precisions.
    key : hashable, optional
        A fingerprint of what the curvature was computed from (net, rows, targets,
        settings), under which work derived from the blocks can be cached; None if unknown.
    """

    def __init__(
        self, blocks: list[Block], means: list[Tensor], names: list[str], key=None
    ) -> None:
        if not (len(blocks) == len(means) == len(names)):
            raise ValueError("blocks, means and names must have the same length.")
        self.blocks = blocks
        self.means = means
        self.names = names
        self.key = key

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def n_params(self) -> int:
        return sum(b.n_params for b in self.blocks)

    def log_det_ratio(self, tau: Tensor, scale: Tensor) -> Tensor:
        """``logdet P - logdet P0`` with ``P0 = diag(tau)``, through the eigenvalues.

        ``tau`` has one entry per block. Differentiable in ``tau`` and ``scale``.
        """
        total = tau.new_zeros(())
        for block, t in zip(self.blocks, tau, strict=True):
            total = total + torch.log(block.eigenvalues(t, scale)).sum()
            total = total - block.n_params * torch.log(t)
        return total

    def log_evidence(self, data_log_likelihood: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """The Laplace log evidence ``log p(D | theta*) - 0.5 (logdet P - logdet P0 +
        theta*^T P0 theta*)`` from the data term ``log p(D | theta*)``.

        Differentiable in ``tau`` and ``scale`` (and in the data term's inputs).
        """
        quadratic = self.log_det_ratio(tau, scale) + self.prior_quadratic(tau)
        return data_log_likelihood - 0.5 * quadratic

    def prior_quadratic(self, tau: Tensor) -> Tensor:
        """``(theta* - 0)^T P0 (theta* - 0) = sum_b tau_b ||theta*_b||^2``."""
        sq = torch.stack([(m * m).sum() for m in self.means])
        return (tau * sq).sum()

    def sample(self, n: int, tau: Tensor, scale: Tensor, generator: torch.Generator) -> list:
        """``n`` weight draws per block, each of shape (n, n_out, n_in)."""
        draws = []
        for block, mean, t in zip(self.blocks, self.means, tau, strict=True):
            z = torch.randn((n, *block.shape), generator=generator, dtype=mean.dtype)
            draws.append(mean + block.sample(z.to(mean.device), t, scale))
        return draws

    def to(self, device: torch.device) -> Posterior:
        """A copy with every tensor on ``device`` (the same object if nothing moves)."""
        if self.means[0].device == device:
            return self
        blocks = []
        for block in self.blocks:
            moved = object.__new__(type(block))
            moved.__dict__.update(
                {
                    k: v.to(device) if isinstance(v, Tensor) else v
                    for k, v in vars(block).items()
                    if k != "_casts"
                }
            )
            blocks.append(moved)
        return Posterior(blocks, [m.to(device) for m in self.means], list(self.names), self.key)
