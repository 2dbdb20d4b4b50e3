"""The sampler is chosen by config (``generator.sampler``, ``generator.num_inference_steps``,
``generator.samples_per_task``) and reaches the reverse loop; no training needed (an untrained DiT)."""

import pytest
import torch

from padirec.config import load_config
from padirec.diffusion.config import GeneratorConfig
from padirec.diffusion.denoiser import Denoiser
from padirec.diffusion.dit import build_dit
from padirec.diffusion.generator import Generator
from padirec.diffusion.schedulers import SAMPLERS, make_scheduler
from padirec.diffusion.tokenizer import ParamNormalizer, ParamTokenizer
from padirec.errors import ConfigError

LAYOUT = [{"name": "W1", "shape": [4, 16]}, {"name": "b1", "shape": [4]},
          {"name": "W2", "shape": [16, 4]}, {"name": "b2", "shape": [16]}]


class Counting(Denoiser):
    calls = 0

    def forward(self, x, t, w, drop=None):
        type(self).calls += 1
        return super().forward(x, t, w, drop)


def generator(**kw) -> Generator:
    cfg = GeneratorConfig(**{"token_size": 16, "num_train_timesteps": 100, **kw})
    params = torch.randn(20, 4 * 16 * 2 + 4 + 16)
    normalizer = ParamNormalizer.fit(params, LAYOUT, cfg.normalization)
    tokens = ParamTokenizer(LAYOUT, cfg.token_size).num_tokens
    torch.manual_seed(0)
    dit = build_dit(cfg.size, tokens, cfg.token_size, 2, cfg.conditioning)
    for p in dit.parameters():  # an untrained DiT outputs zeros (adaLN-Zero): make it do something
        torch.nn.init.normal_(p, std=0.05)
    alphas = make_scheduler("ddpm", cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end).alphas_cumprod
    return Generator(Counting(dit, alphas, cfg.prediction), normalizer, cfg)


@pytest.mark.parametrize("sampler,steps", [("dpm_solver++", 3), ("ddim", 2), ("dpm_solver++", 1)])
def test_config_picks_the_sampler_and_its_steps(sampler, steps):
    gen = generator(sampler=sampler, num_inference_steps=steps, samples_per_task=4)
    Counting.calls = 0
    out = gen.adapters(torch.tensor([0.3, 0.7]), seed=0)
    assert out.shape == (1, 4 * 16 * 2 + 4 + 16) and torch.isfinite(out).all()
    assert Counting.calls == steps  # one batched forward (cond + uncond, all samples) per step


def test_config_and_arguments_agree():
    by_config = generator(sampler="dpm_solver++", num_inference_steps=4, samples_per_task=2)
    by_args = generator(sampler="ddim", num_inference_steps=25, samples_per_task=2)
    w = torch.tensor([[0.2, 0.8], [0.9, 0.1]])
    torch.testing.assert_close(by_config.adapters(w, seed=3),
                               by_args.adapters(w, seed=3, sampler="dpm_solver++", num_inference_steps=4))


def test_dpm_solver_one_and_two_steps_equal_ddim():
    """The first step is first order and the last (to sigma = 0) is too: below 3 steps
    DPM-Solver++(2M) is DDIM."""
    gen = generator(samples_per_task=3)
    w = torch.tensor([0.6, 0.4])
    for steps in (1, 2):
        torch.testing.assert_close(gen.adapters(w, seed=1, sampler="dpm_solver++", num_inference_steps=steps),
                                   gen.adapters(w, seed=1, sampler="ddim", num_inference_steps=steps),
                                   rtol=1e-5, atol=1e-6)
    assert not torch.allclose(gen.adapters(w, seed=1, sampler="dpm_solver++", num_inference_steps=3),
                              gen.adapters(w, seed=1, sampler="ddim", num_inference_steps=3))


def test_the_config_file_accepts_the_new_sampler_and_names_bad_ones(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: t\n")
    cfg = load_config(path, {"generator.sampler": "dpm_solver++", "generator.num_inference_steps": 2})
    assert cfg.generator.sampler == "dpm_solver++" and "dpm_solver++" in SAMPLERS
    with pytest.raises(ConfigError, match="dpm_solver"):
        load_config(path, {"generator.sampler": "dpm"})
