"""The CPU hot spots of an ML-1M-sized run, each timed against the code it replaced, in one process.

    .venv/bin/python benchmarks/bench_hotspots.py [--users 6040] [--items 3706] [--repeats 7] [--threads 2]

Rounds alternate old and new (machines here are shared and noisy: a ratio measured this way is
worth more than two absolute times) and each row prints the median ms of both and the ratio:

- a SASRec training step (batch 64, 20 positions, 9 negatives each): ``nn.Dropout`` against
  ``FastDropout`` in the same model;
- one evaluation of full-ranking scores: ``SplitEvaluator.per_user`` as it was (mask, compare and
  sort the whole ``(users, items)`` matrix, a full ``isfinite`` check) against its chunks of 256
  users (the same values, checked);
- the backbone's validation pass: its first call (computes each batch's ideal alpha-DCG) against a
  later one (reuses it);
- DeepPRL-static's greedy top-10 lists over a 300-item pool for every user: all users at once
  against 256 at a time (the same lists, checked).

The representations are random: the costs do not depend on their values. Nothing is read or written.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

import padirec.methods.deepprl_static as deepprl_static
from padirec.adapters.config import AdapterConfig
from padirec.adapters.features import EvalSplit, Features
from padirec.backbones.config import BackboneConfig
from padirec.backbones.sasrec import SASRec
from padirec.backbones.train import Evaluator, bce_loss
from padirec.core.dropout import FastDropout
from padirec.core.metrics import alpha_ndcg_at_k, hr_at_k, mask_history, ndcg_at_k, target_rank
from padirec.data.dataset import PreparedData
from padirec.evaluation.sweep import SplitEvaluator

HISTORY = 150  # items masked per user (ML-1M's users have 165 ratings on average)
STEPS = 50  # SASRec steps per timed round


def alternate(old: Callable[[], object], new: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median ms of ``old`` and ``new`` over ``repeats`` alternating rounds (one untimed call each first)."""
    times: dict[int, list[float]] = {0: [], 1: []}
    old(), new()
    for _ in range(repeats):
        for i, f in enumerate((old, new)):
            start = time.perf_counter()
            f()
            times[i].append((time.perf_counter() - start) * 1000)
    return float(np.median(times[0])), float(np.median(times[1]))


def random_features(users: int, items: int, dim: int, seed: int) -> Features:
    g = torch.Generator().manual_seed(seed)
    cats = (torch.rand(items + 1, 18, generator=g) < 0.1).float()
    cats[torch.arange(1, items + 1), torch.randint(0, 18, (items,), generator=g)] = 1.0
    cats[0] = 0.0
    rows = torch.arange(users).repeat_interleave(HISTORY)
    cols = torch.randint(1, items + 1, (users * HISTORY,), generator=g)
    targets = torch.randint(1, items + 1, (users,), generator=g)
    keep = cols != targets[rows]

    def split() -> EvalSplit:
        return EvalSplit(users=torch.arange(1, users + 1), h=torch.randn(users, dim, generator=g), targets=targets,
                         mask_rows=rows[keep], mask_cols=cols[keep], groups=None)

    prefixes = 4096
    train_user = torch.randint(1, users + 1, (prefixes,), generator=g)
    train_target = torch.randint(1, items + 1, (prefixes,), generator=g)
    return Features(
        train_h=torch.randn(prefixes, dim, generator=g), train_user=train_user, train_target=train_target,
        item_embedding=torch.randn(items + 1, dim, generator=g) / dim**0.5, item_categories=cats,
        user_group=None, seen_keys=torch.unique(train_user * (items + 1) + train_target), valid=split(), test=split(),
    )


def random_data(users: int, items: int, seed: int) -> PreparedData:
    rng = np.random.default_rng(seed)
    train = [np.zeros(0, dtype=np.int64)] + [rng.integers(1, items + 1, HISTORY) for _ in range(users)]
    zeros = np.zeros(users + 1, dtype=np.int64)
    cats = np.zeros((items + 1, 18), dtype=bool)
    cats[np.arange(1, items + 1), rng.integers(0, 18, items)] = True
    return PreparedData(
        num_users=users, num_items=items, num_categories=18, train_items=train,
        train_times=[np.arange(len(s)) for s in train],
        valid_item=np.concatenate([[0], rng.integers(1, items + 1, users)]), valid_time=zeros,
        test_item=np.concatenate([[0], rng.integers(1, items + 1, users)]), test_time=zeros,
        item_categories=cats, item_titles=[""] * (items + 1), category_names=[str(c) for c in range(18)],
        user_group=None, manifest={},
    )


def sasrec_step(items: int, dropout: type[nn.Module]) -> Callable[[], object]:
    torch.manual_seed(0)
    model = SASRec(items, BackboneConfig(), 20).train()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, FastDropout):
                setattr(module, name, dropout(child.p))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    seqs, targets = torch.randint(1, items + 1, (64, 20), generator=g), torch.randint(1, items + 1, (64, 20), generator=g)
    negatives, times = torch.randint(1, items + 1, (64, 20, 9), generator=g), torch.zeros(64, 20, dtype=torch.long)

    def step(steps: int = STEPS) -> None:
        for _ in range(steps):
            loss = bce_loss(model, seqs, times, targets, negatives)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=6040)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []

    old, new = alternate(sasrec_step(args.items, nn.Dropout), sasrec_step(args.items, FastDropout), args.repeats)
    rows.append(("SASRec training step (per step)", old / STEPS, new / STEPS))

    f = random_features(args.users, args.items, 64, 0)
    ev = SplitEvaluator(f, "test", 10, 0.5)
    scores = f.test.h @ f.item_embedding.T

    def whole() -> dict[str, torch.Tensor]:  # SplitEvaluator.per_user before: the whole matrix at once
        masked = mask_history(scores, f.test.mask_rows, f.test.mask_cols)
        assert torch.equal(torch.isfinite(masked), ev.rankable)
        ranks = target_rank(masked, f.test.targets)
        dcg = alpha_ndcg_at_k(masked.topk(10, dim=1).indices, f.item_categories, 0.5) * ev.ideal_all
        return {"ndcg@10": ndcg_at_k(ranks, 10), "hr@10": hr_at_k(ranks, 10),
                "alpha_ndcg@10": torch.where(ev.ideal > 0, dcg / ev.ideal.clamp_min(1e-300), torch.zeros_like(dcg))}

    a, b = whole(), ev.per_user(scores)
    assert all(torch.equal(a[key], b[key]) for key in a), "the chunked evaluator's values differ"
    old, new = alternate(whole, lambda: ev.per_user(scores), args.repeats)
    rows.append(("evaluation of one score matrix", old, new))

    data = random_data(args.users, args.items, 0)
    torch.manual_seed(0)
    backbone = SASRec(args.items, BackboneConfig(), 20).eval()
    first_ms = []
    for _ in range(args.repeats):
        valid = Evaluator(data, "valid", 20, torch.device("cpu"))
        start = time.perf_counter()
        valid(backbone)
        first_ms.append((time.perf_counter() - start) * 1000)
    later = alternate(lambda: valid(backbone), lambda: valid(backbone), args.repeats)[1]
    rows.append(("backbone validation pass (first, later)", float(np.median(first_ms)), later))

    heads = deepprl_static.DeepPRLStatic(f, ["accuracy", "diversity"], AdapterConfig(), 0, 10, 1, 20, candidates=300)
    heads.fit()
    acc = mask_history(heads.accuracy("test"), f.test.mask_rows, f.test.mask_cols)
    chunk = deepprl_static._GREEDY_CHUNK

    def greedy(size: int) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            deepprl_static._GREEDY_CHUNK = size
            try:
                return heads.greedy_lists(f.test.h, acc, 0.5, 0.5)
            finally:
                deepprl_static._GREEDY_CHUNK = chunk
        return run

    assert torch.equal(greedy(args.users)(), greedy(chunk)()), "chunked greedy lists differ"
    old, new = alternate(greedy(args.users), greedy(chunk), args.repeats)
    rows.append(("DeepPRL greedy lists, one split", old, new))

    print(f"{args.users} users, {args.items} items, {args.threads} threads, median of {args.repeats} alternating rounds")
    print("| hot spot | old ms | new ms | old / new |\n|---|---:|---:|---:|")
    for name, o, n in rows:
        print(f"| {name} | {o:.1f} | {n:.1f} | {o / n:.2f}x |")


if __name__ == "__main__":
    main()
