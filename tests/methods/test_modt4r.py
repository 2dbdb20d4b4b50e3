"""MODT4R on tiny synthetic trajectories: shapes, returns, training, and the control direction.

The data plants the structure the diversity return describes: items sit in one category each,
and every user's next item either stays in the last item's category or switches to another, so
with a one-step horizon and a one-item window the diversity return of a step says exactly
whether its action switched. The "backbone" state is the last item's embedding (plus noise), so
the same-category items are the ones the state points at.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from padirec.data.dataset import PreparedData
from padirec.methods.modt4r import (
    MODT,
    MODT4R,
    MODT4RConfig,
    accuracy_returns,
    returns_to_go,
    step_rewards,
)
from tests.fixtures import category_walk as tiny
from tests.methods.checks import assert_prepare_split_matches

UTIL = ["accuracy", "diversity"]


def test_returns():
    assert accuracy_returns(3).tolist() == [3.0, 2.0, 1.0]
    assert np.allclose(returns_to_go(np.array([1.0, 0.0, 1.0]), 2), [0.5, 0.5, 0.5])
    assert np.allclose(returns_to_go(np.array([1.0, 0.0, 1.0]), 1), [1.0, 0.0, 1.0])
    cats = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=bool)  # item 3 has both categories
    # actions 2 (new category), 1 (seen two items back, window 1: new), 3 (half new against [1])
    assert np.allclose(step_rewards(np.array([1, 2, 1, 3]), cats, None, "category", 1), [1.0, 1.0, 0.5])
    assert np.allclose(step_rewards(np.array([1, 2, 1, 3]), cats, None, "category", 3), [1.0, 0.0, 0.0])
    unit = np.array([[0, 0], [1, 0], [0, 1], [1, 0]], dtype=float)
    # Sim([1]) = 1, Sim([1, 2]) = 0: reward 1; Sim([1, 2]) - Sim([1, 2, 3]) = 0 - 1/3
    assert np.allclose(step_rewards(np.array([1, 2, 3]), cats, unit, "embedding", 5), [1.0, -1 / 3])
    with pytest.raises(ValueError):
        step_rewards(np.array([1, 2]), cats, None, "novelty", 1)


def _same_category_share(scores: torch.Tensor, data: PreparedData, split: str, k: int = 5) -> float:
    cats = torch.as_tensor(data.item_categories).float()
    last = torch.as_tensor([data.history(split, int(u))[0][-1] for u in data.users])
    top = scores[:, 1:].topk(k, dim=1).indices + 1
    return float((cats[top] * cats[last][:, None]).sum(-1).mean())


def test_modt4r_trains_ranks_and_follows_the_diversity_return():
    torch.manual_seed(0)
    data, features = tiny()
    cfg = MODT4RConfig(context=6, epochs=25, batch_size=64, lr=5e-3, beta=0.5, window=1, horizon=1,
                       dropout=0.0, user_lr=1e-3, alpha_min=0.0)
    m = MODT4R(features, UTIL, data, seed=0, cfg=cfg)
    assert m.traj.r_div.shape == (features.train_h.shape[0],)
    assert set(m.traj.r_div.unique().tolist()) <= {0.0, 1.0}

    gen = torch.Generator().manual_seed(1)
    wins = m._windows(gen)
    assert int(wins[:, 1].sum()) == features.train_h.shape[0]  # every step once
    with torch.random.fork_rng():
        torch.manual_seed(0)
        start = MODT(features.item_embedding, cfg.context, cfg.layers, cfg.heads, cfg.dropout).eval()
    with torch.no_grad():
        before = float(m.loss(start, wins)[0])
    m.fit()
    with torch.no_grad():
        after = float(m.loss(m.model, wins)[0])
    assert after < before
    assert m.losses[-1] < m.losses[0]

    assert_prepare_split_matches(m, [[0.3, 0.7], [1.0, 0.0]])
    prepared = m.prepare([0.3, 0.7])
    assert prepared["valid"].shape == prepared["test"].shape == (data.num_users, features.dim)
    for split in ("valid", "test"):
        s = m.scores(prepared, split)
        assert s.shape == (data.num_users, data.num_items + 1)
        assert torch.isfinite(s[:, 1:]).all() and torch.isinf(s[:, 0]).all()

    # the diversity return steers the action head: asking for diversity moves mass off the
    # last item's category; the full scores follow w_acc from diverse to the state's own category
    div = m.model.action_logits(m.action_representation("test", 0.0, 1.0))
    acc = m.model.action_logits(m.action_representation("test", 1.0, 0.0))
    assert _same_category_share(div, data, "test") < _same_category_share(acc, data, "test") - 0.1
    shares = [_same_category_share(m.scores(m.prepare([w, 1 - w]), "test"), data, "test") for w in (0.0, 0.5, 1.0)]
    assert shares[0] < shares[1] - 0.3 and shares[2] > 0.9


def test_modt4r_weights_and_settings(features_factory):
    data, features = tiny(num_users=6, length=6)
    m = MODT4R(features, UTIL, data, cfg=MODT4RConfig(epochs=1, context=3))
    assert m.mixing(0.0) == pytest.approx(0.2) and m.mixing(1.0) == 1.0  # alpha_min 0.25: lambda 0.25 / 1.25
    assert 0.0 < m.mixing(0.3) < m.mixing(0.6) < 1.0
    m3 = MODT4R(features, UTIL + ["fairness"], data, cfg=MODT4RConfig(epochs=1, context=3))
    assert m3.objective_weights([0.25, 0.25, 0.5]) == (0.5, 0.5, 0.0)
    with pytest.raises(ValueError):
        MODT4R(features, ["accuracy"], data)
    with pytest.raises(ValueError):
        MODT4R(features, UTIL, data, cfg=MODT4RConfig(horizon=0))
    other = features_factory()  # prefixes that do not match the data's sequences
    with pytest.raises(ValueError):
        MODT4R(other, UTIL, data)


def test_frozen_head_skips_its_constant_loss_without_changing_training():
    """With ``user_lr = 0`` the head's ``L_S`` trains nothing, so it is measured in the first epoch
    only: the fitted model equals, bit for bit, one fitted with ``L_S`` computed at every step."""
    data, features = tiny()
    cfg = MODT4RConfig(context=6, epochs=3, batch_size=16, dropout=0.1, user_lr=0.0)

    class EveryStep(MODT4R):
        def loss(self, model, win, user_loss=True):
            return super().loss(model, win, True)

    fast, slow = MODT4R(features, UTIL, data, seed=0, cfg=cfg), EveryStep(features, UTIL, data, seed=0, cfg=cfg)
    fast.fit()
    slow.fit()
    for (name, a), (_, b) in zip(fast.model.state_dict().items(), slow.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert fast.losses[0] == slow.losses[0]


@pytest.mark.parametrize("chunk", [2048, 5])
def test_scores_are_eq_4_19_for_every_task_in_turn(monkeypatch, chunk):
    """``scores`` works a chunk of users at a time, in place on fresh buffers: each call equals
    ``lambda log_softmax(Y) + (1 - lambda) log_softmax(A)`` (with a per-user weight of ``Y`` too),
    whatever the calls before it were: bit for bit in one chunk; in several, up to the rounding of
    a matrix product of fewer rows, with the same top items."""
    import torch.nn.functional as F

    from padirec.methods import modt4r

    monkeypatch.setattr(modt4r, "_SCORE_CHUNK", chunk)
    data, features = tiny(num_users=12, length=8)
    m = MODT4R(features, UTIL, data, seed=0, cfg=MODT4RConfig(epochs=1, context=4, batch_size=16))
    m.fit()
    y = {split: F.log_softmax(m.model.user_logits(features.split(split).h), dim=1) for split in ("valid", "test")}
    relevance = torch.linspace(-0.5, 1.0, data.num_users)[:, None]
    for w_acc in (0.0, 0.4, 1.0, 0.4):
        prepared = m.prepare([w_acc, 1 - w_acc])
        for split in ("valid", "test"):
            lam = prepared["lam"]
            a = F.log_softmax(m.model.action_logits(prepared[split]), dim=1)
            for weight in (lam, relevance):
                if weight is relevance:
                    prepared["relevance"] = {split: relevance}
                expected = y[split] * weight + ((1.0 - lam) * a if lam < 1.0 else 0.0)
                expected[:, 0] = -torch.inf
                got = m.scores(prepared, split)
                if chunk >= data.num_users:
                    assert torch.equal(got, expected), (w_acc, split)
                torch.testing.assert_close(got, expected)
                assert torch.equal(got.topk(5, dim=1).indices, expected.topk(5, dim=1).indices)
            prepared.pop("relevance")
