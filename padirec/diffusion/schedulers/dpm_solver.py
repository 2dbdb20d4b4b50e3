"""DPM-Solver++(2M): a second-order multistep solver of the probability-flow ODE (Lu et al. 2022,
"DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models").

After diffusers' ``DPMSolverMultistepScheduler`` with ``algorithm_type="dpmsolver++"``,
``solver_order=2``, ``solver_type="midpoint"``, ``final_sigmas_type="zero"``. With
``alpha_t = sqrt(abar_t)``, ``sigma_t = sqrt(1 - abar_t)``, ``lambda_t = log(alpha_t / sigma_t)``
and the data prediction ``D_t = (x_t - sigma_t eps~) / alpha_t`` (guidance already in ``eps~``),
a step from ``s`` to ``t`` (``h = lambda_t - lambda_s``) is

- first order (the first step, and the last one, which lands on ``sigma = 0``; this is DDIM):
  ``x_t = (sigma_t / sigma_s) x_s - alpha_t (exp(-h) - 1) D_s``;
- second order, with the previous data prediction ``D_u`` (``r = (lambda_s - lambda_u) / h``):
  ``x_t = (sigma_t / sigma_s) x_s - alpha_t (exp(-h) - 1) (D_s + (D_s - D_u) / (2 r))``.

Data prediction suits guided sampling (the guided ``x0`` stays bounded where the guided noise
does not) and the DiT here predicts ``x0`` directly (``padirec.diffusion.denoiser``). The
scheduler remembers the previous ``D`` between calls to ``step``: ``set_timesteps`` clears it, and
``padirec.diffusion.sampling.sample_tokens`` samples with its own shallow copy, so concurrent
samplings never share that state.
"""

from __future__ import annotations

import math

import torch

from padirec.diffusion.schedulers.base import Scheduler, register_sampler


@register_sampler
class DPMSolverMultistepScheduler(Scheduler):
    name = "dpm_solver++"
    order = 2

    def set_timesteps(self, num_inference_steps: int | None = None) -> None:
        super().set_timesteps(num_inference_steps)
        self._last: tuple[int, torch.Tensor] | None = None  # (index, D) of the previous step

    def _alpha_sigma_lambda(self, t: int) -> tuple[float, float, float]:
        abar = self.abar(t)
        alpha, sigma = math.sqrt(abar), math.sqrt(1.0 - abar)
        return alpha, sigma, (math.inf if sigma == 0.0 else math.log(alpha / sigma))

    def step(self, eps: torch.Tensor, t: int, x: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        prev = self.previous_timestep(t)
        alpha_s, sigma_s, lambda_s = self._alpha_sigma_lambda(t)
        alpha_t, sigma_t, lambda_t = self._alpha_sigma_lambda(prev)
        d = (x - sigma_s * eps) / alpha_s
        last, self._last = self._last, (t, d)
        if sigma_t == 0.0:  # the final step (lower_order_final): the data prediction itself
            return d
        h = lambda_t - lambda_s
        phi = math.expm1(-h)  # exp(-h) - 1, accurate for small h
        if last is not None and last[0] > t:  # a second-order step needs the previous D, same pass
            lambda_u = self._alpha_sigma_lambda(last[0])[2]
            r = (lambda_s - lambda_u) / h
            d = d + (d - last[1]) / (2.0 * r)
        return (sigma_t / sigma_s) * x - (alpha_t * phi) * d
