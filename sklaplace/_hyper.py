"""Hyper-parameters of the Laplace estimators: from parameters to numbers, without data.

``_HyperParameterMixin`` turns ``prior_precision``, ``sigma_noise`` and ``temperature`` into
the numbers the posterior uses: given ones are checked, tuning modes are resolved through
the stored eigendecomposition (evidence: ``marglik``; the prior implied by the training's
weight decay: ``weight_decay``) or on the held-out rows kept in fit (``holdout``). Nothing
here passes over the training data, so it runs again at prediction time when a parameter
was changed with ``set_params``. It relies on the fitted attributes that ``_BaseLaplace``
sets in fit (``posterior_``, ``likelihood_``, ``train_loss_``, ``n_train_``, ...).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from . import _passes
from .marglik import (
    heldout_log_likelihood,
    log_marginal_likelihood,
    maximize_marginal_likelihood,
    maximize_on_grid,
)

# Ways to choose the prior precision in fit instead of giving a number.
_PRIOR_MODES = ("marglik", "holdout", "weight_decay")


class _HyperParameterMixin:
    """Resolution, tuning and numerical checks of the hyper-parameters (see module doc)."""

    def _hyper_key(self):
        sigma = getattr(self, "sigma_noise", None)
        return (repr(self.prior_precision), repr(sigma), repr(self.temperature))

    def _prior_array(self, value) -> np.ndarray:
        """A positive float, per-layer array or {module name: value} -> (n_blocks,) array."""
        n_blocks = self.posterior_.n_blocks
        if isinstance(value, dict):
            names = self.posterior_.names
            unknown = sorted(set(value) - set(names))
            missing = [n for n in names if n not in value]
            if unknown or missing:
                raise ValueError(
                    f"prior_precision as a dict needs one value for each layer of the "
                    f"posterior, {names}; unknown: {unknown}, missing: {missing}."
                )
            value = [value[n] for n in names]
        try:
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"prior_precision must be a positive float, one per layer, or one of "
                f"{_PRIOR_MODES}; got {value!r}."
            ) from exc
        if arr.size == 1:
            arr = np.full(n_blocks, arr.item())
        if arr.size != n_blocks:
            raise ValueError(
                f"prior_precision has {arr.size} values but the posterior has {n_blocks} "
                f"layer(s) ({self.posterior_.names}); give one value per layer or a float."
            )
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(
                f"prior_precision must be positive and finite, got {value!r}. It is the "
                "precision (1 / variance) of the Gaussian prior on the weights; try 1.0."
            )
        return arr

    def _resolve_hyperparameters(self) -> dict:
        """Turn the current parameters into numbers, tuning them where a mode is asked for.

        Called in fit and, when a parameter was changed with set_params after fit, at
        prediction time; it never passes over the training data.
        """
        key = self._hyper_key()
        if getattr(self, "_resolved_key_", None) == key:
            return {
                "prior_precision": self.prior_precision_,
                "sigma_noise": self.sigma_noise_,
                "temperature": self.temperature_,
                "key": key,
            }
        mode = self.prior_precision if isinstance(self.prior_precision, str) else None
        sigma_param = getattr(self, "sigma_noise", 1.0)
        sigma_mode = sigma_param if isinstance(sigma_param, str) else None
        tune_temperature = isinstance(self.temperature, str)  # "holdout"
        if sigma_mode == "holdout" and mode in ("marglik", "weight_decay"):
            raise ValueError(
                f"sigma_noise='holdout' cannot be combined with prior_precision={mode!r}; "
                "use prior_precision='holdout' (both tuned on the held-out rows) or a float."
            )
        if tune_temperature and (mode in ("marglik", "weight_decay") or sigma_mode == "marglik"):
            other = (
                f"prior_precision={mode!r}" if mode in _PRIOR_MODES else "sigma_noise='marglik'"
            )
            raise ValueError(
                f"temperature='holdout' cannot be combined with {other}: the evidence "
                "depends on the temperature it would be tuned against. Use 'holdout' (all "
                "tuned on the held-out rows) or a float for the other hyper-parameters."
            )
        # a mode needs what fit stored for it; leaving a mode (e.g. for a float) needs nothing
        params = {"prior_precision": mode, "sigma_noise": sigma_mode}
        params["temperature"] = "holdout" if tune_temperature else None
        missing = [
            f"{name}={value!r}"
            for name, value in params.items()
            if (value == "holdout" and self._heldout_ is None)
            or (value == "weight_decay" and self._weight_decay_ is None)
        ]
        if missing:
            raise ValueError(
                f"{' and '.join(missing)} needs what fit stores for that mode ('holdout': "
                "held-out rows; 'weight_decay': the training setup); it was changed after "
                "fit, so call fit again."
            )
        temperature = 1.0 if tune_temperature else float(self.temperature)
        tune_sigma = sigma_mode is not None
        sigma = self._sigma_mle() if tune_sigma else float(sigma_param)
        n_blocks = self.posterior_.n_blocks

        def evidence(prior, s):
            return self._evidence(prior, s, temperature)

        if sigma_mode == "holdout" or tune_temperature:
            fixed = None if mode == "holdout" else self._prior_array(self.prior_precision)
            prior, sigma, temperature = self._tune_on_heldout_jointly(
                fixed, sigma, sigma_mode == "holdout", temperature, tune_temperature
            )
        elif mode == "weight_decay":
            sigma = self._tune_sigma(sigma, tune_sigma, temperature)
            prior = self._tied_prior(sigma, temperature)
        elif mode == "holdout":
            if tune_sigma:
                # sigma from the evidence alone (maximised jointly with the prior, as with
                # "marglik"), then tau on the held-out rows at that sigma. Alternating the two
                # criteria need not converge: the held-out optimum can jump between two
                # values that each move the evidence's sigma back (a 2-cycle, seen in tests).
                _, sigma = maximize_marginal_likelihood(
                    evidence, np.ones(n_blocks), sigma, tune_prior=True, tune_sigma=True
                )
            evaluate = self._heldout_evaluator()
            prior = np.full(n_blocks, self._tune_prior_on_heldout(evaluate, sigma, temperature))
        elif mode == "marglik":
            prior, sigma = maximize_marginal_likelihood(
                evidence,
                np.ones(n_blocks),
                sigma,
                tune_prior=True,
                tune_sigma=tune_sigma,
            )
        else:
            prior = self._prior_array(self.prior_precision)
            sigma = self._tune_sigma(sigma, tune_sigma, temperature, prior)
        self._check_numerics(prior, sigma, temperature)
        return {
            "prior_precision": prior,
            "sigma_noise": sigma,
            "temperature": temperature,
            "key": key,
        }

    def _sigma_mle(self) -> float:
        """Starting noise std: the maximum-likelihood ``sqrt(SSE / (N K))``."""
        return max(float(np.sqrt(2 * self.train_loss_ / (self.n_train_ * self.n_outputs_))), 1e-6)

    def _tied_prior(self, sigma, temperature: float):
        """'weight_decay': the prior whose posterior mode is the trained weights.

        ``tau = c / (sigma^2 T)`` (see ``_skorch.weight_decay_coefficient``); ``sigma`` may
        be a tensor, so that the evidence stays differentiable in it.
        """
        noise = sigma**2 if self.likelihood_ == "regression" else 1.0
        scale = 1.0 / (noise * temperature)
        if isinstance(sigma, torch.Tensor):
            return torch.as_tensor(self._weight_decay_, device=sigma.device) * scale
        return self._weight_decay_ * scale

    def _tune_sigma(self, sigma: float, tune: bool, temperature: float, prior=None) -> float:
        """Maximise the evidence over sigma, the prior fixed or (``None``) tied to sigma."""
        if not tune:
            return sigma

        def evidence(_, s):
            tau = self._tied_prior(s, temperature) if prior is None else torch.as_tensor(prior)
            return self._evidence(tau, s, temperature)

        _, sigma = maximize_marginal_likelihood(
            evidence, np.ones(self.posterior_.n_blocks), sigma, tune_prior=False, tune_sigma=True
        )
        return sigma

    def _heldout_evaluator(self):
        """``f(tau, sigma, temperature)``: the held-out log-likelihood, GLM predictive.

        For the last layer the held-out rows' features are computed and projected onto the
        posterior's eigenbasis once, and every evaluation costs O(m c d); for other subsets
        each evaluation is one GLM pass over the held-out rows. ``f.rms`` is the root mean
        square of the held-out residuals (regression), the scale around which sigma is
        searched.
        """
        X_val, y_val = self._heldout_
        net, head = self.estimator_, self._head()
        device = self.posterior_.means[0].device
        fingerprint = _passes.net_fingerprint(net)
        y_val = y_val.to(device)
        n_blocks = self.posterior_.n_blocks
        likelihood = self.likelihood_

        def tau_of(value):
            """A float, or one value per layer, as a (n_blocks,) tensor."""
            value = np.broadcast_to(np.asarray(value, dtype=np.float64), (n_blocks,))
            return torch.tensor(value, dtype=torch.float64, device=device)

        def moments(tau, sigma, temperature):
            scale = self._scale(sigma, temperature).to(device)
            if self.subset_of_weights == "last_layer":
                yield z, self.posterior_.blocks[0].projected_output_cov(p, tau_of(tau)[0], scale)
                return
            for mean, cov, _ in _passes.glm_batches(
                net,
                head,
                self.posterior_,
                X_val,
                tau_of(tau),
                scale,
                self.subset_of_weights,
                self.batch_size,
                fingerprint,
            ):
                yield mean, cov

        if self.subset_of_weights == "last_layer":
            # projected once: the projection does not depend on the hyper-parameters
            batches = list(
                _passes.projected_batches(
                    net, head, self.posterior_, X_val, self.batch_size, fingerprint
                )
            )
            z = torch.cat([b[0] for b in batches])
            p = torch.cat([b[1] for b in batches])

        def evaluate(tau, sigma, temperature):
            total, start = 0.0, 0
            for mean, cov in moments(tau, sigma, temperature):
                var = torch.diagonal(cov, dim1=1, dim2=2)
                yb = y_val[start : start + len(mean)]
                start += len(mean)
                total += float(heldout_log_likelihood(likelihood, mean, var, yb, sigma))
            return total

        evaluate.rms = None
        if likelihood == "regression":
            sq, count = 0.0, 0
            for mean, _ in moments(1.0, 1.0, 1.0):
                resid = y_val[count : count + len(mean)].reshape(mean.shape) - mean
                sq += float((resid**2).sum())
                count += len(mean)
            evaluate.rms = max((sq / (count * mean.shape[1])) ** 0.5, 1e-6)
        return evaluate

    _PRIOR_GRID = np.logspace(-4, 6, 31)

    def _tune_prior_on_heldout(
        self, evaluate, sigma: float, temperature: float, warn: bool = True
    ) -> float:
        """The prior precision maximising the held-out log-likelihood (grid, then refined).

        Warns when the optimum sits at an end of the searched range: at the top, the held-out
        rows ask for no more uncertainty than the net's own, which is what rows the net was
        trained on do.
        """
        best, _ = maximize_on_grid(lambda tau: evaluate(tau, sigma, temperature), self._PRIOR_GRID)
        at_edge = best >= self._PRIOR_GRID[-1] * 0.999 or best <= self._PRIOR_GRID[0] * 1.001
        if warn and at_edge:
            warnings.warn(
                f"The held-out rows are fitted best at prior_precision={best:.3g}, the "
                f"{'top' if best > 1 else 'bottom'} of the searched range "
                f"[{self._PRIOR_GRID[0]:.0e}, {self._PRIOR_GRID[-1]:.0e}]. At the top the "
                "predictions are the net's own: the held-out rows show no over-confidence, "
                "as happens when the net was trained on them (a FrozenEstimator fitted on "
                "the same rows). Pass rows the net has not seen, or tune with GridSearchCV "
                "on a validation split.",
                UserWarning,
                stacklevel=4,
            )
        return best

    # temperature="holdout": T scales the curvature (P = H / (sigma^2 T) + tau I), so with
    # the prior it sets both the width and the shape of the posterior (Ritter et al. 2018
    # tune the prior and a data-size factor N = 1 / T on a validation set).
    _TEMPERATURE_GRID = np.logspace(-3, 3, 25)

    def _tune_on_heldout_jointly(
        self, fixed_prior, sigma: float, tune_sigma: bool, temperature: float, tune_t: bool
    ):
        """``(prior, sigma, temperature)`` maximising the held-out log-likelihood.

        Tuned: the prior unless ``fixed_prior`` (one value per layer) is given, sigma if
        ``tune_sigma`` (on a grid around the held-out residuals' RMS), the temperature if
        ``tune_t`` (on ``_TEMPERATURE_GRID``); the others stay at the given values.
        Coordinate ascent on the one objective, one coordinate at a time at the others'
        current values, so no step can decrease it: one round when one value is tuned,
        three otherwise.
        """
        evaluate = self._heldout_evaluator()
        n_blocks = self.posterior_.n_blocks
        if tune_sigma:
            sigma = evaluate.rms
            sigma_grid = sigma * np.logspace(-1.5, 1.5, 31)
        prior = fixed_prior
        rounds = 1 if (fixed_prior is None) + tune_sigma + tune_t == 1 else 3
        for i in range(rounds):
            if fixed_prior is None:
                quiet = i < rounds - 1  # warn about the final choice only
                tau = self._tune_prior_on_heldout(evaluate, sigma, temperature, warn=not quiet)
                prior = np.full(n_blocks, tau)
            if tune_sigma:
                sigma, _ = maximize_on_grid(
                    lambda s, p=prior, t=temperature: evaluate(p, s, t), sigma_grid
                )
            if tune_t:
                temperature, _ = maximize_on_grid(
                    lambda t, p=prior, s=sigma: evaluate(p, s, t), self._TEMPERATURE_GRID
                )
        grid = self._TEMPERATURE_GRID
        if tune_t and not grid[0] * 1.001 < temperature < grid[-1] * 0.999:
            top = temperature > 1
            warnings.warn(
                f"The held-out rows are fitted best at temperature={temperature:.3g}, the "
                f"{'top' if top else 'bottom'} of the searched range [{grid[0]:.0e}, "
                f"{grid[-1]:.0e}]: "
                + (
                    "the posterior is then close to the prior, so the prior precision alone "
                    "sets the uncertainty"
                    + (
                        "; tune it too (prior_precision='holdout')."
                        if fixed_prior is not None
                        else "."
                    )
                    if top
                    else "the predictions are then the net's own, as when the held-out rows "
                    "show no over-confidence (a net trained on them)."
                ),
                UserWarning,
                stacklevel=4,
            )
        return prior, sigma, temperature

    def _check_numerics(self, prior: np.ndarray, sigma: float, temperature: float) -> None:
        """Refuse hyper-parameters whose posterior is not numerically positive definite."""
        scale = self._scale(sigma, temperature)
        with np.errstate(over="ignore"):
            noise_var = np.square(np.float64(sigma))
        if self.likelihood_ == "regression" and not np.isfinite(noise_var):
            raise ValueError(
                f"sigma_noise={sigma:.3g} is too large to compute with: sigma_noise^2 "
                "overflows float64. Scale the targets, or choose a smaller value."
            )
        if not torch.isfinite(scale):
            raise ValueError(
                f"sigma_noise={sigma:.3g} and temperature={temperature:.3g} are too small "
                "to compute with: the curvature's factor 1 / (sigma_noise^2 * temperature) "
                "overflows float64. Choose larger values (the targets' scale is a guide)."
            )
        for block, tau, name in zip(
            self.posterior_.blocks, prior, self.posterior_.names, strict=True
        ):
            with np.errstate(over="ignore", divide="ignore"):
                prior_variance = 1.0 / np.float64(tau)
            if not np.isfinite(prior_variance):
                # e.g. a subnormal 1e-320: whether the posterior precision then looks
                # singular would depend on round-off in the curvature's smallest eigenvalues
                raise ValueError(
                    f"prior_precision={tau:.3g} for layer {name!r} is too small to compute "
                    "with: the prior variance 1 / prior_precision overflows float64. Choose "
                    "values between about 1e-8 and 1e8."
                )
            lam = block.eigenvalues(torch.as_tensor(tau, dtype=torch.float64), scale.cpu())
            inv = 1.0 / lam
            if not (torch.isfinite(lam).all() and (lam > 0).all() and torch.isfinite(inv).all()):
                raise ValueError(
                    f"prior_precision={tau:.3g} (sigma_noise={sigma:.3g}, temperature="
                    f"{temperature:.3g}) makes the posterior precision of layer {name!r} "
                    "numerically singular or infinite (eigenvalues from "
                    f"{float(lam.min()):.3g} to {float(lam.max()):.3g}). Choose values "
                    "between about 1e-8 and 1e8."
                )

    def _evidence(self, prior_precision, sigma_noise, temperature: float):
        post = self.posterior_
        ref = post.means[0]
        return log_marginal_likelihood(
            post,
            torch.tensor(self.train_loss_, dtype=torch.float64, device=ref.device),
            self.n_train_,
            self.n_outputs_,
            self.likelihood_,
            torch.as_tensor(prior_precision, dtype=torch.float64, device=ref.device),
            torch.as_tensor(sigma_noise, dtype=torch.float64, device=ref.device),
            float(temperature),
        )

    def _scale(self, sigma: float, temperature: float) -> torch.Tensor:
        """``1 / (sigma^2 T)``: the factor on the curvature in the posterior precision."""
        with np.errstate(over="ignore", under="ignore", divide="ignore"):
            # out of float64's range: inf (refused by _check_numerics) or 0, never a raw error
            s = np.float64(sigma) ** 2 if self.likelihood_ == "regression" else 1.0
            scale = 1.0 / (s * np.float64(temperature))
        return torch.tensor(float(scale), dtype=torch.float64)
