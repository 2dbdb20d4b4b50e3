"""Local runs that die: a step stops when its runner is gone, and the next run closes the MLflow
runs a dead runner left RUNNING. Real processes, a real SQLite store."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from padirec.tracking import DEAD_RUN, MlflowTracker, pipeline_run_id
from padirec.tracking.liveness import (
    RUNNER_DIED,
    RUNNER_ENV,
    RUNNER_TAG,
    close_abandoned_runs,
    is_alive,
    process_token,
    runner_tags,
)

ROOT = Path(__file__).resolve().parents[2]
STEP = """
import dataclasses, pathlib, sys, time
from padirec.config import Config, TrackingConfig
from padirec.tracking import step_tracker

uri, ready = sys.argv[1:3]
cfg = dataclasses.replace(Config(), tracking=TrackingConfig(uri=uri, experiment="t"))
with step_tracker(cfg, "train_backbone") as tracker:
    pathlib.Path(ready).write_text(tracker.run_id)
    time.sleep(120)
"""


def _dead_token():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    token = process_token(proc.pid)
    proc.kill()
    proc.wait()
    return token, proc


def test_tokens_tell_a_live_process_from_a_dead_one():
    assert is_alive(process_token())
    token, _ = _dead_token()
    assert not is_alive(token)
    host, pid, started = process_token().rsplit(":", 2)
    assert not is_alive(f"{host}:{pid}:{int(started or 0) + 1}")  # the pid reused by another process
    assert is_alive(f"another-host-{socket.gethostname()}:1:1")  # another machine's runner: not ours to judge
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    token = process_token(zombie.pid)
    time.sleep(1.0)  # exited, not reaped yet
    assert not is_alive(token)
    zombie.wait()


@pytest.mark.slow
def test_a_step_stops_when_its_runner_dies(tmp_path):
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # the store exists before two processes race to make it
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(ROOT), RUNNER_ENV: process_token(runner.pid)}
    step = subprocess.Popen([sys.executable, "-c", STEP, uri, str(ready)], env=env, cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not ready.exists():
            assert step.poll() is None, step.stderr.read()
            assert time.time() < deadline
            time.sleep(0.1)
        run_id = ready.read_text()
        time.sleep(2)
        assert step.poll() is None  # the runner lives: the step goes on
        runner.kill()  # SIGKILL: the runner can stop nothing
        runner.wait()
        assert step.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        for p in (runner, step):
            if p.poll() is None:
                p.kill()
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["padirec.failure"] == "SIGTERM: the local runner (padirec run) died"


def test_the_next_run_closes_what_a_dead_runner_left_open(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    dead, _ = _dead_token()
    opened = {}
    for name, token in (("dead", dead), ("alive", process_token())):
        kfp_id = f"local-{name}"
        monkeypatch.setenv(RUNNER_ENV, token)
        assert runner_tags() == {RUNNER_TAG: token}
        parent = pipeline_run_id(uri, "t", kfp_id)  # what the first step makes, tagged with its runner
        tags = {"kfp.run_id": kfp_id}
        MlflowTracker.start(uri, "t", "prepare_data", parent, {**tags, "padirec.step": "prepare_data"}).end()
        # left RUNNING, as a step killed with its runner leaves it
        opened[name] = MlflowTracker.start(uri, "t", "train_backbone", parent, {**tags, "padirec.step": "train_backbone"}).run_id
    client = MlflowClient(uri)
    assert close_abandoned_runs(uri, "t") == ["local-dead"]
    runs = {(r.data.tags["kfp.run_id"], r.info.run_name): r for r in client.search_runs(
        [client.get_experiment_by_name("t").experiment_id])}
    parent = runs[("local-dead", "padirec")]
    assert parent.info.status == "FAILED" and parent.data.tags["padirec.failure"] == RUNNER_DIED
    assert parent.data.tags["kfp.state"] == "FAILED"
    step = runs[("local-dead", "train_backbone")]
    assert step.info.status == "FAILED" and step.data.tags["padirec.failure"] == DEAD_RUN
    assert runs[("local-dead", "prepare_data")].info.status == "FINISHED"
    # a live runner's runs are left alone
    assert runs[("local-alive", "padirec")].info.status == "RUNNING"
    assert client.get_run(opened["alive"]).info.status == "RUNNING"
    assert close_abandoned_runs(uri, "t") == [] and close_abandoned_runs(uri, "no-such-experiment") == []


def test_no_runner_no_tag(monkeypatch):
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    assert runner_tags() == {}


@pytest.fixture(autouse=True)
def _no_plugin(monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
