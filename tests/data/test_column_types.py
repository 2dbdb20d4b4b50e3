"""Ids are integers or strings, timestamps numbers, dates or ISO-8601 strings: any other type (a
Parquet struct, list or map, a boolean) is refused at load in one line naming the file, the column
and its type, instead of becoming a string id or a number of seconds silently."""

import datetime
import gzip
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from padirec.data.columns import frame_problem
from padirec.data.config import DataConfig
from padirec.data.sources import load_tables
from padirec.data.stage import run_data_stage
from padirec.errors import DataValidationError

N = 30  # 3 users x 10 interactions
GOOD = {"user_id": pa.array([f"u{k % 3}" for k in range(N)]), "item_id": pa.array([f"i{k % 10}" for k in range(N)]),
        "timestamp": pa.array(range(1000, 1000 + N))}
BAD = {
    "struct user": ("user_id", pa.array([{"id": k % 3} for k in range(N)]), "struct<id: int64>"),
    "list item": ("item_id", pa.array([[k % 10] for k in range(N)]), "list<element: int64>"),
    "map item": ("item_id", pa.array([[("id", k % 10)] for k in range(N)], pa.map_(pa.string(), pa.int64())),
                 "map<string, int64"),  # pyarrow adds the field's name
    "bool time": ("timestamp", pa.array([k % 2 == 0 for k in range(N)]), "bool"),
    "float user": ("user_id", pa.array([float(k % 3) for k in range(N)]), "double"),
}


def _items(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,categories\n" + "".join(f"i{k},a\n" for k in range(10)))
    return str(path)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_parquet_id_or_timestamp_of_another_type_is_refused(tmp_path, kind):
    column, values, type_name = BAD[kind]
    path = tmp_path / "inter.parquet"
    pq.write_table(pa.table({**GOOD, column: values}), path)
    with pytest.raises(DataValidationError) as err:
        load_tables(str(path), _items(tmp_path))
    msg = str(err.value)
    assert msg.startswith(f"interactions table {path}: column {column!r} is of type {type_name}"), msg
    assert " must be " in msg and "\n" not in msg


def test_a_parquet_items_table_with_struct_ids_is_refused(tmp_path):
    inter = tmp_path / "inter.parquet"
    pq.write_table(pa.table(GOOD), inter)
    items = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": pa.array([{"id": k} for k in range(10)]), "categories": ["a"] * 10}), items)
    with pytest.raises(DataValidationError, match=rf"items table {items}: column 'item_id' is of type struct"):
        load_tables(str(inter), str(items))


def test_csv_boolean_timestamps_are_refused(tmp_path):
    path = tmp_path / "inter.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"u{k % 3},i{k % 10},{k % 2 == 0}\n" for k in range(N)))
    with pytest.raises(DataValidationError, match=rf"interactions table {path}: column 'timestamp' is of type bool; "):
        load_tables(str(path), _items(tmp_path))


@pytest.mark.parametrize("field,value,column,type_name", [
    ("unixReviewTime", True, "timestamp", "bool"), ("asin", {"id": 1}, "item_id", "struct<id: int64>")])
def test_other_sources_pass_the_same_rule(tmp_path, field, value, column, type_name):
    # Amazon's JSON lines: the rule is applied to every source's tables before they are prepared
    with gzip.open(tmp_path / "reviews_Grocery_and_Gourmet_Food_5.json.gz", "wt") as f:
        for k in range(N):
            row = {"reviewerID": f"u{k % 3}", "asin": f"i{k % 10}", "unixReviewTime": 1000 + k}
            f.write(json.dumps({**row, field: value}) + "\n")
    with gzip.open(tmp_path / "meta_Grocery_and_Gourmet_Food.json.gz", "wt") as f:
        f.writelines(json.dumps({"asin": f"i{k}", "category": ["Food", "a"]}) + "\n" for k in range(10))
    with pytest.raises(DataValidationError, match=rf"^interactions table: column {column!r} is of type {type_name}"):
        run_data_stage(DataConfig(source="amazon", path=str(tmp_path)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_types_accepted_today_still_are():
    df = pd.DataFrame({"user_id": pd.Series([1, 2], dtype="Int64"), "item_id": pd.Categorical(["a", "b"]),
                       "timestamp": ["2020-01-01T00:00:00Z", None]})
    assert frame_problem(df, interactions=True) is None
    for times in ([1.5, 2.0], pd.to_datetime(["2020-01-01"] * 2).tz_localize("Europe/Paris"),
                  [datetime.date(2020, 1, 1)] * 2, pd.Series([1, "noon"], dtype=object)):
        assert frame_problem(df.assign(timestamp=times), interactions=True) is None
    with_nulls = df.assign(user_id=[1.0, None])  # integer ids with a missing one: the not-null check names it
    assert frame_problem(with_nulls, interactions=True) is None
    assert "is of type double" in frame_problem(df.assign(user_id=[1.5, 2.0]), interactions=True)
    mixed = df.assign(user_id=pd.Series(["u1", {"id": 1}], dtype=object))
    assert frame_problem(mixed, interactions=True).startswith("column 'user_id' holds values of type struct<id: int64>")
