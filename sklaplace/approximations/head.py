"""The head: the last ``nn.Linear`` a net applies, whose output is the model output ``f``."""

from __future__ import annotations

import numpy as np
import torch

from ..likelihoods import Likelihood
from .tape import Tape

__all__ = ["find_head"]

# Rows of X run through the net to find the head.
PROBE_ROWS = 64


def find_head(view, X, likelihood: Likelihood) -> str:
    """The name of the head module, checked on a forward pass over the first rows of X.

    The module's output must equal the head's output, or what the likelihood's module
    applies to it (a softmax, for skorch's ``NLLLoss``); otherwise the error names the
    modules that run after it. Runs on every fit, also when the curvature comes from the
    cache: the check is part of validating the net.
    """
    module = view.module
    first = next(iter(view.batches(_first_rows(X))))[0]
    try:
        with Tape(trace=module) as tape, torch.no_grad():
            out = view.forward(first)
    except RuntimeError as exc:  # e.g. torch's "mat1 and mat2 shapes cannot be multiplied"
        raise ValueError(
            f"The {type(view.net).__name__}'s module failed on X of shape {np.shape(X)}: "
            f"{exc}. Does X have the features (number, order and type) the net was trained "
            "on?"
        ) from exc
    out = out[0] if isinstance(out, tuple | list) else out
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"The net's module returns {type(out).__name__}; sklaplace needs a tensor of "
            "outputs (rows, outputs)."
        )
    if not torch.isfinite(out).all():
        raise ValueError(
            "The net's output contains NaN or inf on the training data; its training has "
            "probably diverged. Lower the net's learning rate, or scale X and y."
        )
    linear_calls = [c for c in tape.calls if c in tape.linear_io]
    if not linear_calls:
        raise ValueError(
            f"The net's module ({type(module).__name__}) applies no torch.nn.Linear layer; "
            "sklaplace needs the output to come from an nn.Linear."
        )
    name = linear_calls[-1]
    if linear_calls.count(name) > 1:
        raise ValueError(
            f"The last Linear layer {name!r} is applied {linear_calls.count(name)} times in "
            "one forward pass; its weights are shared, which a posterior over its weights "
            "cannot express. Make the output layer a Linear used once."
        )
    a, z = tape.linear_io[name]
    if a.dim() != 2:
        raise ValueError(
            f"The last Linear layer {name!r} receives input of shape {tuple(a.shape)}; "
            "sklaplace supports a last layer applied to 2-D (rows, features) input."
        )
    target = likelihood.module_output(z)
    out = out.reshape(target.shape) if out.numel() == target.numel() else out
    after = tape.calls[len(tape.calls) - tape.calls[::-1].index(name) :]
    if out.shape != target.shape or not torch.allclose(out, target, rtol=1e-4, atol=1e-5):
        softmax = target is not z
        expected = "softmax of the" if softmax else "the"
        raise ValueError(
            f"The net's output is not {expected} output of its last Linear layer {name!r}; "
            f"modules applied after it: {after or 'none (the forward transforms it)'}. "
            "sklaplace needs the module to end in nn.Linear"
            + (
                " followed by nn.Softmax (NLLLoss)."
                if softmax
                else " (use CrossEntropyLoss on logits, or NLLLoss with a final Softmax)."
            )
        )
    return name


def _first_rows(X):
    """The first ``PROBE_ROWS`` rows of any input skorch accepts."""
    if isinstance(X, dict):
        return {k: _first_rows(v) for k, v in X.items()}
    if hasattr(X, "iloc"):
        return X.iloc[:PROBE_ROWS]
    return X[:PROBE_ROWS]
