"""Each bad input gets a clear error and writes nothing downstream."""

import gzip
import os

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


def test_a_column_named_twice_is_refused(tmp_path):
    # pandas would read the second as "timestamp.1" and use the first silently
    (tmp_path / "inter.csv").write_text("user_id,item_id,timestamp,timestamp\nu1,i1,1,2\n")
    (tmp_path / "items.csv").write_text("item_id,categories\ni1,a\n")
    with pytest.raises(DataValidationError, match=r"inter.csv: the header names column\(s\) 'timestamp' more than once"):
        load_tables(str(tmp_path / "inter.csv"), str(tmp_path / "items.csv"))


@pytest.mark.parametrize("name,content,needle", [
    ("inter.csv", "user_id,item_id,timestamp\nu\xe91,i1,1\n".encode("latin-1"), "not UTF-8 text"),
    ("inter.csv", b"PAR1" + bytes(range(128, 256)) * 8, "not UTF-8 text"),  # a binary file (Parquet) named .csv
    ("inter.csv.gz", b"user_id,item_id,timestamp\nu1,i1,1\n", "not a readable gzip file"),
    ("inter.csv.gz", gzip.compress(b"user_id,item_id,timestamp\nu1,i1,1\n" * 100)[:60], "not a readable gzip file"),
], ids=["latin-1", "binary", "not gzip", "truncated gzip"])
def test_a_file_that_is_not_csv_text_is_one_line(tmp_path, name, content, needle):
    (tmp_path / name).write_bytes(content)
    (tmp_path / "items.csv").write_text("item_id,categories\ni1,a\n")
    with pytest.raises(DataValidationError, match=f"interactions table .*{name}: {needle}"):
        load_tables(str(tmp_path / name), str(tmp_path / "items.csv"))


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


@pytest.mark.parametrize("out", ["a_file", "a_file/below"])
def test_an_out_folder_that_is_a_file_is_one_line(tmp_path, capsys, out):
    from padirec.commands.cli import main

    inter, items = _tables()
    inter.to_csv(tmp_path / "inter.csv", index=False)
    items.assign(categories=["a", "b"] * 5).to_csv(tmp_path / "items.csv", index=False)
    (tmp_path / "a_file").write_text("not a folder")
    rc = main(["data", "--interactions", str(tmp_path / "inter.csv"), "--items", str(tmp_path / "items.csv"),
               "--out", str(tmp_path / out)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and err[-1] == f"padirec: error: {tmp_path / out}: " + \
        ("File exists" if out == "a_file" else "Not a directory"), err
    assert (tmp_path / "a_file").read_text() == "not a folder"


@pytest.mark.parametrize("timestamp", [2**62, 2**63 + 5, 10**30])
def test_timestamps_past_the_one_bound_are_refused_as_serving_refuses_them(tmp_path, timestamp):
    # Above 2^63 a timestamp used to become INT64_MIN with only a numpy warning, and TiSASRec trained
    # on it, while serving refused anything from 2^62 on: one bound (padirec.data.columns) for both.
    from padirec.data.columns import MAX_TIMESTAMP
    from padirec.serving import MAX_TIMESTAMP as SERVED

    assert SERVED == MAX_TIMESTAMP == 2**62
    inter, items = _tables()
    (tmp_path / "inter.csv").write_text(inter.to_csv(index=False).replace(",1003\n", f",{timestamp}\n", 1))
    items.assign(categories=["a", "b"] * 5).to_csv(tmp_path / "items.csv", index=False)
    inter, items, _ = load_tables(str(tmp_path / "inter.csv"), str(tmp_path / "items.csv"))
    _prepare_fails(tmp_path, inter, items, "expect_column_values_to_be_between", "timestamp")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def read_only_folder(tmp_path):
    """A read-only file system (tmpfs mounted ro): as root, a folder's mode bits would not stop a write."""
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "padirec-test-ro", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs as root and must be able to mount a read-only tmpfs: {mounted.stderr}")
        pytest.skip(f"cannot mount a read-only tmpfs here ({mounted.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_run_directory_is_one_line(read_only_folder):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "pipelines", "run", "--config", "configs/smoke.yaml", "--set",
                           f"run_dir={read_only_folder / 'runs'}"], cwd=root, capture_output=True, text=True,
                          timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines == [f"padirec: error: {read_only_folder / 'runs'}: Read-only file system"], \
        proc.stderr[-2000:]
