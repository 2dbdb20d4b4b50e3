"""MLflow behind its own auth (``--app-name basic-auth``), users and grants in the real PostgreSQL,
set up as the manifests do (padirec.tracking.auth): anonymous requests get 401, the serving user
reads ``champion`` but cannot move it, the pipeline user logs a step's run and registers and
promotes, and no password reaches a param, a tag or a log."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from padirec.tracking import auth
from tests.servers import mlflow_server, postgres, postgres_bin

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries are not installed")]
ADMIN = ("padirec-admin", "admin-Pw-0x5e3cret")
PIPELINE = ("padirec-pipeline", "pipe-Pw-0x5e3cret")
SERVING = ("padirec-serving", "serve-Pw-0x5e3cret")
MODEL = "padirec-recommender"


def status(url: str, user: tuple[str, str] | None = None) -> int:
    import base64

    request = urllib.request.Request(url)
    if user:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(user).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def client_as(uri: str, user: tuple[str, str], monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])
    return MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("auth")
    with postgres(work / "pg") as pg:
        ini = auth.write_config(work / "basic_auth.ini", pg["uri"])
        env = {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN[0],
               "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1], "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-flask-key"}
        with mlflow_server(work / "mlflow", backend_uri=pg["uri"], env=env, app_name="basic-auth") as uri:
            yield {"uri": uri, "log": work / "mlflow" / "mlflow-server.log", "pg": pg, "ini": ini, "env": env}


def test_config_file_is_owner_only_and_keeps_a_percent(tmp_path):
    import configparser

    path = auth.write_config(tmp_path / "a.ini", "postgresql+psycopg://u:p%40ss@h:5432/mlflow")
    assert path.stat().st_mode & 0o777 == 0o600
    parser = configparser.ConfigParser()  # interpolation on, as mlflow reads it
    parser.read(path)
    assert parser["mlflow"]["database_uri"] == "postgresql+psycopg://u:p%40ss@h:5432/mlflow"
    assert parser["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    assert parser["mlflow"].getint("auth_cache_ttl_seconds") == auth.AUTH_CACHE_SECONDS > 0


def test_users_job_is_idempotent_and_prints_no_password(server):
    env = {**os.environ, "MLFLOW_TRACKING_URI": server["uri"], **server["env"],
           "PADIREC_MLFLOW_PIPELINE_USERNAME": PIPELINE[0], "PADIREC_MLFLOW_PIPELINE_PASSWORD": PIPELINE[1],
           "PADIREC_MLFLOW_SERVING_USERNAME": SERVING[0], "PADIREC_MLFLOW_SERVING_PASSWORD": SERVING[1],
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    for expected in ("created", "updated"):
        done = subprocess.run([sys.executable, "-m", "padirec.tracking.auth", "users"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.splitlines() == [f"MLflow user {PIPELINE[0]}: {expected}",
                                            f"MLflow user {SERVING[0]}: {expected}"]
        for _, password in (ADMIN, PIPELINE, SERVING):
            assert password not in done.stdout + done.stderr


def test_a_wrong_admin_password_fails_in_one_line_without_it(server):
    env = {**os.environ, "MLFLOW_TRACKING_URI": server["uri"], **server["env"],
           "MLFLOW_AUTH_ADMIN_PASSWORD": "wrong-Admin-pw", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "PADIREC_MLFLOW_PIPELINE_USERNAME": "x", "PADIREC_MLFLOW_PIPELINE_PASSWORD": "x-Secret-pw",
           "PADIREC_MLFLOW_SERVING_USERNAME": "y", "PADIREC_MLFLOW_SERVING_PASSWORD": "y-Secret-pw"}
    done = subprocess.run([sys.executable, "-m", "padirec.tracking.auth", "users"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert server["uri"] in done.stderr and "pipeline user x" in done.stderr
    assert "wrong-Admin-pw" not in done.stderr and "x-Secret-pw" not in done.stderr


def test_the_roles(server, monkeypatch, tmp_path):
    from mlflow.exceptions import MlflowException

    uri = server["uri"]
    auth.setup_users(uri, ADMIN, {"pipeline": PIPELINE, "serving": SERVING})
    api = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert status(api) == 401  # anonymous
    assert status(api, (PIPELINE[0], "not-the-password")) == 401
    assert status(api, SERVING) == 200
    assert status(api, (SERVING[0], "not-the-password")) == 401  # a cached check is per password

    # The pipeline user: a step's run (padirec's tracker), a registered version, champion.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", PIPELINE[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PIPELINE[1])
    from padirec.tracking.core import MlflowTracker

    tracker = MlflowTracker.start(uri, "padirec", "train_backbone", tags={"kfp.run_id": "auth-test"})
    tracker.log_params({"tracking.uri": f"http://{PIPELINE[0]}:{PIPELINE[1]}@mlflow:5000"})
    tracker.log_metrics({"ndcg": 0.5})
    (tmp_path / "m.txt").write_text("model")
    tracker.log_artifact(tmp_path / "m.txt", "model")
    tracker.end()
    pipeline = client_as(uri, PIPELINE, monkeypatch)
    pipeline.create_registered_model(MODEL)
    version = pipeline.create_model_version(MODEL, f"runs:/{tracker.run_id}/model", run_id=tracker.run_id)
    pipeline.set_registered_model_alias(MODEL, "champion", version.version)
    run = pipeline.get_run(tracker.run_id)
    recorded = " ".join([*run.data.params.values(), *run.data.tags.values()])
    assert PIPELINE[1] not in recorded and PIPELINE[0] not in run.data.tags.get("mlflow.user", "")

    # The serving user reads champion and its files, and can move nothing.
    serving = client_as(uri, SERVING, monkeypatch)
    assert serving.get_model_version_by_alias(MODEL, "champion").version == version.version
    assert serving.download_artifacts(tracker.run_id, "model/m.txt", str(tmp_path / "dl"))
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
        serving.set_registered_model_alias(MODEL, "champion", "1")
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
        serving.delete_registered_model_alias(MODEL, "champion")
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
        serving.log_metric(tracker.run_id, "ndcg", 1.0)
    pipeline = client_as(uri, PIPELINE, monkeypatch)
    second = pipeline.create_model_version(MODEL, f"runs:/{tracker.run_id}/model", run_id=tracker.run_id)
    pipeline.set_registered_model_alias(MODEL, "champion", second.version)  # the pipeline promotes
    assert pipeline.get_model_version_by_alias(MODEL, "champion").version == second.version
    for _, password in (ADMIN, PIPELINE, SERVING):
        assert password not in Path(server["log"]).read_text()


def test_the_deployments_probe_needs_the_admin(server, monkeypatch):
    url = f"{server['uri']}/api/2.0/mlflow/experiments/search?max_results=1"
    host = server["uri"].removeprefix("http://")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN[1])
    assert auth.probe(url, host)
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "wrong")
    assert not auth.probe(url, host)


def test_a_rotated_password_is_refused_at_once_by_the_worker_that_rotated_it(server):
    """Checked passwords are cached (``auth.AUTH_CACHE_SECONDS``); the users Job's update-password
    drops the cached entry on the worker that handles it (one worker here: every worker)."""
    uri = server["uri"]
    api = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    user, old = ("padirec-rotated", "old-Pw-0x5e3cret")
    auth.ensure_user(uri, ADMIN, user, old, "READ")
    assert status(api, (user, old)) == 200  # now cached
    auth.ensure_user(uri, ADMIN, user, "new-Pw-0x5e3cret", "READ")
    assert status(api, (user, old)) == 401
    assert status(api, (user, "new-Pw-0x5e3cret")) == 200
