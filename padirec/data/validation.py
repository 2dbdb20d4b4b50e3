"""Great Expectations for the raw and the prepared tables (GX 1.x API; suites built in code).

One ``Validation`` per data-stage run holds an ephemeral GX context whose only Data Docs site is
a local temporary folder. ``check(df, table, expectations)`` validates one table through a
``ValidationDefinition`` run by a ``Checkpoint``; a failed result raises ``DataValidationError``,
one line per failed expectation (type, column, offending rows), read from GX's ``describe_dict()``.
The Data Docs are built once, when the stage ends (``build_data_docs``: an ``UpdateDataDocsAction``
per Checkpoint copies the site's 4 MB of static files and rebuilds the index on every run, which
made the stage on ML-100K about a second slower), from results whose values are HTML-escaped
first (GX writes a failure's unexpected values raw: an id ``<script>`` would run in the docs).

Used as a context manager it reports through the tracker: on success the Data Docs are logged to
``data/data_docs`` (``report()`` is what the stage writes as ``validation.json``); on any failure
``validation.json`` (with the error), ``validation_failure.txt`` (the error, then GX's
``describe()`` of the failed expectations) and the Data Docs are written to the temporary folder,
which is kept and named in the log (nothing is written to the output folder), logged to ``data/``,
and the error is raised.
"""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from padirec.core.tracker import NullTracker, Tracker
from padirec.data.columns import MAX_TIMESTAMP
from padirec.errors import DataValidationError

log = logging.getLogger("padirec")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

ARTIFACT_PATH = "data"  # where the stage's validation artifacts go in the MLflow run
DOCS = "data_docs"
FAILURE = "validation_failure.txt"
SITE = "padirec"
# SUMMARY: counts, percentages, observed values and the first offending values and row indices;
# COMPLETE would keep every offending value (a whole column of a broken table) in the saved result.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 5, "return_unexpected_index_query": False}


def _gxe():
    import great_expectations.expectations as gxe

    return gxe


# ---------------------------------------------------------------- suites

def raw_interactions_suite(known_items: list | None) -> list:
    gxe = _gxe()
    cols = ("user_id", "item_id", "timestamp")
    suite = [gxe.ExpectColumnToExist(column=c) for c in cols]
    suite += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in cols]
    suite.append(gxe.ExpectColumnValuesToBeBetween(column="timestamp", min_value=0, max_value=MAX_TIMESTAMP,
                                                   strict_max=True))
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

class Validation:
    """The validations of one data-stage run (see the module docstring)."""

    def __init__(self, tracker: Tracker | None = None) -> None:
        self.tracker = tracker or NullTracker()
        self.folder = Path(tempfile.mkdtemp(prefix="padirec-validation-"))
        self.docs = self.folder / DOCS
        self.context = _context(self.docs)
        self._source = self.context.data_sources.add_pandas(name="padirec")
        self.results: dict[str, Any] = {}  # table -> ExpectationSuiteValidationResult
        self.failures: dict[str, list[str]] = {}

    def check(self, df: pd.DataFrame, table: str, expectations: list, shown: pd.DataFrame | None = None) -> None:
        """Validate ``df`` as ``table``; raise naming each failed expectation, its column and
        example rows, taken from ``shown`` (the rows as the user wrote them) or ``df``."""
        import great_expectations as gx

        ctx = self.context
        batch = self._source.add_dataframe_asset(name=table).add_batch_definition_whole_dataframe("whole")
        suite = ctx.suites.add(gx.ExpectationSuite(name=table, expectations=list(expectations)))
        definition = ctx.validation_definitions.add(gx.ValidationDefinition(name=table, data=batch, suite=suite))
        # no UpdateDataDocsAction: the Data Docs are built once, in ``__exit__`` (module docstring)
        checkpoint = ctx.checkpoints.add(gx.Checkpoint(name=table, validation_definitions=[definition],
                                                       result_format=RESULT_FORMAT))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = checkpoint.run(batch_parameters={"dataframe": df.reset_index(drop=True)})
        (result,) = outcome.run_results.values()
        self.results[table] = result
        self.failures[table] = describe_failures(table, result, shown if shown is not None else df)
        if not result.success:
            # one line: the CLI prints it as ``padirec: error: ...`` and logs keep it together
            raise DataValidationError("data validation failed: " + "; ".join(self.failures[table]))

    def report(self, error: str | None = None) -> dict[str, Any]:
        """``validation.json``: the summary (``success``; per table ``success``, GX's
        ``statistics`` and the failure lines), ``error`` on failure, and GX's full result per
        table (``results``: every expectation with its observed values)."""
        return {
            "success": error is None and all(r.success for r in self.results.values()),
            **({"error": error} if error is not None else {}),
            "suites": [{"table": t, "success": r.success, "statistics": r.statistics, "failures": self.failures[t]}
                       for t, r in self.results.items()],
            "results": {t: r.to_json_dict() for t, r in self.results.items()},
        }

    def __enter__(self) -> Validation:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, Exception):
            self._build_docs()
        if exc is None:
            self._log_artifacts(lambda: self.tracker.log_artifacts(self.docs, f"{ARTIFACT_PATH}/{DOCS}"))
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        if not isinstance(exc, Exception):
            shutil.rmtree(self.folder, ignore_errors=True)  # SIGTERM, KeyboardInterrupt: no report
            return
        error = str(exc)
        (self.folder / "validation.json").write_text(json.dumps(self.report(error), indent=1, default=str))
        failed = [f"\ntable {t}: {r.get_failed_validation_results().describe()}" for t, r in self.results.items()
                  if not r.success]
        (self.folder / FAILURE).write_text("\n".join([error, *failed]) + "\n")
        log.warning("data stage failed; its validation results and Data Docs are in %s", self.folder)
        self._log_artifacts(lambda: self.tracker.log_artifacts(self.folder, ARTIFACT_PATH))

    def _build_docs(self) -> None:
        try:
            _escape_stored_results(self.context.validation_results_store)
            self.context.build_data_docs(site_names=[SITE])
        except Exception as e:  # the docs illustrate; the results (validation.json) are the record
            log.warning("could not build the Great Expectations Data Docs: %s", e)

    def _log_artifacts(self, log_them: Any) -> None:
        try:
            self.tracker.set_tags({"data.validation": "passed" if all(r.success for r in self.results.values())
                                   else "failed"})
            log_them()
        except Exception as e:  # the stage's own outcome (or error) is the one to report
            log.warning("could not log the validation results to the tracker: %s", e)


def describe_failures(table: str, result: Any, rows: pd.DataFrame | None = None, max_rows: int = 5) -> list[str]:
    """One line per failed expectation of ``result``, from GX's ``describe_dict()``: the type, the
    column, the count and example offending rows of ``rows`` (or values), or the observed value."""
    lines = []
    for e, raw in zip(result.describe_dict()["expectations"], result.results, strict=True):
        if e["success"]:
            continue
        kwargs = e.get("kwargs") or {}
        column = kwargs.get("column") or kwargs.get("column_list") or kwargs.get("column_set")
        res = e.get("result") or {}
        detail = ""
        if error := _exception_message(raw.exception_info or {}):
            detail = f": {error[:200]}"
        elif "unexpected_count" in res:
            idx = (res.get("partial_unexpected_index_list") or [])[:max_rows]
            if rows is not None and idx and all(isinstance(i, int) for i in idx):
                shown = rows.reset_index(drop=True).iloc[idx].to_dict("records")
                detail = f": {res['unexpected_count']} offending row(s), e.g. rows {idx}: {shown}"
            else:
                detail = f": {res['unexpected_count']} offending value(s), e.g. {res.get('partial_unexpected_list', [])[:max_rows]}"
        elif "observed_value" in res:
            detail = f": observed {res['observed_value']!r}"
        lines.append(f"{e['expectation_type']} failed on column {column!r} of table {table!r}{detail}".replace("\n", " "))
    return lines


def _escape_stored_results(store: Any) -> None:
    """HTML-escape the data values in the stored results the Data Docs are built from. GX escapes
    an expectation's own parameters but writes the cells of a failure's table of unexpected values
    as raw HTML, so an id such as ``<script>`` would run in the docs. The results kept in
    ``Validation.results`` (``validation.json``, the error) keep the values as they are."""
    for key in store.list_keys():
        stored = store.get(key)
        for r in stored.results:
            if r.result:  # exception messages need nothing: GX renders them through escaped templates
                r.result = _escaped(r.result)
        store.set(key, stored)


def _escaped(value: Any) -> Any:
    """``value`` with every string in it HTML-escaped (a stored result holds JSON types only)."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    return value


def _exception_message(info: dict) -> str | None:
    """The message of an exception GX caught (``describe_dict`` shows it only when it is not
    keyed by metric, as it is when a column is missing or of the wrong type)."""
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    return next((str(v.get("exception_message")) for v in info.values() if isinstance(v, dict) and v.get("raised_exception")),
                None)


def _context(docs: Path) -> Any:
    """An ephemeral GX context (nothing persisted but the Data Docs) whose only Data Docs site is
    the local folder ``docs``."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    for name in list(ctx.get_site_names()):
        ctx.delete_data_docs_site(name)
    ctx.add_data_docs_site(SITE, {
        "class_name": "SiteBuilder", "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        # a validation page lists each expectation with its result: no separate suite pages
        "site_section_builders": {"expectations": "0", "profiling": "0"},
    })
    return ctx
