"""Credentials never enter the config, a run folder, a log line, a param or a tag: a smoke run with
a marker value in every credential variable (the tracking URI's user and password included), then
every byte it wrote is searched: its stdout and stderr, the run folder, and the MLflow server's
whole store (database, artifacts, log: params, tags, model-version and logged-model tags)."""

import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from mlflow import MlflowClient

from padirec.tracking.core import TrackingError, check_reachable, redact, split_userinfo
from tests.servers import mlflow_server

ROOT = Path(__file__).resolve().parents[2]
MARKERS = {"AWS_ACCESS_KEY_ID": "aKeyMarker71", "AWS_SECRET_ACCESS_KEY": "sEcretMarker72",
           "AWS_SESSION_TOKEN": "sEssionMarker73", "MLFLOW_TRACKING_TOKEN": "tOkenMarker74"}
USER, PASSWORD = "uSerMarker75", "pAss@Marker76"  # an "@" in the password, percent-encoded in the URI


def padirec_command() -> list[str]:
    """``padirec`` as the console script runs it (the pipeline commands live in ``pipelines``)."""
    module = "pipelines" if (ROOT / "pipelines" / "__main__.py").exists() else "padirec"
    return [sys.executable, "-m", module]


def test_userinfo_is_parsed_and_redacted(monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    uri = "http://al%40ice:p%3Ass@host.example:5000/path"
    assert split_userinfo(uri) == ("http://host.example:5000/path", "al@ice", "p:ss")
    assert split_userinfo("http://host/") == ("http://host/", None, None)
    assert redact(f"at {uri} and s3://k:p@ss@bucket/x and http://token@h/") == \
        "at http://***@host.example:5000/path and s3://***@bucket/x and http://***@h/"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://bob:hunter2x@h/")
    assert redact("user bob, password hunter2x") == "user bob, password ***"  # 3 characters: left alone


@pytest.mark.slow
def test_the_reachability_check_sends_credentials_as_a_header(tmp_path, monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with mlflow_server(tmp_path / "mlflow") as uri:
        host = uri.split("//", 1)[1]
        check_reachable(f"http://{USER}:{urllib.parse.quote(PASSWORD, safe='')}@{host}/")  # not a host name
    with pytest.raises(TrackingError, match=r"http://127.0.0.1:\d+/? is not reachable") as e:
        check_reachable(f"http://{USER}:x{PASSWORD}@{host}/")  # the server is gone now
    assert USER not in str(e.value) and PASSWORD not in str(e.value)


@pytest.mark.slow
def test_no_credential_anywhere_a_smoke_run_writes(tmp_path):
    with mlflow_server(tmp_path / "mlflow") as uri:  # started before the markers: the server has none
        host = uri.split("//", 1)[1]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_TRACKING_"))}, **MARKERS,
               "MLFLOW_TRACKING_URI": f"http://{USER}:{urllib.parse.quote(PASSWORD, safe='')}@{host}/"}
        run_dir = tmp_path / "runs"
        proc = subprocess.run([*padirec_command(), "run", "--config", "configs/smoke.yaml", "--set", f"run_dir={run_dir}",
                               "--set", "promotion.min_avg_hv=0", "--set", "promotion.min_pearson_ra=-1",
                               "--set", "promotion.min_pearson_rd=-1"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        client = MlflowClient(uri)
        [version] = client.search_model_versions("name = 'padirec-smoke'")  # registered: its tags are searched
        assert version.tags["gate"] == "passed"
        runs = client.search_runs([client.get_experiment_by_name("padirec-smoke").experiment_id])
        assert len(runs) >= 9 and {r.info.status for r in runs} == {"FINISHED"}
    secrets = [*MARKERS.values(), USER, PASSWORD, urllib.parse.quote(PASSWORD, safe="")]
    places = {"stdout": proc.stdout.encode(), "stderr": proc.stderr.encode()}
    for root in (run_dir, tmp_path / "mlflow"):  # the run folder; the server's database, artifacts and log
        places.update({str(f): f.read_bytes() for f in root.rglob("*") if f.is_file()})
    leaks = [(secret, where) for where, data in places.items() for secret in secrets if secret.encode() in data]
    assert leaks == []
    assert any(f.name == "mlflow.db" for f in (tmp_path / "mlflow").iterdir())  # the store was searched
    # the run folder says which server, without its credentials
    [config] = run_dir.glob("*/config.json")
    assert f'"uri": "http://{host}/"' in config.read_text()
