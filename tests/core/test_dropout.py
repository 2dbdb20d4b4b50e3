"""FastDropout: nn.Dropout's behaviour with masks of 16-bit uniforms (four per 64-bit draw)."""

from __future__ import annotations

import pytest
import torch

from padirec.core.dropout import FastDropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_keep_rate_and_scale_match_dropout(p):
    torch.manual_seed(0)
    x = torch.ones(400, 1001)  # an odd element count: the last draw is partly used
    layer = FastDropout(p).train()
    y = layer(x)
    kept = y != 0
    assert float(kept.float().mean()) == pytest.approx(1 - p, abs=3e-3)
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    assert float(y.mean()) == pytest.approx(1.0, abs=6e-3)  # expectation kept, as nn.Dropout


def test_masks_are_independent_across_positions():
    """The four 16-bit lanes of a draw are independent: neighbours are kept together at rate (1 - p)^2."""
    torch.manual_seed(1)
    m = keep_mask(torch.Size([1_000_000]), 0.2, torch.device("cpu")).float()
    pairs = m[0::2] * m[1::2]
    assert float(pairs.mean()) == pytest.approx(0.64, abs=3e-3)
    lanes = m.view(-1, 4).mean(0)  # no lane is biased (a 63-bit draw would bias the top lane)
    assert torch.allclose(lanes, torch.full((4,), 0.8), atol=4e-3)


def test_eval_mode_zero_p_and_seeded_repeats():
    x = torch.randn(64, 20, 8)
    layer = FastDropout(0.2)
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    layer.train()
    torch.manual_seed(3)
    a = layer(x)
    torch.manual_seed(3)
    assert torch.equal(layer(x), a)  # the default generator decides: seeded runs repeat
    assert not torch.equal(layer(x), a)


def test_gradient_flows_through_kept_elements_only():
    torch.manual_seed(4)
    x = torch.randn(32, 16, requires_grad=True)
    y = FastDropout(0.3).train()(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.7))
    assert torch.equal(x.grad[~kept], torch.zeros_like(x.grad[~kept]))


def test_rejects_p_outside_the_unit_interval():
    with pytest.raises(ValueError, match="dropout must be in"):
        FastDropout(1.0)
