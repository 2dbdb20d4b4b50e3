"""MLflow as its users see it: a finished smoke run's store, opened through ``MlflowClient``.

The parent run carries the config as params and the headline figures as metrics (so pipeline runs
compare in the UI); training curves are on their own step axis (epochs, generator steps) with the
best epoch under its own names, so no curve jumps back to step 0; per-task results are tables,
never a metric whose step is a task index; the prepared dataset is an MLflow dataset, logged by the
data step and referenced by every step that uses it and by the registered version; the training
steps carry system metrics; the registry has ``champion`` and ``challenger``.

The slow test reuses the components' shared tiny run (``tests/components/test_components.py``)
instead of running the pipeline again; the fast ones use a local SQLite store.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from kfp import dsl
from mlflow import MlflowClient

import components
from padirec.config import config_to_json
from padirec.tracking import KFP_RUN_ID_ENV, MlflowTracker
from padirec.tracking.core import dataset_reference, system_metrics
from padirec.tracking.registration import headline

TRAINING_STEPS = ("train_backbone", "compute_features", "build_adapters_0", "build_adapters_1", "train_generator",
                  "band_generator", "retrain_ceiling")


# ---------------------------------------------------------------- the smoke run's store

@pytest.fixture(scope="module")
def store(tiny_run):  # the shared smoke run (tests/conftest.py)
    cfg = tiny_run["cfg"]
    client = MlflowClient(cfg.tracking.uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("kfp.run_id") == "components-test"}
    return {"client": client, "runs": runs, "cfg": cfg, "art": tiny_run["art"]}


@pytest.mark.slow
def test_the_parent_run_compares(store):
    parent = store["runs"][store["cfg"].name]
    params, metrics = parent.data.params, parent.data.metrics
    assert params["backbone.epochs"] == "2" and params["seed"] == "0" and params["backbone.model"] == "sasrec"
    assert params["adapters.utilities"] == "['accuracy', 'diversity']" and "tracking.experiment" in params
    report = json.loads((Path(store["art"]["report"].path) / "report.json").read_text())
    expected = headline(report, store["art"]["backbone"].path)
    assert {"avg_hv", "pearson_ra", "pearson_rd", "ndcg_at_10_w_acc_0", "ndcg_at_10_w_acc_1",
            "response_time_ratio", "backbone_test_ndcg_at_10", "quality_score"} <= set(expected)
    assert metrics == pytest.approx(expected)
    assert metrics["avg_hv"] == pytest.approx(report["summary"]["padirec"]["avg_hv"])
    if isinstance(report["summary"]["padirec"].get("reward"), float):
        assert metrics["reward"] == pytest.approx(report["summary"]["padirec"]["reward"])
    checksum = json.loads((Path(store["art"]["data"].path) / "manifest.json").read_text())["data_checksum"]
    inputs = store["client"].get_run(parent.info.run_id).inputs.dataset_inputs  # the UI's Dataset column
    assert [d.dataset.digest for d in inputs] == [checksum[:32]]


@pytest.mark.slow
def test_curves_have_their_own_steps_and_never_jump_back(store):
    client, runs = store["client"], store["runs"]
    backbone = runs["train_backbone"]
    history = client.get_metric_history(backbone.info.run_id, "valid_ndcg_at_10")
    assert [m.step for m in history] == [1, 2]  # one point per evaluated epoch, none at step 0
    for key in ("loss", "seconds", "valid_hr_at_10"):
        assert [m.step for m in client.get_metric_history(backbone.info.run_id, key)] == [1, 2], key
    best = backbone.data.metrics
    assert best["best/valid_ndcg_at_10"] == pytest.approx(max(m.value for m in history))
    assert best["valid_ndcg_at_10"] == pytest.approx(history[-1].value)  # the UI's value: the last epoch
    assert {"test_ndcg_at_10", "best_epoch"} <= set(best)
    generator = runs["train_generator"]
    assert [m.step for m in client.get_metric_history(generator.info.run_id, "generator_loss")] == [50]
    adapters = runs["build_adapters_0"]
    epochs = store["cfg"].adapters.epochs
    assert [m.step for m in client.get_metric_history(adapters.info.run_id, "adapters_train_loss_mean")] == list(range(epochs))
    # nothing is logged with a task index as its step: every other metric of every run has one point
    for name, run in runs.items():
        for key in run.data.metrics:
            if key.startswith("system/") or key in ("valid_ndcg_at_10", "valid_hr_at_10", "valid_alpha_ndcg_at_10",
                                                     "loss", "seconds", "generator_loss", "generator_lr",
                                                     "adapters_train_loss_mean"):
                continue
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert steps == [0], (name, key, steps)


@pytest.mark.slow
def test_per_task_results_are_tables(store):
    client, runs, cfg = store["client"], store["runs"], store["cfg"]
    report = json.loads((Path(store["art"]["report"].path) / "report.json").read_text())
    evaluate = runs["evaluate"].info.run_id
    table = pd.DataFrame(**json.loads(Path(client.download_artifacts(evaluate, "per_task_results.json")).read_text()))
    assert len(table) == len(report["methods"]) * len(report["tasks"])
    assert {"method", "task", "w_accuracy", "w_diversity", "ndcg_at_10", "alpha_ndcg_at_10"} <= set(table.columns)
    row = table[(table.method == "padirec") & (table.task == 0)].iloc[0]
    assert row.ndcg_at_10 == pytest.approx(report["methods"]["padirec"][0]["ndcg@10"])
    assert not any(k.startswith("padirec/ndcg") for k in runs["evaluate"].data.metrics)
    assert "mlflow.loggedArtifacts" in runs["evaluate"].data.tags  # what makes the UI show it as a table
    shard_rows = 0
    for i in range(cfg.adapters.num_shards):
        run_id = runs[f"build_adapters_{i}"].info.run_id
        part = json.loads(Path(client.download_artifacts(run_id, f"adapter_bank/tasks_shard_{i}.json")).read_text())
        shard = pd.DataFrame(**part)
        assert {"task_id", "held_out", "w_accuracy", "valid_ndcg_at_10"} <= set(shard.columns)
        assert not any(c.startswith("test_") for c in shard.columns)  # the test split is read once, by evaluate
        assert (shard["shard"] == i).all()
        shard_rows += len(shard)
    assert shard_rows == cfg.adapters.grid_size + cfg.adapters.num_random_tasks  # every task once


@pytest.mark.slow
def test_the_dataset_links_data_training_and_the_model(store):
    client, runs = store["client"], store["runs"]
    data_dir = Path(store["art"]["data"].path)
    manifest = json.loads((data_dir / "manifest.json").read_text())

    def inputs(name):
        return [(d.dataset.name, d.dataset.digest, d.dataset.source, {t.key: t.value for t in d.tags}["mlflow.data.context"])
                for d in client.get_run(runs[name].info.run_id).inputs.dataset_inputs]

    [(name, digest, source, context)] = inputs("prepare_data")
    assert (name, digest, context) == ("synthetic", manifest["data_checksum"][:32], "prepared")
    assert str(data_dir) not in source and "padirec.data.synthetic.generate" in json.loads(source)["uri"]
    for step in TRAINING_STEPS:
        assert inputs(step) == [(name, digest, source, "training")], step
    assert inputs("evaluate") == [(name, digest, source, "evaluation")]
    version = client.get_model_version(store["cfg"].tracking.registered_model, "1")
    assert version.tags["dataset.name"] == name and version.tags["dataset.digest"] == digest
    assert version.tags["dataset.source"] == json.loads(source)["uri"]
    assert inputs("register_and_promote") == [(name, digest, source, "training")]  # the model's own run


@pytest.mark.slow
def test_training_steps_have_system_metrics(store):
    for step in (*TRAINING_STEPS, "evaluate"):
        metrics = store["runs"][step].data.metrics
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(metrics), step
    assert not any(k.startswith("system/") for k in store["runs"]["prepare_data"].data.metrics)
    assert not any(t.name == "SystemMetricsMonitor" for t in threading.enumerate())  # every sampler stopped


@pytest.mark.slow
def test_champion_and_challenger(store, tmp_path):
    """A second registration whose report scores lower passes the open gate without beating v1: it
    becomes ``challenger`` while v1 stays ``champion``."""
    client, cfg, art = store["client"], store["cfg"], store["art"]
    model = cfg.tracking.registered_model
    assert str(client.get_model_version_by_alias(model, "champion").version) == "1"
    report = json.loads((Path(art["report"].path) / "report.json").read_text())
    for cell in report["methods"]["padirec"]:
        cell["ndcg@10"] *= 0.5
    worse = tmp_path / "worse-report"
    worse.mkdir()
    (worse / "report.json").write_text(json.dumps(report))
    comp = components.build("padirec:test")["register_and_promote"].python_func
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KFP_RUN_ID_ENV, "components-test-worse")
        system = dsl.Model(uri=str(tmp_path / "system"))
        comp(config_json=config_to_json(cfg), data=art["data"], backbone=art["backbone"], generator=art["generator"],
             report=dsl.Artifact(uri=str(worse)), system=system)
    assert system.metadata["decision"] == "kept" and system.metadata["challenger"] == "2"
    assert str(client.get_model_version_by_alias(model, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(model, "challenger").version) == "2"
    assert set(client.get_registered_model(model).aliases) == {"champion", "challenger"}


# ---------------------------------------------------------------- fast, on a local store

@pytest.fixture(scope="module")
def local_uri(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # creates the store once (seconds on a busy machine)
    return uri


@pytest.fixture
def run(local_uri):
    return MlflowTracker.start(local_uri, "t", "step")


def test_system_metrics_stop_with_the_block_and_log_a_last_sample(run):
    start = time.perf_counter()
    with system_metrics(run, interval_s=30):  # far longer than the block: only the last sample
        time.sleep(0.2)
    assert time.perf_counter() - start < 5  # the sampler did not hold the step for its interval
    assert not any(t.name == "SystemMetricsMonitor" for t in threading.enumerate())
    metrics = run.client.get_run(run.run_id).data.metrics
    assert metrics["system/cpu_utilization_percentage"] >= 0 and metrics["system/system_memory_usage_megabytes"] > 0


def test_system_metrics_never_fail_the_step(local_uri):
    from padirec.core.tracker import NullTracker

    with system_metrics(NullTracker()):  # no MLflow run: nothing to sample into
        pass
    gone = MlflowTracker(local_uri, "0" * 32)
    with system_metrics(gone, interval_s=0.05):  # the sampler cannot read its run: it stops, the step goes on
        time.sleep(0.1)


def test_parent_summary_adds_only_missing_params(run):
    run.log_params({"backbone": {"epochs": 2}})
    run.log_summary({"backbone": {"epochs": 3, "lr": 0.001}, "tracking": {"uri": "http://u:hunter22@host/"}},
                    {"avg_hv": 0.3, "pearson_ra": float("nan")})
    data = run.client.get_run(run.run_id).data
    assert data.params == {"backbone.epochs": "2", "backbone.lr": "0.001", "tracking.uri": "http://***@host/"}
    assert data.metrics == {"avg_hv": 0.3}  # NaN is left out


@pytest.mark.parametrize(("config", "name", "source", "source_type"), [
    ({"source": "tables", "interactions": "s3://AKIAKEY:s3cr3tv4lue@bucket/raw/ratings.csv"},
     "tables:ratings", "s3://***@bucket/raw/ratings.csv", "s3"),
    ({"source": "ml-100k", "path": ""}, "ml-100k", "pypi:recbole==1.2.1/recbole/dataset_example/ml-100k", "code"),
    ({"source": "ml-1m", "path": "https://example.org/ml-1m"}, "ml-1m", "https://example.org/ml-1m", "http"),
    ({"source": "synthetic", "synthetic": {"num_users": 80, "seed": 0}}, "synthetic",
     "padirec.data.synthetic.generate?num_users=80&seed=0", "code"),
])
def test_dataset_reference_names_the_source_not_the_folder(tmp_path, config, name, source, source_type):
    ref = dataset_reference(tmp_path, {"config": config, "data_checksum": "f" * 64})
    assert ref == {"name": name, "digest": "f" * 32, "source": source, "source_type": source_type}


def test_headline_figures():
    report = {"k": 10, "utilities": ["accuracy", "diversity"], "tasks": [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]],
              "methods": {"padirec": [{"ndcg@10": 0.1, "alpha_ndcg@10": 0.5}, {"ndcg@10": 0.2, "alpha_ndcg@10": 0.4},
                                      {"ndcg@10": 0.3, "alpha_ndcg@10": 0.3}]},
              "summary": {"padirec": {"avg_hv": 0.4, "front_hv": 0.5, "pearson_ra": 0.9, "pearson_rd": None,
                                      "reward": 0.6}},
              "response_time": {"padirec": {"median_s": 0.1}, "retrain": {"median_s": 10.0}}}
    assert headline(report) == pytest.approx({
        "avg_hv": 0.4, "front_hv": 0.5, "pearson_ra": 0.9, "reward": 0.6, "ndcg_at_10_w_acc_1": 0.3,
        "ndcg_at_10_w_acc_0": 0.1, "response_time_ratio": 100.0, "quality_score": (0.05 + 0.08 + 0.09) / 3})
