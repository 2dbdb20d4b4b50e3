"""Property-based tests of the data stage: any valid table splits correctly; any corruption is
caught with an error naming its column, and nothing is written."""

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from padirec.data.config import DataConfig
from padirec.data.prepare import prepare
from padirec.errors import DataValidationError

SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def tables(draw):
    n_items = draw(st.integers(3, 12))
    rows = []
    for u in range(draw(st.integers(1, 6))):
        for _ in range(draw(st.integers(1, 9))):
            rows.append((f"u{u}", f"i{draw(st.integers(0, n_items - 1))}", draw(st.integers(0, 50))))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(n_items)],
                          "categories": [draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=2)) for _ in range(n_items)]})
    return inter, items


@SETTINGS
@given(tables())
def test_valid_tables_split_into_a_partition(tmp_path_factory, t):
    inter, items = t
    out = tmp_path_factory.mktemp("p")
    deduped = inter.drop_duplicates()
    counts = deduped.groupby("user_id").size()
    if (counts < 5).all():
        with pytest.raises(DataValidationError, match="no user has at least 5"):
            prepare(inter, items, None, out, DataConfig(source="tables"))
        assert not any(out.iterdir())
        return
    m = prepare(inter, items, None, out, DataConfig(source="tables"))
    train, valid, test = (pd.read_parquet(out / f"{s}.parquet") for s in ("train", "valid", "test"))
    kept = int((counts >= 5).sum())
    assert len(valid) == len(test) == kept == m["stats"]["num_users"]
    assert len(train) + len(valid) + len(test) == int(counts[counts >= 5].sum()) == m["stats"]["num_interactions"]
    assert m["stats"]["duplicates_dropped"] == len(inter) - len(deduped)
    last = pd.concat([train, valid, test]).groupby("user_id")["timestamp"].max()
    assert (test.set_index("user_id")["timestamp"] == last.loc[test.user_id].to_numpy()).all()


CORRUPTIONS = {
    "null user": ("user_id", None),
    "null item": ("item_id", None),
    "negative time": ("timestamp", -1),
    "text time": ("timestamp", "noon"),
    "unknown item": ("item_id", "not-an-item"),
}


@SETTINGS
@given(st.sampled_from(sorted(CORRUPTIONS)), st.integers(0, 29))
def test_corruption_is_named_and_nothing_written(tmp_path_factory, kind, row):
    inter = pd.DataFrame([(f"u{u}", f"i{(u + k) % 8}", 10 + k) for u in range(3) for k in range(10)],
                         columns=["user_id", "item_id", "timestamp"]).astype(object)
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(8)], "categories": [["a"]] * 8})
    column, value = CORRUPTIONS[kind]
    inter.loc[row, column] = value
    out = tmp_path_factory.mktemp("c")
    with pytest.raises(DataValidationError) as err:
        prepare(inter, items, None, out, DataConfig(source="tables"))
    assert f"'{column}'" in str(err.value) and f"rows [{row}]" in str(err.value)
    assert not any(out.iterdir())
