"""MLflow tracking: a parent run per pipeline run, a nested run per step, FAILED on error,
a clear error naming the URI when the server is down; and against a real server."""

import dataclasses

import pytest
from mlflow import MlflowClient

from padirec.config import Config, TrackingConfig
from padirec.errors import PadirecError
from padirec.tracking import finish_pipeline_run, step_tracker


def _cfg(uri):
    return dataclasses.replace(Config(), tracking=TrackingConfig(uri=uri, experiment="t"))


def _runs(uri):
    c = MlflowClient(uri)
    return c.search_runs([c.get_experiment_by_name("t").experiment_id])


def _exercise(uri):
    cfg = _cfg(uri)
    with step_tracker(cfg, "kfp-1", "prepare_data") as t:
        t.log_params({"a": {"b": 1}})
        t.log_metrics({"ndcg@10": 0.5}, step=3)
    with pytest.raises(ValueError), step_tracker(cfg, "kfp-1", "train_backbone"):
        raise ValueError("boom")
    finish_pipeline_run(cfg, "kfp-1", "FAILED")
    runs = {r.info.run_name: r for r in _runs(uri)}
    parent = runs["padirec"]
    assert runs["prepare_data"].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert runs["prepare_data"].data.params["a.b"] == "1"
    assert runs["prepare_data"].data.metrics["ndcg_at_10"] == 0.5
    assert runs["prepare_data"].info.status == "FINISHED"
    assert runs["train_backbone"].info.status == "FAILED"
    assert parent.info.status == "FAILED" and parent.data.tags["kfp.run_id"] == "kfp-1"
    assert len(runs) == 3  # one parent, found again by every step


def test_local_sqlite_store(tmp_path):
    _exercise(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_server_down_names_the_uri():
    from tests.servers import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PadirecError, match=f"MLflow tracking server at {uri} is not reachable"):
        with step_tracker(_cfg(uri), "kfp-1", "prepare_data"):
            pass


@pytest.mark.slow
def test_real_tracking_server(tmp_path):
    from tests.servers import mlflow_server

    with mlflow_server(tmp_path / "mlflow") as uri:
        _exercise(uri)
