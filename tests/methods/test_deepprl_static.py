"""DeepPRL-static: the diversity target, shapes, and the direction of control on tiny random features."""

from __future__ import annotations

import pytest
import torch

from padirec.adapters.config import AdapterConfig
from padirec.core.metrics import alpha_ndcg_at_k, mask_history
from padirec.methods.deepprl_static import DeepPRLStatic, marginal_gain
from tests.methods.checks import assert_prepare_split_matches

UTIL = ["accuracy", "diversity"]
K = 5


@pytest.fixture
def cfg() -> AdapterConfig:
    return AdapterConfig(bottleneck=4, epochs=2, steps_per_epoch=3, batch_size=64, checkpoints_per_task=1,
                         topk_candidates=10)


def test_marginal_gain_discounts_categories_already_listed():
    cats = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    counts = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])  # category 0 listed once / twice above
    assert marginal_gain(counts, cats, 0.5).tolist() == [[0.5, 1.5, 1.0, 0.0], [0.25, 1.25, 1.0, 0.0]]
    assert torch.equal(marginal_gain(counts, cats[None].expand(2, -1, -1), 0.5), marginal_gain(counts, cats, 0.5))


def _listed(method: DeepPRLStatic, prepared, split: str) -> torch.Tensor:
    s = method.features.split(split)
    return mask_history(method.scores(prepared, split), s.mask_rows, s.mask_cols).topk(K, dim=1).indices


def test_deepprl_static_shapes_and_control_direction(features, cfg):
    m = DeepPRLStatic(features, UTIL, cfg, seed=0, k=K, epochs=15, hidden=16, lr=3e-3)
    assert m.epochs == 15 and m.steps_per_epoch == cfg.steps_per_epoch  # 0 would mean the adapters' budget
    m.fit()
    s = features.test
    acc = mask_history(m.accuracy("test"), s.mask_rows, s.mask_cols)
    alpha, relevance = [], []
    for w_acc in (0.0, 0.5, 1.0):
        prepared = m.prepare([w_acc, 1.0 - w_acc])
        assert set(prepared) == {"valid", "test"}
        scores = m.scores(prepared, "test")
        assert scores.shape == (s.h.shape[0], features.num_items + 1)
        masked = mask_history(scores, s.mask_rows, s.mask_cols)
        assert torch.isfinite(masked).sum(1).eq(torch.isfinite(acc).sum(1)).all()  # nothing else masked
        lists = _listed(m, prepared, "test")
        assert lists.shape == (s.h.shape[0], K)
        alpha.append(float(alpha_ndcg_at_k(lists, features.item_categories, 0.5).mean()))
        relevance.append(float(acc.gather(1, lists).mean()))
    # pure accuracy is the accuracy head's own order; moving weight to accuracy trades diversity for it
    assert torch.equal(_listed(m, m.prepare([1.0, 0.0]), "test"), acc.topk(K, dim=1).indices)
    assert alpha[0] >= alpha[1] >= alpha[2] and alpha[0] > alpha[2]
    assert_prepare_split_matches(m, [[0.3, 0.7], [0.0, 1.0]])
    assert relevance[0] <= relevance[1] <= relevance[2] and relevance[0] < relevance[2]


def test_deepprl_static_weights_and_checks(features_factory, cfg):
    f = features_factory(groups=True)
    three = ["accuracy", "diversity", "fairness"]
    m = DeepPRLStatic(f, three, AdapterConfig(**{**cfg.__dict__, "utilities": three}), epochs=1)
    assert m.mix_weights([0.25, 0.25, 0.5]) == pytest.approx((0.5, 0.5))
    assert m.mix_weights([0.0, 0.0, 1.0]) == (1.0, 0.0)
    assert m.epochs == 1 and DeepPRLStatic(f, three, AdapterConfig(**{**cfg.__dict__, "utilities": three})).epochs == 2
    with pytest.raises(ValueError, match="diversity"):
        DeepPRLStatic(f, ["accuracy", "fairness"], cfg)
    with pytest.raises(ValueError, match=">= 0"):
        DeepPRLStatic(f, UTIL, cfg, candidates=-1)


def test_rank_a_chunk_of_users_at_a_time_is_the_whole_split_at_once(features, cfg, monkeypatch):
    """``rank`` builds the accuracy head in chunks of users and lifts the lists in place: the same
    lists, and the same scores up to float rounding (a matrix product of fewer rows may sum in
    another order), as the whole split's head masked, listed and lifted at once."""
    from padirec.methods import deepprl_static
    from padirec.methods.mmr import lift_list

    m = DeepPRLStatic(features, UTIL, cfg, seed=0, k=K, epochs=2, hidden=16)
    m.fit()
    monkeypatch.setattr(deepprl_static, "_ACCURACY_CHUNK", 7)  # several chunks, the last one short
    s = features.test
    assert s.h.shape[0] > 7 and s.h.shape[0] % 7
    for mix in ((0.3, 0.7), (torch.linspace(0.0, 1.0, s.h.shape[0])[:, None], 0.5)):
        acc = mask_history(m.accuracy_of(s.h), s.mask_rows, s.mask_cols)
        got, want = m.rank(mix, "test"), lift_list(acc, m.greedy_lists(s.h, acc, *mix))
        torch.testing.assert_close(got, want)
        assert torch.equal(got.topk(K, dim=1).indices, want.topk(K, dim=1).indices)
