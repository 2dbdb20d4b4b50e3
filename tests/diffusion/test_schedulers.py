"""Samplers against closed forms on a toy Gaussian, where the optimal denoiser is known."""

import math

import pytest
import torch

from padirec.diffusion.sampling import sample_tokens
from padirec.diffusion.schedulers import DDIMScheduler, DDPMScheduler, make_scheduler
from padirec.diffusion.schedulers.base import randn_like
from padirec.errors import ConfigError

MU, S = 1.5, 0.5  # data distribution N(MU, S^2), every coordinate independent


class GaussianOracle(torch.nn.Module):
    """The exact E[eps | x_t] for data N(MU, S^2): x_t = a x0 + b eps, a^2 + b^2 = 1."""

    def __init__(self, scheduler):
        super().__init__()
        self.abar = scheduler.alphas_cumprod

    def forward(self, x, t, w, drop=None):
        abar = self.abar[t].to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        a, b = abar.sqrt(), (1 - abar).sqrt()
        return b / (a ** 2 * S ** 2 + b ** 2) * (x - a * MU)


def analytic_posterior_mean(scheduler, x, t):
    """E[x_{t-1} | x_t] under the true process: posterior q(x_{t-1} | x_t, x0) averaged over
    p(x0 | x_t), both Gaussian."""
    abar_t = float(scheduler.alphas_cumprod[t])
    abar_prev = float(scheduler.alphas_cumprod[t - 1]) if t > 0 else 1.0
    beta_t = float(scheduler.betas[t])
    a = math.sqrt(abar_t)
    x0_mean = MU + a * S ** 2 / (a ** 2 * S ** 2 + 1 - abar_t) * (x - a * MU)
    c0 = math.sqrt(abar_prev) * beta_t / (1 - abar_t)
    ct = math.sqrt(1 - beta_t) * (1 - abar_prev) / (1 - abar_t)
    return c0 * x0_mean + ct * x


@pytest.mark.parametrize("t", [0, 1, 10, 50, 99])
def test_ddpm_step_mean_is_the_analytic_posterior_mean(t):
    sched = DDPMScheduler(100, 1e-4, 0.05)
    oracle = GaussianOracle(sched)
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]
    eps = oracle(x, torch.full((13,), t), None)
    out = sched.step(eps, t, x, torch.Generator().manual_seed(0))
    z = randn_like(x, torch.Generator().manual_seed(0))
    sigma = sched.coefficients(t)[2]
    mean = out - sigma * z
    torch.testing.assert_close(mean, analytic_posterior_mean(sched, x, t), rtol=1e-9, atol=1e-9)
    assert (sigma == 0) == (t == 0)  # z = 0 at the last step only


def test_ddpm_step_is_paper_eq9_with_all_steps():
    sched = DDPMScheduler(50, 1e-4, 0.02)
    t = 20
    x, eps = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    beta, abar = float(sched.betas[t]), float(sched.alphas_cumprod[t])
    out = sched.step(eps, t, x, torch.Generator().manual_seed(3))
    z = randn_like(x, torch.Generator().manual_seed(3))
    want = (x - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta) + math.sqrt(beta) * z
    torch.testing.assert_close(out, want)


# few DDIM steps shrink the spread a little (discretisation error), hence the looser tolerance
@pytest.mark.parametrize("name,steps,tol", [("ddpm", None, 0.03), ("ddim", 100, 0.03),
                                            ("ddim", 20, 0.1)])
def test_sampling_with_the_oracle_recovers_the_data_distribution(name, steps, tol):
    # beta_end high enough that x_T carries no trace of the data (DDIM cannot correct a bias)
    sched = make_scheduler(name, 100, 1e-4, 0.2)
    x = sample_tokens(GaussianOracle(sched), sched, torch.zeros(4000, 2), num_tokens=1,
                      token_size=5, guidance_scale=0.0, num_inference_steps=steps,
                      generator=torch.Generator().manual_seed(0))
    assert abs(float(x.mean()) - MU) < tol
    assert abs(float(x.std()) - S) < tol


def test_ddim_with_a_point_mass_oracle_lands_on_the_point():
    sched = DDIMScheduler(200, 1e-4, 0.02)
    x0 = torch.randn(3, 4, 8)

    class PointOracle(torch.nn.Module):
        def forward(self, x, t, w, drop=None):
            abar = sched.alphas_cumprod[t].float().view(-1, 1, 1)
            return (x - abar.sqrt() * x0) / (1 - abar).sqrt()

    out = sample_tokens(PointOracle(), sched, torch.zeros(3, 2), 4, 8, 0.0, num_inference_steps=7,
                        generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)


def test_timesteps_start_at_pure_noise_and_descend():
    sched = DDIMScheduler(500)
    sched.set_timesteps(50)
    ts = sched.timesteps.tolist()
    assert len(ts) == 50 and ts[0] == 499 and ts == sorted(set(ts), reverse=True)
    assert sched.previous_timestep(ts[-1]) == -1
    sched.set_timesteps(None)
    assert sched.timesteps.tolist() == list(range(499, -1, -1))
    with pytest.raises(ConfigError, match="num_inference_steps"):
        sched.set_timesteps(501)


def test_add_noise_is_eq8():
    sched = DDPMScheduler(100)
    x0, eps, t = torch.randn(5, 2, 3), torch.randn(5, 2, 3), torch.tensor([0, 9, 50, 98, 99])
    abar = sched.alphas_cumprod[t].float().view(-1, 1, 1)
    torch.testing.assert_close(sched.add_noise(x0, eps, t), abar.sqrt() * x0 + (1 - abar).sqrt() * eps)


def test_bad_schedules_are_named():
    with pytest.raises(ConfigError, match="beta_start"):
        DDPMScheduler(100, 0.1, 0.01)
    with pytest.raises(ConfigError, match="sampler"):
        make_scheduler("euler", 100, 1e-4, 0.02)
