"""Everything that talks to the object store (S3-compatible, through boto3).

Endpoint and credentials come from the environment (``AWS_ENDPOINT_URL`` or
``PADIREC_S3_ENDPOINT``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``; on a cluster these are
mounted from a Kubernetes Secret). Nothing here logs a credential.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from padirec.errors import PadirecError


class StorageError(PadirecError):
    """An object-store operation failed (the message names the URI)."""


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def client():
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("PADIREC_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"},
                      connect_timeout=5, read_timeout=30),
    )


def arrow_filesystem(uri: str) -> tuple[object, str]:
    """``(pyarrow filesystem, path in it)`` for a local path or an ``s3://`` URI: Arrow's own S3
    client, for reading Parquet datasets in place, with the endpoint and credentials that
    ``client`` uses (the access keys from the environment, as the AWS SDK reads them)."""
    import pyarrow.fs as pafs

    if not is_s3(uri):
        return pafs.LocalFileSystem(), str(Path(uri).resolve())
    bucket, key = split_s3(uri)
    endpoint = os.environ.get("PADIREC_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL") or None
    options = {}
    if endpoint:
        parsed = urlparse(endpoint)
        options = {"endpoint_override": parsed.netloc or parsed.path, "scheme": parsed.scheme or "https"}
    fs = pafs.S3FileSystem(region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"), connect_timeout=5,
                           request_timeout=30, **options)
    return fs, f"{bucket}/{key}".rstrip("/")


def download(uri: str, dest_dir: str | os.PathLike | None = None) -> Path:
    """Fetch ``s3://bucket/key`` to a local file and return its path."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3(uri)
    dest_dir = Path(dest_dir or tempfile.mkdtemp(prefix="padirec-s3-"))
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / Path(key).name
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        client().download_file(bucket, key, str(tmp))
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket",):
            raise StorageError(f"{uri}: bucket {bucket!r} does not exist") from e
        if code in ("404", "NoSuchKey", "NotFound"):
            # S3 answers a HEAD on a missing bucket with a bare 404 too: tell the two apart.
            try:
                client().head_bucket(Bucket=bucket)
            except ClientError:
                raise StorageError(f"{uri}: bucket {bucket!r} does not exist") from e
            raise StorageError(f"{uri}: no object {key!r} in bucket {bucket!r}") from e
        raise StorageError(f"{uri}: download failed ({code or e})") from e
    except BotoCoreError as e:
        raise StorageError(f"{uri}: download failed ({e})") from e
    os.replace(tmp, dest)
    return dest


def upload(path: str | os.PathLike, uri: str, part_size: int = 8 * 1024 * 1024) -> None:
    """Upload a local file; above ``part_size`` as a multipart upload, whose object only appears
    under ``uri`` once every part has arrived (a failed upload is aborted, leaving nothing).
    Each request is retried with exponential backoff (botocore's standard mode) before failing."""
    from boto3.s3.transfer import S3UploadFailedError, TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3(uri)
    config = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=4)
    try:
        client().upload_file(str(path), bucket, key, Config=config)
    except (ClientError, BotoCoreError, S3UploadFailedError) as e:
        raise StorageError(f"{uri}: upload failed after retries ({type(e).__name__}: {e})") from e


def localize(uri: str, dest_dir: str | os.PathLike | None = None) -> Path:
    """A local path for ``uri``: s3:// is downloaded, a local path is checked to exist."""
    if is_s3(uri):
        return download(uri, dest_dir)
    path = Path(uri)
    if not path.exists():
        raise PadirecError(f"file not found: {uri}")
    return path


def list_folder(uri: str) -> list[str]:
    """The names of the objects directly under the folder ``s3://bucket/prefix/`` (no deeper)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3(uri.rstrip("/") + "/")
    names: list[str] = []
    try:
        for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            names += [o["Key"][len(prefix):] for o in page.get("Contents", []) if o["Key"] != prefix]
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise StorageError(f"{uri}: bucket {bucket!r} does not exist") from e
        raise StorageError(f"{uri}: listing failed ({code or e})") from e
    except BotoCoreError as e:
        raise StorageError(f"{uri}: listing failed ({e})") from e
    return sorted(names)


def localize_folder(uri: str, dest_dir: str | os.PathLike, wanted=None) -> Path:
    """A local folder for ``uri``: an ``s3://`` folder's objects (those whose name ``wanted(name)``
    accepts; all when None) are downloaded into ``dest_dir``; a local folder is returned as is."""
    if not is_s3(uri):
        return Path(uri)
    names = [n for n in list_folder(uri) if wanted is None or wanted(n)]
    if not names:
        raise StorageError(f"{uri}: no {'matching ' if wanted else ''}objects in this folder")
    for name in names:
        download(f"{uri.rstrip('/')}/{name}", dest_dir)
    return Path(dest_dir)


def upload_folder(path: str | os.PathLike, uri: str) -> None:
    """Upload the files directly in the local folder ``path`` (no deeper) under ``s3://.../``."""
    files = sorted(p for p in Path(path).iterdir() if p.is_file())
    if not files:
        raise StorageError(f"{path}: no files to upload to {uri}")
    for f in files:
        upload(f, f"{uri.rstrip('/')}/{f.name}")
