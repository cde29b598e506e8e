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

Where the hyper-parameters are known when a float32 net's rows are projected (predictions,
not the tuning, whose projections serve every prior), a Kronecker block rotates them in
float32 if that is safe at ``(tau, scale)`` (``KronBlock.rotation_dtype``), as it is
twice as fast. The bound: the float32 products ``Q_B^T g`` and ``Q_A^T a`` (and ``Q``
rounded to float32) perturb a row's Jacobian in the eigenbasis, ``J``, by ``dJ`` with
``|dJ| <= gamma |J|`` (Frobenius), ``gamma = (n_in + n_out + 2) eps32``. A variance is
``|J|_S^2 = sum J^2 / L``, and ``|dJ|_S <= |dJ| / sqrt(L_min) <= gamma sqrt(kappa)
|J|_S`` with ``kappa = L_max / L_min`` (``L_min = scale lam_min + tau``, ``tau`` alone
on a singular curvature), so the variance moves by at most ``(2 sqrt(kappa) + gamma
kappa) gamma`` of itself and a covariance by that much of ``sqrt(Var_k Var_l)``. Float32
is used while this is at most ``10 gamma`` (``kappa`` up to about 24: a prior within a
factor 23 of ``scale lam_max``), so the variances stay within ``11 gamma`` of the float64
ones with the float32 sums of positive terms that follow; a singular curvature at a
small prior gets float64. Diagonal blocks rotate nothing: their float32 variances are
sums of positive terms, accurate to ``gamma`` whatever the conditioning. Rows whose
Jacobian sums several positions (convolutions, sequences), whose terms cancel, and
per-row gradients stay in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .blocks import Block, DiagBlock, FullBlock, KronBlock
from .linalg import eigh_psd, jacobian_factors, null_floor

__all__ = [
    "DiagBlock",
    "FullBlock",
    "KronBlock",
    "Posterior",
    "eigh_psd",
    "jacobian_factors",
    "null_floor",
]


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
