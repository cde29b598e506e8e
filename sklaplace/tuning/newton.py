"""Damped Newton searches for the recalibration head's few parameters.

:func:`_newton` minimises a function of a few parameters (the head's ``(log a, b)``, see
:mod:`sklaplace.tuning.recalibration`) by Newton steps with its exact gradient and Hessian,
damped as Levenberg-Marquardt does; :func:`_coarse_start` picks where a search starts when
no head is given. Both take the function as an *objective*: ``objective(x)`` returns
``(value, derivatives)``, ``derivatives()`` the gradient and Hessian at ``x``, asked for
only at the points the search keeps: in closed form for the held-out likelihood
(:class:`HeadLikelihood`, the head's log-likelihood with its gradient and Hessian), by
autograd for a function given as such (:func:`_by_autograd`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["HeadLikelihood"]

# The head's search box (log a and b): far beyond where the data or the prior take it.
_BOX = (-50.0, 50.0)


# Where the Newton search of a head starts when no head is given: the best ``log a`` of
# this grid (biases 0), the identity included. Temperature scaling's optimum is often a
# factor of several away from the identity, where Newton's first steps overshoot.
START_LOG_SCALES = np.linspace(-3.0, 4.0, 15)


class HeadLikelihood:
    """The summed held-out log-likelihood of a head at fixed moments, with its gradient and
    Hessian in ``(log a, b)`` in closed form (:ref:`calibration-head`).

    A row's logits ``f ~ N(m, v)`` go through the head and the probit approximation to
    ``z = kappa (a m + b)`` with ``kappa = (1 + q)^(-1/2)``, ``q = pi/8 a^2 v`` (per logit;
    the ops of :func:`sklaplace.links.affine` and :func:`sklaplace.links.probit_logits`, so
    the values are theirs to the bit), and the link gives ``ll(z)`` with its gradient ``g``
    and negative Hessian ``diag(d) - r r^T`` in ``z`` (``link_derivatives(z)``, the
    likelihood's). With ``s = log a`` and ``rho = q / (1 + q)``, ``z`` has

    * ``dz/ds = kappa (a m - rho mu)`` (``mu = a m + b``),
    * ``d2z/ds2 = kappa (a m (1 - 2 rho) + rho mu (3 rho - 2))``,
    * ``dz_k/db_k = kappa_k``, ``d2z_k/(ds db_k) = -kappa_k rho_k``, ``d2z/db2 = 0``,

    and the chain rule gives the gradient ``sum_n J_n^T g_n`` and the Hessian
    ``sum_n (-J_n^T Lambda_n J_n + sum_k g_nk d2z_nk)``: a few sums over the rows per
    Newton step, where autograd through every row and logit took a backward pass per
    parameter. ``tests/test_recalibration.py`` checks them against autograd in float64.
    """

    def __init__(self, mean: torch.Tensor, var: torch.Tensor, link_derivatives) -> None:
        self.mean, self.var, self.link = mean, var, link_derivatives

    def __call__(self, x: torch.Tensor, kind: str):
        """``(ll, derivatives)`` at ``x = (log a, b...)``: the summed log-likelihood (a
        float) and a callable giving its gradient and Hessian in ``x`` (on ``x``'s
        device)."""
        bias = kind == "bias_temperature"
        scale = x[0].exp()
        am = self.mean * scale
        mean = am + x[1:].to(am.device) if bias else am
        q = math.pi / 8.0 * (self.var * scale**2)
        kappa = torch.rsqrt(1.0 + q)
        ll, g, d, r = self.link(mean * kappa)

        def derivatives() -> tuple[torch.Tensor, torch.Tensor]:
            rho = q * kappa * kappa  # q / (1 + q)
            u = kappa * (am - rho * mean)  # dz / ds
            u2 = kappa * (am * (1.0 - 2.0 * rho) + rho * mean * (3.0 * rho - 2.0))
            lam_u = d * u if r is None else d * u - r * (r * u).sum(1, keepdim=True)
            h_ss = ((g * u2).sum() - (u * lam_u).sum()).reshape(1, 1)
            grad = (g * u).sum().reshape(1)
            if bias:
                h_sb = (-(lam_u + g * rho) * kappa).sum(0)[None]
                h_bb = -torch.diag((d * kappa * kappa).sum(0))
                if r is not None:
                    rk = r * kappa
                    h_bb = h_bb + rk.T @ rk
                grad = torch.cat([grad, (g * kappa).sum(0)])
                hess = torch.cat([torch.cat([h_ss, h_sb], 1), torch.cat([h_sb.T, h_bb], 1)])
            else:
                hess = h_ss
            return grad.to(x.device), hess.to(x.device)

        return float(ll.sum()), derivatives


def _coarse_start(objective, x0: torch.Tensor) -> torch.Tensor:
    """``x0`` with its ``log a`` moved to the best of ``START_LOG_SCALES`` if that is
    strictly better than ``x0`` itself (a tie keeps ``x0``; non-finite values lose)."""
    best, best_value = x0, objective(x0)[0]
    if not math.isfinite(best_value):
        best_value = math.inf
    for log_scale in START_LOG_SCALES:
        trial = x0.clone()
        trial[0] = float(log_scale)
        value = objective(trial)[0]
        if value < best_value:
            best, best_value = trial, value
    return best


def _newton(objective, x: torch.Tensor, max_steps: int = 100) -> tuple[torch.Tensor, float]:
    """Minimise ``objective`` from ``x`` by Newton steps damped as Levenberg-Marquardt does
    (a step is taken only if it decreases the function), within ``_BOX``.

    One evaluation per trial point; the derivatives of the points kept only."""
    value, derivatives = objective(x)
    if not math.isfinite(value):
        return x, value
    damping = 0.0
    eye = torch.eye(len(x), dtype=torch.float64)
    for _ in range(max_steps):
        grad, hess = derivatives()
        if not (torch.isfinite(grad).all() and torch.isfinite(hess).all()):
            break
        scale = float(hess.diagonal().abs().max()) + 1.0
        moved = False
        for _ in range(40):
            chol, info = torch.linalg.cholesky_ex(hess + damping * scale * eye)
            if int(info) == 0:
                step = torch.cholesky_solve(-grad[:, None], chol)[:, 0]
                new = (x + step).clamp(*_BOX)
                new_value, new_derivatives = objective(new)
                if new_value <= value:
                    moved = True
                    break
            damping = max(10.0 * damping, 1e-8)
        if not moved:
            break
        change, x, old = float((new - x).abs().max()), new, value
        value, derivatives, damping = new_value, new_derivatives, damping / 10.0
        small = old - value <= 1e-15 * max(1.0, abs(value))
        if change <= 1e-12 or (small and change <= 1e-8):
            break
    return x, value


def _by_autograd(negative):
    """The objective of a function ``negative(x)`` (a differentiable 0-d tensor): one
    forward pass per point, recorded; its gradient and Hessian by autograd from it (one
    backward pass, then one per parameter through the gradient)."""

    def objective(x):
        xg, out = _recorded(negative, x)
        return float(out.detach()), lambda: _derivatives(xg, out)

    return objective


def _recorded(negative, x: torch.Tensor):
    """``(leaf, negative(leaf))`` with the pass recorded for derivatives."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        return xg, negative(xg)


def _derivatives(xg: torch.Tensor, out: torch.Tensor):
    """The gradient and Hessian of ``out`` with respect to the leaf ``xg``."""
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(out, xg, create_graph=True)
        n = len(xg)
        if not grad.requires_grad:  # ``out`` is linear in ``xg``
            return grad.detach(), torch.zeros((n, n), dtype=grad.dtype)
        if n == 1:
            (hess,) = torch.autograd.grad(grad[0], xg, allow_unused=True)
            hess = hess[None]
        else:
            eye = torch.eye(n, dtype=grad.dtype, device=grad.device)
            (hess,) = torch.autograd.grad(grad, xg, eye, is_grads_batched=True)
    return grad.detach(), hess.detach()
