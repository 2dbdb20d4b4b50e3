"""Each bad input gets a clear error and writes nothing downstream."""

import pandas as pd
import pytest

from padirec.config import Config
from padirec.data.config import DataConfig
from padirec.data.prepare import prepare
from padirec.data.sources import load_tables
from padirec.errors import DataValidationError


def _tables(n_users=3, per_user=10):  # 10 distinct items: enough to train
    rows = [(f"u{u}", f"i{(u + k) % 10}", 1000 + k) for u in range(n_users) for k in range(per_user)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(10)], "categories": [["a"], ["b"]] * 5})
    return inter, items


def _prepare_fails(tmp_path, inter, items, *needles):
    out = tmp_path / "out"
    with pytest.raises(DataValidationError) as err:
        prepare(inter, items, None, out, DataConfig(source="tables"))
    for needle in needles:
        assert needle in str(err.value), str(err.value)
    assert not out.exists() or not any(out.iterdir()), "nothing may be written on failure"
    return str(err.value)


def test_missing_column(tmp_path):
    inter, items = _tables()
    _prepare_fails(tmp_path, inter.drop(columns=["timestamp"]), items, "expect_column_to_exist", "timestamp")


def test_nulls_in_ids(tmp_path):
    inter, items = _tables()
    inter.loc[4, "user_id"] = None
    msg = _prepare_fails(tmp_path, inter, items, "expect_column_values_to_not_be_null", "'user_id'")
    assert "rows [4]" in msg


def test_non_numeric_timestamp(tmp_path):
    inter, items = _tables()
    inter["timestamp"] = inter["timestamp"].astype(object)
    inter.loc[2, "timestamp"] = "yesterday"
    msg = _prepare_fails(tmp_path, inter, items, "'timestamp'")
    assert "yesterday" in msg


def test_negative_timestamp(tmp_path):
    inter, items = _tables()
    inter.loc[1, "timestamp"] = -5
    _prepare_fails(tmp_path, inter, items, "expect_column_values_to_be_between", "'timestamp'", "-5")


def test_items_with_interactions_but_no_metadata(tmp_path):
    inter, items = _tables()
    _prepare_fails(tmp_path, inter, items[items.item_id != "i3"], "expect_column_values_to_be_in_set", "'item_id'", "i3")


def test_no_user_with_five_interactions(tmp_path):
    inter, items = _tables(per_user=4)
    _prepare_fails(tmp_path, inter, items, "no user has at least 5 interactions")


def test_empty_file(tmp_path):
    (tmp_path / "inter.csv").write_text("")
    (tmp_path / "items.csv").write_text("item_id,categories\ni1,a\n")
    with pytest.raises(DataValidationError, match="empty"):
        load_tables(str(tmp_path / "inter.csv"), str(tmp_path / "items.csv"))


def test_header_only_file(tmp_path):
    (tmp_path / "inter.csv").write_text("user_id,item_id,timestamp\n")
    (tmp_path / "items.csv").write_text("item_id,categories\ni1,a\n")
    with pytest.raises(DataValidationError, match="no rows"):
        load_tables(str(tmp_path / "inter.csv"), str(tmp_path / "items.csv"))


def test_wrong_delimiter(tmp_path):
    inter, items = _tables()
    inter.to_csv(tmp_path / "inter.csv", sep=";", index=False)
    (tmp_path / "items.csv").write_text("item_id,categories\ni1,a\n")
    with pytest.raises(DataValidationError, match="';' as delimiter"):
        load_tables(str(tmp_path / "inter.csv"), str(tmp_path / "items.csv"))


def test_cli_reports_error_and_writes_nothing(tmp_path, capsys):
    from padirec.commands.cli import main

    inter, items = _tables()
    inter.loc[0, "item_id"] = None
    inter.to_csv(tmp_path / "inter.csv", index=False)
    items.assign(categories=["a", "b"] * 5).to_csv(tmp_path / "items.csv", index=False)
    out = tmp_path / "out"
    rc = main(["data", "--interactions", str(tmp_path / "inter.csv"), "--items", str(tmp_path / "items.csv"),
               "--out", str(out)])
    assert rc == 2
    assert "expect_column_values_to_not_be_null" in capsys.readouterr().err
    assert not out.exists()


def test_failure_keeps_previous_output_intact(tmp_path):
    inter, items = _tables()
    out = tmp_path / "out"
    prepare(inter, items, None, out, DataConfig(source="tables"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = inter.copy()
    bad.loc[0, "timestamp"] = -1
    with pytest.raises(DataValidationError):
        prepare(bad, items, None, out, Config().data)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
