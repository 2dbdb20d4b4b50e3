"""SIGINT and SIGTERM to a local runner stop its step processes (and only them): real processes,
a runner that waits on its steps as KFP's SubprocessRunner does. The whole pipeline under signals:
test_chaos.py."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from padirec.tracking.liveness import RUNNER_ENV, process_token
from pipelines.interrupt import step_processes

ROOT = Path(__file__).resolve().parents[2]
RUNNER = """
import dataclasses, os, subprocess, sys
from padirec.config import Config, TrackingConfig
from padirec.tracking.liveness import RUNNER_ENV, process_token
from pipelines.interrupt import stop_steps_on_signal

token = process_token()
os.environ[RUNNER_ENV] = token  # the steps inherit it
cfg = dataclasses.replace(Config(), tracking=TrackingConfig(uri="none"))
sleep = [sys.executable, "-c", "import signal, sys, time; sys.argv[1:] and signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"]
with stop_steps_on_signal(cfg, token, grace=3):
    polite = subprocess.Popen(sleep)
    stubborn = subprocess.Popen([*sleep, "ignore-sigterm"])  # needs SIGKILL
    unrelated = subprocess.Popen(sleep, env={k: v for k, v in os.environ.items() if k != RUNNER_ENV},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # outlives the runner
    print(polite.pid, stubborn.pid, unrelated.pid, flush=True)
    polite.wait()  # where KFP's runner waits on a step
"""

# starts servers or processes, or trains a stage: over the fast suite's budget (make test runs it)
pytestmark = pytest.mark.slow


def _alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_runner_stops_its_steps_and_only_them(sig):
    runner = subprocess.Popen([sys.executable, "-c", RUNNER], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    polite, stubborn, unrelated = map(int, runner.stdout.readline().split())
    try:
        token = process_token(runner.pid)
        time.sleep(0.5)
        assert sorted(step_processes(token)) == sorted([polite, stubborn])
        started = time.monotonic()
        runner.send_signal(sig)  # to the runner alone, as `kill` does (not to its process group)
        assert runner.wait(timeout=30) == 128 + sig
        assert time.monotonic() - started < 15  # SIGTERM, then SIGKILL after the 3 s grace
        assert not _alive(polite) and not _alive(stubborn) and step_processes(token) == []
        assert _alive(unrelated)  # not a step of this run
        err = runner.stderr.read()
        assert f"{signal.Signals(sig).name}: stopping the step processes" in err
        assert "interrupted: 2 step process(es) stopped" in err and "Traceback" not in err
    finally:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()


def test_step_processes_are_found_by_their_runner_token():
    token = process_token()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, RUNNER_ENV: token})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, RUNNER_ENV: token + "0"})
    try:
        time.sleep(0.3)
        assert step_processes(token) == [child.pid]  # this process and the other runner's step excluded
    finally:
        for p in (child, other):
            p.kill()
            p.wait()
    assert step_processes(token) == []


TRACKED_RUNNER = """
import dataclasses, os, subprocess, sys
from padirec.config import Config, TrackingConfig
from padirec.tracking import pipeline_run_id
from padirec.tracking.liveness import RUNNER_ENV, process_token
from pipelines.interrupt import stop_steps_on_signal

uri, live = sys.argv[1], sys.argv[2] == "live"
token = process_token()
os.environ.update({RUNNER_ENV: token, "PADIREC_KFP_RUN_ID": "run-interrupted"})
cfg = dataclasses.replace(Config(), tracking=TrackingConfig(uri=uri, experiment="t", http_max_retries=1, http_timeout_s=2))
parent = pipeline_run_id(uri, "t", "run-interrupted") if live else "-"
with stop_steps_on_signal(cfg, token, grace=3):
    step = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print(parent, flush=True)
    step.wait()
"""


@pytest.mark.parametrize("server", ["live", "down"])
def test_the_interrupted_runner_reports_the_runs_true_state(tmp_path, server):
    from mlflow import MlflowClient

    from tests.servers import free_port

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}" if server == "live" else f"http://127.0.0.1:{free_port()}"
    runner = subprocess.Popen([sys.executable, "-c", TRACKED_RUNNER, uri, server], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        parent = runner.stdout.readline().strip()
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 128 + signal.SIGTERM
        line = [x for x in runner.stderr.read().splitlines() if "interrupted: 1 step process(es) stopped" in x]
        assert len(line) == 1, line
        if server == "live":
            assert line[0].endswith("their MLflow runs are FAILED")
            assert MlflowClient(uri).get_run(parent).info.status == "FAILED"
        else:  # nothing could close them: the line must not claim they are FAILED
            assert "could not be closed and are still RUNNING" in line[0] and uri in line[0], line[0]
            assert "are FAILED" not in line[0]
    finally:
        with contextlib.suppress(ProcessLookupError):  # its steps, had it died early
            os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
