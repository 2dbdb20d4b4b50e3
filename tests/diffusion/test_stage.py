import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch

from padirec.adapters.bank import load_bank
from padirec.diffusion.config import GeneratorConfig
from padirec.diffusion.generator import Generator
from padirec.diffusion.stage import generate_adapters, train_generator_stage
from padirec.diffusion.synthetic_bank import make_synthetic_bank
from padirec.errors import ArtifactError
from padirec.runtime.artifacts import read_manifest, write_manifest

LAYOUT = [{"name": "W1", "shape": [4, 16]}, {"name": "b1", "shape": [4]},
          {"name": "W2", "shape": [16, 4]}, {"name": "b2", "shape": [16]}]


class RecordingTracker:
    def __init__(self):
        self.metrics, self.params, self.artifacts = [], {}, []

    def log_params(self, params):
        self.params.update(params)

    def log_metrics(self, metrics, step=None):
        self.metrics.append((step, metrics))

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append(str(path))

    def log_artifacts(self, path, artifact_path=None):
        self.artifacts.append(str(path))

    def set_tags(self, tags):
        pass


def write_bank(out, bank, shuffle=True):
    """An adapter_bank artifact as docs/internals.md describes it (rows listed out of order)."""
    out.mkdir(parents=True)
    safetensors.torch.save_file({"params": bank.params.contiguous()}, out / "adapters.safetensors")
    n = len(bank.params)
    tasks = pd.DataFrame({
        "row": range(n), "task_id": bank.task_id.tolist(), "checkpoint": [i % 3 for i in range(n)],
        "held_out": bank.held_out.tolist(), "w": [list(map(float, w)) for w in bank.weights],
        "shard": 0, "valid_ndcg@10": 0.1, "valid_alpha_ndcg@10": 0.2,
    })
    if shuffle:
        tasks = tasks.sample(frac=1.0, random_state=0)
    tasks.to_parquet(out / "tasks.parquet")
    write_manifest(out, "adapter_bank", ["adapters.safetensors", "tasks.parquet"], config={},
                   layout=bank.layout, utilities=["accuracy", "diversity"], backbone_sha256="x")
    return out


@pytest.fixture(scope="module")
def bank():
    return make_synthetic_bank(num_tasks=20, checkpoints=3, layout=LAYOUT, seed=1)


def test_load_bank_orders_rows(bank, tmp_path):
    loaded = load_bank(write_bank(tmp_path / "bank", bank))
    torch.testing.assert_close(loaded.params, bank.params)
    torch.testing.assert_close(loaded.weights.float(), bank.weights)
    assert loaded.held_out.tolist() == bank.held_out.tolist()
    assert loaded.layout == LAYOUT and loaded.utilities == ["accuracy", "diversity"]


def test_stage_trains_saves_and_reports(bank, tmp_path):
    bank_dir = write_bank(tmp_path / "bank", bank)
    cfg = GeneratorConfig(size="tiny", token_size=16, num_train_timesteps=100, train_steps=30, batch_size=16,
                          log_every=10, num_inference_steps=5)
    tracker = RecordingTracker()
    summary = train_generator_stage(bank_dir, tmp_path / "gen", cfg, seed=0, device="cpu",
                                    tracker=tracker)
    for key in ("final_loss", "train_seconds", "num_train_rows", "heldout_rel_l2",
                "heldout_rel_l2_nearest", "heldout_rel_l2_train_mean", "heldout_tasks"):
        assert key in summary, key
    # the default targets: one row per training task, the mean of its checkpoints
    assert summary["num_train_rows"] == len(np.unique(bank.task_id[~bank.held_out])) == 9
    assert summary["heldout_tasks"] == 11
    every = train_generator_stage(bank_dir, tmp_path / "gen_all", dataclasses.replace(cfg, targets="checkpoints"))
    assert every["num_train_rows"] == int((~bank.held_out).sum()) == 27
    assert [s for s, _ in tracker.metrics if s is not None] == [10, 20, 30]
    assert tracker.params["generator.train_steps"] == 30
    manifest = read_manifest(tmp_path / "gen", kind="generator")
    assert manifest["layout"] == LAYOUT and manifest["utilities"] == ["accuracy", "diversity"]
    assert manifest["config"]["train_steps"] == 30 and manifest["stats"]["heldout_tasks"] == 11
    json.dumps(manifest)  # statistics are plain JSON
    w = torch.tensor([[0.25, 0.75], [0.9, 0.1]])
    out = generate_adapters(tmp_path / "gen", w, seed=4, device="cpu")
    assert out.shape == (2, bank.params.shape[1])
    gen = Generator.load(tmp_path / "gen")
    n = gen.cfg.samples_per_task
    # the served adapter is the mean of samples_per_task samples drawn in one pass
    torch.testing.assert_close(out, gen.sample(w, n=n, seed=4).reshape(2, n, -1).mean(1))


def test_bad_banks_are_named(bank, tmp_path):
    bank_dir = write_bank(tmp_path / "bank", bank)
    with pytest.raises(ArtifactError, match="no manifest"):
        train_generator_stage(tmp_path / "nowhere", tmp_path / "gen", GeneratorConfig())
    with pytest.raises(ArtifactError, match="expected a 'adapter_bank'"):
        write_manifest(tmp_path / "other", "backbone", [], config={})
        load_bank(tmp_path / "other")
    tasks = pd.read_parquet(bank_dir / "tasks.parquet").drop(columns=["held_out"])
    tasks.to_parquet(bank_dir / "tasks.parquet")
    write_manifest(bank_dir, "adapter_bank", ["adapters.safetensors", "tasks.parquet"], config={},
                   layout=LAYOUT, utilities=["accuracy", "diversity"], backbone_sha256="x")
    with pytest.raises(ArtifactError, match="held_out"):
        load_bank(bank_dir)
