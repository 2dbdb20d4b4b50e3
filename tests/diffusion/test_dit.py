import pytest
import torch

from padirec.diffusion.dit import CONDITIONINGS, DIT_SIZES, build_dit
from padirec.diffusion.sampling import guided_noise
from padirec.errors import ConfigError


def _inputs(batch=5, tokens=6, token_size=8, p=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(batch, p, generator=g)
    return (torch.randn(batch, tokens, token_size, generator=g),
            torch.randint(100, (batch,), generator=g), w / w.sum(1, keepdim=True))


def _perturbed(model, seed=1):
    """A copy of ``model`` with every parameter nudged, so zero-initialised paths are live."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_every_conditioning_builds_runs_and_uses_w_and_t(conditioning):
    model = _perturbed(build_dit("tiny", 6, 8, 3, conditioning))
    x, t, w = _inputs()
    out = model(x, t, w)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, model(x, t, w.flip(0)))  # depends on w
    assert not torch.allclose(out, model(x, t + 7, w))  # depends on t
    dropped = model(x, t, w, torch.ones(5, dtype=torch.bool))
    assert not torch.allclose(out, dropped)  # the null condition differs from w
    out.square().mean().backward()
    assert model.w_embed.mlp[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_attention_runs_over_tokens_not_the_batch(conditioning):
    """Each example's output depends on its own tokens only (the authors' release attended over
    the batch axis)."""
    model = _perturbed(build_dit("tiny", 6, 8, 3, conditioning)).eval()
    x, t, w = _inputs()
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(model(x, t, w)[perm], model(x[perm], t[perm], w[perm]),
                               atol=1e-5, rtol=1e-5)
    # and tokens do talk to each other
    x2 = x.clone()
    x2[:, 0] += 1.0
    assert not torch.allclose(model(x, t, w)[:, 1:], model(x2, t, w)[:, 1:])


def test_adaln_zero_starts_as_zero_noise_prediction():
    model = build_dit("tiny", 6, 8, 3, "adaln_zero")
    x, t, w = _inputs()
    assert model(x, t, w).abs().max() == 0


def test_sizes_and_bad_names():
    assert {"tiny", "small", "base"} <= set(DIT_SIZES)
    with pytest.raises(ConfigError, match="conditioning"):
        build_dit("tiny", 6, 8, 2, "film")
    with pytest.raises(ConfigError, match="size"):
        build_dit("huge", 6, 8, 2, "pre")


def test_guidance_zero_is_the_conditional_model_and_one_batched_pass_otherwise():
    model = _perturbed(build_dit("tiny", 6, 8, 3, "adaln_zero")).eval()
    x, t, w = _inputs()
    cond = model(x, t, w)
    uncond = model(x, t, w, torch.ones(5, dtype=torch.bool))
    torch.testing.assert_close(guided_noise(model, x, t, w, 0.0), cond)
    torch.testing.assert_close(guided_noise(model, x, t, w, 0.7), 1.7 * cond - 0.7 * uncond,
                               atol=1e-5, rtol=1e-5)
    calls = []
    model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    guided_noise(model, x, t, w, 0.7)
    assert calls == [10]  # cond and uncond in one forward
