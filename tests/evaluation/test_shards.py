"""The evaluate stage split by users: shards of the test users, merged, give the unsharded report."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import safetensors.numpy
import torch

from padirec.errors import ArtifactError
from padirec.evaluation.shards import (
    evaluate_shard,
    figure_differences,
    merge_shards,
    shard_features,
    time_responses,
    user_range,
)
from padirec.evaluation.stage import EvaluationInputs, evaluate_stage
from padirec.evaluation.sweep import SplitEvaluator
from padirec.evaluation.trained_inputs import band_generator_stage, retrain_ceiling_stage
from padirec.methods.registry import METHODS
from padirec.runtime.artifacts import read_manifest


def test_user_ranges_cover_the_users_once():
    for n, count in ((10, 3), (7, 7), (943, 4)):
        ranges = [user_range(n, i, count) for i in range(count)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges[:-1], ranges[1:], strict=True))
        assert max(hi - lo for lo, hi in ranges) - min(hi - lo for lo, hi in ranges) <= 1


def test_a_shard_evaluates_its_users_as_the_whole_split_does(tiny):
    f = tiny.features
    scores = torch.randn(f.test.h.shape[0], f.num_items + 1, generator=torch.Generator().manual_seed(0))
    whole = SplitEvaluator(f, "test").per_user(scores)
    n = f.test.h.shape[0]
    lo, hi = user_range(n, 1, 3)
    part = SplitEvaluator(shard_features(f, lo, hi), "test").per_user(scores[lo:hi])
    for key, values in part.items():
        assert torch.equal(values, whole[key][lo:hi]), key


@pytest.mark.slow  # every method: one unsharded evaluation and three shards (about a minute)
def test_merged_shards_are_the_unsharded_report(tiny, tmp_path):
    cfg = copy.deepcopy(tiny.cfg)
    cfg.evaluation.methods = list(METHODS)
    band_generator_stage(tiny.bank_dir, tmp_path / "band_generator", cfg)
    retrain_ceiling_stage(tiny.data_dir, tiny.backbone_dir, None, tmp_path / "ceiling", cfg)
    folders = EvaluationInputs(tiny.data_dir, tiny.backbone_dir, tiny.bank_dir, tiny.generator_dir,
                               band_generator=tmp_path / "band_generator", ceiling=tmp_path / "ceiling",
                               time_responses=True)
    whole = evaluate_stage(folders, tmp_path / "whole", cfg)

    cfg.evaluation.shards = 3
    parts = []
    for i in range(3):  # as the pipeline runs them: only the first times new tasks
        parts.append(tmp_path / f"shard{i}")
        evaluate_shard(dataclasses.replace(folders, time_responses=i == 0), parts[-1], cfg, i)
        assert read_manifest(parts[-1], kind="evaluation_shard")
    merged = merge_shards(parts[::-1], tmp_path / "merged", cfg)  # any order: the merge sorts them

    assert figure_differences(merged, whole) == []
    assert figure_differences({"a": [1.0]}, {"a": [1.0 + 1e-6]}) != []  # the comparison can fail
    assert "skipped" not in merged["protocols"]["band"] and "pearson_ceiling" in merged["summary"]["retrain"]
    assert merged["analyses"]["robustness"] and merged["analyses"]["case_study"]
    # coverage is no mean over users: it survives the merge through each shard's listed items
    cv = ("cv_div@10", "cv_nov@10")
    assert all(set(cv) <= set(row) for rows in merged["methods"].values() for row in rows)
    assert all(set(cv) <= set(row) for rows in merged["protocols"]["band"]["methods"].values() for row in rows)
    assert all(set(cv) <= set(row) for row in merged["summary"]["retrain"]["pearson_ceiling"]["metrics"])
    arrays = safetensors.numpy.load_file(str(parts[0] / "evidence.safetensors"))
    assert arrays["tail"].dtype == bool and arrays["listed/grid/retrain"].shape == (len(whole["tasks"]),
                                                                                     len(arrays["tail"]))
    assert set(merged["response_time"]) == set(whole["response_time"])
    shards = merged["analyses"]["shards"]
    assert shards["count"] == 3 and sum(shards["users"]) == whole["uncertainty"]["users"]
    assert shards["adapter_max_difference"] == 0.0  # every shard prepared every task alike
    assert read_manifest(tmp_path / "merged", kind="report")

    with pytest.raises(ArtifactError, match="expected shards 0..2"):
        merge_shards(parts[:2], tmp_path / "short", cfg)

    # as the pipeline: new tasks timed on every user in a step of their own, beside the shards
    timings = time_responses(dataclasses.replace(folders, time_responses=False), tmp_path / "timings", cfg)
    assert set(timings) == set(whole["response_time"]) and read_manifest(tmp_path / "timings", kind="response_time")
    beside = merge_shards(parts, tmp_path / "beside", cfg, timings_dir=tmp_path / "timings")
    assert figure_differences(beside, whole) == []
    assert beside["response_time"] == timings and beside["analyses"]["shards"]["timed_users"] == whole["uncertainty"]["users"]
