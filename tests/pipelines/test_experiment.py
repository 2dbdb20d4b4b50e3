"""``padirec experiment``: the aggregation over seeds and the tables, on reports written by the
report builder (fast), the command's one-line errors, and the whole command on the smoke config
under two seeds (slow)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from padirec.errors import PadirecError
from padirec.evaluation.report import build_report
from pipelines.cli import main
from pipelines.experiment import (
    FIGURES,
    data_overrides,
    interval_over_seeds_and_users,
    mean_sd,
    plan,
    render_table1,
    render_table2,
    run_experiment,
    summarise_cells,
    summary_value,
    user_interval,
    write_outputs,
)

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"
TASKS = [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
METHODS = ("padirec", "retrain", "soup")


def _report(path: Path, figures: dict[str, dict[str, float | None]], median_s: dict[str, float],
            ndcg: dict[str, list[float]], tasks=TASKS) -> Path:
    """A valid report.json (``build_report`` validates it) with the given summary figures."""
    rows = {m: [{"ndcg@10": v, "hr@10": 0.5, "alpha_ndcg@10": 1 - v} for v in ndcg[m]] for m in figures}
    summary = {m: {"avg_hv": f.get("avg_hv"), "front_hv": 0.3, "pearson_ra": f.get("pearson_ra"),
                   "pearson_rd": f.get("pearson_rd"), "spearman": {}, "reward": f.get("reward"),
                   "regret": f.get("regret")} for m, f in figures.items()}
    timing = {m: {"median_s": s, "p25_s": s, "p75_s": s, "repeats": 3} for m, s in median_s.items()}
    report = build_report(k=10, alpha=0.5, utilities=["accuracy", "diversity"], tasks=tasks, methods=rows,
                          summary=summary, response_time=timing, dataset="ml-100k", backbone="sasrec")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    return path


def _meta(backbones, seeds):
    return {"schema_version": 1, "config": "configs/paper.yaml", "name": "paper", "dataset": "ml-100k",
            "backbones": list(backbones), "seeds": list(seeds), "backbone_seed": 0}


def _cells(tmp_path: Path, backbones=("sasrec", "gru4rec"), seeds=(0, 1, 2), hv_none_at=None):
    """Reports whose figures are known functions of (backbone, seed): padirec's Avg.HV is
    0.1 * (seed + 1) (+ 0.5 on gru4rec), its response time (seed + 1) ms, Retrain's 2 s."""
    records = []
    for b_i, backbone in enumerate(backbones):
        for seed in seeds:
            hv = 0.1 * (seed + 1) + 0.5 * b_i
            figures = {"padirec": {"avg_hv": None if (backbone, seed) == hv_none_at else hv, "pearson_ra": 0.9,
                                   "pearson_rd": 0.8, "reward": 0.6, "regret": 0.01 * seed},
                       "retrain": {"avg_hv": 0.2, "pearson_ra": 1.0, "pearson_rd": 1.0, "reward": 0.6, "regret": 0.0},
                       "soup": {"avg_hv": 0.1, "pearson_ra": None, "pearson_rd": None, "reward": 0.5, "regret": 0.1}}
            report = _report(tmp_path / f"{backbone}-{seed}" / "evaluate" / "report" / "report.json", figures,
                             {"padirec": 0.001 * (seed + 1), "retrain": 2.0, "soup": 0.0001},
                             {m: [0.1 + 0.1 * seed, 0.2, 0.3] for m in figures})
            records.append({"backbone": backbone, "seed": seed, "identity": "x",
                            "run_folder": str(report.parents[2]), "report": str(report)})
    return records


def test_mean_sd_is_the_sample_sd_over_the_defined_values():
    s = mean_sd([1.0, 2.0, 3.0])
    assert (s["mean"], s["sd"], s["n"]) == (2.0, 1.0, 3)
    s = mean_sd([None, 2.0, 4.0])
    assert s["mean"] == 3.0 and math.isclose(s["sd"], math.sqrt(2)) and s["n"] == 2 and s["values"] == [None, 2.0, 4.0]
    assert mean_sd([5.0])["sd"] is None and mean_sd([5.0])["mean"] == 5.0
    assert mean_sd([None])["mean"] is None and mean_sd([None])["n"] == 0


def test_tables_hold_mean_and_sd_over_seeds(tmp_path):
    result = summarise_cells(_cells(tmp_path), _meta(("sasrec", "gru4rec"), (0, 1, 2)))
    hv = result["summary"]["sasrec"]["padirec"]["avg_hv"]
    assert math.isclose(hv["mean"], 0.2) and math.isclose(hv["sd"], 0.1) and len(hv["values"]) == 3
    assert math.isclose(result["summary"]["gru4rec"]["padirec"]["avg_hv"]["mean"], 0.7)
    # Figure 3's curves: per task, over seeds (NDCG@10 of task 0 is 0.1, 0.2, 0.3 over the seeds)
    curve = result["curves"]["sasrec"]["padirec"]["ndcg@10"]
    assert math.isclose(curve[0]["mean"], 0.2) and math.isclose(curve[0]["sd"], 0.1) and math.isclose(curve[1]["sd"], 0, abs_tol=1e-12)
    assert result["w_acc"] == [0.0, 0.5, 1.0]

    outputs = write_outputs(tmp_path / "out", result)
    table1 = (tmp_path / "out" / "table1.md").read_text()
    assert table1 == render_table1(result)
    sections = table1.split("## ")
    assert sections[1].startswith("SASRec") and sections[2].startswith("GRU4Rec")
    # mean ± sd [the 95% interval over the seeds: t(0.975, 2) = 4.303 times sd / sqrt(3)]
    assert ("| padirec | 0.200 ± 0.100 [-0.048, 0.448] | 0.900 ± 0.000 [0.900, 0.900] | 0.800 ± 0.000 [0.800, "
            "0.800] | 0.600 ± 0.000 [0.600, 0.600] | 0.010 ± 0.010 [-0.015, 0.035] | n/a | n/a | n/a | n/a | n/a |"
            ) in sections[1]
    assert "| padirec | 0.700 ± 0.100 [0.452, 0.948] |" in sections[2]
    assert "| soup | 0.100 ± 0.000 [0.100, 0.100] | n/a | n/a |" in sections[1]  # undefined in every seed
    table2 = (tmp_path / "out" / "table2.md").read_text()
    assert table2 == render_table2(result)
    assert "| padirec | 2.00 ± 1.00 ms | 2.00 ± 1.00 ms |" in table2
    assert "| retrain | 2.00 ± 0.00 s | 2.00 ± 0.00 s |" in table2
    assert "| Retrain / PaDiRec | 1222x ± 694x |" in table2  # 2 s / 1, 2, 3 ms: 2000, 1000, 667
    assert (tmp_path / "out" / "fig3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert outputs == ["table1.md", "table2.md", "fig3.png"]


def test_the_interval_holds_the_seeds_and_the_users_noise():
    stat = mean_sd([0.0, 0.01, 0.02])
    seeds_only = interval_over_seeds_and_users(stat, [None, None, None])
    assert seeds_only == pytest.approx([0.01 - 0.024841, 0.01 + 0.024841], abs=1e-6)
    # each run's user interval [-0.02, 0.04] is a standard error of 0.06 / 3.92; the users are the
    # same in every run, so it adds whole: sqrt(0.024841^2 + (1.96 * 0.015306)^2) = 0.038946
    both = interval_over_seeds_and_users(stat, [[-0.02, 0.04]] * 3)
    assert both == pytest.approx([0.01 - 0.038946, 0.01 + 0.038946], abs=1e-5)
    assert interval_over_seeds_and_users(mean_sd([0.5]), [[0.4, 0.6]]) is None  # one seed: no seeds' spread


def test_dominance_and_tracking_error_are_read_from_the_summary():
    row = {"dominance": {"counts": {"dominated": 2, "dominates": 1}}, "tracking_error": {"ndcg@10": {"mean": 0.01}},
           "reward": 0.5, "dominance_share": {"dominated": [0.96, 0.95, 0.5, 0.0], "dominates": [0, 0, 0, 1]},
           "tracking_error_ci": {"ndcg@10": [0.005, 0.015]}, "reward_ci": [0.4, 0.6]}
    assert summary_value(row, "dominated", 10) == 2 and summary_value(row, "tracking_ndcg", 10) == 0.01
    assert summary_value(row, "dominates", 10) == 1
    assert summary_value(row, "dominated_95", 10) == 2  # Retrain dominates in >= 95% of the draws on two tasks
    assert summary_value(row, "reward", 10) == 0.5 and summary_value({}, "tracking_alpha_ndcg", 10) is None
    assert summary_value({}, "dominated_95", 10) is None  # no bootstrap: undefined, not 0
    # the users' interval of a tracking error is the report's tracking_error_ci, so it reaches Table 1
    assert user_interval(row, "tracking_ndcg", 10) == [0.005, 0.015] and user_interval(row, "reward", 10) == [0.4, 0.6]
    assert user_interval(row, "tracking_alpha_ndcg", 10) is None and user_interval(row, "dominated", 10) is None


def test_table1_says_what_retrain_serves_and_the_cells_their_commits(tmp_path):
    records = _cells(tmp_path, ("sasrec",))
    for r in records:
        path = Path(r["report"])
        report = json.loads(path.read_text())
        report["config"] = {"adapters": {"checkpoints_per_task": 5}, "methods": {"retrain": {"checkpoints": "mean"}}}
        path.write_text(json.dumps(report))
        (Path(r["run_folder"]) / "run.json").write_text(json.dumps({"commit": "c" * 40 if r["seed"] else "d" * 40}))
    result = summarise_cells(records, _meta(("sasrec",), (0, 1, 2)))
    assert result["cell_commits"] == {"d" * 40: 1, "c" * 40: 2}
    assert "Retrain serves the mean of its last 5 epochs' adapters (`methods.retrain.checkpoints: mean`)." in (
        render_table1(result))
    report["config"]["methods"]["retrain"]["checkpoints"] = "last"  # one cell judged by another reference
    path.write_text(json.dumps(report))
    with pytest.raises(PadirecError, match="Retrain reference"):
        summarise_cells(records, _meta(("sasrec",), (0, 1, 2)))


def test_a_seed_with_an_undefined_figure_is_left_out_and_counted(tmp_path):
    result = summarise_cells(_cells(tmp_path, ("sasrec",), hv_none_at=("sasrec", 2)), _meta(("sasrec",), (0, 1, 2)))
    assert "| padirec | 0.150 ± 0.071 (2/3) [" in render_table1(result)


def test_one_seed_gives_the_mean_alone(tmp_path):
    result = summarise_cells(_cells(tmp_path, ("sasrec",), seeds=(0,)), _meta(("sasrec",), (0,)))
    table1 = render_table1(result)
    assert "| padirec | 0.100 | 0.900 |" in table1 and "One seed: no sd." in table1


def test_reports_on_other_task_grids_are_refused(tmp_path):
    records = _cells(tmp_path, ("sasrec",), seeds=(0, 1))
    other = json.loads(Path(records[1]["report"]).read_text())
    other["tasks"] = [[0.0, 1.0], [0.4, 0.6], [1.0, 0.0]]
    Path(records[1]["report"]).write_text(json.dumps(other))
    with pytest.raises(PadirecError, match="another task grid"):
        summarise_cells(records, _meta(("sasrec",), (0, 1)))


def test_plan_pins_the_backbone_seed_and_varies_the_run_seed():
    cells = plan(SMOKE, {"seed": 5}, ["sasrec", "gru4rec"], 2)
    assert [(c.backbone, c.seed) for c in cells] == [("sasrec", 5), ("sasrec", 6), ("gru4rec", 5), ("gru4rec", 6)]
    assert {c.config.backbone.seed for c in cells} == {5}
    assert {c.config.backbone.seed_for(c.config.seed) for c in cells} == {5}
    assert len({c.config.name for c in cells}) == 4 and len({c.identity for c in cells}) == 4
    assert cells[0].config.name == "smoke-synthetic-sasrec-s5"


def test_data_is_recognised_by_its_files(tmp_path):
    assert data_overrides("ml-100k") == {"data.source": "ml-100k", "data.path": ""}
    (tmp_path / "ml1m").mkdir()
    (tmp_path / "ml1m" / "ratings.dat").write_text("1::1::5::0\n")
    assert data_overrides(str(tmp_path / "ml1m"))["data.source"] == "ml-1m"
    (tmp_path / "food").mkdir()
    (tmp_path / "food" / "meta_Grocery_and_Gourmet_Food.json.gz").write_bytes(b"")
    assert data_overrides(str(tmp_path / "food")) == {"data.source": "amazon", "data.path": str((tmp_path / "food").resolve())}
    (tmp_path / "empty").mkdir()
    with pytest.raises(PadirecError, match="no ratings.dat"):
        data_overrides(str(tmp_path / "empty"))


@pytest.mark.parametrize(("argv", "message"), [
    (["--backbones", "sasrec,bert4rec"], "--backbones: unknown 'bert4rec'; valid: sasrec"),
    (["--backbones", "sasrec,sasrec"], "listed twice"),
    (["--seeds", "0"], "--seeds 0: the number of seeds, 1 or more"),
    (["--data", "/nonexistent/ml-1m"], "neither ml-100k nor a folder"),
])
def test_bad_input_is_one_line(argv, message, capsys):
    assert main(["experiment", "--config", str(SMOKE), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_table1_preset_reads_the_paper_config(monkeypatch, capsys):
    """``table1`` alone means configs/paper.yaml and the four backbones: the seeds check runs after
    both are read, so this reaches it only when they are valid."""
    monkeypatch.chdir(ROOT)
    assert main(["experiment", "table1", "--seeds", "0"]) == 2
    assert "--seeds 0" in capsys.readouterr().err


def _no_pipeline(cfg):
    raise AssertionError(f"{cfg.name} ran although its finished cell was recorded")


def test_finished_cells_are_reused_and_logged_to_mlflow(tmp_path):
    """A re-run into the same folder reuses every recorded cell with the same config and code
    (no pipeline run), writes the outputs, logs the experiment run and closes one a killed
    experiment left RUNNING."""
    import socket

    from mlflow import MlflowClient

    from padirec.tracking import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cells = plan(SMOKE, {"tracking.uri": uri, "run_dir": str(tmp_path / "runs")}, ["sasrec"], 2)
    records = _cells(tmp_path, ("sasrec",), seeds=(0, 1))
    for record, cell in zip(records, cells, strict=True):
        record["identity"] = cell.identity
    out = tmp_path / "out"
    out.mkdir()
    (out / "experiment.json").write_text(json.dumps({"cells": records}))
    killed = MlflowTracker.start(uri, "padirec-smoke", "experiment-killed", tags={
        "padirec.role": "experiment", "padirec.local_runner": f"{socket.gethostname()}:999999999:1"})

    result = run_experiment(cells, out, label="configs/smoke.yaml", runner=_no_pipeline)
    assert [c["report"] for c in result["cells"]] == [r["report"] for r in records]
    assert result["summary"]["sasrec"]["padirec"]["avg_hv"]["values"] == [0.1, 0.2]
    assert {p.name for p in out.iterdir()} == {"experiment.json", "table1.md", "table2.md", "fig3.png"}
    client = MlflowClient(uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["backbones"] == "sasrec"
    assert math.isclose(run.data.metrics["sasrec/padirec/avg_hv_mean"], 0.15)
    assert client.get_run(killed.run_id).info.status == "FAILED"

    # another config (here: the seeds' code or settings changed) is not reused
    changed = plan(SMOKE, {"tracking.uri": uri, "run_dir": str(tmp_path / "runs"), "backbone.epochs": 2}, ["sasrec"], 2)
    with pytest.raises(AssertionError, match="ran although"):
        run_experiment(changed, out, label="configs/smoke.yaml", runner=_no_pipeline)
    failed = client.search_runs([run.info.experiment_id], "attributes.status = 'FAILED' and tags.`padirec.role` = 'experiment'")
    assert len(failed) == 2  # the killed one, and this one: it ended FAILED, not left RUNNING


def _failed_step(cfg):
    raise PadirecError("step build_adapters failed: out of memory")


def test_a_failed_cell_stops_with_one_line_and_keeps_the_finished_ones(tmp_path):
    cells = plan(SMOKE, {"tracking.uri": "none", "run_dir": str(tmp_path / "runs")}, ["sasrec"], 3)
    records = _cells(tmp_path, ("sasrec",), seeds=(0, 2))
    for record, cell in zip(records, (cells[0], cells[2]), strict=True):
        record["identity"] = cell.identity
    out = tmp_path / "out"
    out.mkdir()
    (out / "experiment.json").write_text(json.dumps({"cells": records}))
    with pytest.raises(PadirecError, match=r"cell 2/3 \(sasrec, seed 1\): step build_adapters failed: out of "
                                           r"memory; the finished cells are kept: the same command resumes"):
        run_experiment(cells, out, label="configs/smoke.yaml", runner=_failed_step)
    kept = json.loads((out / "experiment.json").read_text())
    assert not kept["complete"] and [c["seed"] for c in kept["cells"]] == [0, 2]  # seed 2: not reached, still kept


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two pipeline runs: minutes alone, far more on a shared 2-core box
def test_experiment_on_the_smoke_config_under_two_seeds(tmp_path, capsys):
    from mlflow import MlflowClient

    import padirec
    from padirec.runtime.cache import source_hash

    code_before = source_hash(Path(padirec.__file__).parent)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "exp"
    argv = ["experiment", "--config", str(SMOKE), "--seeds", "2", "--out", str(out),
            "--set", f"run_dir={tmp_path / 'runs'}", "--set", f"tracking.uri={uri}",
            "--set", "backbone.epochs=2", "--set", "generator.train_steps=50",
            "--set", "evaluation.bootstrap_resamples=0", "--set", "evaluation.retrain_ceiling=false",
            "--set", "evaluation.methods=[padirec,retrain,soup]"]  # the reference and two cheap ones
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == str(out / "experiment.json")  # not indented by kfp's runner

    table1 = (out / "table1.md").read_text()
    assert "## SASRec" in table1 and "seeds 0, 1" in table1
    row = next(line for line in table1.splitlines() if line.startswith("| padirec |"))
    # every figure of Table 1 defined on both seeds, but dominated_95: it needs the users' bootstrap, off here
    assert len(re.findall(r"-?\d\.\d{3} ± \d\.\d{3}", row)) == len(FIGURES) - 1, row
    assert dict(zip(FIGURES, (c.strip() for c in row.strip("|").split("|")[1:]), strict=False))["dominated_95"] == "n/a", row
    assert "± " in (out / "table2.md").read_text() and (out / "fig3.png").stat().st_size > 0

    result = json.loads((out / "experiment.json").read_text())
    assert result["complete"] and result["seeds"] == [0, 1] and result["backbones"] == ["sasrec"]
    assert [c["seed"] for c in result["cells"]] == [0, 1]
    assert len(result["summary"]["sasrec"]["padirec"]["avg_hv"]["values"]) == 2
    reports = [json.loads(Path(c["report"]).read_text()) for c in result["cells"]]
    # one backbone for both seeds; the seeds vary the bank
    assert reports[0]["versions"]["backbone_sha256"] == reports[1]["versions"]["backbone_sha256"]
    assert reports[0]["versions"]["bank_sha256"] != reports[1]["versions"]["bank_sha256"]
    assert [r["config"]["seed"] for r in reports] == [0, 1]
    backbone_steps = [json.loads(next(Path(c["run_folder"]).glob("*/train-backbone/executor_output.json")).read_text())
                      for c in result["cells"]]
    if source_hash(Path(padirec.__file__).parent) == code_before:  # an edit mid-test is a new cache key
        caches = [b["artifacts"]["backbone"]["artifacts"][0]["metadata"]["cache"] for b in backbone_steps]
        assert caches == ["miss", "hit"]  # trained once, for both seeds

    client = MlflowClient(uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["padirec.role"] == "experiment"
    assert run.data.params["seeds"] == "0,1" and "sasrec/padirec/avg_hv_mean" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"table1.md", "table2.md", "fig3.png", "experiment.json"}
    children = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    assert sorted(c.info.run_name for c in children) == ["smoke-synthetic-sasrec-s0", "smoke-synthetic-sasrec-s1"]

    # the same command again: both cells are reused, no pipeline runs
    folders = sorted((tmp_path / "runs").glob("smoke-*"))
    assert main(argv) == 0
    assert sorted((tmp_path / "runs").glob("smoke-*")) == folders
    assert json.loads((out / "experiment.json").read_text())["summary"] == result["summary"]
