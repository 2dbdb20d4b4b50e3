"""Phase 1 on several nodes: a Kubeflow Trainer ``TrainJob`` (``backbone.launcher: trainjob``).

The backbone step stays the pipeline's step: it uploads the prepared data to
``backbone.trainjob.staging``, submits a TrainJob (``trainer.kubeflow.org/v1alpha1``) on the
Trainer's torch runtime, and waits. The runtime starts ``trainjob.nodes`` pods and sets torchrun's
rendezvous (``PET_NNODES``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR``...); each pod runs
``torchrun -m padirec.backbones.ddp_worker`` with ``backbone.processes`` ranks, the same worker as
one pod's DDP (``padirec.backbones.distributed``). Rank 0 uploads the trained backbone next to the
data, and the step downloads it as its own output. So the backbone artifact, its cache entry and its
MLflow run are the same whichever launcher trained it.

The step's service account needs ``create``, ``get`` and ``delete`` on ``trainjobs`` in its
namespace (``manifests/runs/trainjob-rbac.yaml``); the trainer pods read the object store with
the same ConfigMap and Secret as the steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from padirec.backbones.config import BackboneConfig, TrainJobSettings
from padirec.errors import PadirecError
from padirec.runtime.cluster_env import (
    IMAGE_ENV,
    KFP_RUN_ID_ENV,
    S3_KEYS,
    S3_SECRET,
    S3_SETTINGS_KEYS,
    SERVICE_ACCOUNT_DIR,
    SETTINGS_CONFIG_MAP,
)

log = logging.getLogger("padirec")

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
WORKER = ["torchrun", "-m", "padirec.backbones.ddp_worker"]  # torchrun reads the runtime's PET_* variables
# The torch runtime's replicated job and its trainer container are both named "node". The patch
# puts its pods at the restricted Pod Security profile, as every padirec pod (docs/cluster.md,
# "Pod security"): the image's non-root user, no privilege escalation, no capabilities, seccomp.
NODE = "node"
PATCH_MANAGER = "padirec.io/backbone-step"
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


class TrainJobError(PadirecError):
    """The TrainJob could not be submitted, failed, or ran past its time (the message says which)."""


def job_name(run_id: str, cfg: BackboneConfig, max_len: int, seed: int) -> str:
    """A DNS-1035 name, the same for a retried step of the same run (so a retry finds its job)."""
    key = json.dumps([run_id, dataclasses.asdict(cfg), max_len, seed], sort_keys=True, default=str)
    return f"padirec-backbone-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def threads_per_rank(cpu: str, processes: int) -> int:
    """The node's cores (``"4"``, ``"500m"``) shared out over its ranks, at least one each."""
    cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, int(cores) // processes)


def render(name: str, namespace: str, image: str, settings: TrainJobSettings, processes: int,
           worker_args: list[str]) -> dict[str, Any]:
    """The TrainJob manifest: ``settings.nodes`` nodes of ``processes`` ranks each, running
    ``image``'s worker with ``worker_args``; the object store's endpoint and keys from the runs'
    ConfigMap and Secret, as the steps get them; the pods patched to the restricted profile."""
    threads = str(threads_per_rank(settings.cpu, processes))
    env = [{"name": k, "valueFrom": {"configMapKeyRef": {"name": SETTINGS_CONFIG_MAP, "key": k}}}
           for k in S3_SETTINGS_KEYS]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": k}}} for k in S3_KEYS]
    env += [{"name": "PADIREC_THREADS", "value": threads}, {"name": "OMP_NUM_THREADS", "value": threads}]
    resources: dict[str, Any] = {"cpu": settings.cpu, "memory": settings.memory}
    if settings.gpus:
        resources["nvidia.com/gpu"] = str(settings.gpus)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "padirec", "padirec.io/step": "train-backbone"}},
        "spec": {
            "runtimeRef": {"name": settings.runtime, "apiGroup": GROUP, "kind": "ClusterTrainingRuntime"},
            "trainer": {
                "image": image,
                "command": WORKER,
                "args": worker_args,
                "numNodes": settings.nodes,
                "numProcPerNode": processes,
                # requests = limits: the cgroup quota is what torch's threads are sized from
                "resourcesPerNode": {"requests": resources, "limits": dict(resources)},
                "env": env,
            },
            "runtimePatches": [{"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {
                "replicatedJobs": [{"name": NODE, "template": {"spec": {"template": {"spec": {
                    "securityContext": POD_SECURITY,
                    "containers": [{"name": NODE, "securityContext": CONTAINER_SECURITY}]}}}}}]}}}}],
        },
    }


def worker_args(data_uri: str, out_uri: str, cfg: BackboneConfig, max_len: int, seed: int) -> list[str]:
    """``ddp_worker``'s arguments: the staged data and output, the settings, and the device."""
    # the chosen backbone's settings; the worker trains where it runs and never submits again
    worker_cfg = dataclasses.replace(cfg.chosen(), launcher="local")
    return ["--data", data_uri, "--out", out_uri, "--backbone", json.dumps(dataclasses.asdict(worker_cfg)),
            "--max-len", str(max_len), "--seed", str(seed), "--device", "cuda" if cfg.trainjob.gpus else "cpu"]


def job_state(job: dict[str, Any]) -> tuple[str, str]:
    """``(state, message)``: ``Complete`` or ``Failed`` once a condition says so, else the
    latest true condition (``Created``, ``Suspended``...) or ``Submitted``."""
    true = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    for c in true:
        if c.get("type") in ("Complete", "Failed"):
            return c["type"], c.get("message") or c.get("reason") or ""
    return (true[-1]["type"], true[-1].get("message") or "") if true else ("Submitted", "")


class TrainJobs:
    """The TrainJobs of one namespace, through the Kubernetes API (the pod's service account in a
    cluster, else the local kubeconfig)."""

    def __init__(self, namespace: str):
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        self.api, self.namespace = client.CustomObjectsApi(), namespace

    def create(self, body: dict[str, Any]) -> None:
        self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def get(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name,
                                                 propagation_policy="Background")


def submit(jobs: Any, body: dict[str, Any]) -> None:
    """Create the job. One of that name from an earlier attempt of this step is waited on again
    while it runs or has completed; a failed one is replaced."""
    name = body["metadata"]["name"]
    found = jobs.get(name)
    if found is not None and job_state(found)[0] == "Failed":
        log.info("TrainJob %s: an earlier attempt failed; replacing it", name)
        jobs.delete(name)
        found = None
    if found is None:
        jobs.create(body)
        log.info("TrainJob %s/%s submitted: %d node(s) x %d rank(s)", body["metadata"]["namespace"], name,
                 body["spec"]["trainer"]["numNodes"], body["spec"]["trainer"]["numProcPerNode"])
    else:
        log.info("TrainJob %s: already there from an earlier attempt of this step; waiting for it", name)


def wait(jobs: Any, name: str, timeout_s: float, poll_s: float = 10.0,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll until the job completes; ``TrainJobError`` when it fails, vanishes, or runs past
    ``timeout_s`` (then it is deleted, so its pods free their nodes)."""
    deadline, last = clock() + timeout_s, None
    while True:
        job = jobs.get(name)
        if job is None:
            raise TrainJobError(f"TrainJob {name} disappeared while the backbone step waited for it")
        state, message = job_state(job)
        if state != last:
            log.info("TrainJob %s: %s%s", name, state, f" ({message})" if message else "")
            last = state
        if state == "Complete":
            return
        if state == "Failed":
            raise TrainJobError(f"TrainJob {name} failed: {message or 'no message'} (its pods' logs: "
                                f"kubectl logs -l jobset.sigs.k8s.io/jobset-name={name})")
        if clock() > deadline:
            jobs.delete(name)
            raise TrainJobError(f"TrainJob {name} still {state} after {timeout_s / 60:.0f} min "
                                "(backbone.trainjob.timeout_minutes); deleted it")
        sleep(poll_s)


def own_namespace() -> str:
    path = Path(SERVICE_ACCOUNT_DIR) / "namespace"
    if not path.is_file():
        raise TrainJobError("backbone.trainjob.namespace: not set, and this is not a pod (no service-account "
                            f"namespace at {path}); name the namespace where the TrainJob runs")
    return path.read_text().strip()


def train_on_trainjob(data_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: BackboneConfig,
                      max_len: int, seed: int, jobs: Any = None) -> dict[str, Any]:
    """Stage the data, run the TrainJob, fetch the backbone into ``out_dir``; returns its metrics.
    ``jobs``: the TrainJobs API (``TrainJobs`` of the namespace when None)."""
    from padirec.runtime.storage import localize_folder, upload_folder

    tj = cfg.trainjob
    image = tj.image or os.environ.get(IMAGE_ENV, "")
    if not image:
        raise TrainJobError(f"backbone.trainjob.image: not set, and {IMAGE_ENV} is not in the step's environment "
                            "(padirec compile sets it on the backbone step)")
    namespace = tj.namespace or own_namespace()
    name = job_name(os.environ.get(KFP_RUN_ID_ENV, "local"), cfg, max_len, seed)
    staged = f"{tj.staging.rstrip('/')}/{name}"
    upload_folder(data_dir, f"{staged}/data")
    body = render(name, namespace, image, tj, cfg.processes,
                  worker_args(f"{staged}/data", f"{staged}/backbone", cfg, max_len, seed))
    jobs = jobs or TrainJobs(namespace)
    submit(jobs, body)
    wait(jobs, name, tj.timeout_minutes * 60.0)
    localize_folder(f"{staged}/backbone", out_dir)
    jobs.delete(name)  # done: its pods are gone with it; the staged files stay for inspection
    return json.loads((Path(out_dir) / "metrics.json").read_text())
