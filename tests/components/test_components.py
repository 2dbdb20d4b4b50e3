"""Every component as a plain function (``python_func``, what KFP runs in the pod) on one shared
tiny run, in pipeline order; then each is checked: its outputs, its KFP metadata and its MLflow
run. The whole pipeline through KFP's local runner is the slow end-to-end test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp import dsl
from mlflow import MlflowClient

import components
from padirec.config import config_to_json, load_config
from padirec.tracking import KFP_RUN_ID_ENV

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # the shared run trains every stage: about 45 s here
OUTPUTS = {  # component -> (output artifact, the manifest kind it holds, or a file it holds)
    "prepare_data": ("data", "prepared_data"),
    "train_backbone": ("backbone", "backbone"),
    "build_adapters": ("bank", "adapter_bank"),
    "train_generator": ("generator", "generator"),
    "compare_response_time": ("timing", "report"),  # the response-time part of the report
    "evaluate": ("report", "report"),
    "register_and_promote": ("system", "system"),
}


class FinalStatus:
    """What KFP hands the exit handler (``dsl.PipelineTaskFinalStatus``), as the local runner does."""

    state = "SUCCEEDED"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("components")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = load_config(ROOT / "configs" / "smoke.yaml", {
        "tracking.uri": uri, "run_dir": str(root / "runs"), "backbone.epochs": 2, "generator.train_steps": 50,
        "promotion.min_avg_hv": 0.0, "promotion.min_pearson_ra": -1.0, "promotion.min_pearson_rd": -1.0})
    cj = config_to_json(cfg)
    comps = {name: comp.python_func for name, comp in components.build("padirec:test").items()}
    art = {name: kind(uri=str(root / name)) for name, kind in (
        ("data", dsl.Dataset), ("backbone", dsl.Model), ("bank", dsl.Dataset), ("generator", dsl.Model),
        ("timing", dsl.Artifact), ("report", dsl.Artifact), ("system", dsl.Model))}
    shards = [dsl.Dataset(uri=str(root / f"shard{i}")) for i in range(cfg.adapters.num_shards)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KFP_RUN_ID_ENV, "components-test")
        comps["prepare_data"](config_json=cj, data_version="v1", data=art["data"])
        comps["train_backbone"](config_json=cj, data=art["data"], backbone=art["backbone"])
        assert comps["plan_shards"](config_json=cj) == list(range(len(shards)))
        for i, shard in enumerate(shards):
            comps["build_adapters"](config_json=cj, shard_index=i, data=art["data"], backbone=art["backbone"], bank=shard)
        art["bank_shards"] = shards
        comps["train_generator"](config_json=cj, banks=shards, bank=art["bank"], generator=art["generator"])
        inputs = {k: art[k] for k in ("data", "backbone", "bank", "generator")}
        comps["compare_response_time"](config_json=cj, **inputs, timing=art["timing"])
        comps["evaluate"](config_json=cj, **inputs, timing=art["timing"], report=art["report"])
        comps["register_and_promote"](config_json=cj, data=art["data"], backbone=art["backbone"],
                                      generator=art["generator"], report=art["report"], system=art["system"])
        comps["finish_run"](config_json=cj, status=FinalStatus())
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    return {"art": art, "runs": {r.info.run_name: r for r in runs}, "cfg": cfg}


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_component_writes_its_outputs_and_tracks(tiny_run, name):
    artifact, holds = OUTPUTS[name]
    folder = Path(tiny_run["art"][artifact].path)
    assert json.loads((folder / "manifest.json").read_text())["kind"] == holds
    metadata = json.dumps(tiny_run["art"][artifact].metadata)
    assert "NaN" not in metadata and "Infinity" not in metadata  # KFP metadata cannot hold them
    run_names = [f"build_adapters_{i}" for i in range(2)] if name == "build_adapters" else [name]
    for run_name in run_names:
        run = tiny_run["runs"][run_name]
        assert run.info.status == "FINISHED", run_name
        assert run.data.tags["padirec.step"] == run_name and int(run.data.tags["torch_threads"]) >= 1


def test_metadata_a_user_sees_in_kfp(tiny_run):
    art = tiny_run["art"]
    assert art["data"].metadata["data_version"] == "v1" and art["data"].metadata["num_users"] > 0
    assert art["backbone"].metadata["cache"] in ("hit", "miss") and "test_ndcg@10" in art["backbone"].metadata
    assert art["system"].metadata["registered"] is True


def test_exit_handler_closes_the_parent(tiny_run):
    parent = tiny_run["runs"][tiny_run["cfg"].name]
    assert parent.info.status == "FINISHED" and parent.data.tags.get("padirec.role") == "pipeline"
