import json

import pytest
import torch

from padirec.core.layout import unflatten
from padirec.diffusion.synthetic_bank import DEFAULT_LAYOUT, make_synthetic_bank
from padirec.diffusion.tokenizer import ParamNormalizer, ParamTokenizer
from padirec.errors import ArtifactError, ConfigError


@pytest.mark.parametrize("mode", ["tensor", "element"])
@pytest.mark.parametrize("token_size", [1, 7, 64, 100])
def test_normalise_tokenise_round_trip(mode, token_size):
    bank = make_synthetic_bank(num_tasks=20, checkpoints=2)
    norm = ParamNormalizer.fit(bank.params, bank.layout, mode)
    tok = ParamTokenizer(bank.layout, token_size)
    tokens = tok.encode(norm.normalize(bank.params))
    assert tokens.shape == (40, tok.num_tokens, token_size)
    back = norm.denormalize(tok.decode(tokens))
    torch.testing.assert_close(back, bank.params, rtol=0, atol=1e-6)


def test_default_layout_gives_18_tokens_of_64():
    tok = ParamTokenizer(DEFAULT_LAYOUT, 64)
    assert tok.num_params == 1096 and tok.num_tokens == 8 + 1 + 8 + 1


def test_tokens_never_straddle_tensors_and_pad_with_zero():
    layout = [{"name": "a", "shape": [3, 3]}, {"name": "b", "shape": [5]}]
    tok = ParamTokenizer(layout, 4)
    row = torch.cat([torch.full((9,), 1.0), torch.full((5,), 2.0)])[None]
    tokens = tok.encode(row)[0]  # a: 3 tokens (4+4+1), b: 2 tokens (4+1)
    assert tokens.shape == (5, 4)
    assert tokens[:3][tokens[:3] != 0].eq(1).all() and tokens[3:][tokens[3:] != 0].eq(2).all()
    torch.testing.assert_close(tokens[2], torch.tensor([1.0, 0, 0, 0]))
    torch.testing.assert_close(tokens[4], torch.tensor([2.0, 0, 0, 0]))


def test_tensor_mode_z_scores_each_tensor():
    bank = make_synthetic_bank(num_tasks=30, checkpoints=3)
    norm = ParamNormalizer.fit(bank.params, bank.layout, "tensor")
    z = norm.normalize(bank.params)
    start = 0
    for entry in bank.layout:
        size = torch.Size(entry["shape"]).numel()
        block = z[:, start:start + size]
        assert abs(float(block.mean())) < 1e-4 and abs(float(block.std(unbiased=False)) - 1) < 1e-3
        start += size


def test_statistics_survive_json():
    bank = make_synthetic_bank(num_tasks=15, checkpoints=2)
    norm = ParamNormalizer.fit(bank.params, bank.layout, "element")
    state = json.loads(json.dumps(norm.state_dict()))
    again = ParamNormalizer.from_state_dict(state, bank.layout)
    torch.testing.assert_close(again.normalize(bank.params), norm.normalize(bank.params))


def test_constant_coordinate_is_finite():
    params = torch.randn(10, 1096)
    params[:, 5] = 3.0
    norm = ParamNormalizer.fit(params, DEFAULT_LAYOUT, "element")
    assert torch.isfinite(norm.normalize(params)).all()
    torch.testing.assert_close(norm.denormalize(norm.normalize(params)), params)


def test_unflatten_shapes():
    row = torch.arange(1096.0)
    parts = unflatten(row, DEFAULT_LAYOUT)
    assert parts["W1"].shape == (8, 64) and parts["b2"].shape == (64,)
    assert float(parts["b1"][0]) == 512.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="needs 1096"):
        ParamTokenizer(DEFAULT_LAYOUT, 64).encode(torch.zeros(2, 1000))
    with pytest.raises(ConfigError, match="normalization"):
        ParamNormalizer.fit(torch.zeros(2, 1096), DEFAULT_LAYOUT, "global")
    with pytest.raises(ArtifactError, match="tokens must be"):
        ParamTokenizer(DEFAULT_LAYOUT, 64).decode(torch.zeros(2, 17, 64))
