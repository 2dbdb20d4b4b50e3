"""The PaDiRec pipeline: data -> backbone -> features -> adapter bank (fan-out) -> generator -> evaluation.

The evaluate step trains nothing: the band protocol's generator (``band_generator``, from the bank)
and the ceiling's second Retrain (``retrain_ceiling``, from the features) are steps of their own,
cached like every training step; a step with nothing to train writes a ``skipped`` folder.

``build_pipeline(image, cluster)`` returns the pipeline with every component on ``image`` (the
project image, a compile-time parameter) and the cluster's settings on each step: resources
(requests and limits), the non-root user, and where GPU steps may be scheduled. The whole
config travels as one JSON parameter, so each step is hermetic and KFP's cache key changes with
any setting, the inputs or the image. The exit handler closes the parent MLflow run whatever
happens.

What a step needs from the cluster reaches it as environment variables set by the compiled
pipeline's Kubernetes settings (kfp-kubernetes), read in the namespace where the run executes
(``manifests/runs/``): the settings ConfigMap, the S3 and MLflow Secrets, and the KFP run id from
the pod's ``pipeline/runid`` label. The run id is deliberately not a component input: KFP's cache
key hashes the inputs, and a per-run value would make every step a cache miss.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from kfp import dsl, kubernetes

import components
from padirec.errors import PadirecError
from padirec.runtime.cluster_env import (  # the environment of every step, by source (manifests/runs/)
    IMAGE_ENV,
    MLFLOW_KEYS,
    MLFLOW_SECRET,
    S3_KEYS,
    S3_SECRET,
    SETTINGS_CONFIG_MAP,
    SETTINGS_KEYS,
)
from padirec.tracking import KFP_RUN_ID_ENV

PIPELINE_NAME = "padirec"
DEFAULT_IMAGE = "padirec:0.1.0"
GPU_STEPS = ("train_backbone", "compute_features", "build_adapters", "train_generator", "band_generator",
             "retrain_ceiling", "evaluate", "evaluate_shard", "time_responses")
# evaluate and time_responses time new tasks (wall time): a cached result would report a stale
# machine's figures; the shards and the merge are the rest of evaluate, logged into this run.
UNCACHED_STEPS = ("finish_run", "evaluate", "evaluate_shard", "time_responses", "merge_evaluation",
                  "register_and_promote")
LIGHT_STEPS = ("plan_shards", "plan_evaluation", "finish_run")
PURE_STEPS = ("plan_shards", "plan_evaluation")  # functions of the config: no tracking, no data

RUN_ID_FIELD = "metadata.labels['pipeline/runid']"


@dataclass(frozen=True)
class ClusterOptions:
    """Resources, scheduling and identity of the steps on a cluster (``padirec compile`` flags,
    docs/cluster.md). ``gpu_count = 0`` compiles for a CPU-only cluster."""

    gpu_type: str = "nvidia.com/gpu"
    gpu_count: int = 1
    cpu: str = "4"
    memory: str = "16G"
    # past it the step is OOMKilled (and retried), not its node's neighbours; "": the request
    memory_limit: str = ""
    # plan_shards, plan_evaluation and finish_run read no data and train nothing
    light_cpu: str = "1"
    light_memory: str = "2G"
    # Where GPU steps may run: node labels they require, and taints they tolerate, each written as
    # kubectl taint does, KEY[=VALUE][:EFFECT] (no value: any value). The default tolerates the
    # taint most clouds put on GPU nodes.
    gpu_node_selector: Mapping[str, str] = field(default_factory=dict)
    gpu_tolerations: tuple[str, ...] = ("nvidia.com/gpu:NoSchedule",)
    run_as_user: int = 10001  # the project image's user (images/Dockerfile)
    retries: int = 2
    retry_backoff: str = "60s"

    def __post_init__(self):
        # Kubernetes refuses such a pod when the step starts; say so when compiling
        if memory_bytes(self.memory_limit or self.memory) < memory_bytes(self.memory):
            raise PadirecError(f"memory limit {self.memory_limit} is below the request {self.memory}")
        memory_bytes(self.light_memory)  # request and limit both
        for cpu in (self.cpu, self.light_cpu):
            if not re.fullmatch(r"\d+(\.\d+)?|\d+m", cpu):
                raise PadirecError(f"cpu {cpu!r}: a number of cores (4, 0.5) or millicores (500m)")
        if self.run_as_user <= 0:
            raise PadirecError(f"run_as_user {self.run_as_user}: the restricted profile refuses root (0)")
        for spec in self.gpu_tolerations:
            toleration(spec)


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity in the forms KFP accepts (16G, 512Mi, 1000000)."""
    m = re.fullmatch(r"(\d+)(?:([KMGTPE])(i?))?", quantity)
    if not m:
        raise PadirecError(f"memory {quantity!r}: a number of bytes with K, M, G, T, P, E or Ki, Mi, Gi, ... (e.g. 16G)")
    number, unit, binary = m.groups()
    return int(number) * (1024 if binary else 1000) ** ("KMGTPE".index(unit) + 1 if unit else 0)


def toleration(spec: str) -> dict:
    """``KEY[=VALUE][:EFFECT]`` as kfp-kubernetes' ``add_toleration`` arguments."""
    m = re.fullmatch(r"([\w./-]+)(?:=([\w.-]*))?(?::(NoSchedule|PreferNoSchedule|NoExecute))?", spec)
    if not m:
        raise PadirecError(f"toleration {spec!r}: expected KEY[=VALUE][:EFFECT], EFFECT NoSchedule, "
                           f"PreferNoSchedule or NoExecute (e.g. nvidia.com/gpu:NoSchedule)")
    key, value, effect = m.groups()
    return {"key": key, "operator": "Exists" if value is None else "Equal", "value": value, "effect": effect}


def step_environment() -> dict[str, tuple[str, str]]:
    """Every variable a step gets, as ``{env name: (kind, source)}`` with kind ``configmap``,
    ``secret``, ``optional-secret`` or ``field``: what the compiled YAML passes, and what a local
    container run must pass the same way."""
    env = {k: ("configmap", SETTINGS_CONFIG_MAP) for k in SETTINGS_KEYS}
    env.update({k: ("secret", S3_SECRET) for k in S3_KEYS})
    env.update({k: ("optional-secret", MLFLOW_SECRET) for k in MLFLOW_KEYS})
    env[KFP_RUN_ID_ENV] = ("field", RUN_ID_FIELD)
    return env


def _with_environment(task):
    kubernetes.use_config_map_as_env(task, SETTINGS_CONFIG_MAP, {k: k for k in SETTINGS_KEYS})
    kubernetes.use_secret_as_env(task, S3_SECRET, {k: k for k in S3_KEYS})
    kubernetes.use_secret_as_env(task, MLFLOW_SECRET, {k: k for k in MLFLOW_KEYS}, optional=True)
    kubernetes.use_field_path_as_env(task, KFP_RUN_ID_ENV, RUN_ID_FIELD)
    return task


def _configure(task, name: str, cluster: ClusterOptions):
    task.set_caching_options(name not in UNCACHED_STEPS)
    # Identity only: kfp-kubernetes 2.17 sets no other securityContext field. The KFP backend adds
    # allowPrivilegeEscalation false, drop ALL and seccomp RuntimeDefault itself (docs/cluster.md).
    kubernetes.set_security_context(task, run_as_user=cluster.run_as_user, run_as_non_root=True)
    light = name in LIGHT_STEPS
    cpu = cluster.light_cpu if light else cluster.cpu
    memory, limit = (cluster.light_memory,) * 2 if light else (cluster.memory, cluster.memory_limit or cluster.memory)
    # The CPU limit equals the request: the pod's cgroup quota then tells torch how many threads
    # to use (padirec.runtime.compute), instead of the node's core count.
    task.set_cpu_request(cpu).set_cpu_limit(cpu).set_memory_request(memory).set_memory_limit(limit)
    if name in PURE_STEPS:
        return task
    _with_environment(task)
    # finish_run too: it closes the parent run, and once it has failed nothing else does it in the run
    task.set_retry(num_retries=cluster.retries, backoff_duration=cluster.retry_backoff, backoff_factor=2.0)
    if name == "finish_run":
        return task
    if name in GPU_STEPS and cluster.gpu_count > 0:
        task.set_accelerator_type(cluster.gpu_type).set_accelerator_limit(cluster.gpu_count)
        for key, value in cluster.gpu_node_selector.items():
            kubernetes.add_node_selector(task, key, value)
        for spec in cluster.gpu_tolerations:
            kubernetes.add_toleration(task, **toleration(spec))
    return task


def build_pipeline(image: str = DEFAULT_IMAGE, cluster: ClusterOptions | None = None):
    cluster = cluster or ClusterOptions()
    comps = components.build(image)

    def step(name: str, **kwargs):
        task = _configure(comps[name](**kwargs), name, cluster).set_display_name(name.replace("_", " "))
        if name == "train_backbone":  # backbone.launcher: trainjob runs the step's own image on its nodes
            task.set_env_variable(IMAGE_ENV, image)
        return task

    @dsl.pipeline(name=PIPELINE_NAME, description="Controllable multi-objective recommendation by parameter diffusion")
    def padirec_pipeline(config_json: str, data_version: str = ""):
        """``data_version`` names the snapshot of the source data (a date, a partition): it fills
        ``{snapshot}`` in the data locations and is an input of the cached ``prepare_data``, so a
        new snapshot is never served from the cache and the same one always is. ``padirec
        schedule`` sets it to the run's scheduled day (``[[ScheduledTime.20060102]]``)."""
        with dsl.ExitHandler(step("finish_run", config_json=config_json), name="tracked-run"):
            data = step("prepare_data", config_json=config_json, data_version=data_version)
            backbone = step("train_backbone", config_json=config_json, data=data.outputs["data"])
            # the frozen backbone's features, once: every shard and the evaluate step read them
            features = step("compute_features", config_json=config_json, data=data.outputs["data"],
                            backbone=backbone.outputs["backbone"])
            shards = step("plan_shards", config_json=config_json)
            with dsl.ParallelFor(shards.output, name="adapter-shards") as shard_index:
                shard = step("build_adapters", config_json=config_json, shard_index=shard_index,
                             data=data.outputs["data"], backbone=backbone.outputs["backbone"],
                             features=features.outputs["features"])
            generator = step("train_generator", config_json=config_json, banks=dsl.Collected(shard.outputs["bank"]))
            band_generator = step("band_generator", config_json=config_json, bank=generator.outputs["bank"])
            ceiling = step("retrain_ceiling", config_json=config_json, data=data.outputs["data"],
                           backbone=backbone.outputs["backbone"], features=features.outputs["features"])

            def register(report):
                step("register_and_promote", config_json=config_json, data=data.outputs["data"],
                     backbone=backbone.outputs["backbone"], generator=generator.outputs["generator"], report=report)

            inputs = dict(config_json=config_json, data=data.outputs["data"], backbone=backbone.outputs["backbone"],
                          features=features.outputs["features"], bank=generator.outputs["bank"],
                          generator=generator.outputs["generator"],
                          band_generator=band_generator.outputs["band_generator"], ceiling=ceiling.outputs["ceiling"])
            # evaluation.shards = 1: the single step; more: ranges of the test users, then a merge.
            # register_and_promote in each branch: KFP's local runner cannot pick an artifact
            # with dsl.OneOf (kfp 2.17: "Expected 1 artifact in ArtifactSelectorSpec").
            plan = step("plan_evaluation", config_json=config_json)
            with dsl.If(plan.outputs["count"] == 1, name="one-evaluation"):
                register(step("evaluate", **inputs).outputs["report"])
            with dsl.Else(name="evaluation-shards"):
                # the timing is no per-user work: its own step, beside the shards, on every user
                timing = step("time_responses", **inputs)
                with dsl.ParallelFor(plan.outputs["indices"], name="evaluation-shards") as user_shard:
                    part = step("evaluate_shard", shard_index=user_shard, **inputs)
                register(step("merge_evaluation", config_json=config_json, parts=dsl.Collected(part.outputs["part"]),
                              timings=timing.outputs["timings"]).outputs["report"])

    return padirec_pipeline
