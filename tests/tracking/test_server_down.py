"""A tracking server that goes down mid-step: the step fails within the bound its settings give
(``tracking.http_*``), in one line naming the server; the local runner's failure lookup does not
wait on it. A real MLflow server, stopped (connection refused) or frozen (every attempt times out)."""

import contextlib
import dataclasses
import os
import signal
import time

import psutil
import pytest
from mlflow import MlflowClient

from padirec.config import Config, TrackingConfig
from padirec.tracking import TrackingError, step_tracker
from padirec.tracking.core import HTTP_ENV, call_bound_s
from pipelines.run_local import _step_failure
from tests.servers import free_port, mlflow_server

# starts servers or processes, or trains a stage: over the fast suite's budget (make test runs it)
pytestmark = pytest.mark.slow
SMALL = dict(http_max_retries=2, http_backoff_factor=1, http_timeout_s=2)
PASSWORD = "s3cret-pw-down"


@pytest.fixture(autouse=True)
def _own_environment(monkeypatch):
    # the settings and the URI's credentials land in os.environ: give them back after each test
    for name in (*HTTP_ENV.values(), "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PADIREC_KFP_RUN_ID", "run-down-1")


def _server_pids(uri: str) -> list[int]:
    port = int(uri.rsplit(":", 1)[1])
    return [c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
            and c.status == psutil.CONN_LISTEN and c.pid]


@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_a_step_whose_server_goes_down_fails_within_its_bound_in_one_line(tmp_path, how):
    tracking = TrackingConfig(experiment="down", **SMALL)
    bound = call_bound_s(tracking)
    assert bound < 15  # (2 + 1) attempts x 2 s + one backoff of 2 s (+1 s jitter)
    with contextlib.ExitStack() as server:
        uri = server.enter_context(mlflow_server(tmp_path / "mlflow"))
        cfg = dataclasses.replace(Config(), run_dir=str(tmp_path),
                                  tracking=dataclasses.replace(tracking, uri=uri.replace("://", f"://u:{PASSWORD}@")))
        frozen = []
        with pytest.raises(TrackingError) as failed, step_tracker(cfg, "evaluate") as tracker:
            tracker.log_metrics({"before": 1.0})
            if how == "stopped":
                server.close()
            else:  # the process lives and its port accepts, but nothing answers
                frozen = _server_pids(uri)
                assert frozen
                for pid in frozen:
                    os.kill(pid, signal.SIGSTOP)
            started = time.monotonic()
            try:
                tracker.log_metrics({"after": 1.0})
            finally:
                elapsed = time.monotonic() - started
                for pid in frozen:
                    os.kill(pid, signal.SIGCONT)
    message = str(failed.value)
    assert elapsed < min(30, bound + 5), elapsed
    assert "\n" not in message and uri in message and PASSWORD not in message, message
    assert ("Connection refused" if how == "stopped" else "timed out") in message, message
    assert os.environ[HTTP_ENV["http_max_retries"]] == "2"  # what MLflow's client read


def test_the_step_run_of_a_server_that_comes_back_was_left_running_not_lied_about(tmp_path):
    # the step does not wait out the retries to mark its run: the run stays RUNNING for the exit handler
    tracking = TrackingConfig(experiment="down", **SMALL)
    port = free_port()
    with mlflow_server(tmp_path / "mlflow", port=port) as uri:
        cfg = dataclasses.replace(Config(), run_dir=str(tmp_path), tracking=dataclasses.replace(tracking, uri=uri))
        with pytest.raises(TrackingError), step_tracker(cfg, "evaluate") as tracker:
            for pid in _server_pids(uri):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            tracker.log_metrics({"after": 1.0})
    with mlflow_server(tmp_path / "mlflow", port=port) as uri:  # the same store, back
        assert MlflowClient(uri).get_run(tracker.run_id).info.status == "RUNNING"


def test_the_runners_failure_lookup_names_a_server_that_is_down_at_once(tmp_path):
    uri = f"http://u:{PASSWORD}@127.0.0.1:{free_port()}"  # nothing listens there
    cfg = dataclasses.replace(Config(), run_dir=str(tmp_path), tracking=TrackingConfig(uri=uri, **SMALL))
    started = time.monotonic()
    reason = _step_failure(cfg, "run-down-1", "evaluate")
    assert time.monotonic() - started < 10
    assert "not reachable" in reason and uri.replace(f"u:{PASSWORD}@", "") in reason and PASSWORD not in reason
