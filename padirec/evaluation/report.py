"""``report.json``: the versioned, documented result of the evaluation (schema + validator).

Schema version 1 (``REPORT_SCHEMA`` is the JSON Schema, draft 2020-12 subset)::

    schema_version  1
    created_utc     ISO 8601 time the report was written
    k, alpha        the cutoff and alpha-NDCG redundancy penalty of the metrics
    dataset         data source name; backbone: backbone model name
    utilities       ["accuracy", "diversity"(, "fairness")]: the order of each task's weights
    tasks           [[w_1, ..., w_p], ...]: the evaluated tasks (points of the simplex)
    methods         {method: [{"ndcg@10", "hr@10", "alpha_ndcg@10"(, "ndcg_gap@10")} per task]},
                    aligned with ``tasks``; test split, full ranking, history masked
    summary         {method: {"avg_hv", "front_hv", "pearson_ra", "pearson_rd",
                              "spearman": {metric: rho with w_acc}}} (see ``summary.py``)
    response_time   {method: {"median_s", "p25_s", "p75_s", "repeats", "times_s", ...}}:
                    seconds from new task weights to a model ready to serve them
    analyses        {"robustness": ..., "case_study": ...} (see ``analyses.py``), may be empty
    config          the whole padirec config that produced the report
    versions        sha256 of the inputs (data, backbone, adapter bank, generator manifests)
                    and the padirec version

Method keys are lower case: ``padirec``, ``retrain``, ``soup``, ``mmr``, ``cmr``,
``hypernetwork``, ``deepprl``. A figure that is undefined (e.g. a correlation over a constant
series) is ``null``, never NaN (NaN is not JSON).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from padirec.errors import ArtifactError

REPORT_SCHEMA_VERSION = 1
METHOD_KEYS = ["padirec", "retrain", "soup", "mmr", "cmr", "hypernetwork", "deepprl"]
UTILITIES = ["accuracy", "diversity", "fairness"]


class ReportError(ArtifactError):
    """A report does not follow its schema; the message names the offending field."""


_NUM_OR_NULL = {"type": ["number", "null"]}
_SHA_OR_NULL = {"type": ["string", "null"]}


def report_schema(k: int = 10) -> dict[str, Any]:
    """The JSON Schema of report.json for metrics at cutoff ``k``."""
    metrics_row = {
        "type": "object",
        "required": [f"ndcg@{k}", f"hr@{k}", f"alpha_ndcg@{k}"],
        "additionalProperties": _NUM_OR_NULL,
    }
    method_names = {"enum": METHOD_KEYS}
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
            "utilities": {"type": "array", "minItems": 2, "items": {"enum": UTILITIES}},
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


REPORT_SCHEMA = report_schema(10)


# ----------------------------------------------------------------------------- validation

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
}


def _check(value: Any, schema: Mapping[str, Any], where: str) -> None:
    """Check ``value`` against the subset of JSON Schema used above; raise at the first error."""
    if "const" in schema and value != schema["const"]:
        raise ReportError(f"{where}: must be {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise ReportError(f"{where}: {value!r} is not one of {schema['enum']}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            got = "NaN/inf" if isinstance(value, float) and not math.isfinite(value) else type(value).__name__
            raise ReportError(f"{where}: expected {' or '.join(types)}, got {got} ({value!r:.60})")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise ReportError(f"{where}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ReportError(f"{where}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                raise ReportError(f"{where}: missing required field {key!r}")
        props = schema.get("properties", {})
        for key, v in value.items():
            if "propertyNames" in schema:
                _check(key, schema["propertyNames"], f"{where}: key")
            if key in props:
                _check(v, props[key], f"{where}.{key}")
            elif "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
                _check(v, schema["additionalProperties"], f"{where}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise ReportError(f"{where}: needs at least {schema['minItems']} items, got {len(value)}")
        if "items" in schema:
            for i, v in enumerate(value):
                _check(v, schema["items"], f"{where}[{i}]")


def validate_report(report: Mapping[str, Any]) -> None:
    """Raise ``ReportError`` naming the first field of ``report`` that breaks the schema.

    Beyond the JSON Schema it checks that every method has one result per task and that every
    task has one weight per utility.
    """
    if not isinstance(report, Mapping):
        raise ReportError(f"report: expected an object, got {type(report).__name__}")
    k = report.get("k", 10)
    _check(dict(report), report_schema(k if isinstance(k, int) and not isinstance(k, bool) else 10), "report")
    p = len(report["utilities"])
    for i, w in enumerate(report["tasks"]):
        if len(w) != p:
            raise ReportError(f"report.tasks[{i}]: {len(w)} weights for {p} utilities {report['utilities']}")
        if abs(sum(w) - 1.0) > 1e-4:
            raise ReportError(f"report.tasks[{i}]: weights {w} do not sum to 1")
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
    from padirec import __version__

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
