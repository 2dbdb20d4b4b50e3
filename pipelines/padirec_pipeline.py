"""The PaDiRec pipeline: data -> backbone -> adapter bank (fan-out) -> generator -> evaluation.

``build_pipeline(image, cluster)`` returns the pipeline with every component on ``image`` (the
project image, a compile-time parameter) and the cluster's resources on each step. The whole
config travels as one JSON parameter, so each step is hermetic and KFP's cache key changes with
any setting, the inputs or the image. The exit handler closes the parent MLflow run whatever
happens.
"""

from dataclasses import dataclass

from kfp import dsl

import components

PIPELINE_NAME = "padirec"
DEFAULT_IMAGE = "padirec:0.1.0"
GPU_STEPS = ("train_backbone", "build_adapters", "train_generator", "evaluate", "compare_response_time")
# Timing steps measure wall time: a cached result would report a stale machine's figures.
UNCACHED_STEPS = ("compare_response_time", "finish_run", "evaluate", "register_and_promote")


@dataclass(frozen=True)
class ClusterOptions:
    """Resources on a cluster. ``gpu_count = 0`` compiles for a CPU-only cluster."""

    gpu_type: str = "nvidia.com/gpu"
    gpu_count: int = 1
    cpu: str = "4"
    memory: str = "16G"
    retries: int = 2
    retry_backoff: str = "60s"


def _configure(task, name: str, cluster: ClusterOptions):
    task.set_caching_options(name not in UNCACHED_STEPS)
    if name in ("plan_shards", "finish_run"):
        return task
    task.set_cpu_request(cluster.cpu).set_memory_request(cluster.memory)
    task.set_retry(num_retries=cluster.retries, backoff_duration=cluster.retry_backoff, backoff_factor=2.0)
    if name in GPU_STEPS and cluster.gpu_count > 0:
        task.set_accelerator_type(cluster.gpu_type).set_accelerator_limit(cluster.gpu_count)
    return task


def build_pipeline(image: str = DEFAULT_IMAGE, cluster: ClusterOptions | None = None):
    cluster = cluster or ClusterOptions()
    comps = components.build(image)

    def step(name: str, **kwargs):
        return _configure(comps[name](**kwargs), name, cluster).set_display_name(name.replace("_", " "))

    @dsl.pipeline(name=PIPELINE_NAME, description="Controllable multi-objective recommendation by parameter diffusion")
    def padirec_pipeline(config_json: str):
        run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        with dsl.ExitHandler(step("finish_run", config_json=config_json, kfp_run_id=run_id), name="tracked-run"):
            data = step("prepare_data", config_json=config_json, kfp_run_id=run_id)
            backbone = step("train_backbone", config_json=config_json, kfp_run_id=run_id, data=data.outputs["data"])
            shards = step("plan_shards", config_json=config_json)
            with dsl.ParallelFor(shards.output, name="adapter-shards") as shard_index:
                shard = step("build_adapters", config_json=config_json, kfp_run_id=run_id, shard_index=shard_index,
                             data=data.outputs["data"], backbone=backbone.outputs["backbone"])
            generator = step("train_generator", config_json=config_json, kfp_run_id=run_id,
                             banks=dsl.Collected(shard.outputs["bank"]))
            inputs = dict(config_json=config_json, kfp_run_id=run_id, data=data.outputs["data"],
                          backbone=backbone.outputs["backbone"], bank=generator.outputs["bank"],
                          generator=generator.outputs["generator"])
            timing = step("compare_response_time", **inputs)
            report = step("evaluate", **inputs, timing=timing.outputs["timing"])
            step("register_and_promote", config_json=config_json, kfp_run_id=run_id, data=data.outputs["data"],
                 backbone=backbone.outputs["backbone"], generator=generator.outputs["generator"],
                 report=report.outputs["report"])

    return padirec_pipeline
