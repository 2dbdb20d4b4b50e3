"""The local runner: run folders never clash, credentials never enter the config, and a
deterministic error fails once, at once, in one line."""

import datetime as dt
import os
import re
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from padirec.config import load_config
from padirec.core.secrets import refuse_credentials
from padirec.errors import PadirecError
from padirec.tracking.core import TrackingError
from pipelines.run_local import _local_tracking, new_run_folder, run_local

ROOT = Path(__file__).resolve().parents[2]


def _smoke(**overrides):
    return load_config(ROOT / "configs" / "smoke.yaml", overrides)


def test_run_folders_are_unique_within_one_second(tmp_path):
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    made = [new_run_folder(tmp_path, "smoke", now) for _ in range(200)]
    assert len({folder for folder, _ in made}) == 200 and len({kfp for _, kfp in made}) == 200
    assert all(f.name.startswith("smoke-20260101-120000-") and f.is_dir() for f, _ in made)
    assert made[0][1] == f"local-{made[0][0].name}"
    threaded = []
    threads = [threading.Thread(target=lambda: threaded.append(new_run_folder(tmp_path / "t", "smoke", now)[0]))
               for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(threaded)) == 20  # started together, in the same second


def test_credentials_in_the_tracking_uri_move_to_the_environment(tmp_path, monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://al%40ice:p%3Ass@mlflow.example:5000/")
    cfg, env = _local_tracking(_smoke(), tmp_path)
    assert cfg.tracking.uri == "http://mlflow.example:5000/"
    assert env == {"MLFLOW_TRACKING_URI": "http://mlflow.example:5000/"}  # what the steps inherit instead
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "al@ice" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "p:ss"
    # different credentials twice: which ones? an error, naming neither value
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://bob:hunter22@mlflow.example/")
    with pytest.raises(TrackingError, match=r"http://\*\*\*@mlflow.example/ carries credentials") as e:
        _local_tracking(_smoke(), tmp_path)
    assert "hunter22" not in str(e.value) and "bob" not in str(e.value)
    # a database URI keeps its password (its driver needs it), but travels in the environment only
    cfg, env = _local_tracking(_smoke(**{"tracking.uri": "postgresql://u:pgsecret@db/mlflow"}), tmp_path)
    assert cfg.tracking.uri == "" and env == {"MLFLOW_TRACKING_URI": "postgresql://u:pgsecret@db/mlflow"}


def test_a_setting_holding_credentials_is_refused():
    cfg = _smoke(**{"data.source": "tables", "data.interactions": "s3://AKIAKEY:s3cr3tv4lue@bucket/i.csv"})
    with pytest.raises(PadirecError, match=r"^data.interactions: s3://\*\*\*@bucket/i.csv holds credentials") as e:
        refuse_credentials(cfg.to_dict())
    assert "s3cr3tv4lue" not in str(e.value)
    refuse_credentials(_smoke().to_dict())


@pytest.mark.slow
def test_a_deterministic_error_fails_once_at_once_in_one_line(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = _smoke(**{"run_dir": str(tmp_path / "runs"), "tracking.uri": uri, "data.source": "tables",
                    "data.interactions": str(tmp_path / "missing.csv"), "data.items": str(tmp_path / "missing.csv")})
    started = time.monotonic()
    with pytest.raises(PadirecError) as e:
        run_local(cfg)
    assert time.monotonic() - started < 55  # no 60 s backoff, no second attempt
    message = str(e.value)
    assert "\n" not in message and "\x1b[" not in message
    assert re.match(r"step prepare_data failed: \w+: .*missing\.csv.* \(its log is above; outputs under /", message), message
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    steps = [(r.info.run_name, r.info.status, r.data.tags.get("padirec.attempt")) for r in runs if r.info.run_name != "smoke"]
    assert steps == [("prepare_data", "FAILED", "1")]
    parent = [r for r in runs if r.info.run_name == "smoke"]
    assert [r.info.status for r in parent] == ["FAILED"]  # the exit handler ran


@pytest.fixture(autouse=True)
def _fresh_config(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
