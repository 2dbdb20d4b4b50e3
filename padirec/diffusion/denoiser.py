"""What the samplers call: ``eps(theta_t, w, t)``, whatever the DiT is trained to output.

``prediction="eps"`` (the paper): the DiT's output is the noise. ``prediction="x0"``: the DiT
outputs the clean tokens ``x0^`` and the noise is derived,
``eps^ = (x_t - sqrt(abar_t) x0^) / sqrt(1 - abar_t)``. Adapter banks are nearly a deterministic
function of ``w``, so ``x0^`` hardly depends on ``x_t`` or ``t`` and a small DiT learns it in a few
thousand CPU steps, while an eps-predicting DiT must also learn to pass ``x_t`` through its layer
norms precisely (at ``t = T`` an eps error is amplified ``1/sqrt(abar_T)``-fold in ``x0^``). The
training loss is MSE on eps either way (paper Eq. 8), optionally min-SNR weighted
(Hang et al. 2023), and the samplers and guidance see only eps.
"""

from __future__ import annotations

import torch
from torch import nn

from padirec.diffusion.dit import DiT
from padirec.errors import ConfigError

PREDICTIONS = ("eps", "x0")
LOSS_WEIGHTINGS = ("uniform", "min_snr", "truncated_snr", "x0")


class Denoiser(nn.Module):
    """``forward(x (batch, T, d), t (batch,), w (batch, p), drop (batch,) bool | None) -> eps``."""

    def __init__(self, dit: DiT, alphas_cumprod: torch.Tensor, prediction: str = "eps") -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ConfigError(f"generator.prediction: {prediction!r} is not one of {PREDICTIONS}")
        self.dit = dit
        self.prediction = prediction
        # derived from the config, so not stored in the weights file; square roots taken in
        # float64 because 1 - abar is ~1e-4 at the first step
        abar = alphas_cumprod.double()
        self.register_buffer("alphas_cumprod", abar.float(), persistent=False)
        self.register_buffer("sqrt_abar", abar.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_one_minus_abar", (1 - abar).sqrt().float(), persistent=False)

    @property
    def cfg(self):
        return self.dit.cfg

    def forward(self, x: torch.Tensor, t: torch.Tensor, w: torch.Tensor,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        out = self.dit(x, t, w, drop)
        if self.prediction == "eps":
            return out
        shape = (-1, *([1] * (x.ndim - 1)))
        return (x - self.sqrt_abar[t].view(shape) * out) / self.sqrt_one_minus_abar[t].view(shape)


def loss_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, weighting: str,
                 snr_gamma: float = 5.0) -> torch.Tensor:
    """Per-example weights ``(batch,)`` of the eps-MSE, ``SNR_t = abar_t / (1 - abar_t)``.

    The eps-MSE is ``SNR_t`` times the x0-MSE, so it barely trains the prediction of ``x0`` from
    ``w`` at high noise, where the sampler's trajectory is decided.
    - ``uniform``: 1 (paper Eq. 8);
    - ``min_snr``: ``min(SNR, gamma) / SNR`` (Hang et al. 2023), x0-MSE weight ``min(SNR, gamma)``;
    - ``truncated_snr``: ``max(SNR, 1) / SNR`` (Salimans & Ho 2022), x0-MSE weight
      ``max(SNR, 1)``: the eps-MSE at low noise, the x0-MSE at high noise;
    - ``x0``: ``1 / SNR``, the x0-MSE itself: every noise level weighs alike (under the others, the
      low-noise examples' x0 weight, up to ``SNR(0)`` ~ 1e4, drowns the high-noise ones that a
      one-step sampler serves).
    """
    if weighting not in LOSS_WEIGHTINGS:
        raise ConfigError(f"generator.loss_weighting: {weighting!r} is not one of {LOSS_WEIGHTINGS}")
    if weighting == "uniform":
        return torch.ones(t.shape, device=t.device)
    abar = alphas_cumprod.to(t.device)[t].float()
    snr = abar / (1 - abar)
    if weighting == "min_snr":
        return snr.clamp(max=snr_gamma) / snr
    if weighting == "x0":
        return 1 / snr
    return snr.clamp(min=1.0) / snr
