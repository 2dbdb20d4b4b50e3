"""Real servers for tests, on 127.0.0.1 only: SeaweedFS (S3), an MLflow tracking server and
PostgreSQL (Debian's server binaries).

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
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
S3_KEY, S3_SECRET = "padirec-test-key", "padirec-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    """GET ``url`` (POST ``body`` as JSON when given): the status and the JSON reply, errors too."""
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


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
def mlflow_server(workdir: Path, artifacts_destination: str | None = None, env: dict | None = None, *,
                  backend_uri: str | None = None, allowed_hosts: str | None = None,
                  port: int | None = None, app_name: str | None = None) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (a free port unless ``port``); yields its URI.

    The backend is SQLite in ``workdir`` unless ``backend_uri`` (e.g. ``postgres()["uri"]``).
    ``allowed_hosts`` is passed as ``MLFLOW_SERVER_ALLOWED_HOSTS``, as the manifests do; it
    replaces mlflow's default (localhost, private IPs), so list ``127.0.0.1:*`` to keep calling
    the yielded URI without a Host header. ``app_name``: ``--app-name`` (``basic-auth``). Readiness is checked on ``/health``, which any host may call."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    dest = artifacts_destination or str(workdir / "artifacts")
    backend = backend_uri or f"sqlite:///{workdir.resolve() / 'mlflow.db'}"
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", backend,
           "--artifacts-destination", dest, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           *(["--app-name", app_name] if app_name else [])]
    full_env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                **({"MLFLOW_SERVER_ALLOWED_HOSTS": allowed_hosts} if allowed_hosts else {}), **(env or {})}
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


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server binaries (``initdb``, ``postgres``): the newest installed, or None."""
    if os.environ.get("PADIREC_PG_BIN"):
        return Path(os.environ["PADIREC_PG_BIN"])
    versions = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if p.parts[-3].isdigit()]
    if versions:  # Debian's layout: /usr/lib/postgresql/<major>/bin
        return max(versions, key=lambda b: int(b.parts[-2]))
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextlib.contextmanager
def postgres(workdir: Path, user: str = "mlflow", password: str = "padirec-test-pw",
             database: str = "mlflow") -> Iterator[dict]:
    """A PostgreSQL server on 127.0.0.1, a free port, with one database; yields ``{"uri" (SQLAlchemy,
    psycopg 3), "host", "port", "user", "password", "database", "proc"}``, and stops it and removes
    its data on exit. PostgreSQL refuses to run as root, so as root it runs as the ``postgres``
    user, on a data folder under the system temp folder (pytest's ``tmp_path`` is root-only)."""
    import pwd
    import tempfile

    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql, or set PADIREC_PG_BIN)")
    workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="padirec-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    log = workdir / "postgres.log"
    try:
        (root / "pw").write_text(password)
        if as_user:
            os.chown(root / "pw", owner.pw_uid, owner.pw_gid)
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={root / 'pw'}",
                        "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync"],
                       check=True, stdout=log.open("w"), stderr=subprocess.STDOUT)
        proc = subprocess.Popen([*as_user, str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                                 "-p", str(port), "-k", str(data), "-c", "fsync=off"],
                                stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    pg_env = {**os.environ, "PGPASSWORD": password}
    client = ["-h", "127.0.0.1", "-p", str(port), "-U", user]

    def ready() -> bool:
        return subprocess.run([str(bin_dir / "pg_isready"), *client, "-d", "postgres"],
                              capture_output=True).returncode == 0

    try:
        _wait(ready, "PostgreSQL", proc, log, timeout=60)
        subprocess.run([str(bin_dir / "createdb"), *client, database], check=True, env=pg_env,
                       capture_output=True)
        yield {"uri": f"postgresql+psycopg://{user}:{password}@127.0.0.1:{port}/{database}",
               "host": "127.0.0.1", "port": port, "user": user, "password": password, "database": database,
               "proc": proc}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # "fast" shutdown: does not wait for clients to leave
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def recording_kfp_api() -> Iterator[tuple[str, list]]:
    """A stand-in for the KFP API server on 127.0.0.1 that records each request and answers
    like the server would for experiments, runs and recurring runs. Yields ``(host, log)``, the
    log's entries ``(method, path, body, headers)``."""
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
            log.append(("GET", self.path, None, dict(self.headers)))
            self._reply({})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            log.append(("POST", self.path, body, dict(self.headers)))
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
