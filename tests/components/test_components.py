"""Every component as a plain function (``python_func``, what KFP runs in the pod) on one shared
tiny run (``tiny_run``: tests/conftest.py), in pipeline order; then each is checked: its outputs,
its KFP metadata and its MLflow run. The whole pipeline through KFP's local runner is the slow
end-to-end test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # the shared run trains every stage: about 45 s here
OUTPUTS = {  # component -> (output artifact, the manifest kind it holds, or a file it holds)
    "prepare_data": ("data", "prepared_data"),
    "train_backbone": ("backbone", "backbone"),
    "compute_features": ("features", "features"),  # read by the shards and the evaluate step
    "build_adapters": ("bank", "adapter_bank"),
    "train_generator": ("generator", "generator"),
    "band_generator": ("band_generator", "generator"),  # the smoke config runs the band protocol
    "retrain_ceiling": ("ceiling", "retrain_ceiling"),  # read by the evaluate step, which trains nothing
    "evaluate": ("report", "report"),
    "register_and_promote": ("system", "system"),
}


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_component_writes_its_outputs_and_tracks(tiny_run, name):
    artifact, holds = OUTPUTS[name]
    folder = Path(tiny_run["art"][artifact].path)
    assert json.loads((folder / "manifest.json").read_text())["kind"] == holds
    metadata = json.dumps(tiny_run["art"][artifact].metadata)
    assert "NaN" not in metadata and "Infinity" not in metadata  # KFP metadata cannot hold them
    run_names = [f"build_adapters_{i}" for i in range(2)] if name == "build_adapters" else [name]
    for run_name in run_names:
        run = tiny_run["runs"][run_name]
        assert run.info.status == "FINISHED", run_name
        assert run.data.tags["padirec.step"] == run_name and int(run.data.tags["torch_threads"]) >= 1


def test_metadata_a_user_sees_in_kfp(tiny_run):
    art = tiny_run["art"]
    assert art["data"].metadata["data_version"] == "v1" and art["data"].metadata["num_users"] > 0
    assert art["backbone"].metadata["cache"] in ("hit", "miss") and "test_ndcg@10" in art["backbone"].metadata
    assert art["system"].metadata["registered"] is True


def test_exit_handler_closes_the_parent(tiny_run):
    parent = tiny_run["runs"][tiny_run["cfg"].name]
    assert parent.info.status == "FINISHED" and parent.data.tags.get("padirec.role") == "pipeline"
