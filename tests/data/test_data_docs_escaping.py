"""Ids are user data: the Data Docs logged to the tracker show them HTML-escaped, on success and on
failure (GX writes a failure's table of unexpected values as raw HTML), and still show them."""

import html
import shutil

import pandas as pd
import pytest

from padirec.core.tracker import NullTracker
from padirec.data.config import DataConfig
from padirec.data.prepare import prepare
from padirec.errors import DataValidationError

PAYLOADS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]


class Recording(NullTracker):
    """Keeps a copy of every folder logged, as the tracker would upload it."""

    def __init__(self, into):
        self.into = into

    def log_artifacts(self, path, artifact_path=None):
        shutil.copytree(path, self.into / artifact_path)


def _tables():
    rows = [(f"u{u}", f"i{(u + k) % 10}", 1000 + k) for u in range(3) for k in range(10)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(10)], "categories": [["a"], ["b"]] * 5})
    return inter, items


def _logged_docs(tmp_path, inter, items):
    logged = tmp_path / "logged"
    prepare(inter, items, None, tmp_path / "out", DataConfig(source="tables"), tracker=Recording(logged))
    return logged


def _assert_escaped(docs):
    pages = [p for p in docs.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in pages)
    text = "\n".join(p.read_text(errors="replace") for p in pages)
    for payload in PAYLOADS:
        assert payload not in text, f"unescaped {payload!r} in the Data Docs"
        assert html.escape(payload) in text, f"{payload!r} is not shown"
        assert html.escape(html.escape(payload)) not in text, "escaped twice"


def test_ids_in_the_docs_of_a_failed_validation_are_escaped(tmp_path):
    inter, items = _tables()
    inter.loc[3, "item_id"], inter.loc[5, "item_id"] = PAYLOADS  # items without metadata: not in the set
    logged = tmp_path / "logged"
    with pytest.raises(DataValidationError) as err:
        _logged_docs(tmp_path, inter, items)
    assert all(p in str(err.value) for p in PAYLOADS), "the error (plain text) names the ids as written"
    _assert_escaped(logged / "data" / "data_docs")
    assert PAYLOADS[0] in (logged / "data" / "validation.json").read_text(), "the JSON record keeps the value"


def test_duplicate_ids_in_the_docs_are_escaped(tmp_path):
    inter, items = _tables()
    items = pd.concat([items, pd.DataFrame({"item_id": PAYLOADS * 2, "categories": [["a"]] * 4})],
                      ignore_index=True)
    logged = tmp_path / "logged"
    with pytest.raises(DataValidationError, match="expect_column_values_to_be_unique"):
        _logged_docs(tmp_path, inter, items)
    _assert_escaped(logged / "data" / "data_docs")


def test_ids_in_the_docs_of_a_passed_validation_are_escaped(tmp_path):
    inter, items = _tables()
    items.loc[3, "item_id"], items.loc[5, "item_id"] = PAYLOADS
    inter["item_id"] = inter["item_id"].replace({"i3": PAYLOADS[0], "i5": PAYLOADS[1]})
    _assert_escaped(_logged_docs(tmp_path, inter, items) / "data" / "data_docs")
