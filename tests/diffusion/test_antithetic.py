"""Antithetic starting noise (``generator.antithetic``): pairs ``(z, -z)`` per task."""

import json

import torch

from padirec.diffusion.generator import Generator, antithetic_noise
from padirec.diffusion.sampling import sample_tokens
from tests.diffusion.test_sampler_config import generator


def test_pairs_negate_within_each_task():
    z = antithetic_noise(3, 4, (2, 5), torch.Generator().manual_seed(0)).reshape(3, 4, 2, 5)
    torch.testing.assert_close(z[:, 2:], -z[:, :2], rtol=0, atol=0)
    assert not torch.allclose(z[0, :2], z[1, :2])  # tasks draw their own noise
    odd = antithetic_noise(2, 3, (4,), torch.Generator().manual_seed(0)).reshape(2, 3, 4)
    torch.testing.assert_close(odd[:, 1], -odd[:, 0], rtol=0, atol=0)
    assert odd[:, 2].abs().sum() > 0


class AffineX0(torch.nn.Module):
    """A denoiser whose x0 prediction is affine in x_t, so one DDIM step maps the noise affinely:
    the mean over an antithetic pair is then exactly the sample from zero noise."""

    def __init__(self, base):
        super().__init__()
        self.cfg = base.model.cfg
        self.abar = base.model.alphas_cumprod
        gen = torch.Generator().manual_seed(1)
        self.a = torch.randn(base.tokenizer.token_size, base.tokenizer.token_size, generator=gen) * 0.3
        self.b = torch.randn(base.tokenizer.token_size, generator=gen)

    def forward(self, x, t, w, drop=None):
        abar = self.abar[t].view(-1, 1, 1)
        x0 = x @ self.a + self.b + w[:, :1, None]
        return (x - abar.sqrt() * x0) / (1 - abar).sqrt()


def test_the_pair_mean_cancels_the_linear_effect_of_the_noise():
    base = generator(sampler="ddim", num_inference_steps=1, samples_per_task=2, antithetic=True)
    gen = Generator(AffineX0(base), base.normalizer, base.cfg)
    w = torch.tensor([[0.3, 0.7], [0.8, 0.2]])
    served = gen.adapters(w, seed=4)
    w2 = w.repeat_interleave(2, 0)
    zero = sample_tokens(gen.model, gen.scheduler("ddim"), w2, gen.tokenizer.num_tokens, gen.tokenizer.token_size,
                         gen.cfg.guidance_scale, 1, noise=torch.zeros(4, gen.tokenizer.num_tokens, gen.tokenizer.token_size))
    want = gen.normalizer.denormalize(gen.tokenizer.decode(zero)).reshape(2, 2, -1).mean(1)
    torch.testing.assert_close(served, want, rtol=1e-4, atol=1e-4)
    independent = Generator(gen.model, gen.normalizer, base.cfg.__class__(**{**vars(base.cfg), "antithetic": False}))
    assert (independent.adapters(w, seed=4) - want).abs().max() > 1e-2


def test_generators_saved_before_the_option_keep_independent_noise(tmp_path):
    gen = generator(samples_per_task=2, antithetic=True)
    gen.save(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["config"]["antithetic"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    loaded = Generator.load(tmp_path)
    assert loaded.cfg.antithetic is False
