"""The compiled pipeline: loads back, every stage present, image as given, fan-out and exit handler."""

from pathlib import Path

import yaml
from kfp import compiler, components

from pipelines.padirec_pipeline import build_pipeline

STAGES = {"prepare-data", "train-backbone", "plan-shards", "build-adapters", "train-generator",
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
