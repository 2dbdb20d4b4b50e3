"""No NaN or inf reaches KFP metadata or MLflow: an undefined figure is null with its reason, and
the gate fails before registration when its inputs are undefined. The whole pipeline on a table
with 1,269 categories (where every correlation is undefined) finishes, exit handler included."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.json_format import SerializeToJsonError
from kfp.local.executor_output_utils import runtime_artifact_to_dsl_artifact
from kfp.pipeline_spec import pipeline_spec_pb2
from mlflow import MlflowClient

from padirec.config import Config, TrackingConfig, load_config
from padirec.evaluation.summary import summarise
from padirec.runtime.artifacts import write_manifest
from padirec.runtime.finite import finite, finite_metadata
from padirec.tracking import KFP_RUN_ID_ENV, step_tracker
from padirec.tracking.registration import register_and_promote_stage

ROOT = Path(__file__).resolve().parents[2]


def kfp_roundtrip(metadata: dict) -> dict:
    """What KFP's local runner does with a step's output artifact metadata."""
    artifact = pipeline_spec_pb2.RuntimeArtifact(name="a", uri="/tmp/a")
    artifact.metadata.update(metadata)
    return runtime_artifact_to_dsl_artifact(artifact).metadata


def test_finite_metadata_passes_kfp_where_nan_fails():
    raw = {"version": "3", "registered": True, "score": 0.25, "avg_hv": float("nan"), "pearson_ra": float("inf"),
           "nested": {"x": float("-inf"), "n": 2}}
    with pytest.raises(SerializeToJsonError, match="Fail to serialize (NaN|Infinity)"):
        kfp_roundtrip(raw)  # the crash of the issue
    clean = finite_metadata(raw, {"avg_hv": "no task has a defined point"})
    assert kfp_roundtrip(clean) == clean
    assert clean["avg_hv"] is None and clean["pearson_ra"] is None and clean["score"] == 0.25
    assert clean["undefined"] == "avg_hv: no task has a defined point; pearson_ra: infinite"
    assert clean["nested"] == {"x": None, "n": 2, "undefined": "x: infinite"}
    json.dumps(clean, allow_nan=False)
    assert [finite(v) for v in (1, "2.5", "nan", None, float("inf"), True)] == [1.0, 2.5, None, None, None, 1.0]


def test_the_summary_says_why_a_figure_is_undefined():
    tasks = np.array([[w, 1 - w] for w in (0.0, 0.5, 1.0)])
    rows = lambda acc, div: [{"ndcg@10": a, "hr@10": a, "alpha_ndcg@10": d} for a, d in zip(acc, div, strict=True)]  # noqa: E731
    s = summarise({"retrain": rows([0.1, 0.1, 0.1], [0.9, 0.8, 0.7]), "padirec": rows([0.1, 0.2, 0.3], [0.5, 0.5, 0.5])},
                  tasks, ["accuracy", "diversity"])
    assert math.isnan(s["padirec"]["pearson_ra"]) and math.isnan(s["padirec"]["pearson_rd"])
    assert s["padirec"]["undefined"]["pearson_ra"].startswith("retrain ndcg@10 is the same (0.1) on every task")
    assert s["padirec"]["undefined"]["pearson_rd"].startswith("padirec alpha_ndcg@10 is the same (0.5) on every task")
    assert s["retrain"]["undefined"] == {"pearson_ra": s["retrain"]["undefined"]["pearson_ra"]}  # r-d is defined
    alone = summarise({"padirec": rows([0.1, 0.2, 0.3], [0.5, 0.4, 0.3])}, tasks, ["accuracy", "diversity"])
    assert alone["padirec"]["undefined"]["pearson_ra"] == "no retrain ndcg@10 in the sweep to correlate with"


@pytest.fixture
def stage_inputs(tmp_path, synthetic_prepared):
    folders = {}
    for kind in ("backbone", "generator"):
        folders[kind] = tmp_path / kind
        folders[kind].mkdir()
        (folders[kind] / "weights.bin").write_bytes(kind.encode())
        write_manifest(folders[kind], kind, ["weights.bin"], config={})
    report = tmp_path / "report"
    report.mkdir()
    reason = "retrain ndcg@10 is the same (0) on every task: a correlation with it is undefined"
    (report / "report.json").write_text(json.dumps({
        "k": 10, "tasks": [[0.5, 0.5], [1.0, 0.0]],
        "methods": {"padirec": [{"ndcg@10": 0.0, "alpha_ndcg@10": 1.0}, {"ndcg@10": 0.0, "alpha_ndcg@10": 1.0}]},
        "summary": {"padirec": {"avg_hv": 0.0, "pearson_ra": None, "pearson_rd": None,
                                "undefined": {"pearson_ra": reason}}}}))
    return dict(data_dir=synthetic_prepared, backbone_dir=folders["backbone"], generator_dir=folders["generator"],
                report_dir=report), reason


def test_the_gate_fails_before_registration_when_a_figure_is_undefined(tmp_path, stage_inputs, monkeypatch):
    inputs, reason = stage_inputs
    monkeypatch.setenv(KFP_RUN_ID_ENV, "kfp-nan")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = dataclasses.replace(Config(), tracking=TrackingConfig(uri=uri, experiment="nan", registered_model="padirec-nan"))
    with step_tracker(cfg, "register_and_promote") as tracker:
        result = register_and_promote_stage(**inputs, system_dir=tmp_path / "system", cfg=cfg, tracker=tracker)
    assert result["registered"] is False and result["decision"] == "rejected"
    assert result["reason"].startswith("quality gate failed before registration: pearson_ra undefined (retrain ndcg@10")
    assert "pearson_rd undefined (null in the report)" in result["reason"]
    assert result["pearson_ra"] is None and reason in result["undefined"]
    assert kfp_roundtrip(result) == result
    client = MlflowClient(uri)
    assert client.search_registered_models() == [] and client.search_model_versions("name = 'padirec-nan'") == []
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["promotion"] == "rejected"
    assert not any(v != v for v in run.data.metrics.values())
    system = json.loads((tmp_path / "system" / "manifest.json").read_text())  # valid JSON: no NaN in it
    assert system["stats"]["pearson_ra"] is None


def _sparse_tables(folder: Path) -> dict:
    """40 users over 1,269 items, each item its own category: no method ranks a test item in its
    top 10, so NDCG is 0 on every task and every Pearson correlation is undefined."""
    import random

    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "".join(
        f"u{u},i{rng.randrange(1269)},{1000 + t}\n" for u in range(40) for t in range(10)))
    (folder / "items.csv").write_text("item_id,categories,title\n" + "".join(f"i{i},c{i},t{i}\n" for i in range(1269)))
    return {"data.source": "tables", "data.interactions": str(folder / "interactions.csv"),
            "data.items": str(folder / "items.csv")}


@pytest.mark.slow
def test_a_table_with_1269_categories_runs_to_the_end_without_nan(tmp_path):
    from pipelines.run_local import run_local

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(ROOT / "configs" / "smoke.yaml", {
        "run_dir": str(tmp_path / "runs"), "tracking.uri": uri, "tracking.registered_model": "padirec-nan",
        "adapters.num_shards": 1, **_sparse_tables(tmp_path / "tables")})
    folder = run_local(cfg)  # used to crash in KFP ("Fail to serialize NaN") after registering
    for output in folder.rglob("executor_output.json"):
        text = output.read_text()
        assert not any(c in text for c in ("NaN", "Infinity")), output
    [system] = folder.rglob("register-and-promote/executor_output.json")
    metadata = json.loads(system.read_text())["artifacts"]["system"]["artifacts"][0]["metadata"]
    assert metadata["registered"] is False and "undefined" in metadata["reason"]
    client = MlflowClient(uri)
    assert client.search_model_versions("name = 'padirec-nan'") == []
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    assert {r.info.status for r in runs} == {"FINISHED"}  # the exit handler closed the parent
    assert all(math.isfinite(v) for r in runs for v in r.data.metrics.values())
