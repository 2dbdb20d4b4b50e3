"""DeepPRL's user simulator (the paper's section 6 on the training data): histories, the fitted
choice model, determinism, reward ranges, and next states that depend on the list shown."""

from __future__ import annotations

import dataclasses

import torch

from padirec.methods.deepprl_simulator import (
    ChoiceModel,
    UserSimulator,
    fit_choice_model,
    histories,
    novelty,
)


def ordered(features):
    """``features`` with its training prefixes in user order then time order, as the data gives them."""
    order = torch.sort(features.train_user, stable=True).indices
    return dataclasses.replace(features, train_h=features.train_h[order], train_user=features.train_user[order],
                               train_target=features.train_target[order])


def test_histories_are_the_previous_targets_of_the_same_user(features):
    f = ordered(features)
    hist = histories(f, 3)
    for j in (0, 5, 50, 199):
        u = int(f.train_user[j])
        before = [int(t) for t, v in zip(f.train_target[:j], f.train_user[:j], strict=True) if int(v) == u][-3:]
        assert hist["train"][j].tolist() == [0] * (3 - len(before)) + before
    for i, u in enumerate(f.valid.users.tolist()):
        mine = f.train_target[f.train_user == u].tolist()[-3:]
        assert hist["valid"][i].tolist() == [0] * (3 - len(mine)) + mine
        assert hist["test"][i].tolist() == (hist["valid"][i].tolist() + [int(f.valid.targets[i])])[1:]


def test_novelty_marks_items_with_an_unseen_category():
    cats = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 1]], dtype=torch.float32)
    assert novelty(torch.tensor([[0, 1]]), cats).tolist() == [[0, 0, 1, 1]]
    assert novelty(torch.tensor([[2, 3]]), cats).tolist() == [[0, 0, 0, 0]]


def test_choice_model_fits_and_is_seeded(features):
    f = ordered(features)
    hist = histories(f, 3)["train"]
    a, b = fit_choice_model(f, hist, seed=0, steps=30), fit_choice_model(f, hist, seed=0, steps=30)
    assert torch.equal(a.relevance, b.relevance) and torch.equal(a.taste, b.taste)
    assert a.relevance.shape == a.taste.shape == (31,) and torch.isfinite(torch.tensor(a.nll))
    assert a.traits(torch.tensor([1, 2])).shape == (2, 2)
    # planted: each prefix's target is the item its state points at, so users follow the backbone
    planted = dataclasses.replace(f, train_h=4 * f.item_embedding[f.train_target])
    assert float(fit_choice_model(planted, hist, steps=60).relevance.mean()) > float(a.relevance.mean())


def simulator(f, exposure: float = 2.0) -> UserSimulator:
    hist = histories(f, 3)["train"]
    return UserSimulator(f, fit_choice_model(f, hist, steps=20), hist, exposure=exposure)


def test_simulator_is_deterministic_given_a_seed_with_rewards_in_range(features):
    f = ordered(features)
    sim = simulator(f)
    rows = torch.arange(0, 200, 5)
    lists = torch.stack([torch.randperm(40, generator=torch.Generator().manual_seed(i))[:5] + 1 for i in range(40)])

    def play(seed):
        ep, gen = sim.start(rows), torch.Generator().manual_seed(seed)
        out = [sim.step(ep, lists, gen) for _ in range(3)]
        return out, ep.history

    (r1, h1), (r2, h2) = play(0), play(0)
    assert all(torch.equal(x, y) for a, b in zip(r1, r2, strict=True) for x, y in zip(a, b, strict=True))
    assert torch.equal(h1, h2)
    for r_acc, r_div in r1:
        assert ((r_acc >= 0) & (r_acc <= 1)).all() and ((r_div >= 0) & (r_div <= 1 + 1e-6)).all()
    assert not torch.equal(play(1)[1], h1)  # the users' answers are random draws


def test_next_state_depends_on_the_list_shown(features):
    """With the recommendation's pull the user mostly consumes a listed item: another list, another
    next history (the same seed)."""
    f = ordered(features)
    sim = simulator(f, exposure=8.0)
    rows = torch.arange(0, 200, 4)
    a = torch.arange(1, 6).expand(len(rows), 5)
    b = torch.arange(31, 36).expand(len(rows), 5)
    nxt = {}
    for name, lists in (("a", a), ("b", b)):
        ep = sim.start(rows)
        sim.step(ep, lists, torch.Generator().manual_seed(0))
        nxt[name] = ep.history[:, -1]
        assert ep.blocked[torch.arange(len(rows)), nxt[name]].all()  # a consumed item cannot come back
    assert (nxt["a"] <= 5).float().mean() > 0.5 and (nxt["b"] >= 31).float().mean() > 0.5


def test_expected_ndcg_counts_the_users_own_pick(features):
    """``r_acc`` is the expected NDCG of the user's next pick without the list's pull: a user certain
    to pick item 7 scores 1 when 7 is listed first, 1/log2(3) second, 0 when absent."""
    f = ordered(features)
    n = 31
    rel = torch.full((n,), 1.0)
    choice = ChoiceModel(rel, torch.zeros(n), 0.0)
    h = 50.0 * f.item_embedding[7] / f.item_embedding[7].norm()
    f = dataclasses.replace(f, train_h=h.expand_as(f.train_h).clone(), item_embedding=f.item_embedding
                            / f.item_embedding.norm(dim=1, keepdim=True).clamp_min(1e-6))
    sim = UserSimulator(f, choice, histories(f, 3)["train"], exposure=5.0)
    rows = torch.tensor([0])
    sim.features.seen_keys = torch.zeros(0, dtype=torch.long)  # nothing consumed yet
    for lists, want in ((torch.tensor([[7, 1, 2]]), 1.0), (torch.tensor([[1, 7, 2]]), 1 / 1.585), (torch.tensor([[1, 2, 3]]), 0.0)):
        r_acc, _ = sim.step(sim.start(rows), lists, torch.Generator().manual_seed(0))
        assert abs(float(r_acc) - want) < 0.01
