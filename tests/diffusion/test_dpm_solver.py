"""DPM-Solver++(2M) against the exact probability-flow ODE of a toy Gaussian, against DDIM, and
behind the generator's config."""

import math
import threading

import pytest
import torch

from padirec.diffusion.sampling import sample_tokens
from padirec.diffusion.schedulers import DPMSolverMultistepScheduler, make_scheduler
from padirec.diffusion.schedulers.base import randn_like

MU, S = 1.5, 0.5  # data N(MU, S^2) per coordinate
T, BETA_START, BETA_END = 500, 1e-4, 2e-2  # the project's default schedule


class GaussianOracle(torch.nn.Module):
    """The exact E[eps | x_t] for data N(MU, S^2) (x_t = a x0 + b eps, a^2 + b^2 = 1)."""

    def __init__(self, scheduler):
        super().__init__()
        self.abar = scheduler.alphas_cumprod

    def forward(self, x, t, w, drop=None):
        abar = self.abar[t].to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        a, b = abar.sqrt(), (1 - abar).sqrt()
        return b / (a ** 2 * S ** 2 + b ** 2) * (x - a * MU)


def exact_ode_solution(sched, x_T):
    """The probability-flow ODE keeps every sample at its standardised position: the marginal at
    index T-1 is N(a MU, a^2 S^2 + b^2), at the end (clean) N(MU, S^2)."""
    abar = float(sched.alphas_cumprod[-1])
    a, b2 = math.sqrt(abar), 1 - abar
    return MU + S * (x_T - a * MU) / math.sqrt(a ** 2 * S ** 2 + b2)


def solve(name, steps, seed=0):
    """``(sampled, exact)``: 64 x 4 float64 samples from the same x_T."""
    sched = make_scheduler(name, T, BETA_START, BETA_END)
    x_T = randn_like(torch.empty(64, 1, 4, dtype=torch.float64), torch.Generator().manual_seed(seed))
    out = sample_tokens(GaussianOracle(sched), sched, torch.zeros(64, 2, dtype=torch.float64), 1, 4, 0.0,
                        steps, torch.Generator().manual_seed(seed))
    return out, exact_ode_solution(sched, x_T)


def max_err(a, b):
    return float((a - b).abs().max())


# the toy's last steps are stiff (x0 | x_t moves fast as the noise vanishes), so with very few
# steps both solvers are poor here; from 20 steps on the second order is an order of magnitude ahead
@pytest.mark.parametrize("steps,factor", [(10, 1.5), (20, 5), (40, 5), (100, 5)])
def test_second_order_beats_ddim_on_the_exact_ode(steps, factor):
    dpm, exact = solve("dpm_solver++", steps)
    ddim, _ = solve("ddim", steps)
    assert max_err(dpm, exact) * factor < max_err(ddim, exact), (max_err(dpm, exact), max_err(ddim, exact))


def test_agrees_with_ddim_and_the_exact_answer_at_all_steps():
    dpm, exact = solve("dpm_solver++", T)
    ddim, _ = solve("ddim", T)
    assert max_err(dpm, exact) < 1e-4  # second order: ~3e-5
    assert 1e-3 < max_err(ddim, exact) < 1e-2  # first order: ~7e-3
    assert max_err(dpm, ddim) < 1e-2


def test_one_step_is_ddim():
    dpm, _ = solve("dpm_solver++", 1)
    ddim, _ = solve("ddim", 1)
    torch.testing.assert_close(dpm, ddim, atol=1e-12, rtol=0)


def test_a_second_order_step_is_diffusers_formula():
    """Two steps by hand in diffusers' parametrisation (``sigma = sqrt((1 - abar) / abar)``,
    ``alpha_t = 1 / sqrt(sigma^2 + 1)``, ``sigma_t = sigma alpha_t``, midpoint 2M)."""
    sched = DPMSolverMultistepScheduler(T, BETA_START, BETA_END)
    sched.set_timesteps(4)
    t0, t1 = sched.timesteps[:2].tolist()
    t2 = sched.previous_timestep(t1)
    gen = torch.Generator().manual_seed(0)
    x, e0, e1 = (torch.randn(3, 5, generator=gen, dtype=torch.float64) for _ in range(3))

    def ats(t):
        sig = math.sqrt((1 - sched.abar(t)) / sched.abar(t))
        alpha = 1 / math.sqrt(sig ** 2 + 1)
        return alpha, sig * alpha, math.log(alpha) - math.log(sig * alpha)

    (a0, s0, l0), (a1, s1, l1), (a2, s2, l2) = ats(t0), ats(t1), ats(t2)
    m0 = (x - s0 * e0) / a0
    x1 = (s1 / s0) * x - a1 * (math.exp(-(l1 - l0)) - 1) * m0  # first order
    m1 = (x1 - s1 * e1) / a1
    h, r0 = l2 - l1, (l1 - l0) / (l2 - l1)
    d0, d1 = m1, (m1 - m0) / r0
    want = (s2 / s1) * x1 - a2 * (math.exp(-h) - 1) * d0 - 0.5 * a2 * (math.exp(-h) - 1) * d1
    got1 = sched.step(e0, t0, x)
    torch.testing.assert_close(got1, x1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sched.step(e1, t1, got1), want, rtol=1e-12, atol=1e-12)


def test_point_mass_lands_on_the_point_in_two_steps():
    sched = DPMSolverMultistepScheduler(T, 1e-4, 0.02)
    x0 = torch.randn(3, 4, 8)

    class PointOracle(torch.nn.Module):
        def forward(self, x, t, w, drop=None):
            abar = sched.alphas_cumprod[t].float().view(-1, 1, 1)
            return (x - abar.sqrt() * x0) / (1 - abar).sqrt()

    out = sample_tokens(PointOracle(), sched, torch.zeros(3, 2), 4, 8, 0.0, num_inference_steps=2,
                        generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)


def test_state_does_not_leak_between_passes_or_threads():
    sched = make_scheduler("dpm_solver++", T, 1e-4, 0.05)
    oracle = GaussianOracle(sched)
    w = torch.zeros(8, 2, dtype=torch.float64)

    def run(steps):
        return sample_tokens(oracle, sched, w, 1, 4, 0.0, steps, torch.Generator().manual_seed(5))

    want = {n: run(n) for n in (3, 7)}
    torch.testing.assert_close(run(3), want[3], atol=0, rtol=0)  # same again: nothing carried over
    got: dict[int, list] = {3: [], 7: []}

    def worker(n):
        for _ in range(5):
            got[n].append(run(n))

    threads = [threading.Thread(target=worker, args=(n,)) for n in (3, 7)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for n in (3, 7):
        for out in got[n]:
            torch.testing.assert_close(out, want[n], atol=0, rtol=0)
