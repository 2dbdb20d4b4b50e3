"""Faults around the steps: the tracking server is down when a step starts; a re-run after a
failure reuses the finished steps (the local stage cache)."""

from pathlib import Path

import pytest
from kfp import dsl

import components
from padirec.config import config_to_json, load_config
from padirec.errors import PadirecError
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _cfg(tmp_path, uri):
    return load_config(ROOT / "configs" / "smoke.yaml", {"tracking.uri": uri, "run_dir": str(tmp_path / "runs"),
                                                         "backbone.epochs": 1})


def test_tracking_down_names_the_uri_and_keeps_outputs(tmp_path):
    comps = components.build("padirec:test")
    data = dsl.Dataset(uri=str(tmp_path / "data"))
    comps["prepare_data"].python_func(config_json=config_to_json(_cfg(tmp_path, "none")), data_version="", data=data)
    before = {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()}

    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PadirecError, match=f"MLflow tracking server at {dead} is not reachable"):
        comps["prepare_data"].python_func(config_json=config_to_json(_cfg(tmp_path, dead)), data_version="", data=data)
    assert {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()} == before


def test_rerun_reuses_the_finished_backbone(tmp_path):
    comps = components.build("padirec:test")
    cfg = config_to_json(_cfg(tmp_path, "none"))
    data = dsl.Dataset(uri=str(tmp_path / "data"))
    comps["prepare_data"].python_func(config_json=cfg, data_version="", data=data)
    first = dsl.Model(uri=str(tmp_path / "b1"))
    comps["train_backbone"].python_func(config_json=cfg, data=data, backbone=first)
    # the run failed later; the re-run's data step writes the same folder again ...
    data2 = dsl.Dataset(uri=str(tmp_path / "data2"))
    comps["prepare_data"].python_func(config_json=cfg, data_version="", data=data2)
    second = dsl.Model(uri=str(tmp_path / "b2"))
    comps["train_backbone"].python_func(config_json=cfg, data=data2, backbone=second)
    # ... so the backbone is reused, byte for byte, instead of retrained
    assert first.metadata["cache"] == "miss" and second.metadata["cache"] == "hit"
    assert (tmp_path / "b2" / "backbone.safetensors").read_bytes() == (tmp_path / "b1" / "backbone.safetensors").read_bytes()
    # a changed setting is a new key: retrained, not reused
    cfg3 = config_to_json(load_config(ROOT / "configs" / "smoke.yaml", {
        "tracking.uri": "none", "run_dir": str(tmp_path / "runs"), "backbone.epochs": 1, "backbone.lr": 0.002}))
    third = dsl.Model(uri=str(tmp_path / "b3"))
    comps["train_backbone"].python_func(config_json=cfg3, data=data2, backbone=third)
    assert third.metadata["cache"] == "miss"
    assert len(list((tmp_path / "runs" / "cache" / "train_backbone").iterdir())) == 2
