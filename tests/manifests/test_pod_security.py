"""Every pod padirec puts on a cluster meets the Pod Security Standards' restricted profile, as an
admin's namespace label would enforce it: each pod spec of every kustomization, rendered, and the
pipeline's step pods, from the compiled pipeline. Plus the house rules: requests and limits on
every container, third-party images by digest, and the padirec namespace labelled to enforce it.
https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.32)"""

import copy
import re
import shutil

import pytest
import yaml
from kfp import compiler

from components import FUNCTIONS
from pipelines.padirec_pipeline import GPU_STEPS, LIGHT_STEPS, ClusterOptions, build_pipeline
from tests.manifests.kube import MANIFESTS, render, with_external_db

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")

# restricted: only these volume types; baseline: only these sysctls, SELinux types, capabilities
VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
           "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
           "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
           "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {None, "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
PROFILES = {"RuntimeDefault", "Localhost"}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def kustomizations() -> list[str]:
    """Every kustomization that renders here: not components, not the KFP install (fetched from GitHub)."""
    found = []
    for path in sorted(MANIFESTS.rglob("kustomization.yaml")):
        k = yaml.safe_load(path.read_text())
        if k.get("kind") != "Component" and not any("://" in r for r in k.get("resources", [])):
            found.append(str(path.parent.relative_to(MANIFESTS)))
    return found


def pod_specs(objs: list[dict]) -> dict[str, dict]:
    """The pod spec of each workload, by ``Kind/name``."""
    paths = {"Pod": ("spec",), "CronJob": ("spec", "jobTemplate", "spec", "template", "spec")}
    specs = {}
    for o in objs:
        path = paths.get(o["kind"], ("spec", "template", "spec"))
        spec = o
        for key in path:
            spec = spec.get(key, {}) if isinstance(spec, dict) else {}
        if spec.get("containers"):
            specs[f"{o['kind']}/{o['metadata']['name']}"] = spec
    return specs


def violations(pod: dict) -> list[str]:
    """What breaks the restricted profile (which includes baseline), and containers without
    requests and limits."""
    found = [f"{key}: true" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    found += [f"volume {v['name']}: {kind}" for v in pod.get("volumes", []) for kind in v if kind != "name" and kind not in VOLUMES]
    psc = pod.get("securityContext", {})
    found += [f"sysctl {s['name']}" for s in psc.get("sysctls", []) if s["name"] not in SYSCTLS]
    for c in pod["containers"] + pod.get("initContainers", []) + pod.get("ephemeralContainers", []):
        sc, caps = c.get("securityContext", {}), c.get("securityContext", {}).get("capabilities", {})
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        rules = [(sc.get("privileged"), "privileged"),
                 (sc.get("allowPrivilegeEscalation") is not False, "allowPrivilegeEscalation is not false"),
                 ("ALL" not in caps.get("drop", []), "capabilities do not drop ALL"),
                 (set(caps.get("add", [])) - {"NET_BIND_SERVICE"}, f"adds capabilities {caps.get('add')}"),
                 (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True, "runAsNonRoot is not true"),
                 (sc.get("runAsUser", psc.get("runAsUser")) == 0, "runAsUser 0"),
                 (seccomp not in PROFILES, f"seccompProfile {seccomp}"),
                 (sc.get("procMount", "Default") != "Default", "procMount"),
                 ([p for p in c.get("ports", []) if p.get("hostPort")], "hostPort")]
        for ctx in (psc, sc):
            selinux = ctx.get("seLinuxOptions", {})
            rules += [(selinux.get("type") not in SELINUX_TYPES or {"user", "role"} & set(selinux), "seLinuxOptions"),
                      (ctx.get("appArmorProfile", {}).get("type") == "Unconfined", "appArmorProfile Unconfined")]
        if c in pod["containers"] + pod.get("initContainers", []):  # ephemeral containers take no resources
            res = c.get("resources", {})
            rules += [(what not in res.get(kind, {}), f"no {kind} {what}")
                      for kind in ("requests", "limits") for what in ("cpu", "memory")]
        found += [f"{c['name']}: {message}" for broken, message in rules if broken]
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    out = {k: render(k) for k in kustomizations()}
    out["overlays/external-db"] = render("overlays/external-db", root=with_external_db(tmp_path_factory.mktemp("m")))
    return out


@needs_kubectl
def test_every_kustomization_is_rendered(rendered):
    assert {"base", "overlays/dev", "overlays/production", "runs", "overlays/external-db"} <= set(rendered)
    assert "kfp" not in rendered


@needs_kubectl
def test_every_pod_spec_meets_the_restricted_profile(rendered):
    checked = set()
    for name, objs in rendered.items():
        for workload, pod in pod_specs(objs).items():
            assert violations(pod) == [], f"{name}: {workload}"
            checked.add(workload)
    assert {"Deployment/mlflow", "Job/mlflow-db-migrate", "StatefulSet/postgres", "StatefulSet/object-store",
            "Deployment/padirec-serving"} <= checked
    assert "serving" in rendered  # manifests/serving alone, as well as in the overlays


def trainjob_pod(job: dict) -> dict:
    """The pod of a TrainJob's node, as the Trainer builds it on the torch runtime: the job's
    runtime patch gives the pod's and the ``node`` container's security settings, the trainer its
    image, command and resources (the runtime's own template sets no security context)."""
    trainer = job["spec"]["trainer"]
    patches = [p for p in job["spec"].get("runtimePatches", []) if p.get("manager") == "padirec.io/backbone-step"]
    assert len(patches) == 1, "the TrainJob carries no padirec runtime patch"
    jobs = patches[0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = next(j for j in jobs if j["name"] == "node")["template"]["spec"]["template"]["spec"]
    container = {**next(c for c in pod["containers"] if c["name"] == "node"), "image": trainer["image"],
                 "command": trainer["command"], "resources": trainer["resourcesPerNode"]}
    return {**{k: v for k, v in pod.items() if k != "containers"}, "containers": [container]}


@pytest.mark.parametrize("gpus", [0, 1])
def test_the_backbone_trainjob_pods_meet_the_restricted_profile(gpus):
    """The TrainJob the backbone step submits (``backbone.launcher: trainjob``), and the example in
    manifests/trainer."""
    from padirec.backbones.trainjob import render, worker_args
    from tests.backbones.test_trainjob import trainjob_cfg

    cfg = trainjob_cfg(nodes=2, gpus=gpus, staging="s3://b/p")
    job = render("padirec-backbone-0123456789ab", "team-a", "registry.example.com/padirec:1", cfg.trainjob, 2,
                 worker_args("s3://b/p/x/data", "s3://b/p/x/backbone", cfg, 50, 0))
    assert violations(trainjob_pod(job)) == []
    assert violations(trainjob_pod(yaml.safe_load((MANIFESTS / "trainer" / "backbone-trainjob.yaml").read_text()))) == []
    # the check sees a pod below the profile
    broken = copy.deepcopy(job)
    del broken["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
        "template"]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    assert violations(trainjob_pod(broken)) == ["node: runAsNonRoot is not true"]


@needs_kubectl
def test_padirec_namespace_enforces_restricted(rendered):
    for name, objs in rendered.items():
        for ns in (o for o in objs if o["kind"] == "Namespace"):
            assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted", name
    assert any(o["kind"] == "Namespace" for o in rendered["overlays/production"])


@needs_kubectl
def test_third_party_images_by_digest(rendered):
    images = {c["image"] for objs in rendered.values() for pod in pod_specs(objs).values() for c in pod["containers"]}
    third_party = {i for i in images if not re.match(r"([\w.-]+(:\d+)?/)*padirec[:@]", i)}
    assert {i.split(":")[0] for i in third_party} == {"postgres", "chrislusf/seaweedfs"}
    for image in third_party:
        assert DIGEST.search(image), image


def _compliant() -> dict:
    return pod_specs(render("base"))["Deployment/mlflow"]


@needs_kubectl
@pytest.mark.parametrize("path, value, expected", [
    (("hostNetwork",), True, "hostNetwork"),
    (("volumes", 0), {"name": "node", "hostPath": {"path": "/"}}, "volume node: hostPath"),
    (("securityContext", "runAsNonRoot"), False, "runAsNonRoot"),
    (("securityContext", "seccompProfile", "type"), "Unconfined", "seccompProfile Unconfined"),
    (("containers", 0, "securityContext", "runAsUser"), 0, "runAsUser 0"),
    (("containers", 0, "securityContext", "allowPrivilegeEscalation"), True, "allowPrivilegeEscalation"),
    (("containers", 0, "securityContext", "privileged"), True, "privileged"),
    (("containers", 0, "securityContext", "capabilities"), {"drop": ["NET_RAW"]}, "drop ALL"),
    (("containers", 0, "securityContext", "capabilities", "add"), ["SYS_ADMIN"], "SYS_ADMIN"),
    (("containers", 0, "ports", 0, "hostPort"), 5000, "hostPort"),
    (("containers", 0, "resources", "limits"), {"memory": "2Gi"}, "no limits cpu"),
])
def test_a_pod_below_the_profile_is_caught(path, value, expected):
    pod = _compliant()
    assert violations(pod) == []
    bad = copy.deepcopy(pod)
    target = bad
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert [v for v in violations(bad) if expected in v], violations(bad)


def test_step_pods(tmp_path):
    """What the compiled pipeline asks of each step pod: a non-root user, requests and limits, and
    GPU steps' node selectors and tolerations. allowPrivilegeEscalation, capabilities and seccomp
    are no kfp-kubernetes 2.17 settings: the KFP backend sets them (docs/cluster.md)."""
    cluster = ClusterOptions(memory="8Gi", memory_limit="12Gi", gpu_node_selector={"pool": "gpu"},
                             gpu_tolerations=("nvidia.com/gpu:NoSchedule", "dedicated=ml:NoExecute"))
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("padirec:1-x", cluster), str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    steps = spec["deploymentSpec"]["executors"]
    # every component (a second task of one, such as register-and-promote-2, gets its own executor)
    assert {re.sub(r"-\d+$", "", e.removeprefix("exec-")).replace("-", "_") for e in steps} == set(FUNCTIONS)
    for executor, step in steps.items():
        name = executor.removeprefix("exec-").replace("-", "_")
        assert k8s[executor]["securityContext"] == {"runAsNonRoot": True, "runAsUser": "10001"}, name
        res = step["container"]["resources"]
        request, limit = ("2G", "2G") if name in LIGHT_STEPS else ("8Gi", "12Gi")
        assert (res["resourceMemoryRequest"], res["resourceMemoryLimit"]) == (request, limit), name
        assert res["resourceCpuRequest"] == res["resourceCpuLimit"], name
        gpu = name in GPU_STEPS
        assert k8s[executor].get("nodeSelector") == ({"labels": {"pool": "gpu"}} if gpu else None), name
        assert k8s[executor].get("tolerations") == ([
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"}] if gpu else None), name
