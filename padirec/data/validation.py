"""Great Expectations suites for the raw and the prepared tables (GX 1.x API, built in code).

``validate(df, suite_name, expectations)`` runs a suite on an in-memory DataFrame through an
ephemeral GX context and returns the JSON result; ``raise_on_failure`` turns a failed result into
a ``DataValidationError`` naming each failed expectation, its column and a few offending rows.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import pandas as pd

from padirec.errors import DataValidationError

log = logging.getLogger("padirec")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _CONTEXT = gx.get_context(mode="ephemeral")
        _CONTEXT.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return _CONTEXT


def _gxe():
    import great_expectations.expectations as gxe

    return gxe


# ---------------------------------------------------------------- suites

def raw_interactions_suite(known_items: list | None) -> list:
    gxe = _gxe()
    cols = ("user_id", "item_id", "timestamp")
    suite = [gxe.ExpectColumnToExist(column=c) for c in cols]
    suite += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in cols]
    suite.append(gxe.ExpectColumnValuesToBeBetween(column="timestamp", min_value=0))
    if known_items is not None:
        # Every interacted item must have a metadata row (categories are needed downstream).
        suite.append(gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=known_items))
    return suite


def raw_items_suite(min_category_coverage: float) -> list:
    gxe = _gxe()
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="item_id"),
        gxe.ExpectColumnValuesToBeUnique(column="item_id"),
        # Category coverage: the share of items with at least one category.
        gxe.ExpectColumnValuesToBeBetween(column="num_categories", min_value=1, mostly=min_category_coverage),
    ]


def prepared_interactions_suite(num_users: int, num_items: int, one_per_user: bool) -> list:
    gxe = _gxe()
    suite = [
        gxe.ExpectTableColumnsToMatchSet(column_set=["user_id", "item_id", "timestamp"], exact_match=True),
        gxe.ExpectColumnValuesToNotBeNull(column="user_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="item_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="timestamp"),
        gxe.ExpectColumnValuesToBeBetween(column="user_id", min_value=1, max_value=num_users),
        gxe.ExpectColumnValuesToBeBetween(column="item_id", min_value=1, max_value=num_items),
        gxe.ExpectColumnValuesToBeBetween(column="timestamp", min_value=0),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["user_id", "item_id", "timestamp"]),
    ]
    if one_per_user:
        suite.append(gxe.ExpectColumnValuesToBeUnique(column="user_id"))
        suite.append(gxe.ExpectTableRowCountToEqual(value=num_users))
    return suite


def prepared_items_suite(num_items: int, num_categories: int) -> list:
    gxe = _gxe()
    return [
        gxe.ExpectColumnValuesToBeUnique(column="item_id"),
        gxe.ExpectColumnValuesToBeBetween(column="item_id", min_value=1, max_value=num_items),
        gxe.ExpectTableRowCountToEqual(value=num_items),
        gxe.ExpectColumnValuesToBeBetween(column="min_category", min_value=0, max_value=max(num_categories - 1, 0)),
        gxe.ExpectColumnValuesToBeBetween(column="max_category", min_value=0, max_value=max(num_categories - 1, 0)),
    ]


# ---------------------------------------------------------------- running

def validate(df: pd.DataFrame, name: str, expectations: list) -> dict[str, Any]:
    """Run ``expectations`` on ``df``; returns the GX result as a JSON-able dict (with ``success``)."""
    import great_expectations as gx

    ctx = _context()
    try:
        source = ctx.data_sources.get("padirec")
    except (KeyError, ValueError):
        source = ctx.data_sources.add_pandas(name="padirec")
    try:
        asset = source.get_asset(name)
    except (LookupError, ValueError):
        asset = source.add_dataframe_asset(name=name)
    try:
        batch_def = asset.get_batch_definition("whole")
    except (KeyError, ValueError):
        batch_def = asset.add_batch_definition_whole_dataframe("whole")
    suite = gx.ExpectationSuite(name=f"{name}_suite", expectations=list(expectations))
    batch = batch_def.get_batch(batch_parameters={"dataframe": df.reset_index(drop=True)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = batch.validate(suite, result_format={"result_format": "COMPLETE", "partial_unexpected_count": 5})
    out = result.to_json_dict()
    out["table"] = name
    return out


def failures(result: dict[str, Any], df: pd.DataFrame | None = None, max_rows: int = 5) -> list[str]:
    """One line per failed expectation: type, column, count and example offending rows."""
    lines = []
    for r in result["results"]:
        if r["success"]:
            continue
        cfg = r["expectation_config"]
        kwargs = cfg.get("kwargs", {})
        column = kwargs.get("column") or kwargs.get("column_list") or kwargs.get("column_set")
        res = r.get("result") or {}
        detail = ""
        if r.get("exception_info", {}).get("raised_exception"):
            detail = f": {r['exception_info'].get('exception_message', '')[:200]}"
        elif "unexpected_count" in res:
            idx = (res.get("unexpected_index_list") or [])[:max_rows]
            if df is not None and idx and all(isinstance(i, int) for i in idx):
                rows = df.reset_index(drop=True).iloc[idx].to_dict("records")
                detail = f": {res['unexpected_count']} offending row(s), e.g. rows {idx}: {rows}"
            else:
                detail = f": {res['unexpected_count']} offending value(s), e.g. {res.get('partial_unexpected_list', [])[:max_rows]}"
        elif "observed_value" in res:
            detail = f": observed {res['observed_value']!r}"
        lines.append(f"{cfg['type']} failed on column {column!r} of table {result['table']!r}{detail}")
    return lines


def raise_on_failure(result: dict[str, Any], df: pd.DataFrame | None = None) -> None:
    if not result["success"]:
        raise DataValidationError("data validation failed:\n  " + "\n  ".join(failures(result, df)))
