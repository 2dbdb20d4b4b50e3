"""Stage build_adapters: the adapter_bank artifact, shards and merge, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from padirec.adapters.bank import load_bank
from padirec.adapters.stage import (
    build_adapters_stage,
    check_data_for_utilities,
    merge_adapter_banks,
)
from padirec.core.layout import num_params
from padirec.core.tracker import NullTracker
from padirec.errors import ArtifactError, ConfigError, DataValidationError
from tests.fixtures import MAX_LEN

# starts servers or processes, or trains a stage: over the fast suite's budget (make test runs it)
pytestmark = pytest.mark.slow


class RecordingTracker(NullTracker):
    def __init__(self):
        self.metrics: list[tuple[dict, int | None]] = []
        self.params: dict = {}
        self.tables: dict = {}

    def log_table(self, data, artifact_file):
        self.tables[artifact_file] = data

    def log_params(self, params):
        self.params.update(params)

    def log_metrics(self, metrics, step=None):
        self.metrics.append((metrics, step))


def run(tmp_path, synthetic_prepared, backbone_dir, cfg, name, **kw):
    out = tmp_path / name
    tracker = kw.pop("tracker", NullTracker())
    stats = build_adapters_stage(synthetic_prepared, backbone_dir, out, cfg, MAX_LEN, seed=0, device="cpu",
                                 tracker=tracker, **kw)
    return out, stats


@pytest.fixture
def stage_cfg(small_cfg):
    return dataclasses.replace(small_cfg, epochs=3, checkpoints_per_task=2, grid_size=3, num_random_tasks=2)


def test_stage_writes_the_documented_artifact(tmp_path, synthetic_prepared, backbone_dir, stage_cfg):
    tracker = RecordingTracker()
    out, stats = run(tmp_path, synthetic_prepared, backbone_dir, stage_cfg, "bank", tracker=tracker)
    bank = load_bank(out)
    assert bank.params.shape == (5 * 2, num_params(bank.layout)) and bank.params.dtype == torch.float32
    assert bank.utilities == ["accuracy", "diversity"]
    assert [t["name"] for t in bank.layout] == ["W1", "b1", "W2", "b2"]
    t = bank.tasks
    assert {"row", "task_id", "checkpoint", "held_out", "w", "shard",
            "valid_ndcg@10", "valid_alpha_ndcg@10"} <= set(t.columns)
    assert t["held_out"].tolist() == [True] * 6 + [False] * 4  # the 3-point grid, 2 checkpoints each
    np.testing.assert_allclose(bank.weights.sum(1), 1.0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "adapter_bank" and len(manifest["backbone_sha256"]) == 64
    assert manifest["held_out"]["rule"] == "grid"
    assert stats["num_rows"] == 10
    rows = tracker.tables["adapter_bank/tasks_shard_0.json"]  # one row per task, not a metric per task index
    assert [r["task_id"] for r in rows] == list(range(5)) and "valid_ndcg_at_10" in rows[0]
    assert not any(key.startswith("test_") for key in rows[0])  # the test split is read once, by evaluate
    assert stats["checkpoint_spread"] > 0 and stats["checkpoint_last_move"] > 0
    assert all(step is None or "adapters_train_loss_mean" in m for m, step in tracker.metrics)
    assert not any("@" in name for m, _ in tracker.metrics for name in m)  # MLflow rejects '@'
    assert tracker.params["adapters.epochs"] == 3


def test_shards_merge_into_the_unsharded_bank(tmp_path, synthetic_prepared, backbone_dir, stage_cfg):
    whole, _ = run(tmp_path, synthetic_prepared, backbone_dir, stage_cfg, "whole")
    shards = [run(tmp_path, synthetic_prepared, backbone_dir, stage_cfg, f"s{i}", shard_index=i, num_shards=2)[0]
              for i in range(2)]
    merge_adapter_banks(shards, tmp_path / "merged")
    a, b = load_bank(whole), load_bank(tmp_path / "merged")
    pd.testing.assert_frame_equal(a.tasks.drop(columns="shard"), b.tasks.drop(columns="shard"),
                                  check_exact=False, atol=1e-4)
    torch.testing.assert_close(a.params, b.params, atol=1e-4, rtol=1e-4)
    with pytest.raises(ArtifactError, match="shards 0..1"):
        merge_adapter_banks([shards[0], shards[0]], tmp_path / "bad")


def test_tampered_backbone_is_rejected(tmp_path, synthetic_prepared, backbone_dir, stage_cfg):
    import shutil

    copy = tmp_path / "backbone"
    shutil.copytree(backbone_dir, copy)
    with open(copy / "backbone.safetensors", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        run(tmp_path, synthetic_prepared, copy, stage_cfg, "x")


def test_bad_config_and_data_are_named(tmp_path, synthetic_prepared, backbone_dir, stage_cfg, prepared):
    with pytest.raises(ConfigError, match="unknown utility"):
        run(tmp_path, synthetic_prepared, backbone_dir, dataclasses.replace(stage_cfg, utilities=["acc"]), "x")
    no_cats = dataclasses.replace(prepared, item_categories=prepared.item_categories.copy())
    no_cats.item_categories[[3, 7]] = False
    with pytest.raises(DataValidationError, match="2 of 60 items have none"):
        check_data_for_utilities(no_cats, ["accuracy", "diversity"])
    check_data_for_utilities(no_cats, ["accuracy"])  # accuracy alone needs no categories
    with pytest.raises(DataValidationError, match="two user groups"):
        check_data_for_utilities(dataclasses.replace(prepared, user_group=None), ["accuracy", "fairness"])


def test_three_utilities_end_to_end(tmp_path, synthetic_prepared, backbone_dir, stage_cfg):
    cfg = dataclasses.replace(stage_cfg, utilities=["accuracy", "diversity", "fairness"], grid_size=2,
                              num_random_tasks=1, checkpoints_per_task=1)
    out, _ = run(tmp_path, synthetic_prepared, backbone_dir, cfg, "p3")
    bank = load_bank(out)
    assert bank.weights.shape == (4, 3)  # 3 grid vertices + 1 random draw
    assert "valid_ndcg_gap@10" in bank.tasks
