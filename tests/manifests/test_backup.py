"""The database's backup and restore, run from the rendered manifests (not retyped) against a real
PostgreSQL and a real SeaweedFS: the CronJob mlflow-backup's pod dumps MLflow's database and uploads
it under a dated name; after the database is lost, the pod of a Job made from the CronJob
mlflow-restore (docs/cluster.md, "Backups and restore") brings it back. A failed dump leaves no
backup and deletes none; the retention keeps the newest --keep."""

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.manifests.kube import objects, resolve_env
from tests.servers import postgres, postgres_bin, seaweedfs

pytestmark = [
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed"),
    pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries are not installed"),
]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAME = re.compile(r"^\d{8}T\d{6}Z\.dump$")
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def pod(cronjob: str) -> dict:
    """The pod spec of the Jobs that the CronJob makes (and `kubectl create job --from` copies)."""
    return objects("base")[("CronJob", cronjob)]["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def folder_of(spec: dict) -> str:
    """The backup folder, as the pod's command names it (after --to or --from)."""
    command = [c for c in spec.get("initContainers", []) + spec["containers"] if c["image"].startswith("padirec")][0]["command"]
    return next(command[i + 1] for i, a in enumerate(command) if a in ("--to", "--from"))


def expand(arg: str, env: dict[str, str]) -> str:
    """``$(VAR)`` in a command, as the kubelet expands it from the container's env (``$$`` is ``$``)."""
    return _REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), arg)


def run_pod(spec: dict, workdir: Path, pg: dict | None, s3: dict, password: str | None = None,
            env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """The pod's containers as the kubelet runs them: the init containers in order, each to its end,
    none after a failure, then the containers. Each volume is a folder under ``workdir`` that
    stands in for its mount path; the test's servers stand in for the Services and the Secrets."""
    volumes = {v["name"]: workdir / v["name"] for v in spec["volumes"]}
    for path in volumes.values():
        path.mkdir(parents=True, exist_ok=True)
    secrets = {("padirec-postgres", "password"): password or (pg or {}).get("password", "")}
    override = {"PADIREC_S3_ENDPOINT": s3["endpoint"],
                **({"PGHOST": pg["host"], "PGPORT": str(pg["port"])} if pg else {}), **(env or {})}
    done = []
    for c in spec.get("initContainers", []) + spec["containers"]:
        c_env = resolve_env(c, secrets, override)
        for ref in c.get("envFrom", []):
            assert ref["secretRef"]["name"] == "padirec-s3"
            c_env |= {"AWS_ACCESS_KEY_ID": s3["key"], "AWS_SECRET_ACCESS_KEY": s3["secret"]}
        command = [expand(a, c_env) for a in c["command"] + c.get("args", [])]
        # A mount path, where it starts a path, becomes its folder (in one pass: /backup, then not
        # the /tmp of the folder that replaced it).
        mounts = {m["mountPath"]: str(volumes[m["name"]]) for m in c["volumeMounts"]}
        where = re.compile(rf"(?<![\w/:.-])({'|'.join(map(re.escape, mounts))})(?=/|$)")
        command = [where.sub(lambda m, mounts=mounts: mounts[m.group(1)], a) for a in command]
        full_env = {"PATH": f"{postgres_bin()}:{BIN}:/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                    "HOME": str(workdir), **c_env}
        done.append(subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=300))
        if done[-1].returncode != 0:
            break
    return done


def s3_client(s3: dict):
    import boto3

    return boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=s3["key"],
                        aws_secret_access_key=s3["secret"], region_name="us-east-1")


def make_buckets(s3: dict) -> None:
    """The buckets the object store's StatefulSet creates (its -bucket= argument)."""
    store = objects("base")[("StatefulSet", "object-store")]["spec"]["template"]["spec"]["containers"][0]
    arg = next(a for a in store["args"] if a.startswith("-bucket="))
    for bucket in arg.removeprefix("-bucket=").split(","):
        s3_client(s3).create_bucket(Bucket=bucket)


def keys(s3: dict, folder: str) -> list[str]:
    bucket, _, prefix = folder.removeprefix("s3://").partition("/")
    listed = s3_client(s3).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for o in listed.get("Contents", []))


def sql(pg: dict, query: str, dbname: str | None = None) -> list[tuple]:
    import psycopg

    with psycopg.connect(host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"],
                         dbname=dbname or pg["database"], autocommit=True) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def seed_mlflow(pg: dict, tmp: Path, experiment: str) -> None:
    """MLflow's schema (its own migrations) with an experiment, a run and a registered model."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=pg["uri"], registry_uri=pg["uri"])
    exp = client.create_experiment(experiment, artifact_location=str(tmp / "artifacts"))
    run = client.create_run(exp)
    client.log_param(run.info.run_id, "backbone", "sasrec")
    client.log_metric(run.info.run_id, "ndcg_at_10", 0.1234)
    client.create_registered_model(f"{experiment}-model", tags={"promotion": "champion"})


def state(pg: dict) -> dict:
    return {"experiments": {r[0] for r in sql(pg, "SELECT name FROM experiments")},
            "metrics": sql(pg, "SELECT key, value FROM metrics"),
            "models": {r[0] for r in sql(pg, "SELECT name FROM registered_models")}}


def assert_ok(done: list[subprocess.CompletedProcess], containers: int, secrets: list[str]) -> None:
    assert len(done) == containers and all(d.returncode == 0 for d in done), [(d.stdout, d.stderr[-2000:]) for d in done]
    logs = "".join(d.stdout + d.stderr for d in done)
    assert not any(s in logs for s in secrets)  # no credential in the pods' logs


@pytest.mark.slow  # a real PostgreSQL and SeaweedFS, MLflow's migrations
def test_backup_then_restore_after_the_database_is_lost(tmp_path):
    backup, restore = pod("mlflow-backup"), pod("mlflow-restore")
    folder = folder_of(backup)
    assert folder_of(restore) == folder
    with postgres(tmp_path / "pg") as pg, seaweedfs(tmp_path / "s3") as s3:
        make_buckets(s3)
        seed_mlflow(pg, tmp_path, "before")
        before = state(pg)
        assert before["metrics"] == [("ndcg_at_10", 0.1234)]
        secrets = [pg["password"], s3["secret"]]

        done = run_pod(backup, tmp_path / "backup-1", pg, s3)
        assert_ok(done, 2, secrets)
        first = keys(s3, folder)
        assert len(first) == 1 and NAME.match(first[0]), first
        assert f"backup written: {folder}{first[0]}" in done[-1].stdout
        bucket, _, prefix = folder.removeprefix("s3://").partition("/")
        body = s3_client(s3).get_object(Bucket=bucket, Key=prefix + first[0])["Body"].read()
        assert body.startswith(b"PGDMP")

        time.sleep(1.1)  # a backup's name is its second
        seed_mlflow(pg, tmp_path, "after")
        assert_ok(run_pod(backup, tmp_path / "backup-2", pg, s3), 2, secrets)
        second = [k for k in keys(s3, folder) if k not in first]
        assert len(second) == 1

        # The database is lost: dropped, and created again empty.
        sql(pg, f"DROP DATABASE {pg['database']} WITH (FORCE)", dbname="postgres")
        sql(pg, f"CREATE DATABASE {pg['database']}", dbname="postgres")
        assert not sql(pg, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")

        # The newest backup (BACKUP's default), then the first one by name (`kubectl set env ... BACKUP=`).
        assert_ok(run_pod(restore, tmp_path / "restore-latest", pg, s3), 2, secrets)
        latest = state(pg)
        assert latest["experiments"] >= {"before", "after"} and latest["models"] == {"before-model", "after-model"}
        # A table the backup does not hold (a newer mlflow's migration) must go too.
        sql(pg, "CREATE TABLE from_a_newer_mlflow (id int)")
        done = run_pod(restore, tmp_path / "restore-first", pg, s3, env={"BACKUP": first[0]})
        assert_ok(done, 2, secrets)
        assert f"backup downloaded: {folder}{first[0]}" in done[0].stdout
        assert state(pg) == before
        assert sql(pg, "SELECT count(*) FROM alembic_version")[0][0] == 1  # MLflow's schema version came back
        assert not sql(pg, "SELECT 1 FROM pg_tables WHERE tablename = 'from_a_newer_mlflow'")

        # A backup that does not exist stops the Job before the database is touched.
        done = run_pod(restore, tmp_path / "restore-missing", pg, s3, env={"BACKUP": "20200101T000000Z.dump"})
        assert len(done) == 1 and done[0].returncode == 2
        assert "no backup '20200101T000000Z.dump'" in done[0].stderr and len(done[0].stderr.splitlines()) == 1
        assert state(pg) == before


@pytest.mark.slow
def test_a_failed_dump_leaves_no_backup_and_deletes_none(tmp_path):
    backup = pod("mlflow-backup")
    folder = folder_of(backup)
    bucket, _, prefix = folder.removeprefix("s3://").partition("/")
    with postgres(tmp_path / "pg") as pg, seaweedfs(tmp_path / "s3") as s3:
        make_buckets(s3)
        old = "20200101T000000Z.dump"
        s3_client(s3).put_object(Bucket=bucket, Key=prefix + old, Body=b"PGDMP old")
        # pg_dump cannot log in (the Secret's password is not the database's): it fails.
        done = run_pod(backup, tmp_path / "run", pg, s3, password="not-the-password")
        assert len(done) == 1 and done[0].returncode != 0  # the upload never ran
        assert "password authentication failed" in done[0].stderr
        assert not (tmp_path / "run" / "backup" / "mlflow.dump").exists()
        assert keys(s3, folder) == [old]


@pytest.mark.slow
def test_retention_keeps_the_newest_and_refuses_what_is_not_a_dump(tmp_path):
    backup, restore = pod("mlflow-backup"), pod("mlflow-restore")
    upload = backup["containers"][0]
    keep = int(upload["command"][upload["command"].index("--keep") + 1])
    assert keep == 14  # docs/cluster.md says two weeks of daily backups
    folder = folder_of(backup)
    bucket, _, prefix = folder.removeprefix("s3://").partition("/")
    just_upload = {**backup, "initContainers": []}  # the dump is made by hand below
    with seaweedfs(tmp_path / "s3") as s3:
        make_buckets(s3)
        day = dt.datetime(2020, 1, 1, 2, 17, tzinfo=dt.UTC)
        old = [(day + dt.timedelta(days=i)).strftime("%Y%m%dT%H%M%SZ") + ".dump" for i in range(keep + 1)]
        for name in old + ["README.txt", "manual/20190101T000000Z.dump"]:
            s3_client(s3).put_object(Bucket=bucket, Key=prefix + name, Body=b"PGDMP old")

        (tmp_path / "bad" / "backup").mkdir(parents=True)
        (tmp_path / "bad" / "backup" / "mlflow.dump").write_text("not a dump")
        done = run_pod(just_upload, tmp_path / "bad", None, s3)
        assert done[0].returncode == 2 and len(done[0].stderr.splitlines()) == 1
        assert "not a pg_dump custom-format archive" in done[0].stderr
        assert len(keys(s3, folder)) == keep + 3  # nothing uploaded, nothing deleted

        (tmp_path / "good" / "backup").mkdir(parents=True)
        (tmp_path / "good" / "backup" / "mlflow.dump").write_bytes(b"PGDMP" + os.urandom(20_000))
        done = run_pod(just_upload, tmp_path / "good", None, s3)
        assert done[0].returncode == 0, done[0].stderr
        left = keys(s3, folder)
        dated = [k for k in left if NAME.match(k)]
        assert len(dated) == keep and dated[:-1] == old[2:]  # the two oldest went
        assert {"README.txt", "manual/20190101T000000Z.dump"} <= set(left)  # not backups: kept
        assert all(f"old backup deleted (--keep {keep}): {n}" in done[0].stdout for n in old[:2])

        # The restore's download takes the newest: the one just uploaded.
        download = {**restore, "containers": []}
        assert run_pod(download, tmp_path / "down", None, s3)[0].returncode == 0
        assert (tmp_path / "down" / "backup" / "mlflow.dump").read_bytes() == \
            (tmp_path / "good" / "backup" / "mlflow.dump").read_bytes()


def test_the_docs_name_the_manifests_restore():
    """docs/cluster.md's restore commands name the objects, container and folder the manifests have."""
    docs = (ROOT / "docs" / "cluster.md").read_text()
    section = docs.split("## Backups and restore\n", 1)[1].split("\n## ", 1)[0]
    restore = pod("mlflow-restore")
    assert "cronjob/mlflow-restore" in section and "mlflow-backup" in section
    assert f"-c {restore['initContainers'][0]['name']} BACKUP=" in section
    assert any(e["name"] == "BACKUP" for e in restore["initContainers"][0]["env"])
    assert folder_of(restore) in section
