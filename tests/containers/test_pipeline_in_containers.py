"""A simulated month of weekly retraining, every step in its own container of the project image,
and the champion served by the real serving server, as on a cluster.

Servers as a cluster has them: PostgreSQL (Debian's package) behind an MLflow server that runs
from the project image (as the manifests' Deployment does) with its artifacts proxied to
SeaweedFS. Steps reach them only by cluster-style names (``mlflow.padirec.svc``,
``seaweedfs.padirec.svc``, mapped by ``extra_hosts``), read the weekly snapshots from ``s3://``, and get
their credentials and settings as environment variables named exactly as the compiled pipeline's
Kubernetes settings pass them (``padirec_pipeline.step_environment``).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import boto3
import pandas as pd
import pytest
from mlflow import MlflowClient

from padirec.config import load_config
from padirec.data.synthetic import generate
from pipelines.padirec_pipeline import step_environment
from pipelines.run_local import Containers, find_output, run_local
from tests.containers.conftest import ROOT, docker
from tests.data.test_sources import write_ml100k
from tests.manifests.kube import container, objects
from tests.servers import free_port, http_json, postgres, seaweedfs

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
WEEKS = ("20260105", "20260112", "20260119")
NEW_ITEMS = 16  # each new week brings this many items: they take the place of old ones in the users' walks
# The smoke config on the weekly snapshots, with a backbone trained long enough (seconds at this
# size) that a better model wins by more than the noise of 84 users; the gate is left open.
MONTH = {"data.source": "ml-100k", "data.path": "s3://padirec-data/ml-100k/{snapshot}/", "tracking.uri": "",
         "backbone.epochs": 60, "backbone.patience": 100, "backbone.lr": 0.003,
         "promotion.min_avg_hv": 0.0, "promotion.min_pearson_ra": -1.0, "promotion.min_pearson_rd": -1.0}
WORSE = {"backbone.epochs": 1, "backbone.lr": 1e-5}  # week 3: a config forced to be worse (an untrained backbone)
CACHED_STEPS = 7  # backbone, features, two adapter shards, generator, band generator, ceiling
POLL_S, LOAD_LIMIT_S = 2, 40  # the server's poll, and a model's download and load beside a running pipeline
SWAP_LIMIT_S = POLL_S + LOAD_LIMIT_S


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


def weekly_snapshots(num_users: int = 120, num_items: int = 40, seed: int = 0) -> dict[str, tuple]:
    """Three weekly snapshots of one synthetic history: week k holds every interaction up to its
    cut (growing cuts by timestamp: 40%, 70% and 100% of the users have started). After week 1's
    cut, ``NEW_ITEMS`` new items take the place of old ones (the users walk to the new ids); after
    week 2's, ``NEW_ITEMS`` more. Each week's catalogue holds the items released so far."""
    inter, items, users = generate(num_users=num_users, num_items=num_items, num_categories=5, seed=seed)
    starts = inter.groupby("user_id").timestamp.min()
    cuts = [starts.quantile(0.4), starts.quantile(0.7), inter.timestamp.max()]
    inter, released = inter.copy(), []
    for week, cut in ((2, cuts[0]), (3, cuts[1])):
        for j in range(NEW_ITEMS):
            old_id, new_id = f"i{(week - 2) * NEW_ITEMS + j}", f"i{num_items + (week - 2) * NEW_ITEMS + j}"
            inter.loc[(inter.timestamp > cut) & (inter.item_id == old_id), "item_id"] = new_id
            old = items[items.item_id == old_id].iloc[0]
            released.append((week, {"item_id": new_id, "categories": old.categories, "title": f"Item {new_id}"}))
    weeks = {}
    for w, (snapshot, cut) in enumerate(zip(WEEKS, cuts, strict=True), start=1):
        rows = inter[inter.timestamp <= cut].reset_index(drop=True)
        catalogue = pd.concat([items, pd.DataFrame([r for week, r in released if week <= w])], ignore_index=True)
        weeks[snapshot] = (rows, catalogue, users[users.user_id.isin(rows.user_id)].reset_index(drop=True))
    return weeks


def _serve(cluster, docker_env: dict, image: str) -> tuple[str, str]:
    """The serving Deployment's container (manifests/serving), in the project image, as its pod
    runs it (user 10001, read-only root, /tmp an emptyDir, no capabilities), with the serving
    user's Secret; on a free port with a short poll. Returns the container's name and its URL."""
    deployment = container(objects("serving")[("Deployment", "padirec-serving")])
    port = free_port()
    replace = {"--model-uri": f"models:/{MODEL}@champion", "--host": "127.0.0.1", "--port": str(port),
               "--poll-seconds": str(POLL_S)}
    args = [f"{a.split('=')[0]}={replace[a.split('=')[0]]}" if a.split("=")[0] in replace else a
            for a in deployment["args"]]
    env = {e["name"]: e["value"] for e in deployment["env"] if "value" in e}
    env.update({"MLFLOW_TRACKING_URI": f"http://{MLFLOW_HOST}:{cluster['port']}",
                "MLFLOW_TRACKING_USERNAME": SERVING_USER[0], "MLFLOW_TRACKING_PASSWORD": SERVING_USER[1]})
    name = f"padirec-test-serving-{port}"
    started = docker(docker_env, "run", "-d", "--name", name, "--network", "host", "--add-host",
                     f"{MLFLOW_HOST}:127.0.0.1", "--user", "10001", "--read-only", "--tmpfs", "/tmp:rw,size=1g,mode=1777",
                     "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *_env_args(env),
                     "--entrypoint", deployment["command"][0], image, *deployment["command"][1:], *args)
    assert started.returncode == 0, started.stderr
    return name, f"http://127.0.0.1:{port}"


def _until(url: str, docker_env: dict, name: str, ok, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, state = http_json(url)
            if ok(status, state):
                return state
        except OSError:
            pass
        time.sleep(0.5)
    logs = docker(docker_env, "logs", "--tail", "40", name)
    raise AssertionError(f"{url}: not as expected in {timeout} s:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")


def _load(url: str, stop: threading.Event, results: list) -> None:
    """One client, a request every 0.25 s (a bounded load beside the pipeline on these 2 cores)."""
    i = 0
    while not stop.is_set():
        w = i % 5 / 4
        body = {"dataframe_records": [{"history": ["i35", "i36", "i37"], "weights": [w, 1 - w]}], "params": {"k": 3}}
        started = time.monotonic()
        try:
            status, reply = http_json(url + "/invocations", body)
            results.append((started, time.monotonic(), status, reply.get("model_version")))
        except Exception as e:  # a refused connection or a timeout is a failed request too
            results.append((started, time.monotonic(), None, repr(e)))
        i += 1
        stop.wait(0.25)


def _watch_alias(client: MlflowClient, stop: threading.Event, moves: list) -> None:
    """When ``champion`` moves (polled every 0.5 s): (time, version)."""
    last = None
    while not stop.is_set():
        try:
            version = client.get_model_version_by_alias(MODEL, "champion").version
        except Exception:
            version = None
        if version != last:
            moves.append((time.monotonic(), version))
            last = version
        stop.wait(0.5)


def _registered(folder) -> dict:
    """The register step's decision (its output's metadata)."""
    out = json.loads(find_output(folder, "**/register-and-promote/executor_output.json").read_text())
    return out["artifacts"]["system"]["artifacts"][0]["metadata"]


def _caches(folder) -> list[str]:
    """Each cached step's ``cache`` (hit, miss), from the steps' outputs."""
    found = []
    for path in folder.glob("**/executor_output.json"):
        for artifact in json.loads(path.read_text()).get("artifacts", {}).values():
            found += [a["metadata"]["cache"] for a in artifact["artifacts"] if "cache" in a.get("metadata", {})]
    return found


def _share_with_unseen(interactions: pd.DataFrame, known: pd.DataFrame) -> float:
    """The share of users whose history before their test item holds an item the champion's
    catalogue lacks: each such request was a 400 before unknown items were ignored."""
    ordered = interactions.sort_values(["user_id", "timestamp"])
    history = ordered[ordered.groupby("user_id").cumcount(ascending=False) > 0]  # all but the test item
    unseen = ~history.item_id.isin(set(known.item_id))
    return round(float(unseen.groupby(history.user_id).any().mean()), 3)


def test_a_month_of_weekly_retraining(cluster, docker_env, project_image, record_property):
    """Week 1 trains and becomes champion, and the server answers with it; week 1 again hits the
    cache and moves nothing; weeks 2 and 3 are judged head to head against the champion on their
    own users: week 2 (more data, the new items) wins by the margin and the server follows it under
    load with no failed request; week 3 (forced worse) does not, and champion stays. A week-3 item
    in a request is ignored, not an error."""
    started_month = time.time()
    work = cluster["work"]
    snapshots = weekly_snapshots()
    for snapshot, raw in snapshots.items():
        folder = write_ml100k(work / "ml-100k" / snapshot, raw)
        for f in sorted(folder.iterdir()):
            cluster["s3_client"].upload_file(str(f), "padirec-data", f"ml-100k/{snapshot}/{f.name}")
    containers = Containers(image=project_image, environment=_pod_environment(cluster),
                            extra_hosts={MLFLOW_HOST: "127.0.0.1", S3_HOST: "127.0.0.1"})
    client = MlflowClient(cluster["local_uri"])
    walls, decisions = {}, {}

    def week(label: str, snapshot: str, extra: dict | None = None):
        cfg = load_config(ROOT / "configs" / "smoke.yaml", {**MONTH, **(extra or {}), "run_dir": str(work / "runs")})
        start = time.time()
        folder = run_local(cfg, containers=containers, data_version=snapshot)
        walls[label] = round(time.time() - start)
        decisions[label] = _registered(folder)
        return cfg, folder, decisions[label]

    # Week 1: trained in the containers; the first champion.
    cfg, folder, first = week("week 1", WEEKS[0])
    assert first["decision"] == "champion", first
    v1 = first["version"]
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    parents = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("padirec.role") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    steps = [r for r in client.search_runs([exp.experiment_id])
             if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert {"prepare_data", "train_backbone", "compute_features", "build_adapters_0", "build_adapters_1",
            "train_generator", "band_generator", "retrain_ceiling", "evaluate", "register_and_promote"} <= \
        {r.info.run_name for r in steps}
    paths = {r.info.run_name: r.data.tags.get("padirec.package_path") for r in steps}
    assert all(p == SITE_PACKAGES for p in paths.values()), paths  # the image's package, not this checkout
    print(f"\nweek 1 in containers: {walls['week 1']} s wall; steps (s, in their containers):")
    for r in sorted(steps, key=lambda r: r.info.start_time):
        print(f"  {r.info.run_name:24s} {(r.info.end_time - r.info.start_time) / 1000:7.1f}  {r.info.status}")
    assert client.get_model_version(MODEL, v1).tags.get("kfp.run_id", "").startswith("local-smoke-")
    keys = [o["Key"] for o in cluster["s3_client"].list_objects_v2(Bucket="padirec-mlflow").get("Contents", [])]
    assert any(k.endswith("generator.safetensors") for k in keys), keys[:20]
    assert _caches(folder).count("miss") == CACHED_STEPS

    server, url = _serve(cluster, docker_env, project_image)
    try:
        state = _until(url + "/ready", docker_env, server, lambda status, state: status == 200)
        assert state["model_version"] == v1, state

        # Week 1 again: every cached step hits, and champion does not move.
        _, folder, again = week("week 1 again", WEEKS[0])
        assert _caches(folder) == ["hit"] * CACHED_STEPS, _caches(folder)
        assert again["decision"] != "champion" and "challenger" not in again, again
        assert client.get_model_version_by_alias(MODEL, "champion").version == v1

        # Week 2, under load: judged head to head against v1 on week 2's users, promoted by the margin.
        stop, results, moves = threading.Event(), [], []
        threads = [threading.Thread(target=_load, args=(url, stop, results)) for _ in range(2)]
        threads.append(threading.Thread(target=_watch_alias, args=(client, stop, moves)))
        for t in threads:
            t.start()
        try:
            _, _, second = week("week 2", WEEKS[1])
            v2 = second["version"]
            deadline = time.monotonic() + SWAP_LIMIT_S + 5
            while time.monotonic() < deadline and not any(r[3] == v2 for r in list(results)):
                time.sleep(0.2)
            time.sleep(2)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        run = client.get_run(client.get_model_version(MODEL, v2).run_id).data.metrics
        h2h = {k.removeprefix("head_to_head."): round(v, 5) for k, v in run.items() if k.startswith("head_to_head.")}
        print(f"week 2: {second['decision']}: {second['reason']}")
        assert h2h["gain"] > cfg.promotion.margin and h2h["gain_lower"] > cfg.promotion.margin, h2h
        assert second["decision"] == "champion", second
        moved = next(t for t, v in moves if v == v2)
        failed = [r for r in results if r[2] != 200]
        first_v2 = min((r[1] for r in results if r[3] == v2), default=None)
        assert not failed, failed[:3]
        assert first_v2 is not None, "the server never answered with week 2's version"
        late_v1 = [r for r in results if r[0] > first_v2 and r[3] == v1]
        assert not late_v1, f"{len(late_v1)} requests started after the first v{v2} reply were answered by v{v1}"
        follow = {"requests": len(results), "failed": len(failed), "swap_s": round(first_v2 - moved, 1),
                  "swap_limit_s": SWAP_LIMIT_S}
        assert follow["swap_s"] <= SWAP_LIMIT_S, follow

        # Week 3, with a config forced to be worse: judged head to head against v2, champion stays.
        _, _, third = week("week 3", WEEKS[2], WORSE)
        print(f"week 3: {third['decision']}: {third['reason']}")
        assert third["decision"] != "champion" and "does not beat champion v" + v2 in third["reason"], third
        assert client.get_model_version_by_alias(MODEL, "champion").version == v2
        time.sleep(POLL_S + 1)
        state = http_json(url + "/ready")[1]
        assert state["model_version"] == v2, state

        # A week-3 item in a request: ignored and listed, the rest ranked by v2.
        new = f"i{40 + NEW_ITEMS}"
        status, reply = http_json(url + "/invocations", {"dataframe_records": [{"history": ["i35", "i36", new],
                                                                            "weights": [0.5, 0.5]}]})
        assert status == 200 and reply["model_version"] == v2, reply
        assert reply["predictions"][0]["ignored"] == [new] and len(reply["predictions"][0]["item_ids"]) == 10, reply
    finally:
        logs = docker(docker_env, "logs", "--tail", "20", server)
        print(f"serving (last lines):\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
        docker(docker_env, "rm", "-f", server)
    figures = {"month_s": round(time.time() - started_month), "walls_s": walls, "follow": follow,
               "decisions": {k: d["decision"] for k, d in decisions.items()},
               "week_3_users_refused_before": _share_with_unseen(snapshots[WEEKS[2]][0], snapshots[WEEKS[1]][1])}
    print("month:", json.dumps(figures))
    for name, value in figures.items():
        record_property(name, value)


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
