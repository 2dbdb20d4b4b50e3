"""Batched training equals sequential runs; controllability on synthetic data; evaluation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from padirec.adapters.evaluate import evaluate_adapters
from padirec.adapters.train import (
    backbone_topk,
    checkpoint_spread,
    sample_negatives,
    train_adapter,
    train_bank,
)
from padirec.core.layout import adapter_layout
from padirec.core.metrics import evaluate_scores, mask_history


def test_batched_training_matches_sequential_runs(features, small_cfg):
    weights = np.array([[0.0, 1.0], [0.3, 0.7], [0.8, 0.2], [1.0, 0.0]])
    cfg = dataclasses.replace(small_cfg, epochs=3, checkpoints_per_task=1)
    batched = train_bank(features, weights, cfg, seed=7).checkpoints[:, -1]
    sequential = torch.stack([train_adapter(features, w, cfg, seed=7) for w in weights])
    torch.testing.assert_close(batched, sequential, atol=1e-4, rtol=1e-4)
    # the tasks did learn different things
    assert (batched[0] - batched[-1]).abs().max() > 1e-2


def test_checkpoints_are_the_last_epochs_and_history_has_every_epoch(features, small_cfg):
    res = train_bank(features, np.array([[0.5, 0.5]]), small_cfg, seed=0)
    assert res.checkpoints.shape == (1, small_cfg.checkpoints_per_task, 16 * 8 * 2 + 8 + 16)
    assert res.loss_history.shape == (small_cfg.epochs, 1)
    assert res.utility_history.shape == (small_cfg.epochs, 1, 2)
    assert not torch.equal(res.checkpoints[0, 0], res.checkpoints[0, 1])


def test_diversity_rises_as_w_div_rises(features, small_cfg):
    cfg = dataclasses.replace(small_cfg, epochs=12, checkpoints_per_task=1)
    weights = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])  # w_div = 1, 0.5, 0
    params = train_bank(features, weights, cfg, seed=0).checkpoints[:, -1]
    m = evaluate_adapters(features, params, adapter_layout(features.dim, cfg.bottleneck), "valid")
    alpha = m["alpha_ndcg@10"]
    assert alpha[0] > alpha[1] > alpha[2], alpha
    assert m["ndcg@10"][2] > m["ndcg@10"][0], m["ndcg@10"]


def test_negatives_never_hit_train_items(features):
    users = features.train_user[:500]
    neg = sample_negatives(features, users, 9, torch.Generator().manual_seed(0))
    assert neg.shape == (500, 9) and int(neg.min()) >= 1 and int(neg.max()) <= features.num_items
    assert not features.is_seen(users[:, None], neg).any()


def test_backbone_topk_excludes_the_users_train_items(features):
    top = backbone_topk(features, 5)
    assert top.shape == (features.train_h.shape[0], 5)
    assert not features.is_seen(features.train_user[:, None], top).any()
    assert int(top.min()) >= 1


def test_both_candidate_modes_train(features, small_cfg):
    cfg = dataclasses.replace(small_cfg, epochs=2, checkpoints_per_task=1, candidates="topk", topk_candidates=5)
    res = train_bank(features, np.array([[0.2, 0.8]]), cfg, seed=0)
    assert torch.isfinite(res.checkpoints).all()
    train_mode = dataclasses.replace(cfg, candidates="train")
    assert torch.isfinite(train_bank(features, np.array([[0.2, 0.8]]), train_mode, seed=0).checkpoints).all()
    too_many = backbone_topk(features, features.num_items)  # shortened, never a seen item
    assert not features.is_seen(features.train_user[:, None], too_many).any()
    with pytest.raises(ValueError, match="candidates"):
        train_bank(features, np.array([[0.2, 0.8]]), dataclasses.replace(cfg, candidates="all"), seed=0)


@pytest.mark.parametrize("user_chunk, scores_per_chunk", [(256, 1 << 24), (7, 1)])
def test_evaluation_agrees_with_shared_metrics(features, monkeypatch, user_chunk, scores_per_chunk):
    """Also a few users and one adapter at a time (several chunks, the last one short)."""
    from padirec.adapters import evaluate

    monkeypatch.setattr(evaluate, "_USER_CHUNK", user_chunk)
    monkeypatch.setattr(evaluate, "_SCORES_PER_CHUNK", scores_per_chunk)
    lay = adapter_layout(features.dim, 8)
    g = torch.Generator().manual_seed(3)
    params = torch.randn(2, 16 * 8 * 2 + 8 + 16, generator=g) * 0.3
    ours = evaluate_adapters(features, params, lay, "test")
    sp = features.test
    from padirec.adapters.adapter import apply_adapters

    for i in range(2):
        h = apply_adapters(sp.h, params[i:i + 1], lay)[0]
        scores = mask_history(h @ features.item_embedding.T, sp.mask_rows, sp.mask_cols)
        ref = evaluate_scores(scores, sp.targets, features.item_categories, k=10, alpha=0.5)
        for name, value in ref.items():
            assert ours[name][i] == pytest.approx(value, abs=1e-9), name
    assert "ndcg_gap@10" in ours and (ours["ndcg_gap@10"] >= 0).all()
    bare = evaluate_adapters(features, None, lay, "valid")
    assert bare["ndcg@10"].shape == (1,)


def test_checkpoints_settle_with_a_lower_checkpoint_lr(features, small_cfg):
    weights = np.array([[0.5, 0.5], [1.0, 0.0]])
    cfg = dataclasses.replace(small_cfg, epochs=4, checkpoints_per_task=2)
    runs = [train_bank(features, weights, dataclasses.replace(cfg, checkpoint_lr=f), seed=3) for f in (1.0, 0.01)]
    moving, settled = runs[0].checkpoints, runs[1].checkpoints
    # the epochs before the checkpoint epochs are the same run
    np.testing.assert_array_equal(runs[0].loss_history[:2], runs[1].loss_history[:2])
    a, b = checkpoint_spread(moving), checkpoint_spread(settled)
    assert b["checkpoint_spread"] < 0.2 * a["checkpoint_spread"]
    assert b["checkpoint_last_move"] < 0.2 * a["checkpoint_last_move"]
    flat = checkpoint_spread(moving[:, :1].repeat(1, 3, 1))
    assert flat["checkpoint_spread"] == pytest.approx(0.0, abs=1e-6) and flat["checkpoint_last_move"] == 0.0
