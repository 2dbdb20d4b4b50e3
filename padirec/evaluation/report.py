"""``report.json``: the versioned, documented result of the evaluation (schema + validator).

Schema version 1 (``report_schema(k)`` is the JSON Schema, draft 2020-12)::

    schema_version  1
    created_utc     ISO 8601 time the report was written
    k, alpha        the cutoff and alpha-NDCG redundancy penalty of the metrics
    dataset         data source name; backbone: backbone model name
    utilities       ["accuracy", "diversity"(, "fairness")]: the order of each task's weights
    tasks           [[w_1, ..., w_p], ...]: the evaluated tasks (points of the simplex)
    split           (optional, default "test") the split the metrics are measured on
    methods         {method: [{"ndcg@k", "hr@k", "alpha_ndcg@k"(, "ndcg_gap@k")} per task]},
                    aligned with ``tasks``; full ranking, history masked
    normalisation   (optional) {"source", "objectives": {metric: {"worst", "best"}}}: the fixed scale
                    of every normalised figure (``summary.Scale``: Retrain's front ends), so that
                    no method's figures depend on the others in the report
    summary         {method: {"reward", "regret", "reward_per_task", "regret_per_task",
                              "range": {metric: max - min over tasks}, "range_norm": {...},
                              "pearson_ra", "pearson_rd", "spearman": {metric: rho with w_acc},
                              "avg_hv", "front_hv" (the paper's metrics),
                              "undefined": {figure: why it is null},
                              (optional, see ``uncertainty.py``:)
                              "se": {metric: [standard error over users per task]},
                              "vs_reference": {metric: {"mean", "lo", "hi": [per task],
                                               "task_mean": [point, lo, hi]}},
                              "reward_ci", "regret_ci": [lo, hi],
                              "pearson_ceiling" (the reference method only): {"pearson_ra",
                                  "pearson_rd", "seed", "reference_seed", "regret",
                                  "regret_per_task", "metrics", "vs_reference"}}}
                              "tracking_error": {metric: {"mean", "per_task"}},
                              "dominance": {"per_task": [verdict], "counts": {verdict: n}},
                              (with the bootstrap:) "tracking_error_ci": {metric: [lo, hi]},
                              "dominance_share": {"dominates", "dominated": [share per task]}}}
                    (see ``summary.py``: reward = mean over tasks of sum_j w_j z_j with z the
                    objectives on the report's ``normalisation``, as for Avg.HV; regret = the
                    reference method's reward minus the method's)
    uncertainty     (optional) {"method", "resamples", "confidence", "seed", "users"}: how the
                    intervals of the summary were drawn (paired bootstrap over users)
    choices         (optional) {setting: {"value", "split", "how"}}: the settings chosen by
                    measurement and the split each was chosen on ("valid", "test",
                    "synthetic", or "none" when set a priori), as ``choices.yaml`` records them
    protocols       (optional) {"grid": {"description", "tasks", "summary"}, "band": {"description",
                    "tasks", "methods", "summary", "band": [low, high], "task_index" (into ``tasks``),
                    "bank_tasks_removed", "bank_rows_left", "rerun", "reused_from_grid",
                    "generator": {its training figures}, "skipped": why, when it could not run}}:
                    each protocol's own per-method summary
                    (same fields as ``summary``; see ``protocols.py``). ``grid``'s is ``summary``.
    response_time   {method: {"median_s", "p25_s", "p75_s", "repeats", "times_s", ...}}:
                    seconds from new task weights to a model ready to serve them
    analyses        {"robustness": ..., "case_study": ...} (see ``analyses.py``), may be empty
    config          the whole padirec config that produced the report
    versions        sha256 of the inputs (data, backbone, adapter bank, generator manifests)
                    and the padirec version

Method keys are those of ``padirec.methods.registry.METHODS`` (lower case: ``padirec``,
``retrain``, ``soup``, ...); utilities those of ``padirec.core.utilities``. A figure that is
undefined (e.g. a correlation over a constant series) is ``null``, never NaN (NaN is not JSON).
``validate_report`` checks a report with ``jsonschema`` (numbers must be finite) and then what a
schema cannot say: one result per task, task weights on the simplex, per-task reward and regret
lists as long as ``tasks``.

The reward/regret/range fields, ``split``, ``choices``, ``protocols`` and the uncertainty fields (``se``,
``vs_reference``, ``reward_ci``, ``regret_ci``, ``pearson_ceiling``, ``uncertainty``) were added
without a version bump: they are optional in the schema, so version-1 reports written before them
still validate; every report written now carries them.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from padirec import __version__
from padirec.adapters.utilities import UTILITIES, utility_metrics
from padirec.core.tasks import validate_weights
from padirec.errors import ArtifactError, TaskWeightsError
from padirec.evaluation.summary import DOMINANCE
from padirec.methods.registry import METHODS

REPORT_SCHEMA_VERSION = 1


class ReportError(ArtifactError):
    """A report does not follow its schema; the message names the offending field."""


_NUM_OR_NULL = {"type": ["number", "null"]}
_SHA_OR_NULL = {"type": ["string", "null"]}
_PER_TASK = {"type": "array", "items": _NUM_OR_NULL}
_INTERVAL = {"type": "array", "minItems": 2, "maxItems": 2, "items": _NUM_OR_NULL}
_DIFFERENCES = {  # {metric: {"mean", "lo", "hi": per task, "task_mean": [point, lo, hi]}}
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "required": ["mean", "lo", "hi"],
        "properties": {"mean": _PER_TASK, "lo": _PER_TASK, "hi": _PER_TASK,
                       "task_mean": {"type": "array", "minItems": 3, "maxItems": 3, "items": _NUM_OR_NULL}},
    },
}
SPLITS = ("valid", "test")
CHOICE_SPLITS = ("valid", "test", "synthetic", "none")

CHOICES_FILE = Path(__file__).with_name("choices.yaml")  # where each measured default was chosen


@functools.cache
def choice_provenance() -> dict[str, dict[str, str]]:
    """``{config key: {"split", "how"}}``: the record of ``choices.yaml``. ``split``: the data the
    choice was measured on, "none" when set a priori."""
    return yaml.safe_load(CHOICES_FILE.read_text())


def selection_choices(config: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{setting: {"value", "split", "how"}}`` for the recorded settings found in ``config`` (a
    config dict)."""
    if not config:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for key, record in choice_provenance().items():
        section, _, name = key.partition(".")
        values = config.get(section)
        if isinstance(values, Mapping) and name in values:
            out[key] = {"value": values[name], **record}
    return out


def report_schema(k: int = 10) -> dict[str, Any]:
    """The JSON Schema of report.json for metrics at cutoff ``k``, with the registered methods."""
    metrics_row = {
        "type": "object",
        "required": [f"hr@{k}"] + [key for key, _ in utility_metrics(["accuracy", "diversity"], k)],
        "additionalProperties": _NUM_OR_NULL,
    }
    method_names = {"enum": list(METHODS)}
    summary = {
        "type": "object",
        "propertyNames": method_names,
        "additionalProperties": {
            "type": "object",
            "required": ["avg_hv", "front_hv", "pearson_ra", "pearson_rd", "spearman"],
            "properties": {
                "reward": _NUM_OR_NULL,
                "regret": _NUM_OR_NULL,
                "reward_per_task": {"type": "array", "items": _NUM_OR_NULL},
                "regret_per_task": {"type": "array", "items": _NUM_OR_NULL},
                "range": {"type": "object", "additionalProperties": _NUM_OR_NULL},
                "range_norm": {"type": "object", "additionalProperties": _NUM_OR_NULL},
                "avg_hv": _NUM_OR_NULL,
                "front_hv": _NUM_OR_NULL,
                "pearson_ra": _NUM_OR_NULL,
                "pearson_rd": _NUM_OR_NULL,
                "pearson_rf": _NUM_OR_NULL,
                "spearman": {"type": "object", "additionalProperties": _NUM_OR_NULL},
                "undefined": {"type": "object", "additionalProperties": {"type": "string"}},
                "se": {"type": "object", "additionalProperties": _PER_TASK},
                "vs_reference": _DIFFERENCES,
                "reward_ci": _INTERVAL,
                "regret_ci": _INTERVAL,
                "tracking_error": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["mean", "per_task"],
                    "properties": {"mean": _NUM_OR_NULL, "per_task": _PER_TASK}}},
                "tracking_error_ci": {"type": "object", "additionalProperties": _INTERVAL},
                "dominance": {"type": "object", "required": ["per_task", "counts"], "properties": {
                    "per_task": {"type": "array", "items": {"enum": [*DOMINANCE, None]}},
                    "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}}},
                "dominance_share": {"type": "object", "additionalProperties": _PER_TASK},
                "pearson_ceiling": {
                    "type": "object",
                    "required": ["pearson_ra", "pearson_rd", "seed"],
                    "properties": {
                        "pearson_ra": _NUM_OR_NULL,
                        "pearson_rd": _NUM_OR_NULL,
                        "seed": {"type": "integer"},
                        "reference_seed": {"type": "integer"},
                        "regret": _NUM_OR_NULL,
                        "regret_per_task": _PER_TASK,
                        "metrics": {"type": "array", "items": metrics_row},
                        "vs_reference": _DIFFERENCES,
                    },
                },
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "padirec evaluation report",
        "type": "object",
        "required": ["schema_version", "created_utc", "k", "alpha", "utilities", "tasks", "methods",
                     "summary", "response_time", "config", "versions"],
        "properties": {
            "schema_version": {"const": REPORT_SCHEMA_VERSION},
            "created_utc": {"type": "string"},
            "k": {"type": "integer", "minimum": 1},
            "alpha": {"type": "number", "minimum": 0, "maximum": 1},
            "dataset": {"type": "string"},
            "backbone": {"type": "string"},
            "utilities": {"type": "array", "minItems": 2, "items": {"enum": list(UTILITIES)}},
            "tasks": {
                "type": "array",
                "items": {"type": "array", "minItems": 2, "items": {"type": "number", "minimum": 0, "maximum": 1}},
            },
            "methods": {
                "type": "object",
                "propertyNames": method_names,
                "additionalProperties": {"type": "array", "items": metrics_row},
            },
            "summary": summary,
            "normalisation": {
                "type": "object",
                "required": ["source", "objectives"],
                "properties": {
                    "source": {"type": "string"},
                    "objectives": {"type": "object", "additionalProperties": {
                        "type": "object", "required": ["worst", "best"],
                        "properties": {"worst": _NUM_OR_NULL, "best": _NUM_OR_NULL}}},
                },
            },
            "uncertainty": {
                "type": "object",
                "properties": {
                    "method": {"type": "string"},
                    "resamples": {"type": "integer", "minimum": 0},
                    "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    "seed": {"type": "integer"},
                    "users": {"type": "integer", "minimum": 0},
                },
            },
            "response_time": {
                "type": "object",
                "propertyNames": method_names,
                "additionalProperties": {
                    "type": "object",
                    "required": ["median_s", "p25_s", "p75_s", "repeats"],
                    "properties": {
                        "median_s": {"type": "number", "minimum": 0},
                        "p25_s": {"type": "number", "minimum": 0},
                        "p75_s": {"type": "number", "minimum": 0},
                        "repeats": {"type": "integer", "minimum": 1},
                        "times_s": {"type": "array", "items": {"type": "number", "minimum": 0}},
                        "fit_s": _NUM_OR_NULL,
                        "serve_s": _NUM_OR_NULL,
                    },
                },
            },
            "analyses": {"type": "object"},
            "protocols": {
                "type": "object",
                "propertyNames": {"enum": ["grid", "band"]},
                "additionalProperties": {
                    "type": "object",
                    "required": ["description", "tasks", "summary"],
                    "properties": {
                        "description": {"type": "string"},
                        "tasks": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                        "summary": summary,
                        "methods": {
                            "type": "object",
                            "propertyNames": method_names,
                            "additionalProperties": {"type": "array", "items": metrics_row},
                        },
                        "band": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}},
                        "skipped": {"type": "string"},
                    },
                },
            },
            "split": {"enum": list(SPLITS)},
            "choices": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["value", "split"],
                    "properties": {"split": {"enum": list(CHOICE_SPLITS)}, "how": {"type": "string"}},
                },
            },
            "config": {"type": "object"},
            "versions": {
                "type": "object",
                "required": ["padirec"],
                "properties": {
                    "padirec": {"type": "string"},
                    "data_sha256": _SHA_OR_NULL,
                    "backbone_sha256": _SHA_OR_NULL,
                    "bank_sha256": _SHA_OR_NULL,
                    "generator_sha256": _SHA_OR_NULL,
                },
            },
        },
    }


# ----------------------------------------------------------------------------- validation

# JSON numbers are finite: a NaN or infinity is not a "number" here (it would not survive strict JSON)
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "number", lambda checker, v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)),
)


def _where(path: Any) -> str:
    return "report" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def validate_report(report: Mapping[str, Any]) -> None:
    """Raise ``ReportError`` naming the field of ``report`` that breaks the schema (the most
    relevant error, as ``jsonschema.exceptions.best_match`` ranks them).

    Beyond the JSON Schema it checks that every method has one result per task and that every
    task's weights are a point of the simplex, one weight per utility.
    """
    if not isinstance(report, Mapping):
        raise ReportError(f"report: expected an object, got {type(report).__name__}")
    k = report.get("k", 10)
    schema = report_schema(k if isinstance(k, int) and not isinstance(k, bool) else 10)
    error = jsonschema.exceptions.best_match(_Validator(schema).iter_errors(dict(report)))
    if error is not None:
        key = "key " if "propertyNames" in error.schema_path else ""
        raise ReportError(f"{_where(error.absolute_path)}: {key}{error.message}")
    p = len(report["utilities"])
    for i, w in enumerate(report["tasks"]):
        try:
            validate_weights(w, p)
        except TaskWeightsError as e:
            raise ReportError(f"report.tasks[{i}]: {e} (utilities {report['utilities']})") from e
    for m, rows in report["methods"].items():
        if len(rows) != len(report["tasks"]):
            raise ReportError(f"report.methods.{m}: {len(rows)} results for {len(report['tasks'])} tasks")
    _check_per_task(report["summary"], len(report["tasks"]), "report.summary")
    for name, protocol in (report.get("protocols") or {}).items():
        where = f"report.protocols.{name}"
        for i, w in enumerate(protocol["tasks"]):
            try:
                validate_weights(w, p)
            except TaskWeightsError as e:
                raise ReportError(f"{where}.tasks[{i}]: {e} (utilities {report['utilities']})") from e
        for m, rows in (protocol.get("methods") or {}).items():
            if len(rows) != len(protocol["tasks"]):
                raise ReportError(f"{where}.methods.{m}: {len(rows)} results for {len(protocol['tasks'])} tasks")
        _check_per_task(protocol["summary"], len(protocol["tasks"]), f"{where}.summary")


def _check_per_task(summary: Mapping[str, Any], n: int, where: str) -> None:
    """Every per-task list of ``summary`` has one value per task."""
    for m, s in summary.items():
        per_task = {name: s[name] for name in ("reward_per_task", "regret_per_task") if name in s}
        per_task.update({f"se.{key}": v for key, v in (s.get("se") or {}).items()})
        ceiling = s.get("pearson_ceiling") or {}
        per_task.update({f"pearson_ceiling.{name}": ceiling[name] for name in ("regret_per_task", "metrics")
                         if name in ceiling})
        for field, diffs in (("vs_reference", s.get("vs_reference")),
                             ("pearson_ceiling.vs_reference", ceiling.get("vs_reference"))):
            for key, d in (diffs or {}).items():
                per_task.update({f"{field}.{key}.{part}": d[part] for part in ("mean", "lo", "hi")})
        for name, values in per_task.items():
            if len(values) != n:
                raise ReportError(f"{where}.{m}.{name}: {len(values)} values for {n} tasks")


# ----------------------------------------------------------------------------- building


def jsonable(obj: Any) -> Any:
    """Nested dicts/lists/tuples/numpy/torch values -> JSON values; NaN and inf -> None."""
    if hasattr(obj, "tolist") and not isinstance(obj, str | bytes):
        obj = obj.tolist()
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def build_report(
    *,
    k: int,
    alpha: float,
    utilities: list[str],
    tasks: list[list[float]],
    methods: Mapping[str, list[Mapping[str, float]]],
    summary: Mapping[str, Any],
    response_time: Mapping[str, Any] | None = None,
    analyses: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    versions: Mapping[str, Any] | None = None,
    dataset: str = "",
    backbone: str = "",
    split: str = "test",
    choices: Mapping[str, Any] | None = None,
    uncertainty: Mapping[str, Any] | None = None,
    protocols: Mapping[str, Any] | None = None,
    normalisation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble and validate a report (NaN -> null); raises ``ReportError`` if it is invalid.

    ``split``: the split the metrics were measured on. ``choices``: default
    ``selection_choices(config)``, the recorded split of each measured setting. ``uncertainty``:
    how the summary's intervals were drawn (``uncertainty.add_uncertainty``), omitted when None.
    ``protocols``: ``{name: protocol_section(...)}`` (``protocols.py``), omitted when None.
    ``normalisation``: ``summary.Scale.to_dict``, the scale every normalised figure is on."""
    report = jsonable({
        "schema_version": REPORT_SCHEMA_VERSION,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "k": k,
        "alpha": alpha,
        "dataset": dataset,
        "backbone": backbone,
        "split": split,
        "choices": dict(selection_choices(config) if choices is None else choices),
        "utilities": list(utilities),
        "tasks": [[float(x) for x in w] for w in tasks],
        "methods": dict(methods),
        "summary": dict(summary),
        "response_time": dict(response_time or {}),
        "analyses": dict(analyses or {}),
        "config": dict(config or {}),
        "versions": {"padirec": __version__, **dict(versions or {})},
        **({"uncertainty": dict(uncertainty)} if uncertainty is not None else {}),
        **({"protocols": dict(protocols)} if protocols is not None else {}),
        **({"normalisation": dict(normalisation)} if normalisation is not None else {}),
    })
    validate_report(report)
    return report


def metric_name(key: str) -> str:
    """A metric key as MLflow accepts it (``ndcg@10`` -> ``ndcg_at_10``)."""
    return re.sub(r"[^\w.\- /]", "_", key.replace("@", "_at_"))
