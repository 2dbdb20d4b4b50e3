"""MLflow tracking without KFP's plugin: a parent run per pipeline run, a nested run per step,
FAILED on error, the KFP run id from the environment, a clear error naming the URI when the server
is down; and against a real server. (The plugin and dying steps: tests/tracking/.)"""

import dataclasses
import os
import signal
import threading
import time

import pytest
from mlflow import MlflowClient

import padirec
from padirec.config import Config, TrackingConfig
from padirec.errors import PadirecError
from padirec.tracking import (
    KFP_RUN_ID_ENV,
    MlflowTracker,
    NullTracker,
    StepTerminated,
    TrackingError,
    finish_pipeline_run,
    kfp_run_id,
    step_tracker,
)


@pytest.fixture(autouse=True)
def _kfp_env(monkeypatch):
    monkeypatch.setenv(KFP_RUN_ID_ENV, "kfp-1")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)  # not under KFP's MLflow plugin


def _cfg(uri):
    return dataclasses.replace(Config(), tracking=TrackingConfig(uri=uri, experiment="t"))


def _runs(uri):
    c = MlflowClient(uri)
    return c.search_runs([c.get_experiment_by_name("t").experiment_id])


def _exercise(uri):
    cfg = _cfg(uri)
    with step_tracker(cfg, "prepare_data") as t:
        t.log_params({"a": {"b": 1}})
        t.log_metrics({"ndcg@10": 0.5}, step=3)
        assert t.kfp_run_id == "kfp-1"
    with pytest.raises(ValueError), step_tracker(cfg, "train_backbone"):
        raise ValueError("boom")
    assert finish_pipeline_run(cfg, "FAILED") is not None
    runs = {r.info.run_name: r for r in _runs(uri)}
    parent = runs["padirec"]
    step = runs["prepare_data"]
    assert step.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert step.data.params["a.b"] == "1"
    assert step.data.metrics["ndcg_at_10"] == 0.5
    assert step.info.status == "FINISHED"
    assert step.data.tags["kfp.run_id"] == "kfp-1" and step.data.tags["padirec.step"] == "prepare_data"
    assert step.data.tags["padirec.package_path"] == os.path.dirname(padirec.__file__)
    assert step.data.tags["padirec.attempt"] == "1"
    failed = runs["train_backbone"]
    assert failed.info.status == "FAILED" and failed.data.tags["padirec.failure"] == "ValueError: boom"
    assert parent.info.status == "FAILED" and parent.data.tags["kfp.run_id"] == "kfp-1"
    assert parent.data.tags["kfp.state"] == "FAILED"
    assert len(runs) == 3  # one parent, found again by every step


def test_local_sqlite_store(tmp_path):
    _exercise(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_the_kfp_run_id_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(KFP_RUN_ID_ENV, " run-7 ")
    assert kfp_run_id() == "run-7"
    monkeypatch.setenv(KFP_RUN_ID_ENV, "local-my run-20260101-000000-ab12cd")  # a config name with a space
    assert kfp_run_id() == "local-my run-20260101-000000-ab12cd"
    monkeypatch.setenv(KFP_RUN_ID_ENV, "a'b")  # would break out of an MLflow filter string
    with pytest.raises(TrackingError, match=KFP_RUN_ID_ENV):
        kfp_run_id()
    for unset in ("", None):
        if unset is None:
            monkeypatch.delenv(KFP_RUN_ID_ENV)
        else:
            monkeypatch.setenv(KFP_RUN_ID_ENV, unset)
        with pytest.raises(TrackingError, match=f"^{KFP_RUN_ID_ENV} is not set: .*pipeline/runid") as e:
            with step_tracker(_cfg(f"sqlite:///{tmp_path / 'm.db'}"), "prepare_data"):
                pass
        assert "\n" not in str(e.value)
        with step_tracker(_cfg("none"), "prepare_data") as t:  # tracking off: no id needed
            assert isinstance(t, NullTracker)
        assert finish_pipeline_run(_cfg("none"), "SUCCEEDED") is None
    assert not (tmp_path / "m.db").exists()


def test_sigterm_handler_is_installed_only_during_the_step(tmp_path):
    def previous(signum, frame):
        pass

    old = signal.signal(signal.SIGTERM, previous)
    try:
        with step_tracker(_cfg(f"sqlite:///{tmp_path / 'mlflow.db'}"), "prepare_data"):
            assert signal.getsignal(signal.SIGTERM) is not previous
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)


def test_sigterm_during_a_step_raises_and_fails_its_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(StepTerminated) as e, step_tracker(_cfg(uri), "evaluate"):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises as soon as Python checks for signals
        except Exception:  # a stage's broad handler does not swallow it
            pytest.fail("StepTerminated is not an Exception")
    assert e.value.code == 143
    [run] = [r for r in _runs(uri) if r.info.run_name == "evaluate"]
    assert run.info.status == "FAILED" and run.data.tags["padirec.failure"].startswith("SIGTERM")


def test_sigterm_turned_into_another_error_still_fails_the_run_as_sigterm(tmp_path):
    # torch's C code can catch the handler's exception and raise its own ValueError instead
    # (seen in CI: "could not determine the shape of object type 'torch.storage.UntypedStorage'").
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(StepTerminated) as e, step_tracker(_cfg(uri), "train_generator"):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException:
            raise ValueError("could not determine the shape of object type") from None
    assert e.value.code == 143 and isinstance(e.value.__cause__, ValueError)
    [run] = [r for r in _runs(uri) if r.info.run_name == "train_generator"]
    assert run.info.status == "FAILED" and run.data.tags["padirec.failure"].startswith("SIGTERM")


def test_sigterm_while_the_run_is_opened_still_fails_it(tmp_path, monkeypatch):
    # The run exists (RUNNING) a moment before the step body starts: a SIGTERM then is held, not
    # fatal, and fails the run as soon as it can be marked.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    start = MlflowTracker.start.__func__

    def start_then_sigterm(cls, *args, **kwargs):
        tracker = start(cls, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # Python checks for signals here: the handler must hold it
        return tracker

    monkeypatch.setattr(MlflowTracker, "start", classmethod(start_then_sigterm))
    with pytest.raises(StepTerminated) as e, step_tracker(_cfg(uri), "train_generator"):
        pytest.fail("the step body ran although SIGTERM came first")
    assert e.value.code == 143
    [run] = [r for r in _runs(uri) if r.info.run_name == "train_generator"]
    assert run.info.status == "FAILED" and run.data.tags["padirec.failure"].startswith("SIGTERM")


def test_a_step_in_another_thread_installs_no_handler(tmp_path):
    # Python refuses signal handlers outside the main thread; the step must still run.
    errors = []

    def step():
        try:
            with step_tracker(_cfg(f"sqlite:///{tmp_path / 'mlflow.db'}"), "prepare_data") as t:
                t.log_metrics({"x": 1.0})
        except Exception as e:  # reported below
            errors.append(e)

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=step)
    thread.start()
    thread.join()
    assert errors == [] and signal.getsignal(signal.SIGTERM) is before
    assert [r.info.status for r in _runs(f"sqlite:///{tmp_path / 'mlflow.db'}") if r.info.run_name == "prepare_data"] == ["FINISHED"]


def test_server_down_names_the_uri():
    from tests.servers import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PadirecError, match=f"MLflow tracking server at {uri} is not reachable"):
        with step_tracker(_cfg(uri), "prepare_data"):
            pass


@pytest.mark.slow
def test_real_tracking_server(tmp_path):
    from tests.servers import mlflow_server

    with mlflow_server(tmp_path / "mlflow") as uri:
        _exercise(uri)


def test_runs_never_carry_the_tracking_username(tmp_path, monkeypatch):
    # MLflow's default for mlflow.user is MLFLOW_TRACKING_USERNAME, a credential
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "uSerMarker99")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pAssMarker99")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(RuntimeError), step_tracker(_cfg(uri), "prepare_data") as t:
        t.set_tags({"note": "token pAssMarker99 in a tag"})
        raise RuntimeError("could not reach http://uSerMarker99:pAssMarker99@host/")
    [run] = [r for r in _runs(uri) if r.info.run_name == "prepare_data"]
    text = repr(run.data.tags) + repr(run.data.params)
    assert "Marker99" not in text and run.data.tags["mlflow.user"] != "uSerMarker99"
    assert run.data.tags["padirec.failure"] == "RuntimeError: could not reach http://***@host/"
