"""The prepare_data component: as a plain function (python_func) and through the KFP local runner."""

import json
from pathlib import Path

import pytest
from kfp import dsl, local

import components
from padirec.config import config_to_json, load_config

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path):
    cfg = load_config(ROOT / "configs" / "smoke.yaml", {"tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                                        "run_dir": str(tmp_path)})
    return config_to_json(cfg)


def test_python_func_writes_the_prepared_folder_and_tracks(tmp_path):
    comp = components.build("padirec:test")["prepare_data"]
    out = dsl.Dataset(uri=str(tmp_path / "data"))
    comp.python_func(config_json=_config(tmp_path), data_version="v1", data=out)
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["kind"] == "prepared_data" and out.metadata["num_users"] == manifest["stats"]["num_users"]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("padirec-smoke").experiment_id])
    step = next(r for r in runs if r.info.run_name == "prepare_data")
    assert step.data.metrics["num_users"] == manifest["stats"]["num_users"]
    assert step.inputs.dataset_inputs, "the prepared dataset is logged with mlflow.log_input"


@pytest.mark.slow  # KFP's local runner starts a Python process per task
def test_component_through_local_runner(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    comp = components.build("padirec:test")["prepare_data"]
    task = comp(config_json=_config(tmp_path), data_version="v1")
    manifest = json.loads((Path(task.outputs["data"].path) / "manifest.json").read_text())
    assert manifest["stats"]["num_users"] > 0
