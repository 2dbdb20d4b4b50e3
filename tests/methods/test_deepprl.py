"""DeepPRL (full): the per-user weight's shape around the platform's w, and the policy on tiny features."""

from __future__ import annotations

import pytest
import torch

from padirec.adapters.config import AdapterConfig
from padirec.core.metrics import alpha_ndcg_at_k, mask_history
from padirec.methods.deepprl import (
    DeepPRL,
    DeepPRLConfig,
    PolicyTraining,
    personal_weight,
)
from tests.methods.checks import assert_prepare_split_matches

UTIL = ["accuracy", "diversity"]
K = 5


def test_personal_weight_stays_around_the_platform_weight():
    w = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    assert torch.allclose(personal_weight(w, torch.zeros(5), 2.0), w)  # no shift: the platform's weight
    assert torch.equal(personal_weight(w[[0, 4]], torch.tensor([5.0, -5.0]), 2.0), w[[0, 4]])  # pure tasks stay pure
    up, down = personal_weight(w, torch.full((5,), 9.0), 2.0), personal_weight(w, torch.full((5,), -9.0), 2.0)
    assert (up[1:4] > w[1:4]).all() and (down[1:4] < w[1:4]).all()
    assert (torch.logit(up[1:4]) - torch.logit(w[1:4])).max() <= 2.0 + 1e-5
    assert (up[:-1] < up[1:]).all() and (down[:-1] < down[1:]).all()  # monotone in w for a fixed action


def test_deepprl_trains_a_policy_and_follows_the_weights(features):
    cfg = AdapterConfig(bottleneck=4, epochs=2, steps_per_epoch=3, batch_size=64, checkpoints_per_task=1,
                        topk_candidates=10)
    g = torch.Generator().manual_seed(0)
    ctx = {name: torch.randn(n, 6, generator=g) for name, n in
           (("train", features.train_h.shape[0]), ("valid", 30), ("test", 30))}
    st = DeepPRLConfig(epochs=15, candidates=0, policy_steps=5, confidence=True)
    m = DeepPRL(features, UTIL, ctx, cfg, k=K, settings=st, training=PolicyTraining(batch=32, hidden=8))
    m.fit()
    assert len(m.history) == 5 and m.reward_range is not None and m.reward_range.shape == (2, 2)
    s = features.test
    alpha = []
    for w_acc in (0.0, 0.5, 1.0):
        lam = m.user_weights(w_acc, "test")
        assert lam.shape == (30,) and ((lam >= 0) & (lam <= 1)).all()
        prepared = m.prepare([w_acc, 1 - w_acc])
        scores = prepared["test"]
        assert scores.shape == (30, features.num_items + 1) and m.scores(prepared, "test") is scores
        lists = mask_history(scores, s.mask_rows, s.mask_cols).topk(K, dim=1).indices
        alpha.append(float(alpha_ndcg_at_k(lists, features.item_categories, 0.5).mean()))
    assert torch.equal(m.user_weights(1.0, "test"), torch.ones(30))
    assert_prepare_split_matches(m, [[0.3, 0.7], [1.0, 0.0]])
    assert alpha[0] > alpha[2]
    with pytest.raises(ValueError, match="training rows"):
        DeepPRL(features, UTIL, {**ctx, "train": ctx["train"][:3]}, cfg)
    with pytest.raises(ValueError, match="gamma"):
        DeepPRL(features, UTIL, ctx, cfg, settings=DeepPRLConfig(gamma=1.0))


def test_deepprl_and_deepprl_static_train_the_same_heads_once(features):
    """Within one evaluation (one ``MethodContext.shared``) the heads are trained once: the same
    model as each would train alone, and both fit times count the training."""
    from padirec.evaluation.response_time import time_method
    from padirec.methods.deepprl_static import DeepPRLStatic

    cfg = AdapterConfig(bottleneck=4, epochs=2, steps_per_epoch=3, batch_size=64, checkpoints_per_task=1,
                        topk_candidates=10)
    g = torch.Generator().manual_seed(0)
    ctx = {name: torch.randn(n, 6, generator=g) for name, n in
           (("train", features.train_h.shape[0]), ("valid", 30), ("test", 30))}
    shared: dict = {}
    full = DeepPRL(features, UTIL, ctx, cfg, k=K, settings=DeepPRLConfig(epochs=4, candidates=0, policy_steps=2),
                   training=PolicyTraining(batch=32, hidden=8), shared=shared)
    full.fit()
    assert full.reused_fit_seconds() == 0.0 and full.heads.fit_seconds > 0 and len(shared) == 1

    def static(**kw):
        return DeepPRLStatic(features, UTIL, cfg, seed=0, k=K, epochs=4, **kw)

    reused = static(shared=shared)
    timed = time_method(reused, torch.tensor([[0.3, 0.7]]).numpy())
    assert reused.model is full.heads.model and reused.reused_fit_seconds() == full.heads.fit_seconds
    assert timed["fit_s"] >= full.heads.fit_seconds  # the shared training is counted
    alone = static()
    alone.fit()
    assert all(torch.equal(a, b) for a, b in zip(alone.model.state_dict().values(),
                                                 reused.model.state_dict().values(), strict=True))
    assert torch.equal(alone.gate, reused.gate)
    assert torch.equal(alone.prepare([0.3, 0.7])["test"], reused.prepare([0.3, 0.7])["test"])
    other = static(hidden=8, shared=shared)  # other settings: trained anew
    other.fit()
    assert other.reused_fit_seconds() == 0.0 and other.model is not full.heads.model and len(shared) == 2


def test_deepprl_learns_a_personal_lambda_where_users_need_different_ones(features_factory, monkeypatch):
    """Simulated users of two kinds: even ids follow the backbone closely (their next pick is its top
    item: accuracy pays), odd ids pick at random (accuracy cannot pay, diversity can). At w_acc = 0.5
    the policy must give the first kind a higher lambda than the second; one lambda for everyone
    (the old policy) fails this."""
    import padirec.methods.deepprl as deepprl
    from padirec.methods.deepprl_simulator import ChoiceModel

    f = features_factory(num_users=40, num_items=40, prefixes=400, seed=1)
    ids = torch.arange(41)
    follows = (ids % 2 == 0).float()
    scale = float((f.train_h @ f.item_embedding.T).std())
    planted = ChoiceModel(relevance=4.0 * follows / scale, taste=torch.zeros(41), nll=0.0)
    monkeypatch.setattr(deepprl, "fit_choice_model", lambda *a, **kw: planted)
    cfg = AdapterConfig(bottleneck=4, epochs=2, steps_per_epoch=3, batch_size=64, checkpoints_per_task=1,
                        topk_candidates=10)
    ctx = {name: torch.zeros(n, 1) for name, n in (("train", f.train_h.shape[0]), ("valid", 40), ("test", 40))}
    st = DeepPRLConfig(epochs=15, candidates=0, policy_steps=240, horizon=3, context=3)
    m = DeepPRL(f, UTIL, ctx, cfg, k=K, settings=st, training=PolicyTraining(batch=64, hidden=16))
    m.fit()
    lam = m.user_weights(0.5, "valid")
    kind = follows[f.valid.users].bool()
    gap = float(lam[kind].mean() - lam[~kind].mean())
    assert gap > 0.1, (gap, lam)
    assert (lam[kind].min() > lam[~kind].max()) or gap > 0.2
