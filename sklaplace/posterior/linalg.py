"""The eigen-decompositions and moment contractions the posterior blocks share.

See :mod:`sklaplace.posterior` for the conventions (eigenvalues floored at the
decomposition's round-off, projections in float64).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "CHUNK_ELEMENTS",
    "eigh_psd",
    "float32_rotation_is_safe",
    "float32_variances",
    "jacobian_factors",
    "null_floor",
    "outer_moments",
    "single_position_moments",
]

# Elements of a per-chunk Jacobian (rows x outputs x layer parameters) formed at once.
CHUNK_ELEMENTS = 2**22


# Below this, ``1 / L`` times a projection stays inside float32's range (3.4e38).
FLOAT32_SAFE = 1e30


def float32_rotation_is_safe(n_in: int, n_out: int, lam_min, lam_max, tau, scale) -> bool:
    """Whether a float32 rotation of a row's Jacobian factors into the eigenbasis of a
    block (sizes ``n_in``, ``n_out``; curvature eigenvalues in ``[lam_min, lam_max]``) keeps
    its variances within ``10 gamma`` of the float64 ones at ``(tau, scale)``.

    ``gamma = (n_in + n_out + 2) eps32`` bounds the relative (Frobenius) error of the
    rotated Jacobian and ``kappa = L_max / L_min`` the conditioning of the precision; the
    variance moves by at most ``(2 sqrt(kappa) + gamma kappa) gamma`` of itself (see
    :mod:`sklaplace.posterior`). Also requires ``L`` and ``1 / L`` inside float32's range.
    """
    eps32 = torch.finfo(torch.float32).eps
    gamma = (n_in + n_out + 2) * eps32
    tau, scale = float(tau), float(scale)
    l_min = scale * max(float(lam_min), 0.0) + tau
    l_max = scale * float(lam_max) + tau
    if not 1.0 / FLOAT32_SAFE < l_min <= l_max < FLOAT32_SAFE:
        return False
    kappa = l_max / l_min
    return 2.0 * kappa**0.5 + gamma * kappa <= 10.0


def float32_variances(v: Tensor, u, L: Tensor) -> Tensor | None:
    """Variances (m, c) of one position's float32 factors ``(v, u)`` (a ``rotate``'s)
    summed in float32 (sums of positive terms), returned in float64; None where float32
    cannot hold them: several positions or per-row gradients, ``1 / L`` beyond float32's
    range, or a variance small enough for float32's underflow to matter.

    A float32 term below float32's smallest normal number (1.2e-38) is lost; at most ``n``
    of them, each weighted by up to ``1 / L_min``, are below ``1e-20`` of a variance of at
    least ``1e-20 / L_min`` (``n`` up to 1e12); a smaller one (a zero Jacobian included)
    gives None.
    """
    inv = 1.0 / L
    if u is None or u.shape[1] != 1 or float(inv.max()) >= FLOAT32_SAFE:
        return None
    w = (u[:, 0] * u[:, 0]) @ inv.T.to(torch.float32)
    var = single_position_moments(v[:, :, 0], w, cov=False).to(torch.float64)
    if var.numel() and float(var.min()) * float(L.min()) < 1e-20:
        return None
    return var


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


def single_position_moments(v: Tensor, w: Tensor, cov: bool) -> Tensor:
    """``sum_i v_ki v_li w_i`` per row: ``v`` (c, m, n_out), ``w`` (m, n_out)."""
    if cov:
        return torch.einsum("kmi,mi,lmi->mkl", v, w, v)
    return torch.einsum("kmi,mi->mk", v * v, w)


def outer_moments(v: Tensor, u: Tensor, inv: Tensor, cov: bool) -> Tensor:
    """Moments through ``J_k = sum_p v_kp u_p^T`` (several positions), chunked by rows.

    ``Cov[f_k, f_l] = sum_ij J_k,ij J_l,ij inv_ij``; at most ``CHUNK_ELEMENTS`` Jacobian
    entries are formed at once.
    """
    c, m = v.shape[:2]
    rows = max(1, CHUNK_ELEMENTS // max(1, c * inv.numel()))
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
