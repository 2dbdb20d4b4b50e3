"""The rendered NetworkPolicies admit, to each service in `padirec`, exactly the clients of its
allow list: MLflow from the runs' namespace (steps, the close-runs CronJob), serving pods and the Job that sets up its users; the object store from the steps,
MLflow and the database's backup and restore Jobs; PostgreSQL from MLflow, its migration and those
two Jobs; nothing else, on no other port. Admission is
computed as Kubernetes defines it: a pod no Ingress policy selects admits everything; one that
some select admits what any of their rules admits (selectors with matchLabels and
matchExpressions, a peer without namespaceSelector meaning the policy's own namespace)."""

import shutil

import pytest

from tests.manifests.kube import objects, with_external_db

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")
RUNS_NAMESPACE = "kubeflow"  # manifests/runs

# Pods that may ask: (namespace, labels). mlflow and mlflow-db-migrate take their labels from the manifests.
CLIENTS = {
    "step": (RUNS_NAMESPACE, {"pipeline/runid": "3f2a"}),  # KFP labels every step pod with its run
    "kfp-ui": (RUNS_NAMESPACE, {"app": "ml-pipeline-ui"}),
    "serving": ("recommender", {"padirec.io/role": "serving"}),
    "stranger": ("default", {"app": "web"}),
    "fake-step": ("default", {"pipeline/runid": "3f2a"}),  # the step's label outside the runs' namespace
    "close-runs": (RUNS_NAMESPACE, {"app": "padirec-close-runs"}),  # manifests/runs/close-runs-cronjob.yaml
}
ALLOWED = {  # service (its pods' app label), port -> the clients it admits
    ("mlflow", 5000): {"step", "kfp-ui", "serving", "padirec-serving", "mlflow-users", "close-runs"},
    ("object-store", 8333): {"step", "mlflow", "mlflow-backup", "mlflow-restore"},
    ("postgres", 5432): {"mlflow", "mlflow-db-migrate", "mlflow-backup", "mlflow-restore"},
    # manifests/serving (in the overlays): requests from anyone, on its port only
    ("padirec-serving", 8080): {*CLIENTS, "mlflow", "mlflow-db-migrate", "mlflow-users", "object-store", "postgres", "padirec-serving",
                                 "mlflow-backup", "mlflow-restore"},
}


def selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    tests = {"In": lambda k, vs: labels.get(k) in vs, "NotIn": lambda k, vs: labels.get(k) not in vs,
             "Exists": lambda k, _: k in labels, "DoesNotExist": lambda k, _: k not in labels}
    return all(tests[e["operator"]](e["key"], e.get("values", [])) for e in selector.get("matchExpressions", []))


def admits(policies: list[dict], target: tuple[str, dict], client: tuple[str, dict], port: int) -> bool:
    namespace, labels = target
    selecting = [p for p in policies if p["metadata"]["namespace"] == namespace and "Ingress" in p["spec"]["policyTypes"]
                 and selects(p["spec"]["podSelector"], labels)]

    def peer(p: dict) -> bool:
        if "ipBlock" in p:
            return False  # none is used: pods are admitted by what they are, not by address
        in_namespace = (selects(p["namespaceSelector"], {"kubernetes.io/metadata.name": client[0]})
                        if "namespaceSelector" in p else client[0] == namespace)
        return in_namespace and selects(p.get("podSelector", {}), client[1])

    return not selecting or any(
        (not rule.get("ports") or any(p["port"] == port for p in rule["ports"])) and any(map(peer, rule.get("from", [{}])))
        for policy in selecting for rule in policy["spec"].get("ingress", []))


def pods(objs: dict) -> dict[str, tuple[str, dict]]:
    found = {name: (o["metadata"]["namespace"], o["spec"]["template"]["metadata"].get("labels", {}))
             for (kind, name), o in objs.items() if kind in ("Deployment", "StatefulSet", "Job")}
    found |= {name: (o["metadata"]["namespace"], o["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {}))
              for (kind, name), o in objs.items() if kind == "CronJob"}  # the pods of the Jobs it creates
    return found


@pytest.fixture(params=["base", "overlays/dev", "overlays/production", "external-db"])
def rendered(request, tmp_path):
    if request.param == "external-db":
        return objects("overlays/external-db", root=with_external_db(tmp_path))
    return objects(request.param)


def test_each_service_admits_its_allow_list_only(rendered):
    policies = [o for (kind, _), o in rendered.items() if kind == "NetworkPolicy"]
    own = pods(rendered)
    clients = {**CLIENTS, **own}
    for name, target in own.items():
        for port in {5000, 8333, 5432, 8080, 22}:
            got = {c for c, client in clients.items() if admits(policies, target, client, port)}
            assert got == ALLOWED.get((target[1].get("app"), port), set()) & set(clients), f"{name}:{port}"
    assert {"mlflow", "object-store", "mlflow-db-migrate"} <= set(own)


def test_default_deny_selects_every_pod(rendered):
    deny = rendered[("NetworkPolicy", "default-deny-ingress")]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}


def test_the_check_catches_an_open_service(rendered):
    """Without the default deny, a pod no other policy selects admits anyone: the migration Job."""
    policies = [o for (kind, name), o in rendered.items() if kind == "NetworkPolicy" and name != "default-deny-ingress"]
    assert admits(policies, pods(rendered)["mlflow-db-migrate"], CLIENTS["stranger"], 22)
