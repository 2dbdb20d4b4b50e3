"""Training loop and stage: early stopping keeps the best weights, seeding, the output folder."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from padirec.backbones import BackboneConfig, build_backbone, load_backbone
from padirec.backbones import train as train_mod
from padirec.backbones.stage import train_backbone_stage
from padirec.backbones.tisasrec import TiSASRecConfig
from padirec.backbones.train import Evaluator, train_backbone
from padirec.data.dataset import load_prepared

FAST = {"num_layers": 1, "dropout": 0.0, "lr": 5e-3, "batch_size": 128, "train_stride": 5, "patience": 100,
        "models": {"tisasrec": TiSASRecConfig(max_time_interval=64)}}


@pytest.fixture(scope="module")
def data(small_data):
    return small_data


def test_early_stopping_restores_best_weights(data, monkeypatch):
    scripted = iter([0.1, 0.5, 0.2, 0.3, 0.4, 0.9])
    snapshots = []

    def fake_eval(self, model, per_user=False):
        snapshots.append(copy.deepcopy(model.state_dict()))
        return {"ndcg@10": next(scripted), "hr@10": 0.0, "alpha_ndcg@10": 0.0}

    monkeypatch.setattr(train_mod.Evaluator, "__call__", fake_eval)
    cfg = BackboneConfig(model="gru4rec", epochs=6, patience=3, num_layers=1, lr=1e-2)
    model = build_backbone("gru4rec", data.num_items, cfg, max_len=10)
    result = train_backbone(model, data, cfg, 10, seed=0, device=torch.device("cpu"))
    assert result.epochs == 5 and result.best_epoch == 2 and result.best_valid["ndcg@10"] == 0.5
    final = model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[-1][k]) for k in final)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5]


def test_same_seed_same_model(data):
    cfg = BackboneConfig(model="sasrec", epochs=2, **FAST)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_backbone("sasrec", data.num_items, cfg, max_len=10)
        train_backbone(model, data, cfg, 10, seed=3, device=torch.device("cpu"))
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


class RecordingTracker:
    def __init__(self):
        self.metrics, self.params, self.artifacts = [], {}, []

    def log_params(self, params):
        self.params.update(params)

    def log_metrics(self, metrics, step=None):
        self.metrics.append((step, dict(metrics)))

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append(path)

    def log_artifacts(self, path, artifact_path=None):
        self.artifacts.append(path)

    def set_tags(self, tags):
        pass


def test_stage_writes_the_backbone_folder(synthetic_prepared, tmp_path):
    tracker = RecordingTracker()
    cfg = BackboneConfig(model="sasrec", epochs=3, **FAST)
    metrics = train_backbone_stage(synthetic_prepared, tmp_path / "bb", cfg, max_len=10, seed=0,
                                   device="cpu", tracker=tracker)
    out = tmp_path / "bb"
    assert {p.name for p in out.iterdir()} >= {"backbone.safetensors", "metrics.json", "history.json", "manifest.json"}
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["valid"].keys() == on_disk["test"].keys() == {"ndcg@10", "hr@10", "alpha_ndcg@10"}
    assert on_disk["epochs"] == 3 and on_disk["model"] == "sasrec" and on_disk["seconds_per_epoch"] > 0
    assert len(json.loads((out / "history.json").read_text())) == 3
    assert metrics["test"] == on_disk["test"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"backbone.safetensors", "metrics.json", "history.json"}
    assert manifest["config"]["max_len"] == 10 and manifest["config"]["backbone"]["model"] == "sasrec"
    # the reloaded model reproduces the reported test metrics
    data = load_prepared(synthetic_prepared)
    again = Evaluator(data, "test", 10, torch.device("cpu"))(load_backbone(out))
    assert again == pytest.approx(on_disk["test"])
    steps = [s for s, _ in tracker.metrics if s is not None]
    assert steps == [1, 2, 3] and all("@" not in k for _, m in tracker.metrics for k in m)
    assert tracker.params["backbone.model"] == "sasrec"


def test_evaluator_reuses_each_batchs_ideal_and_recomputes_it_for_non_finite_scores(data):
    """The ideal alpha-DCG is computed on the first pass and reused: later passes give the same
    per-user figures as the shared metrics computed from scratch, batch by batch; a model with NaN
    scores gets its candidates' own ideal, not the cached one."""
    from padirec.core.metrics import evaluate_scores, mask_history

    class NaNFirstUser(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def user_representation(self, seqs, times):
            return self.inner.user_representation(seqs, times)

        def score_all(self, h):
            out = self.inner.score_all(h).clone()
            out[0, 1:] = float("nan")
            return out

    def from_scratch(ev, model):
        parts = []
        with torch.no_grad():
            for s in range(0, len(ev.targets), ev.batch_size):
                e = min(s + ev.batch_size, len(ev.targets))
                scores = model.score_all(model.user_representation(ev.seqs[s:e], ev.times[s:e]))
                keep = (ev.rows >= s) & (ev.rows < e)
                parts.append(evaluate_scores(mask_history(scores, ev.rows[keep] - s, ev.cols[keep]), ev.targets[s:e],
                                             ev.item_categories, per_user=True))
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}

    torch.manual_seed(0)
    model = build_backbone("sasrec", data.num_items, BackboneConfig(dim=16), 20).eval()
    ev = Evaluator(data, "valid", 20, torch.device("cpu"), batch_size=7)  # several batches
    first, second = ev(model, per_user=True), ev(model, per_user=True)
    assert len(ev._ideal) == -(-len(ev.targets) // 7)
    for key, value in from_scratch(ev, model).items():
        assert torch.equal(first[key], value) and torch.equal(second[key], value), key
    nan_model = NaNFirstUser(model).eval()
    got = ev(nan_model, per_user=True)
    for key, value in from_scratch(ev, nan_model).items():
        assert torch.equal(got[key], value), key
