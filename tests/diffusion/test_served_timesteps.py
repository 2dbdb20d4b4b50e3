"""Training where the sampler serves: ``generator.served_fraction`` of each batch at its timesteps."""

from __future__ import annotations

import pytest
import torch

from padirec.diffusion import train as train_mod
from padirec.diffusion.config import GeneratorConfig
from padirec.diffusion.train import served_timesteps, train_generator

LAYOUT = [{"name": "W1", "shape": [2, 4]}, {"name": "b1", "shape": [2]}]


def test_the_served_timesteps_are_the_samplers():
    assert served_timesteps(GeneratorConfig(num_train_timesteps=500, num_inference_steps=1)).tolist() == [499]
    assert served_timesteps(GeneratorConfig(num_train_timesteps=500, num_inference_steps=5)).tolist() == \
        [499, 399, 299, 199, 99]
    assert len(served_timesteps(GeneratorConfig(sampler="ddpm", num_train_timesteps=50))) == 50


@pytest.mark.parametrize("fraction, lo, hi", [(0.0, 0.0, 0.05), (0.5, 0.4, 0.6), (1.0, 1.0, 1.0)])
def test_a_share_of_each_batch_trains_at_the_served_timesteps(monkeypatch, fraction, lo, hi):
    seen: list[torch.Tensor] = []
    real = train_mod.loss_weights

    def spy(alphas_cumprod, t, weighting):
        seen.append(t.clone())
        return real(alphas_cumprod, t, weighting)

    monkeypatch.setattr(train_mod, "loss_weights", spy)
    cfg = GeneratorConfig(size="tiny", token_size=4, num_train_timesteps=100, num_inference_steps=1, train_steps=20,
                          batch_size=64, warmup_steps=1, log_every=10, served_fraction=fraction)
    w = torch.rand(8, 1)
    train_generator(torch.randn(8, 10), torch.cat([w, 1 - w], 1), LAYOUT, cfg, seed=0)
    drawn = torch.cat(seen[1:])  # the first call only checks the weighting's name
    share = float((drawn == 99).float().mean())
    assert lo <= share <= hi
