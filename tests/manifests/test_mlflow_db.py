"""The manifests' MLflow against a real PostgreSQL: the migration Job's exact command creates
MLflow's schema, and a server configured as the Deployment is answers the Service's host names,
refuses others, and is probed where the host check applies."""

import http.client
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.manifests.kube import container, objects, resolve_env, with_external_db
from tests.servers import free_port, mlflow_server, postgres, postgres_bin

pytestmark = [
    pytest.mark.slow,  # a real PostgreSQL per test
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed"),
    pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries are not installed"),
]
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
SERVICE_PORT = 5000
MLFLOW_TABLES = {"alembic_version", "experiments", "runs", "metrics", "params", "tags",
                 "registered_models", "model_versions", "registered_model_aliases"}
AUTH_TABLES = {"alembic_version_auth", "users"}  # MLflow's auth app, migrated by the same Job
AUTH = {("padirec-mlflow-auth", "MLFLOW_AUTH_ADMIN_USERNAME"): "padirec-admin",
        ("padirec-mlflow-auth", "MLFLOW_AUTH_ADMIN_PASSWORD"): "admin-test-Pw-1",
        ("padirec-mlflow-auth", "MLFLOW_FLASK_SERVER_SECRET_KEY"): "flask-test-key"}


def database_env(c: dict, pg: dict) -> dict[str, str]:
    """The container's env with the test's database standing in for the cluster's: its password
    for the Secrets, its address for the Service's (as cluster DNS and the Service would map it)."""
    secrets = {("padirec-postgres", "password"): pg["password"], ("padirec-mlflow-db", "uri"): pg["uri"], **AUTH}
    return resolve_env(c, secrets, override={"PGHOST": pg["host"], "PGPORT": str(pg["port"])})


def tables(pg: dict) -> set[str]:
    import psycopg

    with psycopg.connect(host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"],
                         dbname=pg["database"]) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


@pytest.mark.parametrize("variant", ["in-cluster", "external-db"])
def test_migration_job_command_creates_the_schema(tmp_path, variant):
    objs = (objects("base") if variant == "in-cluster"
            else objects("overlays/external-db", root=with_external_db(tmp_path)))
    job = container(objs[("Job", "mlflow-db-migrate")])
    with postgres(tmp_path / "pg") as pg:
        env = database_env(job, pg)
        assert env["MLFLOW_BACKEND_STORE_URI"] == pg["uri"]
        run_env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), **env}  # the venv's mlflow
        for attempt in ("first install", "re-run: a re-applied Job or a retry"):
            done = subprocess.run(job["command"] + job.get("args", []), env=run_env, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, f"{attempt}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
        assert MLFLOW_TABLES | AUTH_TABLES <= tables(pg)


def get(port: int, path: str, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.slow
def test_server_answers_the_service_names_and_refuses_others(tmp_path):
    mlflow = container(objects("base")[("Deployment", "mlflow")])
    port = free_port()
    # The test's port stands in for the Service's: a listed name:5000 becomes name:<port>.
    value = next(e["value"] for e in mlflow["env"] if e["name"] == "MLFLOW_SERVER_ALLOWED_HOSTS")
    listed = [h.strip() for h in value.split(",")]  # mlflow splits and strips the same way
    allowed = ",".join(h.removesuffix(f":{SERVICE_PORT}") + f":{port}" if h.endswith(f":{SERVICE_PORT}") else h
                       for h in listed)
    probes = [mlflow["readinessProbe"]["exec"]["command"], mlflow["livenessProbe"]["exec"]["command"]]
    api = "/api/2.0/mlflow/experiments/search?max_results=1"
    with postgres(tmp_path / "pg") as pg:
        env = database_env(mlflow, pg)
        # The Deployment's own start: its shell writes the auth config, then starts the auth app.
        config = subprocess.run(["sh", "-c", mlflow["command"][2].split("&&")[0]], capture_output=True, text=True,
                                env={"PATH": f"{BIN}:/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env,
                                     "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "basic_auth.ini")})
        assert config.returncode == 0, config.stderr
        assert "--app-name basic-auth" in mlflow["command"][2]
        server_env = {k: env[k] for k in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD",
                                          "MLFLOW_FLASK_SERVER_SECRET_KEY")}
        server_env["MLFLOW_AUTH_CONFIG_PATH"] = str(tmp_path / "basic_auth.ini")
        with mlflow_server(tmp_path / "mlflow", backend_uri=env["MLFLOW_BACKEND_STORE_URI"], allowed_hosts=allowed,
                           port=port, env=server_env, app_name="basic-auth"):
            for probe in probes:  # the test's port stands in for the container's 5000
                command = [sys.executable if c == "python" else c.replace("127.0.0.1:5000", f"127.0.0.1:{port}")
                           for c in probe]
                done = subprocess.run(command, env={**server_env, "PYTHONPATH": str(ROOT)}, timeout=60)
                assert done.returncode == 0, probe
                wrong = subprocess.run(command[:-1] + ["evil.example.com"], env={**server_env, "PYTHONPATH": str(ROOT)},
                                       timeout=60)
                assert wrong.returncode == 1  # a host not listed: 403
            assert get(port, api, f"mlflow.padirec.svc:{port}") == 401  # listed, but no user
            assert get(port, api, f"localhost:{free_port()}") == 401  # kubectl port-forward
            assert get(port, api, "evil.example.com") == 403
            # /health answers any host: a probe on it would pass with a wrong list.
            assert get(port, "/health", "evil.example.com") == 200
        assert MLFLOW_TABLES | AUTH_TABLES <= tables(pg)  # the server ran on PostgreSQL, users there too
