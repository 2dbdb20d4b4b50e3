"""``make bench-scale``'s whole-pipeline mode (``benchmarks/scale_pipeline.py``): every step records
what it cost, and the benchmark reads it back from MLflow, per step and per unit, and logs its table."""

import os
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import scale_pipeline  # noqa: E402

STEPS = ["prepare_data", "train_backbone", "compute_features", "build_adapters_0", "build_adapters_1",
         "train_generator", "band_generator", "retrain_ceiling", "evaluate", "register_and_promote"]


def test_every_step_run_records_its_wall_time_and_peak_memory(tiny_run):
    for step in STEPS:
        metrics = tiny_run["runs"][step].data.metrics
        assert metrics["step_seconds"] > 0, step
        assert metrics["process_peak_rss_mb"] > 100, step  # torch alone is more than that


def test_step_costs_come_back_in_pipeline_order_with_a_cost_per_unit(tiny_run, tmp_path):
    cfg = tiny_run["cfg"]
    costs = scale_pipeline.step_costs(cfg.tracking.uri, cfg.tracking.experiment, "components-test")
    assert [c.step for c in costs] == STEPS
    by_step = {c.step: c for c in costs}
    assert by_step["evaluate"].seconds == tiny_run["runs"]["evaluate"].data.metrics["step_seconds"]
    scale_pipeline.add_units(costs, cfg, tmp_path)  # no run folder: the units from metrics alone
    assert "s per epoch, 2 epochs (best " in by_step["train_backbone"].unit
    assert "s per adapter" in by_step["build_adapters_0"].unit
    assert by_step["evaluate"].unit.startswith("new task: PaDiRec ")
    assert f"({len(cfg.evaluation.methods) * cfg.adapters.grid_size}), all included" in by_step["evaluate"].unit
    assert by_step["prepare_data"].unit == ""  # its manifest is not under a run folder here

    table = scale_pipeline.markdown(costs, "header", 12.0, 345.0)
    assert table.count("\n| ") == len(STEPS) + 1 and "peak resident memory of the process tree 345 MB" in table
    uri = f"sqlite:///{tmp_path / 'bench.db'}"
    rid = scale_pipeline.log_to_mlflow(uri, "padirec-bench", "components-test", {"scale": 0.5, "users": 3},
                                       costs, 12.0, 345.0, table)
    run = MlflowClient(uri).get_run(rid)
    assert run.info.run_name == "bench-scale-x0.5" and run.info.status == "FINISHED"
    assert run.data.metrics["total_seconds"] == 12.0 and run.data.metrics["evaluate_seconds"] > 0
    assert run.data.tags["kfp.run_id"] == "components-test" and run.data.params["users"] == "3"
    # the artifacts lie beside the database, not in the current directory
    assert run.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())
    assert (tmp_path / "mlartifacts").is_dir()


def test_tree_memory_counts_the_child_processes():
    before = scale_pipeline.tree_rss(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; b = b'x' * (300 << 20); print('ready', flush=True); "
                              "time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"ready"
        with scale_pipeline.PeakMemory(interval=0.05) as mem:
            time.sleep(0.2)
        assert mem.peak - before > 250 << 20
    finally:
        child.kill()
        child.wait()


def test_files_above_1x_scale_every_dimension(monkeypatch, tmp_path):
    """5x is 5x the users, items and ratings (``synthetic_ml1m.write``), not 1x cut to 5x the users."""
    import bench_scale

    calls = []
    monkeypatch.setattr(bench_scale.synthetic_ml1m, "write", lambda folder, scale, seed: calls.append(scale) or {})
    bench_scale.write_ml1m(tmp_path, 5.0, 0)
    bench_scale.write_ml1m(tmp_path, 1.0, 0)
    assert calls == [5.0, 1.0]
