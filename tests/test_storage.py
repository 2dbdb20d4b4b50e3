"""The object store against a real SeaweedFS: multipart round trip, and a server that dies mid-upload."""

import os
import threading
import time

import pytest

from padirec.runtime import storage
from tests.servers import seaweedfs

MiB = 1024 * 1024


@pytest.fixture
def s3_env(monkeypatch):
    def use(s3):
        monkeypatch.setenv("PADIREC_S3_ENDPOINT", s3["endpoint"])
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3["key"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3["secret"])
    return use


@pytest.mark.slow  # a real SeaweedFS and 12 MiB each way
def test_multipart_round_trip(tmp_path, s3_env):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(12 * MiB))
    with seaweedfs(tmp_path / "weed") as s3:
        s3_env(s3)
        storage.client().create_bucket(Bucket="padirec-artifacts")
        storage.upload(src, "s3://padirec-artifacts/x/big.bin", part_size=5 * MiB)
        got = storage.download("s3://padirec-artifacts/x/big.bin", tmp_path / "dl")
        assert got.read_bytes() == src.read_bytes()


@pytest.mark.slow
def test_server_dies_during_upload(tmp_path, s3_env):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(300 * MiB))
    uri = "s3://padirec-artifacts/x/big.bin"
    errors: list[Exception] = []
    with seaweedfs(tmp_path / "weed", keep_data=True) as s3:
        s3_env(s3)
        storage.client().create_bucket(Bucket="padirec-artifacts")

        def run():
            try:
                storage.upload(src, uri, part_size=5 * MiB)
            except Exception as e:  # noqa: BLE001 - the test inspects it
                errors.append(e)

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.5)
        s3["proc"].kill()  # the server dies mid-upload
        t.join(timeout=180)
        assert not t.is_alive(), "the upload must give up after its retries"
    assert errors and isinstance(errors[0], storage.StorageError)
    assert uri in str(errors[0]) and "after retries" in str(errors[0])
    with seaweedfs(tmp_path / "weed") as s3:  # same data folder: what survived?
        s3_env(s3)
        with pytest.raises(storage.StorageError, match="no object"):
            storage.download(uri, tmp_path / "dl")
