"""The compiled pipeline: loads back, every stage present, image as given, fan-out and exit handler."""

from pathlib import Path

import yaml
from kfp import compiler, components

from pipelines.padirec_pipeline import build_pipeline

STAGES = {"prepare-data", "train-backbone", "plan-shards", "build-adapters", "train-generator", "register-and-promote",
          "compare-response-time", "evaluate", "finish-run"}


def test_compile_and_load_back(tmp_path):
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("registry.example/padirec:0.1.0-abc"), str(path))
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "padirec"
    spec = yaml.safe_load(path.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/padirec:0.1.0-abc"}
    assert STAGES <= {name.removeprefix("comp-") for name in spec["components"]}
    dag = yaml.safe_dump(spec["root"])
    assert "parameterIterator" in yaml.safe_dump(spec["components"]) and "exit-handler" in dag
    assert "config_json" in spec["root"]["inputDefinitions"]["parameters"]


def test_cli_compile_writes_dist(tmp_path):
    from padirec.cli import main

    out = tmp_path / "dist" / "padirec_pipeline.yaml"
    assert main(["compile", "--out", str(out), "--image", "padirec:0.1.0-test"]) == 0
    assert Path(out).exists() and components.load_component_from_file(str(out)).name == "padirec"


def _executor_of(spec, component):
    return spec["deploymentSpec"]["executors"][spec["components"][f"comp-{component}"]["executorLabel"]]["container"]


def test_cluster_resources_retries_and_caching(tmp_path):
    from pipelines.padirec_pipeline import ClusterOptions

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("padirec:1-x", ClusterOptions(gpu_type="nvidia.com/gpu", gpu_count=2)), str(path))
    spec = yaml.safe_load(path.read_text())
    for gpu_step in ("train-backbone", "build-adapters", "train-generator", "evaluate"):
        accel = _executor_of(spec, gpu_step)["resources"]["accelerator"]
        assert accel["resourceCount"] == "2" and accel["resourceType"] == "nvidia.com/gpu"
    assert "accelerator" not in _executor_of(spec, "prepare-data").get("resources", {})
    text = path.read_text()
    assert "retryPolicy" in text and "maxRetryCount: 2" in text
    caching = {name: task.get("cachingOptions", {}).get("enableCache", False)
               for comp in spec["components"].values() for name, task in comp.get("dag", {}).get("tasks", {}).items()}
    assert caching["train-backbone"] and caching["build-adapters"] and caching["prepare-data"]
    assert not caching["compare-response-time"]  # timings are never reused from a cache


def test_cpu_only_cluster_has_no_accelerators(tmp_path):
    from pipelines.padirec_pipeline import ClusterOptions

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("padirec:1-x", ClusterOptions(gpu_count=0)), str(path))
    assert "accelerator" not in path.read_text()


def test_latest_tag_is_refused():
    from padirec.cli import main

    assert main(["compile", "--out", "/tmp/never.yaml", "--image", "padirec:latest"]) == 2
