"""The data step's Great Expectations results in MLflow, as a pipeline step logs them (a real
``step_tracker`` on a SQLite store): the full result with observed values and the Data Docs, for a
good table and for a bad one, whose run is FAILED with artifacts that say why."""

import json
from pathlib import Path

import pandas as pd
import pytest

from padirec.config import load_config
from padirec.data.stage import run_data_stage
from padirec.errors import DataValidationError
from padirec.tracking import step_tracker

# GX builds Data Docs and logs them to a store (seconds per test): make test runs them
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TABLES = ["raw_interactions_columns", "raw_items_columns", "raw_items", "raw_interactions",
          "prepared_train", "prepared_valid", "prepared_test", "prepared_items"]


def _run(tmp_path, bad=False):
    """The data step on 3 users x 10 interactions over 12 items; ``bad``: a negative timestamp."""
    rows = [(u, f"i{(k + j) % 12}", 1000 + k) for j, u in enumerate(("u0", "u1", "u2")) for k in range(10)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    if bad:
        inter.loc[4, "timestamp"] = -5
    inter.to_csv(tmp_path / "inter.csv", index=False)
    pd.DataFrame({"item_id": [f"i{k}" for k in range(12)], "categories": ["a|b", "b"] * 6}).to_csv(
        tmp_path / "items.csv", index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(ROOT / "configs" / "smoke.yaml", {
        "tracking.uri": uri, "run_dir": str(tmp_path), "data.source": "tables",
        "data.interactions": str(tmp_path / "inter.csv"), "data.items": str(tmp_path / "items.csv")})
    with step_tracker(cfg, "prepare_data") as tracker:
        run_data_stage(cfg.data, tmp_path / "out", tracker, eval_k=cfg.evaluation.k)


def _step_run(tmp_path):
    """The step's run, and its ``data/`` artifacts downloaded to a folder."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("padirec-smoke").experiment_id])
    run = next(r for r in runs if r.info.run_name == "prepare_data")
    local = Path(client.download_artifacts(run.info.run_id, "data", str(tmp_path / "artifacts")))
    return run, local


def _observed(result: dict, expectation: str) -> list:
    return [r["result"] for r in result["results"] if r["expectation_config"]["type"] == expectation]


def test_good_table_logs_the_full_result_and_the_data_docs(tmp_path):
    _run(tmp_path)
    run, art = _step_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["data.validation"] == "passed"
    logged = json.loads((art / "validation.json").read_text())
    assert logged == json.loads((tmp_path / "out" / "validation.json").read_text()), "the prepared data's own"
    # the summary readers use, and GX's full result per table
    assert logged["success"] is True and [s["table"] for s in logged["suites"]] == TABLES
    assert all(s["success"] and s["statistics"]["evaluated_expectations"] > 0 and s["failures"] == []
               for s in logged["suites"])
    assert set(logged["results"]) == set(TABLES)
    test = logged["results"]["prepared_test"]
    assert _observed(test, "expect_table_row_count_to_equal") == [{"observed_value": 3}]
    between = _observed(test, "expect_column_values_to_be_between")
    assert between and all(r["element_count"] == 3 and r["unexpected_count"] == 0 for r in between)
    assert test["meta"]["great_expectations_version"] and test["statistics"]["success_percent"] == 100.0
    # the Data Docs: the index and one validation page per table
    index = (art / "data_docs" / "index.html").read_text()
    pages = list((art / "data_docs" / "validations").rglob("*.html"))
    assert {p.parts[len((art / "data_docs" / "validations").parts)] for p in pages} == set(TABLES)
    assert all(t in index for t in TABLES)
    # nothing of the docs in the prepared folder: only validation.json, listed in the manifest
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "validation.json" in manifest["files"] and not (tmp_path / "out" / "data_docs").exists()


def test_bad_table_fails_the_step_and_its_artifacts_say_why(tmp_path):
    with pytest.raises(DataValidationError, match="expect_column_values_to_be_between failed on column 'timestamp'"):
        _run(tmp_path, bad=True)
    assert not (tmp_path / "out").exists(), "nothing is written to the output on failure"
    run, art = _step_run(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags["data.validation"] == "failed"
    assert "expect_column_values_to_be_between" in run.data.tags["padirec.failure"]
    # the reason, first line the error, then GX's describe() of the failed expectations
    why = (art / "validation_failure.txt").read_text()
    first, rest = why.split("\n", 1)
    assert first.startswith("data validation failed: expect_column_values_to_be_between failed on column "
                            "'timestamp' of table 'raw_interactions': 1 offending row(s), e.g. rows [4]")
    described = json.loads(rest.split("table raw_interactions: ", 1)[1])
    (failed,) = described["expectations"]
    assert failed["expectation_type"] == "expect_column_values_to_be_between" and failed["kwargs"]["column"] == "timestamp"
    assert failed["result"]["partial_unexpected_list"] == [-5.0] and failed["result"]["element_count"] == 30
    # the full result: the tables validated so far, the failing one with its observed values
    logged = json.loads((art / "validation.json").read_text())
    assert logged["success"] is False and logged["error"] == first
    assert [s["table"] for s in logged["suites"]] == TABLES[:4] and logged["suites"][-1]["success"] is False
    assert _observed(logged["results"]["raw_interactions"], "expect_column_values_to_be_between")[0][
        "unexpected_count"] == 1
    assert "raw_interactions" in (art / "data_docs" / "index.html").read_text()
