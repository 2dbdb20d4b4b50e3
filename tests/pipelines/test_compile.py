"""The compiled pipeline: loads back, every stage present, image as given, fan-out and exit handler."""

import re
from pathlib import Path

import pytest
import yaml
from kfp import compiler, components

from pipelines.padirec_pipeline import build_pipeline, step_environment


def _load(path: Path) -> tuple[dict, dict]:
    """The compiled file: the pipeline spec, then the Kubernetes platform spec (a second document)."""
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

STAGES = {"prepare-data", "train-backbone", "compute-features", "plan-shards", "build-adapters", "train-generator",
          "band-generator", "retrain-ceiling", "register-and-promote", "plan-evaluation", "evaluate", "evaluate-shard",
          "time-responses", "merge-evaluation", "finish-run"}


def test_compile_and_load_back(tmp_path):
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("registry.example/padirec:0.1.0-abc"), str(path))
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "padirec"
    spec, _ = _load(path)
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/padirec:0.1.0-abc"}
    assert STAGES <= {name.removeprefix("comp-") for name in spec["components"]}
    dag = yaml.safe_dump(spec["root"])
    assert "parameterIterator" in yaml.safe_dump(spec["components"]) and "exit-handler" in dag
    assert "config_json" in spec["root"]["inputDefinitions"]["parameters"]
    # backbone.launcher: trainjob runs the backbone step's own image on the TrainJob's nodes
    backbone = executors["exec-train-backbone"]["container"]
    assert {"name": "PADIREC_IMAGE", "value": "registry.example/padirec:0.1.0-abc"} in backbone["env"]


def test_cli_compile_writes_dist(tmp_path):
    from pipelines.cli import main

    out = tmp_path / "dist" / "padirec_pipeline.yaml"
    assert main(["compile", "--out", str(out), "--image", "padirec:0.1.0-test"]) == 0
    assert Path(out).exists() and components.load_component_from_file(str(out)).name == "padirec"


def _executor_of(spec, component):
    return spec["deploymentSpec"]["executors"][spec["components"][f"comp-{component}"]["executorLabel"]]["container"]


def test_cluster_resources_retries_and_caching(tmp_path):
    from pipelines.padirec_pipeline import ClusterOptions

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("padirec:1-x", ClusterOptions(gpu_type="nvidia.com/gpu", gpu_count=2)), str(path))
    spec, _ = _load(path)
    for gpu_step in ("train-backbone", "compute-features", "build-adapters", "train-generator", "band-generator",
                     "retrain-ceiling", "evaluate", "evaluate-shard", "time-responses"):
        accel = _executor_of(spec, gpu_step)["resources"]["accelerator"]
        assert accel["resourceCount"] == "2" and accel["resourceType"] == "nvidia.com/gpu"
    assert "accelerator" not in _executor_of(spec, "prepare-data").get("resources", {})
    resources = _executor_of(spec, "train-backbone")["resources"]  # limit = request: torch threads follow it
    assert resources["resourceCpuLimit"] == resources["resourceCpuRequest"] == "4"
    text = path.read_text()
    assert "retryPolicy" in text and "maxRetryCount: 2" in text
    caching = {name: task.get("cachingOptions", {}).get("enableCache", False)
               for comp in spec["components"].values() for name, task in comp.get("dag", {}).get("tasks", {}).items()}
    assert caching["train-backbone"] and caching["build-adapters"] and caching["prepare-data"]
    assert caching["compute-features"]  # a pure function of the data, the backbone and the settings
    assert caching["band-generator"] and caching["retrain-ceiling"]  # training, as the other training steps
    assert not caching["evaluate"]  # it times new tasks: timings are never reused from a cache
    assert not caching["time-responses"]  # it times new tasks beside the user shards
    assert not caching["evaluate-shard"] and not caching["merge-evaluation"]  # the rest of evaluate
    assert "compare-response-time" not in caching  # evaluate times the methods it fits (fitted once)


def test_cpu_only_cluster_has_no_accelerators(tmp_path):
    from pipelines.padirec_pipeline import ClusterOptions

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("padirec:1-x", ClusterOptions(gpu_count=0)), str(path))
    assert "accelerator" not in path.read_text()


def test_latest_tag_is_refused():
    from pipelines.cli import main

    assert main(["compile", "--out", "/tmp/never.yaml", "--image", "padirec:latest"]) == 2


def test_no_cached_step_takes_the_run_id(tmp_path):
    """KFP's cache key hashes a task's inputs: a per-run value among them means the cache never hits."""
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("padirec:1-x"), str(path))
    text = path.read_text()
    assert "pipeline_job_uuid" not in text and "pipeline_job_name" not in text and "kfp_run_id" not in text
    spec, _ = _load(path)
    for comp in spec["components"].values():
        for task in comp.get("dag", {}).get("tasks", {}).values():
            if task.get("cachingOptions", {}).get("enableCache"):
                assert "{{$" not in yaml.safe_dump(task.get("inputs", {})), task["taskInfo"]["name"]
    # the data version is an input of the cached data step: a new snapshot is a cache miss
    assert "data_version" in spec["root"]["inputDefinitions"]["parameters"]
    prepare = spec["root"]["dag"]["tasks"]["exit-handler-1"]
    data_task = spec["components"][prepare["componentRef"]["name"]]["dag"]["tasks"]["prepare-data"]
    assert data_task["inputs"]["parameters"]["data_version"]["componentInputParameter"].endswith("data_version")


def test_every_step_gets_the_cluster_environment(tmp_path):
    """Settings, S3 and MLflow credentials and the run id reach each step as the manifests provide them."""
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("padirec:1-x"), str(path))
    spec, executors = _load(path)
    steps = set(spec["deploymentSpec"]["executors"]) - {"exec-plan-shards", "exec-plan-evaluation"}
    assert steps <= set(executors)
    for name in steps:
        got = {}
        for kind, key in (("configMapAsEnv", "configMapName"), ("secretAsEnv", "secretName")):
            for source in executors[name].get(kind, []):
                optional = "optional-" if source.get("optional") else ""
                label = "configmap" if kind == "configMapAsEnv" else f"{optional}secret"
                got.update({e["envVar"]: (label, source[key]) for e in source["keyToEnv"]})
        got.update({f["name"]: ("field", f["fieldPath"]) for f in executors[name].get("fieldPathAsEnv", [])})
        assert got == step_environment(), name
    assert step_environment()["AWS_SECRET_ACCESS_KEY"] == ("secret", "padirec-s3")
    # KFP's MLflow plugin sets these on the container; the pipeline never does, so it cannot shadow
    # the plugin's run or endpoint (padirec.tracking.pipeline: the plugin's endpoint wins)
    from padirec.tracking.pipeline import PLUGIN_RUN_ENV, PLUGIN_URI_ENV

    assert not {PLUGIN_RUN_ENV, PLUGIN_URI_ENV, "MLFLOW_EXPERIMENT_ID", "MLFLOW_WORKSPACE"} & set(step_environment())
    assert not re.search(r"KFP_MLFLOW_|MLFLOW_RUN_ID|MLFLOW_WORKSPACE", path.read_text())
    assert step_environment()["PADIREC_KFP_RUN_ID"] == ("field", "metadata.labels['pipeline/runid']")


def test_step_resources_identity_and_gpu_scheduling_by_default(tmp_path):
    """Each step has a memory limit (the request, unless set) and runs as the image's non-root user;
    GPU steps tolerate the usual GPU taint, and only they do."""
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("padirec:1-x"), str(path))
    spec, executors = _load(path)
    for name in spec["deploymentSpec"]["executors"]:
        resources = spec["deploymentSpec"]["executors"][name]["container"]["resources"]
        assert resources["resourceMemoryLimit"] == resources["resourceMemoryRequest"], name
        assert executors[name]["securityContext"] == {"runAsNonRoot": True, "runAsUser": "10001"}, name
    assert _executor_of(spec, "train-backbone")["resources"]["resourceMemoryLimit"] == "16G"
    assert _executor_of(spec, "plan-shards")["resources"]["resourceMemoryLimit"] == "2G"
    assert executors["exec-train-generator"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeSelector" not in executors["exec-train-generator"]
    assert "tolerations" not in executors["exec-prepare-data"]


def test_cli_compile_cluster_settings(tmp_path):
    from pipelines.cli import main

    out = tmp_path / "p.yaml"
    assert main(["compile", "--out", str(out), "--image", "padirec:1-x", "--cpu", "8", "--memory", "30Gi",
                 "--memory-limit", "40Gi", "--gpu-node-selector", "cloud.google.com/gke-accelerator=nvidia-l4",
                 "--gpu-node-selector", "pool=train", "--gpu-toleration", "sku=gpu:NoSchedule",
                 "--gpu-toleration", "dedicated", "--run-as-user", "2000"]) == 0
    spec, executors = _load(out)
    resources = _executor_of(spec, "evaluate")["resources"]
    assert (resources["resourceCpuLimit"], resources["resourceMemoryRequest"], resources["resourceMemoryLimit"]) == (
        "8", "30Gi", "40Gi")
    evaluate = executors["exec-evaluate"]
    assert evaluate["nodeSelector"] == {"labels": {"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "train"}}
    assert evaluate["tolerations"] == [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
                                       {"key": "dedicated", "operator": "Exists"}]
    assert evaluate["securityContext"]["runAsUser"] == "2000"


def test_cpu_only_cluster_has_no_gpu_scheduling(tmp_path):
    from pipelines.padirec_pipeline import ClusterOptions

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("padirec:1-x", ClusterOptions(gpu_count=0, gpu_node_selector={"a": "b"})),
                                str(path))
    assert "tolerations" not in path.read_text() and "nodeSelector" not in path.read_text()


@pytest.mark.parametrize("flags, message", [
    (["--memory", "16G", "--memory-limit", "8G"], "memory limit 8G is below the request 16G"),
    (["--memory", "16GB"], "memory '16GB'"),
    (["--cpu", "four"], "cpu 'four'"),
    (["--run-as-user", "0"], "refuses root"),
    (["--gpu-toleration", "nvidia.com/gpu:NoScheduel"], "toleration 'nvidia.com/gpu:NoScheduel'"),
    (["--gpu-node-selector", "pool"], "expected LABEL=VALUE"),
])
def test_cli_compile_refuses_bad_cluster_settings(tmp_path, capsys, flags, message):
    from pipelines.cli import main

    out = tmp_path / "p.yaml"
    assert main(["compile", "--out", str(out), "--image", "padirec:1-x", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_the_dag_shows_what_evaluate_reads(tmp_path):
    """The band generator and the ceiling's second Retrain are steps whose outputs evaluate takes."""
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("padirec:1-x"), str(path))
    spec, _ = _load(path)
    tasks = {name: task for comp in spec["components"].values() for name, task in comp.get("dag", {}).get("tasks", {}).items()}

    def producers(task: str) -> dict[str, tuple[str, str]]:
        """Inside a condition or loop, an artifact arrives as ``pipelinechannel--<task>-<output>``."""
        artifacts = tasks[task]["inputs"]["artifacts"]
        return {name: (a["taskOutputArtifact"]["producerTask"], a["taskOutputArtifact"]["outputArtifactKey"])
                if "taskOutputArtifact" in a else _channel(a["componentInputArtifact"]) for name, a in artifacts.items()}

    for evaluate in ("evaluate", "evaluate-shard", "time-responses"):
        assert producers(evaluate)["band_generator"] == ("band-generator", "band_generator")
        assert producers(evaluate)["ceiling"] == ("retrain-ceiling", "ceiling")
    assert producers("band-generator") == {"bank": ("train-generator", "bank")}
    assert producers("retrain-ceiling") == {"data": ("prepare-data", "data"), "backbone": ("train-backbone", "backbone"),
                                            "features": ("compute-features", "features")}


def _channel(name: str) -> tuple[str, str]:
    task, _, output = name.removeprefix("pipelinechannel--").rpartition("-")
    return task, output


def test_evaluation_fans_out_over_user_shards(tmp_path):
    """evaluation.shards = 1: the single evaluate step; more: a ParallelFor of shards and a merge. Each
    branch registers its own report (KFP's local runner cannot pick an artifact with dsl.OneOf)."""
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("padirec:1-x"), str(path))
    spec, _ = _load(path)
    comps = spec["components"]
    loop = next(c for c in comps.values() if "evaluate-shard" in c.get("dag", {}).get("tasks", {}))
    assert loop["dag"]["tasks"]["evaluate-shard"]["inputs"]["parameters"]["shard_index"]["componentInputParameter"] \
        .endswith("loop-item")
    branches = [c for c in comps.values() if "merge-evaluation" in c.get("dag", {}).get("tasks", {})]
    assert len(branches) == 1
    merge = branches[0]["dag"]["tasks"]["merge-evaluation"]
    assert any("for-loop" in t for t in merge["dependentTasks"]) and "parts" in merge["inputs"]["artifacts"]
    assert merge["inputs"]["artifacts"]["timings"]["taskOutputArtifact"]["producerTask"] == "time-responses"
    assert "plan-evaluation-count" in yaml.safe_dump(spec)
    registers = {task["inputs"]["artifacts"]["report"]["taskOutputArtifact"]["producerTask"]
                 for c in comps.values() for name, task in c.get("dag", {}).get("tasks", {}).items()
                 if name.startswith("register-and-promote")}
    assert registers == {"evaluate", "merge-evaluation"}  # one in each branch


def test_the_exit_handler_is_retried(tmp_path):
    from pipelines.padirec_pipeline import ClusterOptions

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("padirec:1-x", ClusterOptions(retries=3, retry_backoff="30s")), str(path))
    spec, _ = _load(path)
    finish = spec["root"]["dag"]["tasks"]["finish-run"]
    assert finish["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"  # the exit task
    assert "taskFinalStatus" in yaml.safe_dump(finish["inputs"])
    assert finish["retryPolicy"]["maxRetryCount"] == 3 and finish["retryPolicy"]["backoffDuration"] == "30s"
