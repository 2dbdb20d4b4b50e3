"""Each source's file format -> the common raw tables -> a valid prepared folder."""

import gzip
import json

import pytest

from padirec.data.config import DataConfig
from padirec.data.dataset import load_prepared
from padirec.data.sources import load_source
from padirec.data.stage import run_data_stage
from padirec.data.synthetic import generate


@pytest.fixture(scope="module")
def raw():
    return generate(num_users=30, num_items=20, num_categories=3, seed=1)


def _check_prepared(out, num_users):
    data = load_prepared(out)
    assert data.num_users == num_users
    assert data.item_categories[1:].any(1).all()
    return data


def write_ml1m(folder, raw):
    inter, items, users = raw
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{u[1:]}::{i[1:]}::4::{t}" for u, i, t in inter.itertuples(index=False)]
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n")
    (folder / "movies.dat").write_bytes("\n".join(
        f"{i[1:]}::Movie {i} (1999) \xe9::{'|'.join(c)}" for i, c in zip(items.item_id, items.categories, strict=True)
    ).encode("latin-1"))
    (folder / "users.dat").write_text("\n".join(f"{u[1:]}::{g}::25::1::00000" for u, g in users.itertuples(index=False)))
    return folder


def test_movielens_1m_folder(tmp_path, raw):
    write_ml1m(tmp_path, raw)
    cfg = DataConfig(source="ml-1m", path=str(tmp_path))
    run_data_stage(cfg, tmp_path / "out")
    data = _check_prepared(tmp_path / "out", 30)
    assert data.user_group is not None and "\xe9" in data.item_titles[1]


def write_amazon(folder, raw, year=2018):
    inter, items, _ = raw
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "reviews_Grocery_and_Gourmet_Food_5.json.gz", "wt") as f:
        for u, i, t in inter.itertuples(index=False):
            f.write(json.dumps({"reviewerID": u, "asin": i, "unixReviewTime": int(t), "overall": 5.0}) + "\n")
    with gzip.open(folder / "meta_Grocery_and_Gourmet_Food.json.gz", "wt") as f:
        for i, cats in zip(items.item_id, items.categories, strict=True):
            if year == 2014:  # Python-literal lines with a list of category paths
                f.write(repr({"asin": i, "title": f"Food {i}", "categories": [["Grocery & Gourmet Food", *cats]]}) + "\n")
            else:
                f.write(json.dumps({"asin": i, "title": f"Food {i}", "category": ["Grocery & Gourmet Food", *cats]}) + "\n")
    return folder


@pytest.mark.parametrize("year", [2014, 2018])
def test_amazon_folder(tmp_path, raw, year):
    write_amazon(tmp_path, raw, year)
    cfg = DataConfig(source="amazon", path=str(tmp_path), max_category_groups=2)
    _, items_raw, _ = load_source(cfg)
    groups = {c for cats in items_raw.categories for c in cats}
    assert len(groups) == 2 and "other" in groups  # the most frequent category, the rest merged
    manifest = run_data_stage(cfg, tmp_path / "out")
    assert manifest["stats"]["num_categories"] == 2
    _check_prepared(tmp_path / "out", 30)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_user_tables(tmp_path, raw, fmt):
    inter, items, users = raw
    if fmt == "csv":
        inter.to_csv(tmp_path / "inter.csv", index=False)
        items.assign(categories=["|".join(c) for c in items.categories]).to_csv(tmp_path / "items.csv", index=False)
        users.to_csv(tmp_path / "users.csv", index=False)
    else:
        inter.to_parquet(tmp_path / "inter.parquet")
        items.to_parquet(tmp_path / "items.parquet")
        users.to_parquet(tmp_path / "users.parquet")
    cfg = DataConfig(source="tables", interactions=str(tmp_path / f"inter.{fmt}"),
                     items=str(tmp_path / f"items.{fmt}"), users=str(tmp_path / f"users.{fmt}"))
    run_data_stage(cfg, tmp_path / "out")
    data = _check_prepared(tmp_path / "out", 30)
    assert data.user_group is not None
    assert data.item_titles[1].startswith("Item")


def write_ml100k(tmp_path, raw):
    """Files in the recbole layout (what the wheel holds)."""
    inter, items, users = raw
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
        f"{u}\t{i}\t3\t{t}\n" for u, i, t in inter.itertuples(index=False)))
    (tmp_path / "ml-100k.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n" + "".join(
        f"{i}\tMovie {i}\t1995\t{' '.join(c)}\n" for i, c in zip(items.item_id, items.categories, strict=True)))
    (tmp_path / "ml-100k.user").write_text("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n" + "".join(
        f"{u}\t30\t{g}\tother\t00000\n" for u, g in users.itertuples(index=False)))
    return tmp_path


def test_movielens_100k_recbole_format(tmp_path, raw):
    """The embedded default's reader on files in the recbole layout (no download in tests)."""
    write_ml100k(tmp_path, raw)
    run_data_stage(DataConfig(source="ml-100k", path=str(tmp_path)), tmp_path / "out")
    _check_prepared(tmp_path / "out", 30)


@pytest.mark.slow
def test_s3_tables_and_missing_bucket(tmp_path, raw, monkeypatch):
    from padirec.runtime.storage import StorageError, client, upload
    from tests.servers import seaweedfs

    inter, items, _ = raw
    inter.to_csv(tmp_path / "inter.csv", index=False)
    items.assign(categories=["|".join(c) for c in items.categories]).to_csv(tmp_path / "items.csv", index=False)
    with seaweedfs(tmp_path / "weed") as s3:
        monkeypatch.setenv("PADIREC_S3_ENDPOINT", s3["endpoint"])
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3["key"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3["secret"])
        client().create_bucket(Bucket="padirec-data")
        upload(tmp_path / "inter.csv", "s3://padirec-data/in/inter.csv")
        upload(tmp_path / "items.csv", "s3://padirec-data/in/items.csv")
        cfg = DataConfig(source="tables", interactions="s3://padirec-data/in/inter.csv",
                         items="s3://padirec-data/in/items.csv")
        run_data_stage(cfg, tmp_path / "out")
        _check_prepared(tmp_path / "out", 30)

        bad = DataConfig(source="tables", interactions="s3://no-such-bucket/inter.csv", items="s3://padirec-data/in/items.csv")
        with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
            run_data_stage(bad, tmp_path / "out2")
        assert not (tmp_path / "out2").exists()


def test_synthetic_has_planted_rule():
    inter, _, _ = generate(num_users=50, num_items=30, noise=0.0, seed=2)
    nxt = 0
    total = 0
    for _, rows in inter.groupby("user_id", sort=False):
        ids = [int(i[1:]) for i in rows.item_id]
        nxt += sum((b - a) % 30 == 1 for a, b in zip(ids, ids[1:], strict=False))
        total += len(ids) - 1
    assert nxt / total > 0.95
