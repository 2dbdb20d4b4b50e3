"""The residual adapter: layout, flattening, the batched functional form, the module hook."""

from __future__ import annotations

import pytest
import torch

from padirec.adapters.adapter import Adapter, apply_adapters, init_params
from padirec.core.layout import adapter_layout, flatten, num_params, unflatten


def test_default_layout_has_1096_parameters_in_documented_order():
    lay = adapter_layout(64, 8)
    assert [t["name"] for t in lay] == ["W1", "b1", "W2", "b2"]
    assert [t["shape"] for t in lay] == [[8, 64], [8], [64, 8], [64]]
    assert num_params(lay) == 1096


def test_flatten_unflatten_roundtrip_with_batch_dims():
    lay = adapter_layout(6, 3)
    flat = torch.randn(4, 5, num_params(lay))
    parts = unflatten(flat, lay)
    assert parts["W1"].shape == (4, 5, 3, 6) and parts["b2"].shape == (4, 5, 6)
    torch.testing.assert_close(flatten(parts, lay), flat)


def test_unflatten_rejects_wrong_length():
    with pytest.raises(ValueError, match="needs 1096"):
        unflatten(torch.zeros(3, 1000), adapter_layout(64, 8))


def test_init_is_identity_map():
    lay = adapter_layout(16, 4)
    params = init_params(lay, torch.Generator().manual_seed(0))[None, :]
    h = torch.randn(7, 16)
    torch.testing.assert_close(apply_adapters(h, params, lay)[0], h)
    assert unflatten(params, lay)["W1"].abs().sum() > 0  # W1 random, so W2 gets a gradient


def test_apply_adapters_matches_explicit_formula_for_each_adapter():
    lay = adapter_layout(8, 3)
    g = torch.Generator().manual_seed(1)
    params = torch.randn(5, num_params(lay), generator=g)
    h = torch.randn(4, 8, generator=g)
    out = apply_adapters(h, params, lay)
    assert out.shape == (5, 4, 8)
    per_user_h = h.expand(5, 4, 8)
    torch.testing.assert_close(apply_adapters(per_user_h, params, lay), out)
    for n in range(5):
        t = unflatten(params[n], lay)
        expect = h + torch.relu(h @ t["W1"].T + t["b1"]) @ t["W2"].T + t["b2"]
        torch.testing.assert_close(out[n], expect)


def test_adapter_module_plugs_into_a_backbone_hook():
    from padirec.backbones.base import Backbone

    class Last(Backbone):
        def encode(self, seqs, times):
            return self.item_embedding(seqs)

    lay = adapter_layout(8, 2)
    params = torch.randn(num_params(lay))
    model = Last(num_items=10, dim=8)
    seqs = torch.tensor([[0, 3, 4], [1, 2, 5]])
    plain = model.user_representation(seqs, seqs)
    model.adapter = Adapter(params, lay)
    torch.testing.assert_close(model.user_representation(seqs, seqs),
                               apply_adapters(plain, params[None], lay)[0])
