"""Legal data is accepted (ISO-8601 and datetime timestamps, ids that look like missing values),
and data that cannot train is refused by the data stage with the reason, writing nothing."""

import datetime as dt
import logging

import pandas as pd
import pytest

from padirec.data.config import DataConfig
from padirec.data.prepare import prepare
from padirec.data.stage import run_data_stage
from padirec.errors import DataValidationError

T0 = pd.Timestamp("2021-03-04T10:00:00Z")


@pytest.fixture(autouse=True)
def _log_to_this_tests_stderr():
    """The CLI binds its log handler to the stderr of the first test that ran it (since closed)."""
    log = logging.getLogger("padirec")
    saved, log.handlers = log.handlers, []
    yield
    log.handlers = saved


def _tables(users=("u0", "u1", "u2"), n_items=12, per_user=10):  # 12 distinct items used
    rows = [(u, f"i{(k + j) % n_items}", k) for j, u in enumerate(users) for k in range(per_user)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "step"])
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(n_items)], "categories": ["a|b", "b"] * (n_items // 2),
                          "title": [f"Item {k}" for k in range(n_items)]})
    return inter, items


def _cli(tmp_path, inter, items, fmt="csv", users=None):
    from padirec.commands.cli import main

    if fmt == "csv":
        inter.to_csv(tmp_path / "inter.csv", index=False)
        items.to_csv(tmp_path / "items.csv", index=False)
    else:
        inter.to_parquet(tmp_path / "inter.parquet")
        items.to_parquet(tmp_path / "items.parquet")
    argv = ["data", "--interactions", str(tmp_path / f"inter.{fmt}"), "--items", str(tmp_path / f"items.{fmt}"),
            "--out", str(tmp_path / "out")]
    if users is not None:
        users.to_csv(tmp_path / "users.csv", index=False)
        argv += ["--users", str(tmp_path / "users.csv")]
    return main(argv)


def _seconds(out):
    train, valid, test = (pd.read_parquet(out / f"{s}.parquet") for s in ("train", "valid", "test"))
    return set(pd.concat([train, valid, test])["timestamp"].astype(int))


def test_iso_8601_timestamps_become_seconds(tmp_path):
    inter, items = _tables()
    # the same instants written with different offsets and separators
    forms = ["{:%Y-%m-%dT%H:%M:%SZ}", "{:%Y-%m-%d %H:%M:%S+00:00}"]
    inter["timestamp"] = [forms[k % 2].format(T0 + pd.Timedelta(hours=s)) for k, s in enumerate(inter.pop("step"))]
    inter.loc[0, "timestamp"] = (T0.tz_convert("Europe/Paris")).isoformat()  # +01:00, same instant as step 0
    assert _cli(tmp_path, inter, items) == 0
    assert _seconds(tmp_path / "out") == {int(T0.timestamp()) + 3600 * s for s in range(10)}


@pytest.mark.parametrize("tz", [None, "UTC", "Europe/Paris"])
def test_parquet_datetimes_naive_and_timezone_aware(tmp_path, tz):
    inter, items = _tables()
    base = T0.tz_convert(tz) if tz else T0.tz_localize(None)  # naive datetimes are read as UTC
    inter["timestamp"] = [base + pd.Timedelta(hours=s) for s in inter.pop("step")]
    assert _cli(tmp_path, inter, items, fmt="parquet") == 0
    assert _seconds(tmp_path / "out") == {int(T0.timestamp()) + 3600 * s for s in range(10)}


def test_python_datetime_objects(tmp_path):
    inter, items = _tables()
    start = dt.datetime(2021, 3, 4, 11, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    inter["timestamp"] = pd.Series([start + dt.timedelta(hours=int(s)) for s in inter.pop("step")], dtype=object)
    prepare(inter, items.assign(categories=[["a"]] * len(items)), None, tmp_path, DataConfig(source="tables"))
    assert _seconds(tmp_path) == {int(T0.timestamp()) + 3600 * s for s in range(10)}


def test_unreadable_timestamp_still_named(tmp_path):
    inter, items = _tables()
    inter["timestamp"] = [f"2021-03-{1 + s:02d}" for s in inter.pop("step")]
    inter.loc[3, "timestamp"] = "2021-13-45"
    with pytest.raises(DataValidationError, match=r"'timestamp'.*rows \[3\]:.*2021-13-45"):
        prepare(inter, items.assign(categories=[["a"]] * len(items)), None, tmp_path / "o", DataConfig(source="tables"))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_ids_that_look_missing_are_ids(tmp_path, fmt):
    words = ["NA", "null", "None", "nan", "N/A"]
    inter, items = _tables(users=("NA", "null", "None"))
    inter["item_id"] = inter["item_id"].replace({f"i{k}": w for k, w in enumerate(words)})
    items["item_id"] = items["item_id"].replace({f"i{k}": w for k, w in enumerate(words)})
    inter["timestamp"] = inter.pop("step")
    users = pd.DataFrame({"user_id": ["NA", "null", "None"], "gender": ["F", "M", "NA"]})
    assert _cli(tmp_path, inter, items, fmt=fmt, users=users if fmt == "csv" else None) == 0
    out = tmp_path / "out"
    assert set(pd.read_parquet(out / "id_map_users.parquet")["source_id"]) == {"NA", "null", "None"}
    assert set(words) <= set(pd.read_parquet(out / "id_map_items.parquet")["source_id"])
    if fmt == "csv":
        assert set(pd.read_parquet(out / "users.parquet")["group"]) == {0, 1, -1}


def test_empty_id_cell_is_still_missing(tmp_path, capsys):
    inter, items = _tables()
    inter["timestamp"] = inter.pop("step")
    inter.loc[2, "user_id"] = ""
    assert _cli(tmp_path, inter, items) == 2
    assert "expect_column_values_to_not_be_null" in capsys.readouterr().err


@pytest.mark.parametrize("case,needle", [
    ("one item", "only 1 distinct item_id(s) left"),
    ("five items", "only 5 distinct item_id(s) left"),
    ("one user", "only 1 user(s) left"),
    ("one user after filtering", "only 1 user(s) left after dropping users with fewer than 5"),
])
def test_untrainable_data_refused_by_the_cli_in_one_line(tmp_path, capsys, case, needle):
    if case == "one item":
        inter, items = _tables(n_items=12)
        inter["item_id"] = "i0"
    elif case == "five items":
        inter, items = _tables(n_items=12)
        inter["item_id"] = [f"i{k % 5}" for k in range(len(inter))]
    elif case == "one user":
        inter, items = _tables(users=("u0",))
    else:
        inter, items = _tables()
        inter = inter[(inter.user_id == "u0") | (inter.step < 3)]
    if "timestamp" not in inter:
        inter = inter.assign(timestamp=inter.pop("step"))
    assert _cli(tmp_path, inter, items) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("padirec: error: ") and needle in errors[0], err
    assert err.splitlines()[-1] == errors[0] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_fewer_items_than_evaluation_k(tmp_path):
    inter, items = _tables()
    inter["timestamp"] = inter.pop("step")
    inter.to_csv(tmp_path / "inter.csv", index=False)
    items.to_csv(tmp_path / "items.csv", index=False)
    cfg = DataConfig(source="tables", interactions=str(tmp_path / "inter.csv"), items=str(tmp_path / "items.csv"))
    with pytest.raises(DataValidationError, match=r"only 12 distinct item_id\(s\) left.*at least 20 items"):
        run_data_stage(cfg, tmp_path / "out", eval_k=20)
    assert not (tmp_path / "out").exists()
    assert run_data_stage(cfg, tmp_path / "out", eval_k=5)["stats"]["num_items"] == 12  # 10 is the floor


def test_validation_failure_is_one_line(tmp_path):
    inter, items = _tables()
    inter["timestamp"] = inter.pop("step")
    inter.loc[1, "timestamp"] = -5
    inter.loc[2, "user_id"] = None
    with pytest.raises(DataValidationError) as err:
        prepare(inter, items.assign(categories=[["a"]] * len(items)), None, tmp_path / "o", DataConfig(source="tables"))
    assert "\n" not in str(err.value) and str(err.value).count("failed on column") == 2
