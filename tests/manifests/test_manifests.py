"""Each kustomization renders (kubectl kustomize) to the objects padirec needs, hardened and wired:
the services in `padirec` (base, overlays), what runs read in their own namespace (runs), the
external-database option, and Secret templates without values."""

import re
import shutil

import kfp
import pytest

from tests.manifests.kube import MANIFESTS, container, objects, with_external_db

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")
SERVICE_HOST = "mlflow.padirec.svc.cluster.local"


def env_of(c: dict) -> dict:
    return {e["name"]: e for e in c["env"]}


@pytest.mark.parametrize("overlay", ["base", "overlays/dev", "overlays/production"])
def test_overlay_objects(overlay):
    objs = objects(overlay)
    for key in [("Deployment", "mlflow"), ("Service", "mlflow"), ("Job", "mlflow-db-migrate"), ("Job", "mlflow-users"),
                ("StatefulSet", "postgres"), ("Service", "postgres"),
                ("StatefulSet", "object-store"), ("Service", "object-store"), ("Namespace", "padirec")]:
        assert key in objs, f"{overlay}: {key} missing"
    assert {o["metadata"].get("namespace", "padirec") for o in objs.values()} == {"padirec"}
    assert not [k for k in objs if k[0] == "Secret"], "secrets are created out of band, never rendered"
    assert not [k for k in objs if k[1] in ("kfp-launcher", "padirec-env")], "these belong to runs/"
    for o in objs.values():
        spec = o.get("spec", {}).get("template", {}).get("spec")
        if not spec:
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in spec["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert not c["image"].endswith(":latest") and ":" in c["image"], c["image"]


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_mlflow_allowed_hosts_and_probes(overlay):
    mlflow = container(objects(overlay)[("Deployment", "mlflow")])
    env = env_of(mlflow)
    hosts = [h.strip() for h in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")]
    for name in ["mlflow", "mlflow.padirec", "mlflow.padirec.svc", SERVICE_HOST]:
        assert name in hosts and f"{name}:5000" in hosts, name
    assert "*" not in hosts
    for probe in (mlflow["readinessProbe"], mlflow["livenessProbe"]):
        command = probe["exec"]["command"]  # as the admin: an httpGet would get 401 (MLflow's auth)
        assert command[:4] == ["python", "-m", "padirec.tracking.auth", "probe"]
        assert "/api/" in command[4], "/health answers any Host: it cannot catch a wrong list"
        assert command[5] == SERVICE_HOST and SERVICE_HOST in hosts


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_mlflow_runs_behind_its_auth(overlay):
    objs = objects(overlay)
    mlflow = container(objs[("Deployment", "mlflow")])
    assert "--app-name basic-auth" in " ".join(mlflow["command"])
    env = env_of(mlflow)
    for key in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "padirec-mlflow-auth", "key": key}
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"].startswith("/tmp/")  # written at start, an emptyDir
    users = container(objs[("Job", "mlflow-users")])
    assert users["command"] == ["python", "-m", "padirec.tracking.auth", "users"]
    assert users["envFrom"] == [{"secretRef": {"name": "padirec-mlflow-auth"}}]
    assert env_of(users)["MLFLOW_TRACKING_URI"]["value"] == f"http://{SERVICE_HOST}:5000"
    migrate = " ".join(container(objs[("Job", "mlflow-db-migrate")])["command"])
    assert "mlflow db upgrade" in migrate and "mlflow.server.auth db upgrade" in migrate


@pytest.mark.parametrize("overlay", ["base", "overlays/dev", "overlays/production"])
def test_database_wired_to_in_cluster_postgres(overlay):
    objs = objects(overlay)
    pg = container(objs[("StatefulSet", "postgres")])
    assert env_of(pg)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "padirec-postgres", "key": "password"}
    assert all(p["exec"]["command"][0] == "pg_isready" for p in (pg["readinessProbe"], pg["livenessProbe"]))
    for c in (container(objs[("Deployment", "mlflow")]), container(objs[("Job", "mlflow-db-migrate")])):
        env = env_of(c)
        assert env["PGHOST"]["value"] == "postgres.padirec.svc.cluster.local"
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "padirec-postgres", "key": "password"}
        assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("postgresql+psycopg://")
        assert "PASSWORD" not in " ".join(c["command"] + c.get("args", [])).replace("$MLFLOW_BACKEND_STORE_URI", "")


def test_external_db_component_replaces_postgres(tmp_path):
    objs = objects("overlays/external-db", root=with_external_db(tmp_path))
    assert ("StatefulSet", "postgres") not in objs and ("Service", "postgres") not in objs
    for c in (container(objs[("Deployment", "mlflow")]), container(objs[("Job", "mlflow-db-migrate")])):
        env = env_of(c)
        assert env["MLFLOW_BACKEND_STORE_URI"] == {"name": "MLFLOW_BACKEND_STORE_URI", "valueFrom": {
            "secretKeyRef": {"name": "padirec-mlflow-db", "key": "uri"}}}
        assert not [n for n in env if n.startswith("PG")], "libpq would take leftover PG* as defaults"


def test_production_scales_mlflow():
    objs = objects("overlays/production")
    assert objs[("Deployment", "mlflow")]["spec"]["replicas"] == 2


def test_runs_kustomization_for_the_runs_namespace():
    objs = objects("runs")
    assert set(objs) == {("ConfigMap", "kfp-launcher"), ("ConfigMap", "padirec-env"), ("Role", "padirec-trainjobs"),
                         ("RoleBinding", "padirec-trainjobs"), ("CronJob", "padirec-close-runs"),
                         ("ServiceAccount", "padirec-close-runs"), ("Role", "padirec-close-runs"),
                         ("RoleBinding", "padirec-close-runs")}
    assert {o["metadata"]["namespace"] for o in objs.values()} == {"kubeflow"}
    # the steps may submit, read and delete TrainJobs there (backbone.launcher: trainjob), nothing else
    assert objs[("Role", "padirec-trainjobs")]["rules"] == [
        {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"], "verbs": ["create", "get", "delete"]}]
    assert objs[("RoleBinding", "padirec-trainjobs")]["subjects"] == [
        {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}]
    settings = objs[("ConfigMap", "padirec-env")]["data"]
    assert set(settings) == {"MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "PADIREC_S3_ENDPOINT", "AWS_DEFAULT_REGION"}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "PADIREC_S3_ENDPOINT"):
        assert re.fullmatch(r"http://[a-z-]+\.padirec\.svc\.cluster\.local:\d+", settings[key]), settings[key]
    assert settings["MLFLOW_TRACKING_URI"] == f"http://{SERVICE_HOST}:5000"
    launcher = objs[("ConfigMap", "kfp-launcher")]["data"]
    assert launcher["defaultPipelineRoot"].startswith("s3://")
    assert "secretName: padirec-s3" in launcher["providers"]


def test_kfp_install_pinned_to_the_sdk_version():
    text = (MANIFESTS / "kfp" / "kustomization.yaml").read_text()
    refs = set(re.findall(r"\?ref=([\w.]+)", text))
    assert refs == {kfp.__version__}


def test_secret_templates_hold_no_values():
    examples = {f.name: f.read_text() for f in (MANIFESTS / "secrets").glob("*.example")}
    assert {"s3.env.example", "s3.json.example", "mlflow.env.example", "mlflow-auth.env.example"} <= set(examples)
    for name, text in examples.items():
        for value in re.findall(r'=(.+)$|"(?:accessKey|secretKey)": "([^"]*)"', text, re.M):
            assert not any(value), f"{name} holds a value"
    assert re.findall(r"^(\w+)=", examples["mlflow.env.example"], re.M) == ["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]
    assert re.findall(r"^(\w+)=", examples["s3.env.example"], re.M) == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    from padirec.tracking.auth import ROLES

    assert set(re.findall(r"^(\w+)=", examples["mlflow-auth.env.example"], re.M)) == {
        "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY",
        *(f"PADIREC_MLFLOW_{r.upper()}_{k}" for r in ROLES for k in ("USERNAME", "PASSWORD"))}


def test_kfp_mlflow_plugin_is_off_by_default_and_a_component_turns_it_on(tmp_path):
    """KFP reads the namespace's MLflow plugin settings from kfp-launcher's `plugins.mlflow` (JSON);
    without the component the key is absent, so the plugin is off in this namespace."""
    import json

    assert "plugins.mlflow" not in objects("runs")[("ConfigMap", "kfp-launcher")]["data"]
    root = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, root)
    with (root / "runs" / "kustomization.yaml").open("a") as f:
        f.write("components: [mlflow-plugin]\n")
    launcher = objects("runs", root)[("ConfigMap", "kfp-launcher")]["data"]
    assert launcher["defaultPipelineRoot"]  # the launcher's own settings stay
    plugin = json.loads(launcher["plugins.mlflow"])
    assert plugin["endpoint"] == objects("runs")[("ConfigMap", "padirec-env")]["data"]["MLFLOW_TRACKING_URI"]
    settings = plugin["settings"]
    assert settings["authType"] == "basic-auth" and settings["credentialSecretRef"]["name"] == "padirec-mlflow"
    assert {settings["credentialSecretRef"][k] for k in ("usernameKey", "passwordKey")} == \
        {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}  # the keys of the steps' MLflow Secret


def test_close_runs_cronjob_reads_what_the_steps_read_and_may_only_get_runs():
    objs = objects("runs")
    job = objs[("CronJob", "padirec-close-runs")]["spec"]
    assert job["concurrencyPolicy"] == "Forbid"
    pod = job["jobTemplate"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"][:4] == ["python", "-m", "pipelines", "close-runs"] and "--host" in c["command"]
    assert c["image"] == "padirec:0.1.0"  # the project image, pinned as in the overlays
    env = {e["name"]: e.get("valueFrom", e.get("value")) for e in c["env"]}
    assert env["MLFLOW_TRACKING_URI"] == {"configMapKeyRef": {"name": "padirec-env", "key": "MLFLOW_TRACKING_URI"}}
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert env[key]["secretKeyRef"]["name"] == "padirec-mlflow"  # the pipeline user: EDIT on the runs
    assert pod["serviceAccountName"] == "padirec-close-runs"
    assert objs[("Role", "padirec-close-runs")]["rules"] == [
        {"apiGroups": ["pipelines.kubeflow.org"], "resources": ["runs"], "verbs": ["get"]}]
    assert objs[("RoleBinding", "padirec-close-runs")]["subjects"] == [
        {"kind": "ServiceAccount", "name": "padirec-close-runs", "namespace": "kubeflow"}]
