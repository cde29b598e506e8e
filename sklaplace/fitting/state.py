"""The fitted state of a Laplace estimator: everything ``fit`` produces, read by predictions.

Like scikit-learn's ``_CalibratedClassifier`` behind ``CalibratedClassifierCV``, the public
estimators are a thin scikit-learn face over one private object, :class:`FittedLaplace`:
the trained net, its likelihood, the fitted approximation (posterior, training loss, row
count) and the resolved hyper-parameters, with the stamp that tells whether the model is
still the one fit saw, device moves and pickling. Predictions read it
(:mod:`sklaplace.prediction`), and so do the objectives of tuning
(:mod:`sklaplace.tuning.objectives`); each call runs the net through a fresh private view
(:class:`~sklaplace._runtime.passes.NetView`), so threads can share one fitted state.
"""

from __future__ import annotations

import numpy as np
import torch

from .._runtime import skorch as _skorch
from .._runtime.passes import NetView
from .._runtime.stamp import STEPS_CHANGED, Stamp
from ..approximations import Approximation
from ..likelihoods import Likelihood
from ..tuning.resolve import Hyper, curvature_scale

__all__ = ["FittedLaplace"]


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

    def set_prep(self, prep) -> None:
        """Keep the fitted steps of a Pipeline before the net, and stamp them with it."""
        self.prep = prep
        self.stamp = Stamp(self.net.module_, prep)

    def changes(self) -> list[str]:
        """What changed in the net or the steps before it since fit (empty: nothing the
        stamp can see; see :mod:`sklaplace._runtime.stamp`)."""
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

    def n_outputs(self) -> int:
        return self.net.module_.get_submodule(self.approximation.head_name).out_features

    def view(self) -> NetView:
        """A private view of the net; moves the posterior to the net's device first (the net
        may have been moved since fit). Refuses a net, or Pipeline steps before it, changed
        since fit (see :mod:`sklaplace._runtime.stamp`): its posterior would be mixed with another
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
