"""One tiny run of every component as a plain function (``python_func``, what KFP runs in the pod),
in pipeline order, on the smoke config: shared by the component tests and the MLflow-store tests
through the session fixture ``tiny_run`` (tests/conftest.py), so it is built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp import dsl
from mlflow import MlflowClient

import components
from padirec.config import config_to_json, load_config
from padirec.tracking import KFP_RUN_ID_ENV

ROOT = Path(__file__).resolve().parents[1]


class FinalStatus:
    """What KFP hands the exit handler (``dsl.PipelineTaskFinalStatus``), as the local runner does."""

    state = "SUCCEEDED"


def run_tiny_pipeline(tmp_path_factory, overrides: dict | None = None):
    """``overrides``: more dotted config keys (e.g. ``{"adapters.utilities": [...]}``)."""
    root = tmp_path_factory.mktemp("components")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = load_config(ROOT / "configs" / "smoke.yaml", {
        "tracking.uri": uri, "run_dir": str(root / "runs"), "backbone.epochs": 2, "generator.train_steps": 50,
        "promotion.min_avg_hv": 0.0, "promotion.min_pearson_ra": -1.0, "promotion.min_pearson_rd": -1.0,
        **(overrides or {})})
    cj = config_to_json(cfg)
    comps = {name: comp.python_func for name, comp in components.build("padirec:test").items()}
    art = {name: kind(uri=str(root / name)) for name, kind in (
        ("data", dsl.Dataset), ("backbone", dsl.Model), ("features", dsl.Dataset), ("bank", dsl.Dataset),
        ("generator", dsl.Model), ("band_generator", dsl.Model), ("ceiling", dsl.Model),
        ("report", dsl.Artifact), ("system", dsl.Model))}
    shards = [dsl.Dataset(uri=str(root / f"shard{i}")) for i in range(cfg.adapters.num_shards)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KFP_RUN_ID_ENV, "components-test")
        comps["prepare_data"](config_json=cj, data_version="v1", data=art["data"])
        comps["train_backbone"](config_json=cj, data=art["data"], backbone=art["backbone"])
        comps["compute_features"](config_json=cj, data=art["data"], backbone=art["backbone"], features=art["features"])
        assert comps["plan_shards"](config_json=cj) == list(range(len(shards)))
        for i, shard in enumerate(shards):
            comps["build_adapters"](config_json=cj, shard_index=i, data=art["data"], backbone=art["backbone"],
                                    features=art["features"], bank=shard)
        art["bank_shards"] = shards
        comps["train_generator"](config_json=cj, banks=shards, bank=art["bank"], generator=art["generator"])
        comps["band_generator"](config_json=cj, bank=art["bank"], band_generator=art["band_generator"])
        comps["retrain_ceiling"](config_json=cj, data=art["data"], backbone=art["backbone"], features=art["features"],
                                 ceiling=art["ceiling"])
        inputs = {k: art[k] for k in ("data", "backbone", "features", "bank", "generator", "band_generator", "ceiling")}
        comps["evaluate"](config_json=cj, **inputs, report=art["report"])
        comps["register_and_promote"](config_json=cj, data=art["data"], backbone=art["backbone"],
                                      generator=art["generator"], report=art["report"], system=art["system"])
        comps["finish_run"](config_json=cj, status=FinalStatus())
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    return {"art": art, "runs": {r.info.run_name: r for r in runs}, "cfg": cfg}
