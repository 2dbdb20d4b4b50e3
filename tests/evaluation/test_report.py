"""report.json: valid reports pass (the schema is a valid JSON Schema), invalid ones are rejected
with the offending field named; NaN becomes null; markdown and plots render; k is the report's."""

from __future__ import annotations

import copy
import json
import math

import pytest

from padirec.evaluation.markdown import render_markdown
from padirec.evaluation.plots import make_plots
from padirec.evaluation.report import (
    CHOICE_SPLITS,
    ReportError,
    build_report,
    choice_provenance,
    jsonable,
    metric_name,
    report_schema,
    validate_report,
)


def _report(**over):
    tasks = [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    rows = [{"ndcg@10": 0.1 * (i + 1), "hr@10": 0.2 * (i + 1), "alpha_ndcg@10": 0.9 - 0.1 * i} for i in range(3)]
    kwargs = dict(
        k=10, alpha=0.5, utilities=["accuracy", "diversity"], tasks=tasks,
        methods={"retrain": rows, "mmr": rows},
        summary={m: {"reward": 0.6, "regret": 0.1 * i, "reward_per_task": [0.7, 0.5, 0.6],
                     "regret_per_task": [0.1 * i, float("nan"), 0.0], "range": {"ndcg@10": 0.2, "alpha_ndcg@10": 0.2},
                     "range_norm": {"ndcg@10": 1.0, "alpha_ndcg@10": 1.0},
                     "avg_hv": 0.3, "front_hv": 0.5, "pearson_ra": 1.0, "pearson_rd": float("nan"),
                     "spearman": {"ndcg@10": 1.0}} for i, m in enumerate(("retrain", "mmr"))},
        response_time={"retrain": {"median_s": 2.0, "p25_s": 1.9, "p75_s": 2.2, "repeats": 5},
                       "padirec": {"median_s": 0.02, "p25_s": 0.019, "p75_s": 0.021, "repeats": 5}},
        analyses={"robustness": {"retrain": {"ndcg_change_mean": 0.01, "ndcg_change_std": 0.0,
                                             "alpha_ndcg_change_mean": 0.02, "alpha_ndcg_change_std": 0.01}}},
        config={"seed": 0, "adapters": {"candidates": "topk"}, "generator": {"guidance_scale": 0.5}},
        versions={"data_sha256": "ab" * 32, "generator_sha256": None},
        dataset="synthetic", backbone="sasrec",
    )
    kwargs.update(over)
    return build_report(**kwargs)


def test_valid_report_passes_and_nan_is_null():
    report = _report()
    validate_report(report)
    assert report["summary"]["mmr"]["pearson_rd"] is None
    assert report["versions"]["padirec"]
    json.dumps(report, allow_nan=False)  # strict JSON


def test_schema_is_a_json_schema_with_the_registered_methods():
    import jsonschema

    from padirec.methods.registry import METHODS

    jsonschema.Draft202012Validator.check_schema(report_schema(10))
    jsonschema.validate(_report(), report_schema(10))
    assert report_schema(10)["properties"]["methods"]["propertyNames"]["enum"] == list(METHODS)


def test_the_metric_keys_follow_k():
    rows = [{"ndcg@5": 0.1, "hr@5": 0.2, "alpha_ndcg@5": 0.8}] * 3
    report = _report(k=5, methods={"retrain": rows}, summary={})
    validate_report(report)
    report["k"] = 10
    with pytest.raises(ReportError, match="'(hr|ndcg|alpha_ndcg)@10' is a required property"):
        validate_report(report)


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("summary"), "report: 'summary' is a required property"),
    (lambda r: r["methods"]["mmr"][1].pop("hr@10"), "report.methods.mmr[1]: 'hr@10' is a required property"),
    (lambda r: r["methods"].update(MMR=r["methods"]["mmr"]), "report.methods: key 'MMR' is not one of"),
    (lambda r: r["summary"]["retrain"].update(avg_hv="high"), "report.summary.retrain.avg_hv: 'high' is not of type"),
    (lambda r: r["methods"]["retrain"][0].update({"ndcg@10": float("nan")}), "report.methods.retrain[0].ndcg@10"),
    (lambda r: r["response_time"]["retrain"].update(repeats=0), "report.response_time.retrain.repeats: 0 is less than"),
    (lambda r: r.update(schema_version=2), "report.schema_version: 1 was expected"),
    (lambda r: r["tasks"].append([0.5, 0.4]), "report.tasks[3]: task weights must sum to 1"),
    (lambda r: r["methods"]["mmr"].pop(), "report.methods.mmr: 2 results for 3 tasks"),
    (lambda r: r["tasks"].__setitem__(0, [1.0]), "report.tasks[0]: [1.0] is too short"),
    (lambda r: r["summary"]["mmr"].update(regret="low"), "report.summary.mmr.regret: 'low' is not of type"),
    (lambda r: r["summary"]["mmr"]["reward_per_task"].pop(), "report.summary.mmr.reward_per_task: 2 values for 3"),
    (lambda r: r["summary"]["mmr"]["range"].update({"ndcg@10": "wide"}), "report.summary.mmr.range.ndcg@10"),
    (lambda r: r.update(split="train"), "report.split: 'train' is not one of"),
    (lambda r: r["choices"]["adapters.candidates"].update(split="dev"), "report.choices.adapters.candidates.split"),
    (lambda r: r["choices"]["adapters.candidates"].pop("split"), "'split' is a required property"),
])
def test_invalid_reports_name_the_field(mutate, field):
    report = copy.deepcopy(_report())
    mutate(report)
    with pytest.raises(ReportError) as e:
        validate_report(report)
    assert field in str(e.value)


def test_build_report_rejects_bad_content():
    with pytest.raises(ReportError, match="report.methods: key 'soup2'"):
        _report(methods={"soup2": []}, summary={})


def test_jsonable_and_metric_names():
    import numpy as np
    import torch

    assert jsonable({"a": np.float64("nan"), "b": torch.tensor([1.0, math.inf]), "c": (1, 2)}) == \
        {"a": None, "b": [1.0, None], "c": [1, 2]}
    assert metric_name("alpha_ndcg@10") == "alpha_ndcg_at_10"


def test_markdown_and_plots(tmp_path):
    report = _report()
    plots = make_plots(report, tmp_path / "plots")
    assert set(plots) == {"metrics_vs_wacc.png", "tradeoff.png", "reward_vs_wacc.png", "response_time.png",
                          "robustness.png"}
    for p in plots:
        assert (tmp_path / "plots" / p).read_bytes()[:4] == b"\x89PNG"
    text = render_markdown(report, plots)
    assert "Retrain / PaDiRec: 100.0x" in text
    # the first table leads with reward, regret and Pearson; Avg.HV is labelled as the paper's
    first = text.index("| method | reward | regret | Pearson r-a | Pearson r-d |")
    assert first < text.index("Avg.HV (paper)") and text.index("## Summary") < first
    assert "| method | reward | regret | Pearson r-a | Pearson r-d | range ndcg@10 | range alpha_ndcg@10 |" in text
    assert "| mmr | 0.6000 | 0.1000 | 1.0000 | n/a | 0.2000 | 0.2000 |" in text
    assert "## Regret vs retrain per task" in text and "| (0.50, 0.50) | n/a | n/a |" in text
    assert "| adapters.candidates | topk | valid |" in text and "| generator.guidance_scale | 0.5 | valid |" in text
    assert "| mmr |" in text and "n/a" in text  # the NaN Pearson shows as n/a
    assert "![tradeoff.png](plots/tradeoff.png)" in text
    # the report says how its reference serves a task, from its config
    assert "retrain serves" not in text  # this report records no Retrain settings
    served = {**report, "config": {"adapters": {"checkpoints_per_task": 5},
                                   "methods": {"retrain": {"checkpoints": "mean"}}}}
    assert ("retrain serves the mean of its last 5 epochs' adapters (`methods.retrain.checkpoints: mean`)."
            in render_markdown(served, plots))
    served["config"]["methods"]["retrain"]["checkpoints"] = "last"
    assert "retrain serves its last epoch's adapter (`methods.retrain.checkpoints: last`)." in render_markdown(served, plots)
    from padirec.methods.registry import left_out

    for key, note in left_out().items():  # a variant that measured no different: its finding, not a row
        assert f"Not a row: `{key}`: {note}" in text
    empty = _report(methods={}, summary={}, tasks=[], response_time={}, analyses={})
    assert make_plots(empty, tmp_path / "empty") == []
    assert "# PaDiRec evaluation report" in render_markdown(empty, [])


def test_choices_record_the_split_of_each_setting():
    from padirec.config import Config
    from padirec.evaluation.report import selection_choices

    cfg = Config().to_dict()
    record = choice_provenance()
    choices = selection_choices(cfg)
    assert set(choices) == set(record)
    assert choices["adapters.candidates"] == {"value": cfg["adapters"]["candidates"], **record["adapters.candidates"]}
    assert choices["adapters.candidates"]["split"] == "valid"  # re-chosen on valid (docs/evaluation.md)
    assert all(c["split"] != "test" for c in choices.values())  # nothing left that was chosen on test
    assert choices["generator.samples_per_task"]["split"] == "valid"  # re-chosen on valid with the sampler
    assert selection_choices(None) == {}
    report = _report(config=cfg, split="valid")
    assert report["split"] == "valid" and report["choices"]["generator.guidance_scale"]["split"] == "valid"
    assert "on the valid split" in render_markdown(report, [])
    assert _report(choices={})["choices"] == {}


def test_the_choices_record_names_config_keys():
    """``choices.yaml``: every entry is a setting of the config, chosen on one of the known splits,
    with how it was chosen."""
    from padirec.config import Config

    cfg = Config().to_dict()
    for key, record in choice_provenance().items():
        section, _, name = key.partition(".")
        assert name in (cfg.get(section) or {}), f"{key}: not a config key"
        assert set(record) == {"split", "how"} and record["split"] in CHOICE_SPLITS, key
        assert record["how"].strip(), key


def test_reports_without_the_new_fields_still_validate():
    """Version-1 reports written before reward, regret, split and choices (a cached timing report)."""
    report = copy.deepcopy(_report())
    for name in ("split", "choices"):
        report.pop(name)
    for s in report["summary"].values():
        for name in ("reward", "regret", "reward_per_task", "regret_per_task", "range", "range_norm"):
            s.pop(name)
    validate_report(report)
    assert "## Summary" in render_markdown(report, [])
