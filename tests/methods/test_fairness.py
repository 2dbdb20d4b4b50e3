"""The fairness weight in the per-user rankers (MMR, DeepPRL-static, DeepPRL, MODT4R): the signs are
the group gap's gradient, decided on validation, and a fairness weight narrows a planted gap."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from padirec.adapters.config import AdapterConfig
from padirec.adapters.objectives import group_gap
from padirec.core.fairness import group_signs, relevance_coefficients, signs_from
from padirec.core.metrics import mask_history, ndcg_at_k, target_rank
from padirec.methods.deepprl import DeepPRL, DeepPRLConfig, PolicyTraining
from padirec.methods.deepprl_static import DeepPRLStatic
from padirec.methods.mmr import MMR
from padirec.methods.modt4r import MODT4R, MODT4RConfig
from tests.fixtures import category_walk as tiny
from tests.fixtures import random_features
from tests.methods.checks import assert_prepare_split_matches

UTIL3 = ["accuracy", "diversity", "fairness"]
K = 5


def test_signs_are_the_normalised_negative_gradient_of_the_gap():
    # two groups: A (0) better served, 3 users; B (1), 1 user; N = 4 -> s_A = -4/6, s_B = 4/2
    s = signs_from(torch.tensor([0.6, 0.6, 0.6, 0.2]), torch.tensor([0, 0, 0, 1]))
    assert s.sign == pytest.approx({0: -2 / 3, 1: 2.0})
    per_user = s.per_user(torch.tensor([0, 0, 0, 1]))
    assert float(per_user.sum()) == pytest.approx(0.0, abs=1e-6) and float(per_user.abs().mean()) == pytest.approx(1.0)
    assert s.per_user(torch.tensor([-1, 1, 7])).tolist() == [0.0, 2.0, 0.0]  # unknown or unseen group: 0
    # any number of groups: proportional to -d gap / d NDCG_u of the fairness loss itself
    g = torch.Generator().manual_seed(0)
    ndcg, groups = torch.rand(40, generator=g, dtype=torch.float64), torch.randint(0, 3, (40,), generator=g)
    x = ndcg.clone().requires_grad_(True)
    group_gap(x[None], groups)[0].backward()
    want = -x.grad / x.grad.abs().mean()
    assert torch.allclose(signs_from(ndcg, groups).per_user(groups).double(), want, atol=1e-6)
    assert set(signs_from(ndcg, torch.zeros(40, dtype=torch.long)).sign.values()) == {0.0}  # one group: no gap


def planted(seed: int = 0, valid_better: int = 0, test_better: int = 0):
    """Features with two user groups where the backbone ranks the held-out item first for one group
    (per split: ``valid_better``, ``test_better``) and scores the other group's users at random."""
    f = random_features(num_users=40, num_items=40, groups=True, seed=seed)

    def plant(split, better):
        h = torch.where((split.groups == better)[:, None], 3.0 * f.item_embedding[split.targets], split.h)
        return dataclasses.replace(split, h=h)

    return dataclasses.replace(f, valid=plant(f.valid, valid_better), test=plant(f.test, test_better))


def test_signs_come_from_the_validation_split():
    f = planted(valid_better=1, test_better=0)
    signs = group_signs(f, K)
    assert signs.sign[1] < 0 < signs.sign[0] and signs.ndcg[1] > signs.ndcg[0]


def test_relevance_coefficients():
    s = torch.tensor([-1.0, 2.0])
    assert relevance_coefficients(0.75, 0.3, 0.1, 0.6, s).tolist() == pytest.approx([0.75 - 1.5, 0.75 + 3.0])
    assert torch.equal(relevance_coefficients(1.0, 0.0, 0.0, 1.0, s), s)  # pure fairness: s_u alone


def gaps(method, tasks, split="test"):
    """Signed gap (group 0 minus group 1) and |gap| of the test NDCG@K for each task."""
    s = method.features.split(split)
    out = []
    for w in tasks:
        scores = mask_history(method.scores(method.prepare(w), split), s.mask_rows, s.mask_cols)
        ndcg = ndcg_at_k(target_rank(scores, s.targets), K).double()
        out.append(float(ndcg[s.groups == 0].mean() - ndcg[s.groups == 1].mean()))
    return out


TASKS = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.25, 0.25, 0.5], [0.0, 0.0, 1.0]]


def assert_narrows(signed):
    acc, mix, mix_fair, fair = signed
    assert acc > 0.3  # the planted gap: group 0 is served better
    assert mix_fair < mix  # adding a fairness weight moves the gap towards group 1
    assert abs(fair) < abs(acc)


def test_mmr_fairness_weight_narrows_the_gap():
    f = planted()
    m = MMR(f, UTIL3, k=K, num_candidates=20)
    m.fit()
    assert m.signs is not None and m.signs.sign[0] < 0
    assert_narrows(gaps(m, TASKS))
    # w_fair = 0 ranks exactly as the two-utility method
    two = MMR(f, ["accuracy", "diversity"], k=K, num_candidates=20)
    for w in (0.0, 0.4, 1.0):
        assert torch.equal(m.scores(m.prepare([w, 1 - w, 0.0]), "test"), two.scores(two.prepare([w, 1 - w]), "test"))


@pytest.fixture
def cfg():
    return AdapterConfig(bottleneck=4, utilities=UTIL3, epochs=1, steps_per_epoch=2, batch_size=64,
                         checkpoints_per_task=1, topk_candidates=10)


def test_deepprl_static_fairness_weight_narrows_the_gap(cfg):
    m = DeepPRLStatic(planted(), UTIL3, cfg, k=K, epochs=1, hidden=8)
    m.fit()
    assert_narrows(gaps(m, TASKS))
    assert_prepare_split_matches(m, [[0.3, 0.2, 0.5]])


def test_deepprl_fairness_weight_narrows_the_gap(cfg):
    f = planted()
    g = torch.Generator().manual_seed(0)
    ctx = {name: torch.randn(n, 6, generator=g) for name, n in
           (("train", f.train_h.shape[0]), ("valid", 40), ("test", 40))}
    m = DeepPRL(f, UTIL3, ctx, cfg, k=K, settings=DeepPRLConfig(epochs=1, candidates=0, policy_steps=6),
                training=PolicyTraining(batch=32, hidden=8))
    m.fit()
    assert m.train_signs is not None and m.train_signs.shape == f.train_user.shape
    assert_narrows(gaps(m, TASKS))
    assert_prepare_split_matches(m, [[0.3, 0.2, 0.5]])


def test_modt4r_fairness_weight_narrows_the_gap():
    data, f = tiny(num_users=40)
    groups = torch.arange(data.num_users + 1) % 2  # user ids alternate between the groups

    def plant(split):  # the state points at the target for group 0, away from it for group 1
        g = groups[split.users]
        h = 3.0 * f.item_embedding[split.targets] * (1 - 2 * g[:, None])
        return dataclasses.replace(split, h=h, groups=g)

    f = dataclasses.replace(f, user_group=groups, valid=plant(f.valid), test=plant(f.test))
    m = MODT4R(f, UTIL3, data, cfg=MODT4RConfig(epochs=1, context=3), k=K)
    m.fit()
    assert_narrows(gaps(m, TASKS))
    assert_prepare_split_matches(m, [[0.3, 0.2, 0.5]])


def test_a_fairness_weight_needs_groups(features):
    m = MMR(features, UTIL3, k=K)
    assert isinstance(m.prepare([0.5, 0.5, 0.0]), float)  # no fairness weight: no groups needed
    with pytest.raises(ValueError, match="groups"):
        m.prepare([0.5, 0.0, 0.5])
