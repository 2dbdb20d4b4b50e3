"""submit / schedule: the requests sent to the KFP API, and cron validation."""

import json
from pathlib import Path

import pytest
from kfp import compiler

from padirec.commands.cli import unreachable
from padirec.config import load_config
from padirec.errors import PadirecError
from pipelines import remote
from pipelines.cli import main
from pipelines.padirec_pipeline import build_pipeline
from pipelines.remote import read_token, recurring_run_request, schedule, submit, validate_cron
from tests.servers import free_port, recording_kfp_api

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    path = tmp_path_factory.mktemp("pkg") / "p.yaml"
    compiler.Compiler().compile(build_pipeline("registry.example/padirec:0.1.0-abc"), str(path))
    return path


def _cfg():
    return load_config(ROOT / "configs" / "ml100k.yaml", {"tracking.uri": "http://mlflow.padirec.svc:5000"})


@pytest.mark.parametrize("expr,needle", [
    ("0 3 * * *", "did you mean '0 0 3 \\* \\* \\*'"),
    ("* * *", "must have 6 fields"),
    ("*/5 0 3 * * *", "seconds field should be a number"),
    ("0 0 3 * * $", "day-of-week field"),
])
def test_bad_cron(expr, needle):
    with pytest.raises(PadirecError, match=needle):
        validate_cron(expr)


def test_cluster_needs_a_tracking_server(package):
    cfg = load_config(ROOT / "configs" / "ml100k.yaml", {"tracking.uri": "sqlite:///runs/mlflow.db"})
    with pytest.raises(PadirecError, match="tracking URI must be a server"):
        recurring_run_request(cfg, "0 0 3 * * *", package)
    # an empty URI is left to the padirec-env ConfigMap's MLFLOW_TRACKING_URI
    params = recurring_run_request(load_config(ROOT / "configs" / "ml100k.yaml"), "0 0 3 * * *", package)["params"]
    assert json.loads(params["config_json"])["tracking"]["uri"] == ""


def test_schedule_sends_a_recurring_run(package):
    with recording_kfp_api() as (host, log):
        assert schedule(_cfg(), host, "0 0 3 * * *", package) == "rr-1"
    body = next(b for m, p, b, _ in log if m == "POST" and p.endswith("/recurringruns"))
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert body["max_concurrency"] in (1, "1") and body["no_catchup"] is True
    assert body["experiment_id"] == "exp-1"
    config = json.loads(body["runtime_config"]["parameters"]["config_json"])
    assert config["tracking"]["uri"] == "http://mlflow.padirec.svc:5000"
    # every scheduled run reads its own data snapshot: the cached data step sees a new input
    assert body["runtime_config"]["parameters"]["data_version"] == "[[ScheduledTime.20060102]]"
    # with Kubernetes settings the client sends both documents: the pipeline and the platform spec
    spec, platform = body["pipeline_spec"]["pipeline_spec"], body["pipeline_spec"]["platform_spec"]
    assert "padirec-s3" in json.dumps(platform)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/padirec:0.1.0-abc"}


def test_submit_sends_a_run(package):
    with recording_kfp_api() as (host, log):
        assert submit(_cfg(), host, package) == "run-1"
    body = next(b for m, p, b, _ in log if m == "POST" and p.endswith("/runs"))
    assert body["display_name"].startswith("ml100k-sasrec-")
    assert "config_json" in body["runtime_config"]["parameters"]
    assert body["runtime_config"]["parameters"]["data_version"] == ""  # no snapshot named: not the clock


SNAPSHOTS = {"data.source": "tables", "data.interactions": "s3://padirec-data/interactions/{snapshot}/inter.csv",
             "data.items": "s3://padirec-data/items.csv"}


def test_submit_takes_the_snapshot_and_the_same_snapshot_is_the_same_request(package):
    """Without --data-version the config's data.snapshot is the run's snapshot, so the same snapshot
    submitted twice sends the same parameters (KFP's cache key), and another snapshot differs."""
    cfg = load_config(ROOT / "configs" / "ml100k.yaml", {"tracking.uri": "http://mlflow.padirec.svc:5000",
                                                        **SNAPSHOTS, "data.snapshot": "20260105"})
    with recording_kfp_api() as (host, log):
        submit(cfg, host, package)
        submit(cfg, host, package)
        submit(cfg, host, package, data_version="20260112")
    sent = [b["runtime_config"]["parameters"] for m, p, b, _ in log if m == "POST" and p.endswith("/runs")]
    assert sent[0] == sent[1] and sent[0]["data_version"] == "20260105"
    assert sent[2]["data_version"] == "20260112" and sent[2]["config_json"] == sent[0]["config_json"]


@pytest.mark.parametrize("data_version,needle", [
    ("", "hold \\{snapshot\\} but no snapshot is given"),
    ("../other", "one folder name"),
    ("[[ScheduledTime.20060102]]", "KFP did not replace this macro"),
])
def test_submit_refuses_a_snapshot_it_cannot_fill(package, data_version, needle):
    cfg = load_config(ROOT / "configs" / "ml100k.yaml", {"tracking.uri": "http://mlflow.padirec.svc:5000", **SNAPSHOTS})
    with recording_kfp_api() as (host, log), pytest.raises(PadirecError, match=needle):
        submit(cfg, host, package, data_version=data_version)
    assert not [b for m, p, b, _ in log if m == "POST"], "nothing is sent"
    # a schedule is fine: KFP fills the macro with each run's scheduled day
    with recording_kfp_api() as (host, log):
        assert schedule(cfg, host, "0 0 3 * * 1", package) == "rr-1"


TRACKING = {"tracking.uri": "https://alice:hunter22@mlflow.example/"}
TABLES = {"data.source": "tables", "data.interactions": "s3://AKIAKEY:hunter22@bucket/i.csv"}


@pytest.mark.parametrize("send,overrides,data_version,key", [
    ("submit", TRACKING, "", "config_json.tracking.uri"),
    ("schedule", TRACKING, "", "config_json.tracking.uri"),
    ("schedule", TABLES, "", "config_json.data.interactions"),
    ("submit", {}, "s3://AKIAKEY:hunter22@bucket/snapshot", "data_version"),
])
def test_credentials_never_travel_in_a_run_parameter(package, send, overrides, data_version, key):
    cfg = load_config(ROOT / "configs" / "ml100k.yaml", {"tracking.uri": "http://mlflow.padirec.svc:5000", **overrides})
    with recording_kfp_api() as (host, log), pytest.raises(PadirecError, match=f"^{key}: .* holds credentials") as e:
        if send == "submit":
            submit(cfg, host, package, data_version=data_version)
        else:
            schedule(cfg, host, "0 0 3 * * *", package)
    assert "hunter22" not in str(e.value) and "alice" not in str(e.value)
    assert not [b for m, p, b, _ in log if m == "POST"], "nothing is sent"


@pytest.mark.parametrize("command", [["submit"], ["schedule", "--cron", "0 0 3 * * *"]])
def test_a_server_that_cannot_be_reached_is_one_line(package, command, capsys):
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    rc = main([*command, "--host", host, "--package", str(package), "--config", str(ROOT / "configs" / "smoke.yaml"),
               "--tracking-uri", "http://mlflow.padirec.svc:5000"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert err == f"padirec: error: cannot reach {host}: Connection refused\n"


def test_a_failed_connection_is_named_wherever_it_is_wrapped():
    import requests

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(requests.ConnectionError) as e:
        requests.get(url, timeout=5)
    try:  # as MLflow's client wraps it: raised while handling
        raise RuntimeError(f"API request to {url} failed")
    except RuntimeError as wrapped:
        wrapped.__context__ = e.value
        assert unreachable(wrapped) == f"cannot reach {url}: Connection refused"
    assert unreachable(ValueError("not a connection")) is None
    assert unreachable(ConnectionResetError(104, "Connection reset by peer")) == \
        "cannot reach the server: Connection reset by peer"


def _sent(log, method, path_end):
    return [(p, b, h) for m, p, b, h in log if m == method and p.split("?")[0].endswith(path_end)]


@pytest.mark.parametrize("send", ["submit", "schedule"])
def test_a_profile_namespace_and_token_reach_the_kfp_api(package, send, tmp_path, capsys):
    """Multi-user Kubeflow: the experiment is looked up and created in the profile namespace, and
    every request carries the token; the run or recurring run goes into that experiment."""
    token = tmp_path / "token"
    token.write_text("sa-token-123\n")
    with recording_kfp_api() as (host, log):
        command = [send, "--cron", "0 0 3 * * *"] if send == "schedule" else [send]
        assert main([*command, "--host", host, "--package", str(package), "--config", str(ROOT / "configs" / "smoke.yaml"),
                     "--tracking-uri", "http://mlflow.padirec.svc:5000", "--namespace", "team-a",
                     "--token-file", str(token)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == ("rr-1" if send == "schedule" else "run-1")
    assert all(h.get("authorization") == "Bearer sa-token-123" for *_, h in log) and log
    (lookup, _, _), = _sent(log, "GET", "/experiments")
    assert "namespace=team-a" in lookup  # kfp looks the experiment up in the namespace
    (_, experiment, _), = _sent(log, "POST", "/experiments")
    assert experiment["namespace"] == "team-a" and experiment["display_name"] == "padirec"
    (_, run, _), = _sent(log, "POST", "/recurringruns" if send == "schedule" else "/runs")
    assert run["experiment_id"] == "exp-1"
    assert "sa-token-123" not in json.dumps(run)  # the token is a header, never a parameter


def test_without_a_namespace_or_token_nothing_is_added(package, monkeypatch, tmp_path):
    monkeypatch.setattr(remote, "SERVICE_ACCOUNT_TOKEN", tmp_path / "absent")
    assert read_token(None) is None
    with recording_kfp_api() as (host, log):
        submit(_cfg(), host, package, token=read_token(None))
    assert log and not any("authorization" in {k.lower() for k in h} for *_, h in log)
    (_, experiment, _), = _sent(log, "POST", "/experiments")
    assert not experiment.get("namespace")


def test_the_service_account_token_is_the_default(monkeypatch, tmp_path):
    monkeypatch.setattr(remote, "SERVICE_ACCOUNT_TOKEN", tmp_path / "token")
    (tmp_path / "token").write_text("pod-token\n")
    assert read_token(None) == "pod-token"
    assert read_token(str(tmp_path / "token")) == "pod-token"


@pytest.mark.parametrize("content,needle", [(None, "cannot read it"), ("  \n", "the file is empty")])
def test_a_bad_token_file_is_one_line(package, tmp_path, capsys, content, needle):
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    rc = main(["submit", "--host", "http://127.0.0.1:1", "--package", str(package), "--config",
               str(ROOT / "configs" / "smoke.yaml"), "--token-file", str(token)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"--token-file {token}: {needle}" in err, err


@pytest.mark.parametrize("send", ["submit", "schedule"])
def test_the_mlflow_plugin_gets_the_experiment_of_the_config(package, send):
    """KFP's MLflow plugin (KFP >= 2.17) reads plugins_input.mlflow.experiment_name from the run or
    recurring run: padirec's tracking.experiment, where its step runs go."""
    cfg = load_config(ROOT / "configs" / "ml100k.yaml", {"tracking.uri": "http://mlflow.padirec.svc:5000",
                                                        "tracking.experiment": "recsys-weekly"})
    with recording_kfp_api() as (host, log):
        if send == "submit":
            submit(cfg, host, package)
        else:
            schedule(cfg, host, "0 0 3 * * *", package)
    (_, body, _), = _sent(log, "POST", "/recurringruns" if send == "schedule" else "/runs")
    assert body["plugins_input"] == {"mlflow": {"experiment_name": "recsys-weekly"}}
