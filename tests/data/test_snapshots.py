"""Snapshots in the object store: every source reads ``s3://`` as it reads a local folder, a
``{snapshot}`` in a data location is filled with the run's snapshot, and MovieLens-100K can be
mirrored once into the object store (SeaweedFS, a real S3 server)."""

import dataclasses

import pytest

from padirec.commands.cli import main
from padirec.commands.steps import prepare_data_step
from padirec.config import Config, TrackingConfig, config_to_json
from padirec.data.config import DataConfig
from padirec.data.dataset import load_prepared
from padirec.data.sources import load_source
from padirec.data.synthetic import generate
from padirec.errors import ConfigError, PadirecError
from padirec.runtime.storage import client, upload
from tests.data.test_sources import write_amazon, write_ml1m, write_ml100k
from tests.servers import seaweedfs

pytestmark = pytest.mark.slow  # starts a server
BUCKET = "s3://padirec-data"


def _upload_folder(folder, uri):
    for f in sorted(folder.iterdir()):
        upload(f, f"{uri}/{f.name}")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("weed")) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("PADIREC_S3_ENDPOINT", server["endpoint"])
        mp.setenv("AWS_ACCESS_KEY_ID", server["key"])
        mp.setenv("AWS_SECRET_ACCESS_KEY", server["secret"])
        client().create_bucket(Bucket="padirec-data")
        yield server


@pytest.fixture(scope="module")
def weeks():
    """Two weekly cuts: week 2 has more users than week 1."""
    return {"20260105": generate(num_users=30, num_items=20, num_categories=3, seed=1),
            "20260112": generate(num_users=40, num_items=20, num_categories=3, seed=1)}


def test_every_folder_source_reads_s3_snapshots(s3, weeks, tmp_path):
    for snapshot, raw in weeks.items():
        _upload_folder(write_ml1m(tmp_path / "ml1m" / snapshot, raw), f"{BUCKET}/ml-1m/{snapshot}")
        _upload_folder(write_amazon(tmp_path / "amazon" / snapshot, raw), f"{BUCKET}/amazon/{snapshot}")
        _upload_folder(write_ml100k(tmp_path / "ml100k" / snapshot, raw), f"{BUCKET}/ml-100k/{snapshot}")
    for source in ("ml-1m", "amazon", "ml-100k"):
        cfg = DataConfig(source=source, path=f"{BUCKET}/{source}/{{snapshot}}/")
        for snapshot, raw in weeks.items():
            inter, items, _ = load_source(cfg.for_snapshot(snapshot))
            assert len(inter) == len(raw[0]) and len(items) == len(raw[1]), (source, snapshot)
    missing = DataConfig(source="ml-1m", path=f"{BUCKET}/ml-1m/20990101/")
    with pytest.raises(PadirecError, match="ml-1m/20990101/: no matching objects"):
        load_source(missing)


def test_the_data_step_reads_the_snapshot_it_is_given(s3, weeks, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "none")
    for snapshot, (inter, _, _) in weeks.items():
        inter.to_csv(tmp_path / f"inter-{snapshot}.csv", index=False)
        upload(tmp_path / f"inter-{snapshot}.csv", f"{BUCKET}/interactions/{snapshot}/inter.csv")
    items = weeks["20260105"][1]
    items.assign(categories=["|".join(c) for c in items.categories]).to_csv(tmp_path / "items.csv", index=False)
    upload(tmp_path / "items.csv", f"{BUCKET}/items.csv")
    cfg = Config(tracking=TrackingConfig(uri="none"), cache=False)
    cfg = dataclasses.replace(cfg, data=DataConfig(source="tables", interactions=f"{BUCKET}/interactions/{{snapshot}}/inter.csv",
                                                   items=f"{BUCKET}/items.csv", snapshot="20260105"))
    first = prepare_data_step(config_to_json(cfg), "", str(tmp_path / "w1"))  # no data_version: data.snapshot
    second = prepare_data_step(config_to_json(cfg), "20260112", str(tmp_path / "w2"))
    assert first["data_version"] == "20260105" and second["data_version"] == "20260112"
    assert load_prepared(tmp_path / "w1").num_users == 30 and load_prepared(tmp_path / "w2").num_users == 40
    assert first["data_checksum"] != second["data_checksum"]
    with pytest.raises(ConfigError, match="KFP did not replace this macro"):
        prepare_data_step(config_to_json(cfg), "[[ScheduledTime.20060102]]", str(tmp_path / "w3"))
    assert not (tmp_path / "w3").exists()


def test_movielens_100k_is_mirrored_once_into_the_object_store(s3, weeks, tmp_path, monkeypatch, capsys):
    """The mirror copies the cached files (no index needed where it is read); the data stage then
    reads the mirror with no network but the object store."""
    monkeypatch.setenv("PADIREC_CACHE", str(tmp_path / "cache"))
    write_ml100k(tmp_path / "cache" / "ml-100k", weeks["20260105"])  # as if fetched from the wheel
    assert main(["mirror-ml100k", f"{BUCKET}/mirror/ml-100k/"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{BUCKET}/mirror/ml-100k/ml-100k.{x}" for x in ("inter", "item", "user")]
    monkeypatch.setenv("PADIREC_CACHE", str(tmp_path / "empty-cache"))  # the reader must not need the cache
    inter, _, users = load_source(DataConfig(source="ml-100k", path=f"{BUCKET}/mirror/ml-100k/"))
    assert len(inter) == len(weeks["20260105"][0]) and users is not None


@pytest.mark.parametrize("snapshot,needle", [("", "no snapshot is given"), ("a/b", "one folder name"),
                                             ("..", "one folder name")])
def test_a_template_needs_one_folder_name(snapshot, needle):
    cfg = DataConfig(source="tables", interactions="s3://b/{snapshot}/i.csv", items="s3://b/items.csv")
    with pytest.raises(ConfigError, match=needle):
        cfg.for_snapshot(snapshot)
    assert DataConfig(source="ml-100k").for_snapshot("") == DataConfig(source="ml-100k")  # no template: as is
