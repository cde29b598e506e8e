"""Damped Newton searches for the recalibration head's few parameters.

:func:`_newton` minimises a function of a few parameters (the head's ``(log a, b)``, see
:mod:`sklaplace.tuning.recalibration`) by Newton steps with the exact gradient and Hessian
from autograd, damped as Levenberg-Marquardt does, one forward pass per trial point;
:func:`_coarse_start` picks where a search starts when no head is given.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# The head's search box (log a and b): far beyond where the data or the prior take it.
_BOX = (-50.0, 50.0)


# Where the Newton search of a head starts when no head is given: the best ``log a`` of
# this grid (biases 0), the identity included. Temperature scaling's optimum is often a
# factor of several away from the identity, where Newton's first steps overshoot.
START_LOG_SCALES = np.linspace(-3.0, 4.0, 15)


def _coarse_start(negative, x0: torch.Tensor) -> torch.Tensor:
    """``x0`` with its ``log a`` moved to the best of ``START_LOG_SCALES`` if that is
    strictly better than ``x0`` itself (a tie keeps ``x0``; non-finite values lose)."""
    with torch.no_grad():
        best, best_value = x0, float(negative(x0))
        if not math.isfinite(best_value):
            best_value = math.inf
        for log_scale in START_LOG_SCALES:
            trial = x0.clone()
            trial[0] = float(log_scale)
            value = float(negative(trial))
            if value < best_value:
                best, best_value = trial, value
    return best


def _newton(negative, x: torch.Tensor, max_steps: int = 100) -> tuple[torch.Tensor, float]:
    """Minimise ``negative`` from ``x`` by Newton steps damped as Levenberg-Marquardt does
    (a step is taken only if it decreases the function), within ``_BOX``.

    One forward pass per trial point, recorded for autograd: an accepted point's gradient
    and Hessian come from it (one backward pass, then one per parameter through the
    gradient), a rejected one costs the forward pass only."""
    xg, out = _recorded(negative, x)
    value = float(out.detach())
    if not math.isfinite(value):
        return x, value
    damping = 0.0
    eye = torch.eye(len(x), dtype=torch.float64)
    for _ in range(max_steps):
        grad, hess = _derivatives(xg, out)
        if not (torch.isfinite(grad).all() and torch.isfinite(hess).all()):
            break
        scale = float(hess.diagonal().abs().max()) + 1.0
        moved = False
        for _ in range(40):
            chol, info = torch.linalg.cholesky_ex(hess + damping * scale * eye)
            if int(info) == 0:
                step = torch.cholesky_solve(-grad[:, None], chol)[:, 0]
                new = (x + step).clamp(*_BOX)
                new_xg, new_out = _recorded(negative, new)
                new_value = float(new_out.detach())
                if new_value <= value:
                    moved = True
                    break
            damping = max(10.0 * damping, 1e-8)
        if not moved:
            break
        change, x, old = float((new - x).abs().max()), new, value
        value, damping = new_value, damping / 10.0
        xg, out = new_xg, new_out
        small = old - value <= 1e-15 * max(1.0, abs(value))
        if change <= 1e-12 or (small and change <= 1e-8):
            break
    return x, value


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
