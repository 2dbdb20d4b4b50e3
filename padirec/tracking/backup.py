"""Backups of MLflow's tracking database in the object store (docs/cluster.md, "Backups and restore").

The CronJob ``mlflow-backup`` dumps the database with ``pg_dump --format=custom`` into a file, then
``upload`` puts it at ``FOLDER/<UTC time>.dump`` and deletes all but the newest ``--keep``. The
restore Job (from the suspended CronJob ``mlflow-restore``) first runs ``download`` (the newest, or
a named one), then ``pg_restore``. Only names of that form are backups: anything else under the
folder is neither restored nor deleted. The endpoint and keys come from the environment, as
:mod:`padirec.runtime.storage` reads them; nothing here prints a credential.

    python -m padirec.tracking.backup upload DUMP --to s3://BUCKET/PREFIX/ --keep N
    python -m padirec.tracking.backup list --from s3://BUCKET/PREFIX/
    python -m padirec.tracking.backup download --from s3://BUCKET/PREFIX/ --backup latest|NAME DEST
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from pathlib import Path

from padirec.errors import PadirecError
from padirec.runtime import storage

NAME = re.compile(r"^\d{8}T\d{6}Z\.dump$")  # 20260105T021700Z.dump: sorts by time
MAGIC = b"PGDMP"  # the first bytes of a pg_dump custom-format archive


class BackupError(PadirecError):
    """A backup could not be made, listed or fetched (the message names the file or the key)."""


def _folder(uri: str) -> str:
    if not storage.is_s3(uri) or not storage.split_s3(uri)[1]:
        raise BackupError(f"backup folder must be s3://BUCKET/PREFIX/, got {uri!r}")
    return uri.rstrip("/") + "/"


def _check_dump(path: Path) -> None:
    try:
        with path.open("rb") as f:
            head = f.read(len(MAGIC))
    except OSError as e:
        raise BackupError(f"{path}: cannot read the dump ({e.strerror})") from e
    if head != MAGIC:
        raise BackupError(f"{path}: not a pg_dump custom-format archive (it does not start with {MAGIC.decode()})")


def backups(folder: str) -> list[str]:
    """The backups' names under ``folder``, oldest first."""
    return sorted(n for n in storage.list_folder(_folder(folder)) if NAME.match(n))


def upload(dump: str | os.PathLike, folder: str, keep: int, now: dt.datetime | None = None) -> tuple[str, list[str]]:
    """Upload ``dump`` as the backup of ``now`` (UTC), then delete all but the newest ``keep``.
    Returns the new backup's URI and the names deleted. The object store shows an object only once
    its upload has completed (a multipart upload is aborted on failure), and the size is checked
    after: a failed run leaves no backup, nor a partial one, and deletes none."""
    folder, dump = _folder(folder), Path(dump)
    if keep < 1:
        raise BackupError(f"--keep must be at least 1, got {keep}")
    _check_dump(dump)
    name = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ") + ".dump"
    uri = folder + name
    if name in backups(folder):
        raise BackupError(f"{uri} exists already: one backup per second")
    storage.upload(dump, uri)
    bucket, key = storage.split_s3(uri)
    s3 = storage.client()
    size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    if size != dump.stat().st_size:
        s3.delete_object(Bucket=bucket, Key=key)
        raise BackupError(f"{uri}: {size} bytes in the store, {dump.stat().st_size} in {dump}; deleted")
    names = backups(folder)
    old = names[:-keep] if name in names else []  # prune only once the new backup is listed
    for n in old:
        s3.delete_object(Bucket=bucket, Key=storage.split_s3(folder + n)[1])
    return uri, old


def download(folder: str, backup: str, dest: str | os.PathLike) -> str:
    """Fetch the backup ``backup`` (a name, or ``latest``) to the file ``dest``; returns its URI."""
    folder, dest = _folder(folder), Path(dest)
    names = backups(folder)
    if not names:
        raise BackupError(f"no backups under {folder}")
    if backup == "latest":
        backup = names[-1]
    elif backup not in names:
        shown = ", ".join(names[-3:])
        raise BackupError(f"no backup {backup!r} under {folder} (the newest: {shown}; list them with `list`)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fetched = storage.download(folder + backup, dest.parent / f".{dest.name}.incoming")
    _check_dump(fetched)
    os.replace(fetched, dest)
    fetched.parent.rmdir()
    return folder + backup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m padirec.tracking.backup", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload", help="upload a pg_dump archive as a dated backup, then apply the retention")
    up.add_argument("dump")
    up.add_argument("--to", required=True, metavar="s3://BUCKET/PREFIX/")
    up.add_argument("--keep", required=True, type=int, help="how many backups to keep, the newest")
    ls = sub.add_parser("list", help="the backups, oldest first")
    ls.add_argument("--from", dest="folder", required=True, metavar="s3://BUCKET/PREFIX/")
    down = sub.add_parser("download", help="fetch one backup to a file")
    down.add_argument("dest")
    down.add_argument("--from", dest="folder", required=True, metavar="s3://BUCKET/PREFIX/")
    down.add_argument("--backup", default="latest", help="a backup's name (as `list` prints it), or latest")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if args.command == "upload":
            uri, deleted = upload(args.dump, args.to, args.keep)
            print(f"backup written: {uri}")
            for name in deleted:
                print(f"old backup deleted (--keep {args.keep}): {name}")
        elif args.command == "list":
            for name in backups(args.folder):
                print(name)
        else:
            print(f"backup downloaded: {download(args.folder, args.backup, args.dest)} -> {args.dest}")
        return 0
    except (PadirecError, BotoCoreError, ClientError) as e:  # neither carries a credential
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
