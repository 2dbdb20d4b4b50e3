"""manifests/serving, alone and in the overlays: `padirec serve` on the champion, wired as the code
reads it (the command line parses, the settings' names exist), the tracking server by its
cluster name (an allowed host of MLflow), credentials from a Secret only, and probes on the
server's own endpoints."""

import shutil

import pytest

from padirec.commands.cli import build_parser
from padirec.serving import MAX_RECORDS_ENV, SERVING_THREADS_ENV
from tests.manifests.kube import container, objects

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")
NAME = "padirec-serving"


@pytest.mark.parametrize("where", ["serving", "overlays/dev", "overlays/production"])
def test_the_champion_is_served(where):
    objs = objects(where)
    deploy, service = objs[("Deployment", NAME)], objs[("Service", NAME)]
    assert ("NetworkPolicy", NAME) in objs and deploy["metadata"]["namespace"] == "padirec"
    pod = deploy["spec"]["template"]
    assert pod["metadata"]["labels"]["padirec.io/role"] == "serving"  # MLflow's NetworkPolicy admits it
    c = container(deploy)
    args = build_parser().parse_args(c["command"][3:] + c["args"])
    assert c["command"][:3] == ["python", "-m", "padirec"] and args.func.__name__ == "cmd_serve"
    assert args.model_uri == "models:/padirec-recommender@champion" and args.host == "0.0.0.0"
    assert [p["containerPort"] for p in c["ports"]] == [args.port] and service["spec"]["ports"][0]["port"] == args.port
    assert args.workdir.startswith("/tmp/") and {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > args.timeout  # requests in flight finish
    assert (c["readinessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["path"],
            c["startupProbe"]["httpGet"]["path"]) == ("/ready", "/health", "/health")
    image = {"overlays/production": "registry.example.com/padirec:0.1.0"}.get(where, "padirec:0.1.0")
    assert c["image"] == image  # set_image.py's image, as for MLflow
    if where == "overlays/production":
        assert deploy["spec"]["replicas"] == 2


def test_settings_and_credentials():
    objs = objects("overlays/production")
    env = {e["name"]: e for e in container(objs[("Deployment", NAME)])["env"]}
    assert {MAX_RECORDS_ENV, SERVING_THREADS_ENV} <= set(env)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "padirec-mlflow-serving", "key": name, "optional": True}
    uri = env["MLFLOW_TRACKING_URI"]["value"]
    assert uri == "http://mlflow.padirec.svc.cluster.local:5000" and "@" not in uri
    mlflow_env = {e["name"]: e for e in container(objs[("Deployment", "mlflow")])["env"]}
    hosts = [h.strip() for h in mlflow_env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")]
    assert uri.removeprefix("http://") in hosts  # else MLflow answers 403 to every poll
