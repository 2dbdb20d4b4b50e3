"""Every method honours a novelty weight (p = 3: accuracy, diversity, novelty) on a tiny case.

The features plant a popular head the backbone favours: half of the users have seen items
1..12 in training (the 10% most popular of 120 items), and every representation and those items'
embeddings share a large first coordinate, so the backbone's top-10 lists are mostly head items.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from padirec.adapters.config import AdapterConfig
from padirec.core.layout import adapter_layout, num_params
from padirec.core.novelty import long_tail_items
from padirec.core.tasks import grid
from padirec.evaluation.sweep import run_sweep
from padirec.methods.cmr import CMR
from padirec.methods.hypernetwork import Hypernetwork
from padirec.methods.interpolation import Interpolation
from padirec.methods.mmr import MMR, novelty_coefficient
from padirec.methods.modt4r import MODT4R, MODT4RConfig
from padirec.methods.nn_lookup import NNLookup
from padirec.methods.retrain import Retrain
from padirec.methods.soup import Soup
from tests.fixtures import category_walk as tiny
from tests.fixtures import random_features

UTIL = ["accuracy", "diversity", "novelty"]
ACC, MIX, NOV = [1.0, 0.0, 0.0], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]
HEAD = 12


def popular_head(num_users: int = 60, num_items: int = 120):
    f = random_features(num_users=num_users, num_items=num_items, prefixes=400)
    fans = torch.arange(1, num_users // 2 + 1)
    f.seen_keys = torch.unique(torch.cat([f.seen_keys, (fans[:, None] * (num_items + 1)
                                                        + torch.arange(1, HEAD + 1)).flatten()]))
    for h in (f.train_h, f.valid.h, f.test.h):
        h[:, 0] += 2.0
    f.item_embedding[1:HEAD + 1, 0] = 2.0
    return f


@pytest.fixture(scope="module")
def head():
    return popular_head()


def novelty(method, f, tasks):
    rows = run_sweep({"m": method}, np.asarray(tasks), f, "test", 10, 0.5).metrics["m"]
    return [r["novelty@10"] for r in rows]


def test_the_planted_head_is_the_long_tails_complement(head):
    tail = long_tail_items(head)
    assert tail[1:HEAD + 1].sum() == 0 and tail[HEAD + 1:].all() and not tail[0]


def test_retrain_and_cmr_rank_more_of_the_long_tail_with_the_novelty_weight(head):
    lay = adapter_layout(head.dim, 4)
    cfg = AdapterConfig(bottleneck=4, utilities=UTIL, epochs=4, steps_per_epoch=4, batch_size=64,
                        checkpoints_per_task=1)
    acc, mix, nov = novelty(Retrain(head, UTIL, lay, cfg, 0), head, [ACC, MIX, NOV])
    assert nov > acc + 0.1 and mix >= acc
    acc, nov = novelty(CMR(head, UTIL, lay, cfg, epochs=6, tasks_per_batch=8), head, [ACC, NOV])
    assert nov > acc


def test_mmr_novelty_term(head):
    assert novelty_coefficient(torch.tensor(MIX), UTIL) == 1.0  # w_nov / (w_acc + w_div)
    assert novelty_coefficient(torch.tensor(NOV), UTIL) == 2.0  # all novelty: the long tail first
    assert novelty_coefficient(torch.tensor([0.5, 0.5]), ["accuracy", "diversity"]) == 0.0
    mmr = MMR(head, UTIL, k=10, num_candidates=40)
    assert mmr.prepare(ACC) == 1.0  # no novelty weight: the plain lambda, as with p = 2
    acc, mix, nov = novelty(mmr, head, [ACC, MIX, NOV])
    assert acc < mix <= nov == 1.0


def test_bank_readers_move_along_the_novelty_weight(head):
    lay = adapter_layout(head.dim, 4)
    g = torch.Generator().manual_seed(0)
    corners = torch.randn(3, num_params(lay), generator=g) * 0.1
    w = torch.as_tensor(grid(3, 3), dtype=torch.float32)  # 6 bank tasks on the 2-simplex
    params = w @ corners  # adapters linear in the weights: Delaunay interpolation is exact
    interp = Interpolation(head, UTIL, lay, params, w.double())
    torch.testing.assert_close(interp.prepare([0.25, 0.25, 0.5]), torch.tensor([0.25, 0.25, 0.5]) @ corners)
    look = NNLookup(head, UTIL, lay, params, w.double())
    assert torch.equal(look.prepare([0.1, 0.1, 0.8]), corners[2])
    soup = Soup(head, UTIL, lay, corners)
    hyper = Hypernetwork(head, UTIL, lay, params, w, steps=200, hidden=32)
    hyper.fit()
    for m in (interp, look, soup, hyper):
        assert not torch.allclose(m.prepare(ACC), m.prepare(MIX)), m.key
        assert not torch.allclose(m.prepare(MIX), m.prepare(NOV)), m.key
    end = hyper.prepare(NOV)
    assert (end - corners[2]).norm() < (end - corners[0]).norm()


def test_modt4r_novelty_return():
    data, features = tiny(num_users=30, length=10)
    m = MODT4R(features, UTIL, data, cfg=MODT4RConfig(epochs=2, context=4))
    tail = long_tail_items(features)
    assert m.traj.r_nov is not None and set(m.traj.r_nov.unique().tolist()) <= {0.0, 1.0}  # horizon 1
    first = data.users[0]
    n = len(data.train_items[first]) - 1
    assert m.traj.r_nov[:n].tolist() == tail[torch.as_tensor(data.train_items[first][1:])].float().tolist()
    m.fit()
    assert m.model.ret_e.shape[0] == 3 and m.model.head_ret.out_features == 3
    assert m.objective_weights([0.2, 0.2, 0.6]) == pytest.approx((0.2, 0.2, 0.6))
    ask_nov, ask_div = m.action_representation("test", 0.0, 0.0, 1.0), m.action_representation("test", 0.0, 1.0, 0.0)
    assert not torch.allclose(ask_nov, ask_div)
    assert not torch.allclose(m.scores(m.prepare(MIX), "test"), m.scores(m.prepare([0.5, 0.5, 0.0]), "test"))
    two = MODT4R(features, ["accuracy", "diversity"], data, cfg=MODT4RConfig(epochs=1, context=4))
    assert two.traj.r_nov is None and two.tail is None
