"""A folder of partitioned Parquet files is one table (``padirec.data.parquet_dataset``): local and
on S3 it prepares to the same data as the single file it was split from, and what cannot be read
is refused in one line naming the folder."""

from __future__ import annotations

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from padirec.data.config import DataConfig
from padirec.data.prepare import prepare
from padirec.data.sources import load_tables
from padirec.data.synthetic import generate
from padirec.errors import DataValidationError


@pytest.fixture(scope="module")
def tables():
    inter, items, _ = generate(num_users=60, num_items=30, num_categories=4, seed=1)
    inter = inter.assign(rating=4, day=pd.to_datetime(inter["timestamp"], unit="s").dt.strftime("%Y-%m-%d"))
    items = items.assign(categories=["|".join(c) for c in items.categories])
    return inter, items


def _split(inter: pd.DataFrame, folder) -> None:
    """Hive-partitioned by day (``day=.../part-0.parquet``), as a log lands, plus a rating column
    the data stage does not read."""
    ds.write_dataset(pa.Table.from_pandas(inter, preserve_index=False), folder, format="parquet",
                     partitioning=ds.partitioning(pa.schema([("day", pa.string())]), flavor="hive"))


def _checksum(inter_uri: str, items_uri: str, out) -> str:
    inter, items, users = load_tables(inter_uri, items_uri)
    return prepare(inter, items, users, out, DataConfig(source="tables"))["data_checksum"]


def test_a_partitioned_folder_prepares_as_the_file(tmp_path, tables):
    inter, items = tables
    inter.drop(columns=["day"]).to_parquet(tmp_path / "interactions.parquet")
    items.to_csv(tmp_path / "items.csv", index=False)
    _split(inter, tmp_path / "interactions")
    assert len(list((tmp_path / "interactions").glob("day=*/*.parquet"))) > 5
    read = load_tables(str(tmp_path / "interactions"), str(tmp_path / "items.csv"))[0]
    assert list(read.columns) == ["user_id", "item_id", "timestamp"]  # only what the stage reads
    whole = _checksum(str(tmp_path / "interactions.parquet"), str(tmp_path / "items.csv"), tmp_path / "a")
    assert _checksum(str(tmp_path / "interactions"), str(tmp_path / "items.csv"), tmp_path / "b") == whole


def test_an_s3_folder_is_streamed(tmp_path, tables, monkeypatch):
    from tests.servers import seaweedfs

    inter, items = tables
    inter.drop(columns=["day"]).to_parquet(tmp_path / "interactions.parquet")
    items.to_csv(tmp_path / "items.csv", index=False)
    _split(inter, tmp_path / "interactions")
    with seaweedfs(tmp_path / "weed") as s3:
        for k, v in (("PADIREC_S3_ENDPOINT", s3["endpoint"]), ("AWS_ACCESS_KEY_ID", s3["key"]),
                     ("AWS_SECRET_ACCESS_KEY", s3["secret"])):
            monkeypatch.setenv(k, v)
        client = boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=s3["key"],
                              aws_secret_access_key=s3["secret"], region_name="us-east-1")
        client.create_bucket(Bucket="logs")
        for f in (tmp_path / "interactions").rglob("*.parquet"):
            client.upload_file(str(f), "logs", f"weeks/2026-12-07/{f.relative_to(tmp_path / 'interactions')}")
        whole = _checksum(str(tmp_path / "interactions.parquet"), str(tmp_path / "items.csv"), tmp_path / "a")
        assert _checksum("s3://logs/weeks/2026-12-07/", str(tmp_path / "items.csv"), tmp_path / "b") == whole
        with pytest.raises(DataValidationError, match=r"s3://logs/weeks/2026-12-08/: no such folder"):
            load_tables("s3://logs/weeks/2026-12-08/", str(tmp_path / "items.csv"))


@pytest.mark.parametrize("case, message", [
    ("empty", "no Parquet files in this folder"),
    ("struct", r"column 'user_id' is of type struct<id: int64>; ids must be integers or strings"),
    ("not_parquet", "interactions table .*interactions: "),
])
def test_a_folder_that_cannot_be_read_is_named(tmp_path, tables, case, message):
    inter, items = tables
    folder = tmp_path / "interactions"
    folder.mkdir()
    items.to_csv(tmp_path / "items.csv", index=False)
    if case == "struct":
        bad = pa.table({"user_id": [{"id": 1}], "item_id": ["1"], "timestamp": [1]})
        pq.write_table(bad, folder / "part-0.parquet")
    elif case == "not_parquet":
        inter.drop(columns=["day"]).to_parquet(folder / "part-0.parquet")
        (folder / "part-1.parquet").write_text("user_id,item_id\n1,2\n")
    with pytest.raises(DataValidationError, match=message) as e:
        load_tables(str(folder), str(tmp_path / "items.csv"))
    assert "\n" not in str(e.value)
