"""Property-based tests of the data stage: any valid table splits correctly; any corruption is
caught with an error naming its column, and nothing is written."""

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from padirec.data.config import DataConfig
from padirec.data.prepare import prepare
from padirec.errors import DataValidationError

# every example prepares a table through GX (about 1 s each): make test runs them
pytestmark = pytest.mark.slow

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
    kept_items = deduped[deduped["user_id"].map(counts) >= 5]["item_id"].nunique()
    if (counts < 5).all() or kept_items < 2:
        needle = "no user has at least 5" if (counts < 5).all() else "only 1 distinct item_id"
        with pytest.raises(DataValidationError, match=needle):
            prepare(inter, items, None, out, DataConfig(source="tables"), min_users=1, min_items=1)
        assert not any(out.iterdir())
        return
    # the split itself, on tables too small to train (the trainability floor is the next test's)
    m = prepare(inter, items, None, out, DataConfig(source="tables"), min_users=1, min_items=1)
    train, valid, test = (pd.read_parquet(out / f"{s}.parquet") for s in ("train", "valid", "test"))
    kept = int((counts >= 5).sum())
    assert len(valid) == len(test) == kept == m["stats"]["num_users"]
    assert len(train) + len(valid) + len(test) == int(counts[counts >= 5].sum()) == m["stats"]["num_interactions"]
    assert m["stats"]["duplicates_dropped"] == len(inter) - len(deduped)
    last = pd.concat([train, valid, test]).groupby("user_id")["timestamp"].max()
    assert (test.set_index("user_id")["timestamp"] == last.loc[test.user_id].to_numpy()).all()


@SETTINGS
@given(tables(), st.integers(1, 12))
def test_untrainable_tables_refused_with_the_reason(tmp_path_factory, t, min_items):
    """Property: with the default floors (2 users, ``min_items`` items) prepare succeeds exactly
    when the filtered data has them, else names the count; nothing is written on refusal."""
    inter, items = t
    out = tmp_path_factory.mktemp("t")
    deduped = inter.drop_duplicates()
    counts = deduped.groupby("user_id").size()
    kept = deduped[deduped["user_id"].map(counts) >= 5]
    users, n_items = kept["user_id"].nunique(), kept["item_id"].nunique()
    if users == 0:
        needle = "no user has at least 5"
    elif users < 2:
        needle = f"only {users} user(s) left"
    elif n_items < max(2, min_items):
        needle = f"only {n_items} distinct item_id(s) left"
    else:
        assert prepare(inter, items, None, out, DataConfig(source="tables"), min_items=min_items)["stats"]["num_items"] == n_items
        return
    with pytest.raises(DataValidationError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        prepare(inter, items, None, out, DataConfig(source="tables"), min_items=min_items)
    assert not any(out.iterdir())


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
