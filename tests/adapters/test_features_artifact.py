"""The ``features`` artifact: computed once, read back exactly, refused when it belongs to other
inputs or settings, and a bank trained from it equals one trained from the backbone."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from padirec.adapters.bank import load_bank
from padirec.adapters.features import EvalSplit, Features
from padirec.adapters.features_stage import (
    TENSORS,
    features_stage,
    frozen_features,
    load_features,
    save_features,
)
from padirec.adapters.stage import build_adapters_stage
from padirec.adapters.train import backbone_topk
from padirec.backbones.checkpoint import backbone_sha256
from padirec.errors import ArtifactError
from tests.fixtures import MAX_LEN


def assert_same(a: Features, b: Features) -> None:
    for name in ("train_h", "train_user", "train_target", "item_embedding", "item_categories", "user_group",
                 "seen_keys"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or (x.dtype == y.dtype and torch.equal(x, y)), name
    for split in ("valid", "test"):
        for name in EvalSplit.__dataclass_fields__:
            x, y = getattr(a.split(split), name), getattr(b.split(split), name)
            assert (x is None and y is None) or (x.dtype == y.dtype and torch.equal(x, y)), f"{split}.{name}"
    assert sorted(a.topk_cache) == sorted(b.topk_cache)
    for n in a.topk_cache:
        assert torch.equal(a.topk_cache[n], b.topk_cache[n]), n


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, synthetic_prepared, backbone_dir):
    from padirec.adapters.config import AdapterConfig

    cfg = AdapterConfig(candidates="topk", topk_candidates=5)
    out = tmp_path_factory.mktemp("features")
    stats = features_stage(synthetic_prepared, backbone_dir, out, cfg, MAX_LEN, "cpu")
    return out, stats, cfg


def test_the_stage_writes_what_the_backbone_computes(artifact, features, prepared, backbone_dir):
    out, stats, _ = artifact
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "features" and list(manifest["files"]) == [TENSORS]
    assert manifest["backbone_sha256"] == backbone_sha256(backbone_dir)
    assert manifest["data_checksum"] == prepared.manifest["data_checksum"]
    assert (manifest["max_len"], manifest["feature_stride"], manifest["topk"]) == (MAX_LEN, 1, [5])
    assert stats["num_examples"] == features.train_h.shape[0] and stats["bytes"] == manifest["files"][TENSORS]["bytes"]
    expected = features.to("cpu")  # the session's features, with the stage's one top-k list
    expected.topk_cache.clear()
    backbone_topk(expected, 5)
    loaded = load_features(out, backbone_sha256=backbone_sha256(backbone_dir),
                           data_checksum=prepared.manifest["data_checksum"], max_len=MAX_LEN, feature_stride=1, topk=5)
    assert loaded.user_group is not None  # the synthetic users have groups: they travel too
    assert_same(loaded, expected)
    assert backbone_topk(loaded, 5) is loaded.topk_cache[5]  # consumers reuse the list, never recompute it


def test_round_trip_without_groups_or_top_k(tmp_path, features):
    bare = dataclasses.replace(features, user_group=None, valid=dataclasses.replace(features.valid, groups=None),
                               test=dataclasses.replace(features.test, groups=None))
    assert not bare.topk_cache  # replace starts a Features without the cache
    save_features(bare, tmp_path, backbone_sha256="b" * 64, data_checksum="d" * 64, max_len=MAX_LEN, feature_stride=1)
    loaded = load_features(tmp_path)
    assert loaded.user_group is None and loaded.valid.groups is None and not loaded.topk_cache
    assert_same(loaded, bare)


@pytest.mark.parametrize(("expect", "says"), [
    ({"backbone_sha256": "f" * 64}, "backbone_sha256 "),
    ({"data_checksum": "e" * 64}, "data_checksum "),
    ({"max_len": MAX_LEN + 1}, f"max_len {MAX_LEN}, but this step has {MAX_LEN + 1}"),
    ({"feature_stride": 4}, "feature_stride 1, but this step has 4"),
    ({"topk": 7}, r"n in \[5\], not adapters.topk_candidates 7"),
])
def test_a_mismatch_is_one_line(artifact, expect, says):
    with pytest.raises(ArtifactError, match=says) as err:
        load_features(artifact[0], **expect)
    assert "\n" not in str(err.value) and str(artifact[0]) in str(err.value)


def test_a_changed_file_is_refused(tmp_path, artifact):
    import shutil

    copy = tmp_path / "features"
    shutil.copytree(artifact[0], copy)
    with open(copy / TENSORS, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_features(copy)
    (copy / "manifest.json").write_text((artifact[0] / "manifest.json").read_text().replace('"features"', '"backbone"'))
    with pytest.raises(ArtifactError, match="expected a 'features' artifact"):
        load_features(copy)


def test_features_of_another_backbone_are_refused(tmp_path, features, prepared, backbone_dir, artifact):
    cfg = artifact[2]
    save_features(features, tmp_path, backbone_sha256="f" * 64, data_checksum=prepared.manifest["data_checksum"],
                  max_len=MAX_LEN, feature_stride=1)
    with pytest.raises(ArtifactError, match="backbone_sha256 ffffffffffff..."):
        frozen_features(prepared, backbone_dir, tmp_path, cfg, MAX_LEN, "cpu")
    # the consumer's own backbone and data: the artifact is read, equal to computing here
    computed = frozen_features(prepared, backbone_dir, None, cfg, MAX_LEN, "cpu")
    backbone_topk(computed, cfg.topk_candidates)
    assert_same(frozen_features(prepared, backbone_dir, artifact[0], cfg, MAX_LEN, "cpu"), computed)


@pytest.mark.slow  # trains the bank twice (about 10 s on the shared 2-core box)
def test_a_bank_from_the_artifact_equals_a_bank_from_the_backbone(tmp_path, synthetic_prepared, backbone_dir,
                                                                  small_cfg):
    cfg = dataclasses.replace(small_cfg, epochs=3, checkpoints_per_task=2, grid_size=3, num_random_tasks=2)
    features_stage(synthetic_prepared, backbone_dir, tmp_path / "features", cfg, MAX_LEN, "cpu")
    banks = []
    for name, features_dir in (("computed", None), ("read", tmp_path / "features")):
        build_adapters_stage(synthetic_prepared, backbone_dir, tmp_path / name, cfg, MAX_LEN, seed=0, device="cpu",
                             features_dir=features_dir)
        banks.append(load_bank(tmp_path / name))
    assert torch.equal(banks[0].params, banks[1].params)
    other = dataclasses.replace(cfg, topk_candidates=cfg.topk_candidates + 1)  # settings the artifact lacks
    with pytest.raises(ArtifactError, match="not adapters.topk_candidates 6"):
        build_adapters_stage(synthetic_prepared, backbone_dir, tmp_path / "x", other, MAX_LEN, seed=0, device="cpu",
                             features_dir=tmp_path / "features")
