"""Under KFP's MLflow plugin (KEP-12862) steps log into the nested run KFP made for the task
(``MLFLOW_RUN_ID``) and padirec creates no parent of its own. The plugin is simulated against a real
SQLite store: a parent and nested runs made as KFP's API server and driver would, and its env vars."""

import dataclasses

import pandas as pd
import pytest
from mlflow import MlflowClient

from padirec.config import Config, TrackingConfig
from padirec.tracking import KFP_RUN_ID_ENV, TrackingError, finish_pipeline_run, step_tracker


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A KFP run as the plugin leaves it: ``client``, ``uri``, ``parent`` and ``task(name)``, which
    makes a task's nested run and points ``MLFLOW_RUN_ID`` at it."""
    uri = f"sqlite:///{tmp_path / 'kfp-mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("Default-kfp", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(exp, run_name="kfp-run", tags={"pipeline_run_id": "kfp-9"}).info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", exp)
    monkeypatch.setenv(KFP_RUN_ID_ENV, "kfp-9")

    def task(name):
        run_id = client.create_run(exp, run_name=name, tags={"mlflow.parentRunId": parent}).info.run_id
        monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
        return run_id

    return dataclasses.make_dataclass("Plugin", ["client", "uri", "parent", "task"])(client, uri, parent, task)


def _cfg(uri=""):
    return dataclasses.replace(Config(), tracking=TrackingConfig(uri=uri, experiment="padirec"))


def _all_runs(client):
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_steps_log_into_the_plugins_runs_and_create_none(plugin, tmp_path):
    prepare = plugin.task("prepare-data")
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"user_id": [1, 1], "item_id": [2, 3], "timestamp": [0, 1]}).to_parquet(data / "train.parquet")
    with step_tracker(_cfg(), "prepare_data") as t:
        assert t.run_id == prepare
        t.log_params({"data": {"source": "synthetic"}})
        t.log_metrics({"ndcg@10": 0.25})
        t.log_dataset(data, {"config": {"source": "synthetic"}, "data_checksum": "ab" * 16})
    run = plugin.client.get_run(prepare)
    assert run.info.status == "RUNNING"  # KFP's launcher ends it, not padirec
    assert run.data.metrics == {"ndcg_at_10": 0.25} and run.data.params == {"data.source": "synthetic"}
    assert run.data.tags["padirec.step"] == "prepare_data" and run.data.tags["kfp.run_id"] == "kfp-9"
    assert run.data.tags["padirec.package_path"].endswith("padirec")
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["synthetic"]

    backbone = plugin.task("train-backbone")
    with pytest.raises(RuntimeError), step_tracker(_cfg(), "train_backbone"):
        raise RuntimeError("out of patience")
    failed = plugin.client.get_run(backbone)
    assert failed.info.status == "FAILED" and failed.data.tags["padirec.failure"] == "RuntimeError: out of patience"

    plugin.task("finish-run")
    assert finish_pipeline_run(_cfg(), "FAILED") == plugin.parent
    parent = plugin.client.get_run(plugin.parent)
    assert parent.info.status == "RUNNING" and parent.data.tags["kfp.state"] == "FAILED"  # the API server ends it
    assert plugin.client.get_experiment_by_name("padirec") is None
    assert {r.info.run_name for r in _all_runs(plugin.client)} == {"kfp-run", "prepare-data", "train-backbone", "finish-run"}


def test_the_plugins_server_wins_over_the_configured_one(plugin, tmp_path):
    task = plugin.task("evaluate")
    other = tmp_path / "configured.db"
    with step_tracker(_cfg(f"sqlite:///{other}"), "evaluate") as t:
        t.log_metrics({"hv": 0.5})
    assert plugin.client.get_run(task).data.metrics == {"hv": 0.5}
    assert not other.exists()


def test_the_plugins_endpoint_wins_over_the_pipelines_mlflow_tracking_uri(plugin, tmp_path, monkeypatch):
    """Both KFP's driver and the compiled pipeline (padirec-env) set MLFLOW_TRACKING_URI; whichever
    Kubernetes keeps, the plugin's endpoint in KFP_MLFLOW_TRACKING_URI decides."""
    task = plugin.task("evaluate")
    pipelines_own = tmp_path / "padirec-env.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{pipelines_own}")
    monkeypatch.setenv("KFP_MLFLOW_TRACKING_URI", plugin.uri)
    with step_tracker(_cfg(), "evaluate") as t:
        t.log_metrics({"hv": 0.25})
    assert plugin.client.get_run(task).data.metrics == {"hv": 0.25}
    assert not pipelines_own.exists()


def test_an_unknown_plugin_run_is_named(plugin, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "0" * 32)
    with pytest.raises(TrackingError, match=f"MLFLOW_RUN_ID={'0' * 32} .* is not a run on sqlite"):
        with step_tracker(_cfg(), "evaluate"):
            pass


def test_without_mlflow_run_id_padirec_makes_the_parent(plugin, monkeypatch):
    plugin.task("evaluate")
    monkeypatch.delenv("MLFLOW_RUN_ID")  # same server, plugin off
    with step_tracker(_cfg(), "evaluate"):
        pass
    mine = plugin.client.get_experiment_by_name("padirec")
    runs = {r.info.run_name: r for r in plugin.client.search_runs([mine.experiment_id])}
    assert runs["evaluate"].data.tags["mlflow.parentRunId"] == runs["padirec"].info.run_id
    assert runs["padirec"].data.tags["padirec.role"] == "pipeline"
