"""A step that dies leaves its MLflow run FAILED, not RUNNING. Real child processes open a step
run and are killed: SIGTERM (what Kubernetes sends on pod deletion, eviction, timeouts) ends the
run FAILED at once; SIGKILL (OOM) leaves it RUNNING until the step's retry or the exit handler
closes it."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from padirec.config import Config, TrackingConfig
from padirec.tracking import DEAD_RUN, KFP_RUN_ID_ENV, finish_pipeline_run, step_tracker

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import dataclasses, pathlib, sys, time
from padirec.config import Config, TrackingConfig
from padirec.tracking import step_tracker

uri, step, ready = sys.argv[1:4]
cfg = dataclasses.replace(Config(), tracking=TrackingConfig(uri=uri, experiment="t"))
with step_tracker(cfg, step) as tracker:
    tracker.log_metrics({"progress": 0.5})
    tmp = pathlib.Path(ready + ".tmp")
    tmp.write_text(tracker.run_id)
    tmp.rename(ready)  # whole or absent: the test reads it as soon as it exists
    try:
        time.sleep(300)
    except Exception:
        pass  # a stage's broad handler must not swallow the termination
"""

# starts servers or processes, or trains a stage: over the fast suite's budget (make test runs it)
pytestmark = pytest.mark.slow


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv(KFP_RUN_ID_ENV, "kfp-dying")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _cfg(uri):
    return dataclasses.replace(Config(), tracking=TrackingConfig(uri=uri, experiment="t"))


def _start(uri, step, tmp_path, env):
    ready = tmp_path / f"{step}.ready"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, uri, step, str(ready)], env=env, cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    return proc, ready


def _wait_ready(proc, ready, timeout=120):
    deadline = time.time() + timeout
    while not ready.exists():
        assert proc.poll() is None, f"step process exited early:\n{proc.stderr.read()}"
        assert time.time() < deadline, "step process did not open its run"
        time.sleep(0.1)
    return ready.read_text()


def _kill(proc, sig):
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc.returncode


def test_sigterm_ends_the_step_run_failed(tmp_path, env):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc, ready = _start(uri, "train_backbone", tmp_path, env)
    run_id = _wait_ready(proc, ready)
    assert _kill(proc, signal.SIGTERM) == 128 + signal.SIGTERM  # StepTerminated exits like SIGTERM would
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["padirec.failure"].startswith("SIGTERM")
    assert run.data.metrics["progress"] == 0.5


def test_sigkill_is_closed_by_the_retry_and_by_the_exit_handler(tmp_path, env):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = _cfg(uri)
    with step_tracker(cfg, "prepare_data"):  # the first step makes the parent, as in the pipeline
        pass
    children = [_start(uri, step, tmp_path, env) for step in ("train_backbone", "evaluate")]
    killed = [_wait_ready(proc, ready) for proc, ready in children]
    assert [_kill(proc, signal.SIGKILL) for proc, _ in children] == [-signal.SIGKILL] * 2
    client = MlflowClient(uri)
    assert [client.get_run(r).info.status for r in killed] == ["RUNNING", "RUNNING"]  # nothing could run

    with step_tracker(cfg, "train_backbone") as retry:  # KFP retries the killed step
        first = client.get_run(killed[0])
        assert first.info.status == "FAILED" and first.data.tags["padirec.failure"] == DEAD_RUN
        assert client.get_run(killed[1]).info.status == "RUNNING"  # another step's run: not the retry's
    assert client.get_run(retry.run_id).data.tags["padirec.attempt"] == "2"

    parent = finish_pipeline_run(cfg, "FAILED")
    second = client.get_run(killed[1])
    assert second.info.status == "FAILED" and second.data.tags["padirec.failure"] == DEAD_RUN
    assert client.get_run(retry.run_id).info.status == "FINISHED"
    assert client.get_run(parent).info.status == "FAILED"
    runs = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
