"""Gaussian posteriors over the weights of one or more layers, eigendecomposed once.

Every layer's parameters are viewed as a matrix ``W`` of shape ``(n_out, n_in)``, with the
bias absorbed as the last input column (the input activation gets a trailing 1). Vectors
over a layer's parameters use the row-major flattening of ``W``, so the Jacobian of the
layer's output ``z = W a`` with respect to ``vec(W)`` is ``I (x) a^T``.

A block stores the eigendecomposition of its curvature ``H`` (a GGN) and nothing that
depends on the hyper-parameters. The posterior precision of a block is

    P = scale * H + tau * I,      scale = 1 / (sigma_noise^2 * temperature),

so its eigenvectors are those of ``H`` and its eigenvalues are ``scale * lam + tau``.
Changing ``tau``, ``sigma_noise`` or ``temperature`` therefore costs no data pass and no
new decomposition: every method takes them as arguments.

The eigenvalues of ``H`` are clamped at zero (a GGN is positive semi-definite; round-off
can make the smallest ones slightly negative), so ``P`` is positive definite whenever
``tau > 0``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DiagBlock", "FullBlock", "KronBlock", "Posterior"]


class DiagBlock:
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

    @property
    def n_params(self) -> int:
        return self.h.numel()

    def eigenvalues(self, tau: Tensor, scale: Tensor) -> Tensor:
        """Eigenvalues of the posterior precision, shaped like the weight matrix."""
        return scale * self.h + tau

    def output_cov(self, a: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Covariance of the layer output ``W a`` for each row of ``a``: (m, n_out, n_out).

        With ``S = 1 / eig(P)`` elementwise, ``Cov[z_k, z_l] = delta_kl sum_j a_j^2 S_kj``.
        """
        return self.projected_output_cov(self.project(a), tau, scale)

    def project(self, a: Tensor) -> Tensor:
        """The part of ``output_cov`` that no hyper-parameter changes: ``a^2`` (m, n_in)."""
        return a * a

    def projected_output_cov(self, p: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """``output_cov`` from ``p = project(a)``: O(m n_out n_in)."""
        return torch.diag_embed(p @ (1.0 / self.eigenvalues(tau, scale)).T)

    def row_cov(self, a: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Covariance of each output across rows: (m, m, n_out).

        ``Cov[z_k(x_n), z_k(x_m)] = sum_j a_nj a_mj S_kj``.
        """
        s = 1.0 / self.eigenvalues(tau, scale)
        return torch.einsum("nj,kj,mj->nmk", a, s, a)

    def sample(self, z: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Map standard normal draws ``z`` (n, n_out, n_in) to posterior deviations."""
        return z * self.eigenvalues(tau, scale).rsqrt()

    def jacobian_cov(self, g: Tensor, a: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Covariance of the net's outputs through this layer's weights: (m, c, c).

        For a layer inside the net, the Jacobian of output ``k`` of row ``n`` with respect
        to its weight matrix is ``J_nk = sum_p g[k, n, p] a[n, p]^T``: at each position ``p``
        (one for a dense layer, one per pixel for a convolution) the vector backpropagated
        from ``f_k`` to the layer's output times the layer's input. With ``S = 1 / eig(P)``,
        ``Cov[f_k, f_l] = sum_ij J_nk,ij J_nl,ij S_ij``; for one position this is
        ``sum_i g_ki g_li sum_j a_j^2 S_ij``, O(m c^2 n_out + m n_out n_in).

        Parameters
        ----------
        g : Tensor of shape (c, m, P, n_out)
        a : Tensor of shape (m, P, n_in)
        """
        inv = 1.0 / self.eigenvalues(tau, scale)
        if a.shape[1] == 1:
            w = (a[:, 0] * a[:, 0]) @ inv.T
            return torch.einsum("kni,ni,lni->nkl", g[:, :, 0], w, g[:, :, 0])
        return _outer_jacobian_cov(g, a, inv)


class KronBlock:
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
        lam_a, self.Q_A = torch.linalg.eigh(A)
        lam_b, self.Q_B = torch.linalg.eigh(B)
        self.lam_A = lam_a.clamp_min(0.0)
        self.lam_B = lam_b.clamp_min(0.0)
        self.shape = (B.shape[0], A.shape[0])

    @property
    def n_params(self) -> int:
        return self.shape[0] * self.shape[1]

    def eigenvalues(self, tau: Tensor, scale: Tensor) -> Tensor:
        """Eigenvalues ``L_ij = scale * b_i a_j + tau`` of the posterior precision."""
        return scale * torch.outer(self.lam_B, self.lam_A) + tau

    def output_cov(self, a: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Covariance of the layer output ``W a`` for each row of ``a``: (m, n_out, n_out).

        The Jacobian ``I (x) a^T`` in the eigenbasis is ``Q_B (x) (Q_A^T a)^T``, so with
        ``u = Q_A^T a`` and ``v_i = sum_j u_j^2 / L_ij``:
        ``Cov[z] = Q_B diag(v) Q_B^T``. Cost O(m (n_in^2 + n_out n_in + n_out^3)).
        """
        return self.projected_output_cov(self.project(a), tau, scale)

    def project(self, a: Tensor) -> Tensor:
        """The part of ``output_cov`` that no hyper-parameter changes, and its largest cost
        (O(m n_in^2)): ``u^2`` with ``u = Q_A^T a``, (m, n_in)."""
        u = a @ self.Q_A
        return u * u

    def projected_output_cov(self, p: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """``output_cov`` from ``p = project(a)``: O(m (n_out n_in + n_out^3)).

        ``Cov[z]_kl = sum_i v_i Q_B[k, i] Q_B[l, i]`` is one matrix product of ``v`` (m,
        n_out) with the (n_out, n_out^2) products of ``Q_B``'s columns when those fit in
        ``_CHUNK_ELEMENTS`` (four times faster than the equivalent batched product for ten
        outputs), else an einsum.
        """
        v = p @ (1.0 / self.eigenvalues(tau, scale)).T
        n = self.shape[0]
        if n**3 > _CHUNK_ELEMENTS:
            return torch.einsum("ki,ni,li->nkl", self.Q_B, v, self.Q_B)
        cols = self.Q_B.T
        return (v @ (cols[:, :, None] * cols[:, None, :]).reshape(n, n * n)).reshape(-1, n, n)

    def row_cov(self, a: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Covariance of each output across rows: (m, m, n_out).

        ``Cov[z_k(x_n), z_k(x_m)] = sum_i Q_B[k, i]^2 sum_j u_nj u_mj / L_ij``.
        """
        u = a @ self.Q_A
        inv = 1.0 / self.eigenvalues(tau, scale)
        gram = torch.einsum("nj,ij,mj->inm", u, inv, u)
        return torch.einsum("ki,inm->nmk", self.Q_B**2, gram)

    def sample(self, z: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Matrix-normal draws: ``Q_B (z / sqrt(L)) Q_A^T`` for ``z`` of shape (n, n_out, n_in)."""
        return self.Q_B @ (z * self.eigenvalues(tau, scale).rsqrt()) @ self.Q_A.T

    def jacobian_cov(self, g: Tensor, a: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Covariance of the net's outputs through this layer's weights: (m, c, c).

        ``J_nk = sum_p g[k, n, p] a[n, p]^T`` as in ``DiagBlock.jacobian_cov``. In the
        eigenbasis ``Q_B (x) Q_A`` it is ``sum_p v_kp u_p^T`` with ``v = Q_B^T g`` and
        ``u = Q_A^T a``, so for one position
        ``Cov[f_k, f_l] = sum_ij v_ki v_li u_j^2 / L_ij``: O(m (c n_out^2 + n_in^2 +
        c^2 n_out)) per row block, and no (m, c, n_params) Jacobian is formed.

        Parameters
        ----------
        g : Tensor of shape (c, m, P, n_out)
        a : Tensor of shape (m, P, n_in)
        """
        inv = 1.0 / self.eigenvalues(tau, scale)
        v = g @ self.Q_B
        u = a @ self.Q_A
        if a.shape[1] == 1:
            w = (u[:, 0] * u[:, 0]) @ inv.T
            return torch.einsum("kni,ni,lni->nkl", v[:, :, 0], w, v[:, :, 0])
        return _outer_jacobian_cov(v, u, inv)


class FullBlock:
    """Dense curvature of one layer, ``H = Q diag(lam) Q^T`` over ``vec(W)``.

    Exact, and affordable for small heads: storage is ``(n_out n_in)^2``.

    Parameters
    ----------
    H : Tensor of shape (n_out * n_in, n_out * n_in)
    shape : tuple (n_out, n_in)
    """

    structure = "full"

    def __init__(self, H: Tensor, shape: tuple[int, int]) -> None:
        lam, self.Q = torch.linalg.eigh(0.5 * (H + H.T))
        self.lam = lam.clamp_min(0.0)
        self.shape = tuple(shape)

    @property
    def n_params(self) -> int:
        return self.lam.numel()

    def eigenvalues(self, tau: Tensor, scale: Tensor) -> Tensor:
        return scale * self.lam + tau

    def covariance(self, tau: Tensor, scale: Tensor) -> Tensor:
        """Dense posterior covariance ``Q diag(1/L) Q^T``, reshaped (n_out, n_in, n_out, n_in)."""
        sigma = (self.Q / self.eigenvalues(tau, scale)) @ self.Q.T
        return sigma.reshape(*self.shape, *self.shape)

    def output_cov(self, a: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """``Cov[z_k, z_l] = a^T Sigma_kl a``: (m, n_out, n_out). Cost O(m n_out^2 n_in^2)."""
        sigma = self.covariance(tau, scale)
        return torch.einsum("ni,kilj,nj->nkl", a, sigma, a)

    def project(self, a: Tensor) -> Tensor:
        """``a`` itself: every part of the dense quadratic form depends on the prior."""
        return a

    def projected_output_cov(self, p: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """``output_cov`` from ``p = project(a)``."""
        return self.output_cov(p, tau, scale)

    def row_cov(self, a: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """``Cov[z_k(x_n), z_k(x_m)] = a_n^T Sigma_kk a_m``: (m, m, n_out)."""
        sigma = self.covariance(tau, scale)
        sigma_kk = torch.diagonal(sigma, dim1=0, dim2=2).permute(2, 0, 1)
        return torch.einsum("ni,kij,mj->nmk", a, sigma_kk, a)

    def sample(self, z: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """``Q (z / sqrt(L))`` for ``z`` of shape (n, n_out, n_in)."""
        flat = z.reshape(z.shape[0], -1) * self.eigenvalues(tau, scale).rsqrt()
        return (flat @ self.Q.T).reshape(z.shape)

    def jacobian_cov(self, g: Tensor, a: Tensor, tau: Tensor, scale: Tensor) -> Tensor:
        """Covariance of the net's outputs through this layer's weights: (m, c, c).

        ``J_nk = sum_p g[k, n, p] a[n, p]^T`` as in ``DiagBlock.jacobian_cov``, rotated
        into the eigenbasis: ``Cov[f_k, f_l] = (Q^T vec J_k)^T diag(1/L) (Q^T vec J_l)``.
        """
        inv = (1.0 / self.eigenvalues(tau, scale)).reshape(self.shape)
        c, m = g.shape[:2]
        rows = max(1, _CHUNK_ELEMENTS // max(1, c * self.n_params))
        out = []
        for s in range(0, m, rows):
            jac = torch.einsum("knpo,npi->nkoi", g[:, s : s + rows], a[s : s + rows])
            rot = (jac.reshape(*jac.shape[:2], -1) @ self.Q).reshape(jac.shape)
            out.append(_scaled_gram(rot, inv))
        return torch.cat(out)


Block = DiagBlock | KronBlock | FullBlock

# Elements of a per-chunk Jacobian (rows x outputs x layer parameters) formed at once when a
# layer is applied at several positions (convolutions, sequences).
_CHUNK_ELEMENTS = 2**22


def _scaled_gram(jac: Tensor, inv: Tensor) -> Tensor:
    """``sum_ij J_k,ij J_l,ij inv_ij`` for ``jac`` of shape (m, c, n_out, n_in): (m, c, c)."""
    scaled = (jac * inv.sqrt()).flatten(2)
    return scaled @ scaled.transpose(1, 2)


def _outer_jacobian_cov(g: Tensor, a: Tensor, inv: Tensor) -> Tensor:
    """``Cov[f_k, f_l] = sum_ij J_k,ij J_l,ij inv_ij`` with ``J_k = sum_p g_kp a_p^T``.

    Forms the per-row Jacobians of a chunk of rows at a time, so memory stays at most
    ``_CHUNK_ELEMENTS`` whatever the number of rows.
    """
    c, m = g.shape[:2]
    rows = max(1, _CHUNK_ELEMENTS // max(1, c * inv.numel()))
    out = []
    for s in range(0, m, rows):
        jac = torch.einsum("knpo,npi->nkoi", g[:, s : s + rows], a[s : s + rows])
        out.append(_scaled_gram(jac, inv))
    return torch.cat(out)


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

    key = None  # class default: posteriors pickled before the attribute existed load

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

    @property
    def n_params_per_block(self) -> Tensor:
        return torch.tensor([b.n_params for b in self.blocks], dtype=torch.float64)

    def log_det_ratio(self, tau: Tensor, scale: Tensor) -> Tensor:
        """``logdet P - logdet P0`` with ``P0 = diag(tau)``, through the eigenvalues.

        ``tau`` has one entry per block. Differentiable in ``tau`` and ``scale``.
        """
        total = tau.new_zeros(())
        for block, t in zip(self.blocks, tau, strict=True):
            total = total + torch.log(block.eigenvalues(t, scale)).sum()
            total = total - block.n_params * torch.log(t)
        return total

    def prior_quadratic(self, tau: Tensor) -> Tensor:
        """``(theta* - 0)^T P0 (theta* - 0) = sum_b tau_b ||theta*_b||^2``."""
        sq = torch.stack([(m * m).sum() for m in self.means])
        return (tau * sq).sum()

    def sample(self, n: int, tau: Tensor, scale: Tensor, generator: torch.Generator) -> list:
        """``n`` weight draws per block, each of shape (n, n_out, n_in)."""
        draws = []
        for block, mean, t in zip(self.blocks, self.means, tau, strict=True):
            z = torch.randn(
                (n, *block.shape), generator=generator, dtype=mean.dtype, device=mean.device
            )
            draws.append(mean + block.sample(z, t, scale))
        return draws
