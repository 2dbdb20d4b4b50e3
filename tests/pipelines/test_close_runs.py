"""``padirec close-runs`` end to end: a real SQLite MLflow store, and a stand-in KFP API on
127.0.0.1 that answers run lookups as KFP's does (a state, or 404 for a deleted run); and the
one-line error when the KFP API cannot be reached, with nothing closed."""

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mlflow import MlflowClient

from padirec.tracking import pipeline_run_id
from padirec.tracking.liveness import RUNNER_ENV
from pipelines.cli import main
from tests.servers import free_port

STATES = {"run-ended": "CANCELED", "run-going": "RUNNING"}  # any other id: 404


@contextlib.contextmanager
def kfp_api():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            run_id = self.path.rstrip("/").rsplit("/", 1)[-1]
            healthz = self.path.endswith("/healthz")  # kfp.Client asks it first (multi-user or not)
            found = healthz or (run_id in STATES and self.path.startswith("/apis/v2beta1/runs/"))
            body = json.dumps({"multi_user": False} if healthz else {"run_id": run_id, "state": STATES[run_id]} if found
                              else {"error": "run not found", "code": 5}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def parents(tmp_path, monkeypatch):
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, {k: pipeline_run_id(uri, "padirec", k) for k in ("run-ended", "run-going", "run-deleted")}


def test_close_runs_asks_kfp_and_closes_the_ended_and_the_gone(parents, capsys):
    uri, ids = parents
    with kfp_api() as host:
        assert main(["close-runs", "--host", host, "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    client = MlflowClient(uri)
    status = {k: (client.get_run(v).info.status, client.get_run(v).data.tags.get("kfp.state")) for k, v in ids.items()}
    assert status == {"run-ended": ("FAILED", "CANCELED"), "run-deleted": ("FAILED", "GONE"), "run-going": ("RUNNING", None)}
    assert "closed as FAILED: run-ended (KFP: CANCELED)" in out and "left RUNNING: run-going (KFP: RUNNING)" in out
    assert "2 pipeline run(s) closed, 3 RUNNING looked at" in out


def test_an_unreachable_kfp_api_is_one_line_and_closes_nothing(parents, capsys):
    uri, ids = parents
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["close-runs", "--host", host, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("padirec: error: cannot reach http://127.0.0.1:") and "\n" not in err, err
    assert host.rsplit(":", 1)[1] in err and "Traceback" not in err
    assert {MlflowClient(uri).get_run(v).info.status for v in ids.values()} == {"RUNNING"}
