"""The pipeline through KFP's local runner with the evaluation split by users: two shards in a
ParallelFor and the timing of new tasks beside them, then the merge, whose report
register_and_promote reads."""

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from padirec.config import load_config
from pipelines.run_local import find_output, run_local

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # the whole smoke pipeline, locally (about 3 minutes here)


def test_two_user_shards_run_and_merge(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(ROOT / "configs" / "smoke.yaml", {
        "run_dir": str(tmp_path / "runs"), "tracking.uri": uri, "evaluation.shards": 2,
        "promotion.min_avg_hv": 0.0, "promotion.min_pearson_ra": -1.0, "promotion.min_pearson_rd": -1.0})
    folder = run_local(cfg)
    report = json.loads(find_output(folder, "**/merge-evaluation/report/report.json").read_text())
    shards = report["analyses"]["shards"]
    assert shards["count"] == 2 and sum(shards["users"]) == report["uncertainty"]["users"]
    assert shards["adapter_max_difference"] == 0.0 and report["response_time"]
    assert shards["timed_users"] == report["uncertainty"]["users"]  # time_responses timed every user
    assert not list(folder.glob("**/evaluate/report/report.json"))  # the single step did not run

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    status = {r.info.run_name: r.info.status for r in runs}
    for step in ("evaluate_shard_0", "evaluate_shard_1", "time_responses", "merge_evaluation", "register_and_promote"):
        assert status.get(step) == "FINISHED", step
    assert "evaluate" not in status
    merged = next(r for r in runs if r.info.run_name == "merge_evaluation")
    assert "padirec/avg_hv" in merged.data.metrics  # the report's figures, logged by the merge
