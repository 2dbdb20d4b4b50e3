"""The smoke pipeline with every step in its own container of the project image, as on a cluster.

Servers as a cluster has them: PostgreSQL (Debian's package) behind an MLflow server that runs
from the project image (as the manifests' Deployment does) with its artifacts proxied to
SeaweedFS. Steps reach them only by cluster-style names (``mlflow.padirec.svc``,
``seaweedfs.padirec.svc``, mapped by ``extra_hosts``), read the input tables from ``s3://``, and get
their credentials and settings as environment variables named exactly as the compiled pipeline's
Kubernetes settings pass them (``padirec_pipeline.step_environment``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import boto3
import pytest
from mlflow import MlflowClient

from padirec.config import load_config
from padirec.data.synthetic import generate
from pipelines.padirec_pipeline import step_environment
from pipelines.run_local import Containers, find_output, run_local
from tests.containers.conftest import ROOT, docker
from tests.manifests.kube import container, objects
from tests.servers import free_port, postgres, seaweedfs

pytestmark = pytest.mark.slow
MLFLOW_HOST, S3_HOST = "mlflow.padirec.svc", "seaweedfs.padirec.svc"
MODEL = "padirec-smoke"
# The Secret padirec-mlflow-auth (manifests/secrets/mlflow-auth.env.example), test values
ADMIN_USER = ("padirec-admin", "admin-Pw-0x5e3cret-c")
PIPELINE_USER = ("padirec-pipeline", "pipe-Pw-0x5e3cret-c")
SERVING_USER = ("padirec-serving", "serve-Pw-0x5e3cret-c")
AUTH_SECRET = {"MLFLOW_AUTH_ADMIN_USERNAME": ADMIN_USER[0], "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_USER[1],
               "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-flask-key-c",
               "PADIREC_MLFLOW_PIPELINE_USERNAME": PIPELINE_USER[0], "PADIREC_MLFLOW_PIPELINE_PASSWORD": PIPELINE_USER[1],
               "PADIREC_MLFLOW_SERVING_USERNAME": SERVING_USER[0], "PADIREC_MLFLOW_SERVING_PASSWORD": SERVING_USER[1]}
SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages/padirec"


def _http(url: str, host: str, user: tuple[str, str] | None = None, body: dict | None = None) -> int:
    import base64

    headers = {"Host": host, "Content-Type": "application/json"}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(user).encode()).decode()
    req = urllib.request.Request(url, headers=headers, data=json.dumps(body).encode() if body else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, docker_env, project_image):
    """The servers; MLflow behind its auth, started with the Deployment's own command and its users
    made by the users Job's command (manifests/base), both in the project image. This process
    talks to MLflow as the pipeline's user, as the steps do."""
    work = tmp_path_factory.mktemp("cluster")
    with postgres(work / "pg") as pg, seaweedfs(work / "weed") as s3, pytest.MonkeyPatch.context() as mp:
        s3_client = boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=s3["key"],
                                 aws_secret_access_key=s3["secret"], region_name="us-east-1")
        for bucket in ("padirec-mlflow", "padirec-data"):
            s3_client.create_bucket(Bucket=bucket)
        port, s3_port = free_port(), int(s3["endpoint"].rsplit(":", 1)[1])
        name = f"padirec-test-mlflow-{port}"
        creds = {"AWS_ACCESS_KEY_ID": s3["key"], "AWS_SECRET_ACCESS_KEY": s3["secret"]}
        server_env = {**creds, **AUTH_SECRET, "MLFLOW_S3_ENDPOINT_URL": s3["endpoint"],
                      "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_AUTH_CONFIG_PATH": "/tmp/basic_auth.ini",
                      "MLFLOW_SERVER_ALLOWED_HOSTS": f"{MLFLOW_HOST}:{port},{MLFLOW_HOST},127.0.0.1:{port}",
                      "MLFLOW_BACKEND_STORE_URI": pg["uri"]}
        deployment = container(objects("base")[("Deployment", "mlflow")])
        args = ["--artifacts-destination=s3://padirec-mlflow/artifacts", "--host=127.0.0.1", f"--port={port}",
                "--workers=1"]  # the Deployment's args, on this machine's address and a free port
        started = docker(docker_env, "run", "-d", "--name", name, "--network", "host", *_env_args(server_env),
                         "--entrypoint", deployment["command"][0], project_image, *deployment["command"][1:], *args)
        assert started.returncode == 0, started.stderr
        try:
            _wait_for(f"http://127.0.0.1:{port}/health", docker_env, name)
            users_job = container(objects("base")[("Job", "mlflow-users")])
            users = docker(docker_env, "run", "--rm", "--network", "host", *_env_args(
                {**AUTH_SECRET, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}), "--entrypoint",
                users_job["command"][0], project_image, *users_job["command"][1:])
            assert users.returncode == 0, users.stderr[-2000:]
            secrets = [v for k, v in AUTH_SECRET.items() if k.endswith(("PASSWORD", "SECRET_KEY"))]
            assert not any(v in users.stdout + users.stderr for v in secrets), "a password in the users Job's output"
            mp.setenv("MLFLOW_TRACKING_USERNAME", PIPELINE_USER[0])
            mp.setenv("MLFLOW_TRACKING_PASSWORD", PIPELINE_USER[1])
            yield {"port": port, "s3_port": s3_port, "s3": s3, "pg": pg, "creds": creds, "work": work,
                   "s3_client": s3_client, "server": name, "local_uri": f"http://127.0.0.1:{port}"}
        finally:
            logs = docker(docker_env, "logs", "--tail", "30", name)
            print(f"\nMLflow server (last lines):\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
            docker(docker_env, "rm", "-f", name)


def _env_args(env: dict[str, str]) -> list[str]:
    return [a for k, v in env.items() for a in ("-e", f"{k}={v}")]


def _wait_for(url: str, docker_env: dict, container: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    logs = docker(docker_env, "logs", "--tail", "40", container)
    raise RuntimeError(f"{container} did not answer {url}:\n{logs.stdout}{logs.stderr}")


def _pod_environment(cluster) -> dict[str, str]:
    """The values of the ConfigMap and Secrets of manifests/runs/, under the names the compiled
    pipeline gives them (the run id, a field of the pod, is set by the runner)."""
    values = {
        "MLFLOW_TRACKING_URI": f"http://{MLFLOW_HOST}:{cluster['port']}",
        "MLFLOW_S3_ENDPOINT_URL": f"http://{S3_HOST}:{cluster['s3_port']}",
        "PADIREC_S3_ENDPOINT": f"http://{S3_HOST}:{cluster['s3_port']}",
        "AWS_DEFAULT_REGION": "us-east-1",
        # the Secret padirec-mlflow: the pipeline's user
        "MLFLOW_TRACKING_USERNAME": PIPELINE_USER[0], "MLFLOW_TRACKING_PASSWORD": PIPELINE_USER[1],
        **cluster["creds"],
    }
    env = {}
    for name, (kind, _) in step_environment().items():
        if kind in ("configmap", "secret"):
            env[name] = values[name]  # a missing one would fail the pod: fail here too
        elif kind == "optional-secret" and name in values:
            env[name] = values[name]
    return env


def _upload_tables(cluster) -> dict[str, str]:
    inter, items, _ = generate(num_users=80, num_items=40, num_categories=5, seed=0)
    folder = cluster["work"] / "tables"
    folder.mkdir()
    inter.to_csv(folder / "interactions.csv", index=False)
    items.assign(categories=["|".join(c) for c in items.categories]).to_csv(folder / "items.csv", index=False)
    for f in ("interactions.csv", "items.csv"):
        cluster["s3_client"].upload_file(str(folder / f), "padirec-data", f"smoke/{f}")
    return {"data.source": "tables", "data.interactions": "s3://padirec-data/smoke/interactions.csv",
            "data.items": "s3://padirec-data/smoke/items.csv"}


def test_mlflow_server_answers_only_its_cluster_names(cluster):
    base = cluster["local_uri"]
    api = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert _http(base + api, f"{MLFLOW_HOST}:{cluster['port']}", PIPELINE_USER) == 200
    assert _http(base + api, f"{MLFLOW_HOST}:{cluster['port']}") == 401  # no credentials
    assert _http(base + api, "evil.example.com", PIPELINE_USER) == 403
    assert _http(base + "/health", "evil.example.com") == 200  # why a probe on /health proves nothing


def test_migration_command_runs_in_the_image(cluster, docker_env, project_image):
    """The migration Job's command, in the project image, against the PostgreSQL MLflow uses: the
    image has the PostgreSQL driver and the schema is current (re-running is a no-op)."""
    proc = docker(docker_env, "run", "--rm", "--network", "host", "-e", f"MLFLOW_DATABASE_URI={cluster['pg']['uri']}",
                  project_image, "sh", "-c", 'mlflow db upgrade "$MLFLOW_DATABASE_URI"')
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_smoke_pipeline_in_containers(cluster, docker_env, project_image):
    overrides = {**_upload_tables(cluster), "tracking.uri": "", "run_dir": str(cluster["work"] / "runs"),
                 "promotion.min_avg_hv": 0.0, "promotion.min_pearson_ra": -1.0, "promotion.min_pearson_rd": -1.0}
    cfg = load_config(ROOT / "configs" / "smoke.yaml", overrides)
    containers = Containers(image=project_image, environment=_pod_environment(cluster),
                            extra_hosts={MLFLOW_HOST: "127.0.0.1", S3_HOST: "127.0.0.1"})
    start = time.time()
    folder = run_local(cfg, containers=containers, data_version="2026-11-29")
    wall = time.time() - start

    client = MlflowClient(cluster["local_uri"])
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("padirec.role") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    steps = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    names = {r.info.run_name for r in steps}
    assert {"prepare_data", "train_backbone", "compute_features", "build_adapters_0", "build_adapters_1",
            "train_generator", "band_generator", "retrain_ceiling", "evaluate", "register_and_promote"} <= names
    # every step ran the image's installed package, not this checkout
    paths = {r.info.run_name: r.data.tags.get("padirec.package_path") for r in steps}
    assert all(p == SITE_PACKAGES for p in paths.values()), paths
    assert str(ROOT) not in json.dumps(paths)
    print(f"\ncontainer pipeline: {wall:.0f} s wall; steps (s, in their containers):")
    for r in sorted(steps, key=lambda r: r.info.start_time):
        print(f"  {r.info.run_name:24s} {(r.info.end_time - r.info.start_time) / 1000:7.1f}  {r.info.status}")

    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.tags.get("kfp.run_id", "").startswith("local-smoke-")
    keys = [o["Key"] for o in cluster["s3_client"].list_objects_v2(Bucket="padirec-mlflow").get("Contents", [])]
    assert any(k.endswith("generator.safetensors") for k in keys), keys[:20]

    # a prediction from the registered model, in the image, through the cluster name
    data = find_output(folder, "**/prepare-data/data/manifest.json").parent
    code = ("import mlflow, pandas as pd\n"
            f"m = mlflow.pyfunc.load_model('models:/{MODEL}@champion')\n"
            "out = m.predict(pd.DataFrame([{'history': ['i1', 'i2', 'i3'], 'weights': [0.3, 0.7]}]))\n"
            "print('ranked', len(out.iloc[0]['item_ids']))")
    proc = docker(docker_env, "run", "--rm", "--network", "host", "--add-host", f"{MLFLOW_HOST}:127.0.0.1",
                  "--add-host", f"{S3_HOST}:127.0.0.1", *_env_args(_pod_environment(cluster)), project_image, "python", "-c", code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ranked 10" in proc.stdout
    assert data.exists()


def test_the_serving_user_reads_champion_and_cannot_move_it(cluster):
    """After the pipeline ran in its containers as the pipeline's user (it registered and promoted):
    the serving user reads ``champion`` but cannot move it, and no credentials get 401."""
    base, host = cluster["local_uri"], f"{MLFLOW_HOST}:{cluster['port']}"
    champion = MlflowClient(base).get_model_version_by_alias(MODEL, "champion")  # as the pipeline's user
    read = f"{base}/api/2.0/mlflow/registered-models/alias?name={MODEL}&alias=champion"
    assert _http(read, host, SERVING_USER) == 200
    assert _http(read, host) == 401
    move = {"name": MODEL, "alias": "champion", "version": champion.version}
    assert _http(f"{base}/api/2.0/mlflow/registered-models/alias", host, SERVING_USER, move) == 403
    assert _http(f"{base}/api/2.0/mlflow/registered-models/alias", host, body=move) == 401
    assert _http(f"{base}/api/2.0/mlflow/registered-models/alias", host, PIPELINE_USER, move) == 200
