"""Parent runs no exit handler closed, on a cluster (``padirec.tracking.orphans``): a real SQLite
MLflow store, KFP's answer given as a function (no KFP API server here)."""

import pytest
from mlflow import MlflowClient

from padirec.tracking import MlflowTracker, pipeline_run_id
from padirec.tracking.liveness import RUNNER_ENV
from padirec.tracking.orphans import GONE, close_ended_runs

EXP = "padirec"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv(RUNNER_ENV, raising=False)  # cluster runs: no local runner tag
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = {}
    for kfp_id in ("run-ended", "run-going", "run-deleted", "run-done"):
        parent = pipeline_run_id(uri, EXP, kfp_id)
        steps = [MlflowTracker.start(uri, EXP, step, parent_run_id=parent,
                                     tags={"kfp.run_id": kfp_id, "padirec.step": step}).run_id
                 for step in ("prepare_data", "train_backbone")]
        MlflowTracker(uri, steps[0]).end("FINISHED")  # a step that ended well stays as it is
        runs[kfp_id] = (parent, steps)
    MlflowTracker(uri, runs["run-done"][0]).end("FINISHED")  # its exit handler ran
    monkeypatch.setenv(RUNNER_ENV, "somehost:1:1")
    runs["local-x"] = (pipeline_run_id(uri, EXP, "local-x"), [])  # a local run: its runner judges it
    return uri, runs


def _status(client, run_id):
    run = client.get_run(run_id)
    return run.info.status, run.data.tags.get("kfp.state"), run.data.tags.get("padirec.failure", "")


def test_runs_whose_kfp_run_ended_or_is_gone_are_closed_and_the_others_left_alone(store):
    uri, runs = store
    client = MlflowClient(uri)
    asked = []
    answers = {"run-ended": "FAILED", "run-going": "RUNNING", "run-deleted": None}

    def kfp_state(run_id):
        asked.append(run_id)
        return answers[run_id]

    verdicts = {v.kfp_run_id: v for v in close_ended_runs(client, EXP, kfp_state)}
    assert sorted(asked) == ["run-deleted", "run-ended", "run-going"]  # never a closed run, never a local one
    assert {k: (v.closed, v.kfp_state, v.step_runs) for k, v in verdicts.items()} == {
        "run-ended": (True, "FAILED", 1), "run-deleted": (True, GONE, 1), "run-going": (False, "RUNNING", 0)}
    for kfp_id, state in (("run-ended", "FAILED"), ("run-deleted", GONE)):
        parent, (finished, killed) = runs[kfp_id]
        status, kfp_tag, failure = _status(client, parent)
        assert (status, kfp_tag) == ("FAILED", state) and "exit handler never closed" in failure
        assert _status(client, killed)[0] == "FAILED" and "still open" in _status(client, killed)[2]
        assert _status(client, finished)[0] == "FINISHED"
    assert "no such run" in _status(client, runs["run-deleted"][0])[2]
    going, (_, still) = runs["run-going"]
    assert _status(client, going)[0] == _status(client, still)[0] == "RUNNING"
    assert _status(client, runs["local-x"][0])[0] == "RUNNING"
    assert close_ended_runs(client, EXP, kfp_state)[0].kfp_run_id == "run-going"  # a second pass: nothing more


def test_a_dry_run_closes_nothing_and_a_kfp_that_cannot_say_closes_nothing(store):
    uri, runs = store
    client = MlflowClient(uri)
    verdicts = close_ended_runs(client, EXP, lambda run_id: "SUCCEEDED", dry_run=True)
    assert len(verdicts) == 3 and not any(v.closed for v in verdicts)

    def broken(run_id):
        raise ConnectionError("KFP is down")

    with pytest.raises(ConnectionError):
        close_ended_runs(client, EXP, broken)
    assert all(_status(client, runs[k][0])[0] == "RUNNING" for k in ("run-ended", "run-going", "run-deleted"))
