"""Real servers for tests, on 127.0.0.1 only: SeaweedFS (S3) and an MLflow tracking server.

Each is a context manager that starts the server, waits until it answers, yields its address and
stops it (and everything it started) on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
S3_KEY, S3_SECRET = "padirec-test-key", "padirec-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, what: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not start in {timeout}s:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def seaweedfs(workdir: Path, keep_data: bool = False) -> Iterator[dict]:
    """``weed mini`` with S3 on a free port; yields ``{"endpoint", "key", "secret", "proc"}``.
    ``keep_data`` leaves the data folder for a later server on the same ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "padirec", "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    s3_port = free_port()
    ports = {name: free_port() for name in ("master", "volume", "filer", "admin", "webdav")}
    cmd = [str(BIN / "weed"), "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-s3.config={config}", f"-s3.port={s3_port}", f"-master.port={ports['master']}",
           f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}", f"-admin.port={ports['admin']}",
           f"-webdav.port={ports['webdav']}"]
    log = workdir / "weed.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3_port}"

    def ready() -> bool:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET,
                     region_name="us-east-1").list_buckets()
        return True

    try:
        _wait(ready, "SeaweedFS", proc, log, timeout=90)
        yield {"endpoint": endpoint, "key": S3_KEY, "secret": S3_SECRET, "proc": proc}
    finally:
        _stop(proc)
        if not keep_data:
            shutil.rmtree(workdir / "data", ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(workdir: Path, artifacts_destination: str | None = None, env: dict | None = None) -> Iterator[str]:
    """``mlflow server`` with a SQLite backend on a free port; yields its URI."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    dest = artifacts_destination or str(workdir / "artifacts")
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{workdir.resolve() / 'mlflow.db'}",
           "--artifacts-destination", dest, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    full_env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                **(env or {})}
    log = workdir / "mlflow-server.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(uri + "/health", timeout=2) as r:
            return r.status == 200

    try:
        _wait(ready, "MLflow server", proc, log, timeout=90)
        yield uri
    finally:
        _stop(proc)


@contextlib.contextmanager
def recording_kfp_api() -> Iterator[tuple[str, list]]:
    """A stand-in for the KFP API server on 127.0.0.1 that records each request and answers
    like the server would for experiments, runs and recurring runs. Yields ``(host, log)``."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    log: list = []

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            log.append(("GET", self.path, None))
            self._reply({})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            log.append(("POST", self.path, body))
            if self.path.endswith("/experiments"):
                self._reply({"experiment_id": "exp-1", **body})
            elif self.path.endswith("/recurringruns"):
                self._reply({"recurring_run_id": "rr-1", **body})
            elif self.path.endswith("/runs"):
                self._reply({"run_id": "run-1", **body})
            else:
                self._reply({})

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
