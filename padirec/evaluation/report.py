"""``report.json``: the versioned, documented result of the evaluation (schema + validator).

Schema version 1 (``report_schema(k)`` is the JSON Schema, draft 2020-12)::

    schema_version  1
    created_utc     ISO 8601 time the report was written
    k, alpha        the cutoff and alpha-NDCG redundancy penalty of the metrics
    dataset         data source name; backbone: backbone model name
    utilities       ["accuracy", "diversity"(, "fairness")]: the order of each task's weights
    tasks           [[w_1, ..., w_p], ...]: the evaluated tasks (points of the simplex)
    methods         {method: [{"ndcg@k", "hr@k", "alpha_ndcg@k"(, "ndcg_gap@k")} per task]},
                    aligned with ``tasks``; test split, full ranking, history masked
    summary         {method: {"avg_hv", "front_hv", "pearson_ra", "pearson_rd",
                              "spearman": {metric: rho with w_acc},
                              "undefined": {figure: why it is null}}} (see ``summary.py``)
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
schema cannot say: one result per task, task weights on the simplex.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jsonschema

from padirec import __version__
from padirec.core.tasks import validate_weights
from padirec.core.utilities import UTILITIES, utility_metrics
from padirec.errors import ArtifactError, TaskWeightsError
from padirec.methods.registry import METHODS

REPORT_SCHEMA_VERSION = 1


class ReportError(ArtifactError):
    """A report does not follow its schema; the message names the offending field."""


_NUM_OR_NULL = {"type": ["number", "null"]}
_SHA_OR_NULL = {"type": ["string", "null"]}


def report_schema(k: int = 10) -> dict[str, Any]:
    """The JSON Schema of report.json for metrics at cutoff ``k``, with the registered methods."""
    metrics_row = {
        "type": "object",
        "required": [f"hr@{k}"] + [key for key, _ in utility_metrics(["accuracy", "diversity"], k)],
        "additionalProperties": _NUM_OR_NULL,
    }
    method_names = {"enum": list(METHODS)}
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
            "summary": {
                "type": "object",
                "propertyNames": method_names,
                "additionalProperties": {
                    "type": "object",
                    "required": ["avg_hv", "front_hv", "pearson_ra", "pearson_rd", "spearman"],
                    "properties": {
                        "avg_hv": _NUM_OR_NULL,
                        "front_hv": _NUM_OR_NULL,
                        "pearson_ra": _NUM_OR_NULL,
                        "pearson_rd": _NUM_OR_NULL,
                        "spearman": {"type": "object", "additionalProperties": _NUM_OR_NULL},
                        "undefined": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
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
) -> dict[str, Any]:
    """Assemble and validate a report (NaN -> null); raises ``ReportError`` if it is invalid."""
    report = jsonable({
        "schema_version": REPORT_SCHEMA_VERSION,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "k": k,
        "alpha": alpha,
        "dataset": dataset,
        "backbone": backbone,
        "utilities": list(utilities),
        "tasks": [[float(x) for x in w] for w in tasks],
        "methods": dict(methods),
        "summary": dict(summary),
        "response_time": dict(response_time or {}),
        "analyses": dict(analyses or {}),
        "config": dict(config or {}),
        "versions": {"padirec": __version__, **dict(versions or {})},
    })
    validate_report(report)
    return report


def metric_name(key: str) -> str:
    """A metric key as MLflow accepts it (``ndcg@10`` -> ``ndcg_at_10``)."""
    return re.sub(r"[^\w.\- /]", "_", key.replace("@", "_at_"))
