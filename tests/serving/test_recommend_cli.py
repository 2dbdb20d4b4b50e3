"""``padirec recommend``: -k from a system and from a pyfunc model, the data folder checked against
the model's data checksum, and registry URIs resolved without a stray ``./mlflow.db``."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from padirec.commands.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _log_to_this_tests_stderr():
    """The CLI binds its log handler to the stderr of the first test that ran it (since closed)."""
    log = logging.getLogger("padirec")
    saved, log.handlers = log.handlers, []
    yield
    log.handlers = saved


def _recommend(data, *source, k="3"):
    return main(["recommend", "--data", str(data), "--user", "u1", "--weights", "0.9,0.1", *source, "-k", k])


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("padirec: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_k_from_a_system_and_from_a_model(system, model_path, synthetic_prepared, capsys):
    for source in (["--system", str(system)], ["--model-uri", str(model_path)]):
        assert _recommend(synthetic_prepared, *source) == 0
        out = capsys.readouterr().out
        assert "top-3" in out and out.count("score") == 3


@pytest.mark.parametrize("k", ["0", "-3", "100000"])
def test_k_checked(system, synthetic_prepared, capsys, k):
    assert _recommend(synthetic_prepared, "--system", str(system), k=k) == 2
    assert "k must be between 1 and" in _one_error_line(capsys.readouterr().err)


def test_k_checked_through_the_model(model_path, synthetic_prepared, capsys):
    assert _recommend(synthetic_prepared, "--model-uri", str(model_path), k="0") == 2
    assert "k must be between 1 and" in _one_error_line(capsys.readouterr().err)


def test_another_datasets_folder_is_refused(system, model_path, tmp_path, capsys):
    from padirec.data.prepare import prepare_synthetic

    other = tmp_path / "other"
    prepare_synthetic(other, num_users=120, num_items=60, num_categories=6, seed=1)
    for source in (["--system", str(system)], ["--model-uri", str(model_path)]):
        assert _recommend(other, *source) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert f"--data {other}: data checksum" in line and "trained on other data" in line


def _cli(args, cwd, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "padirec", *args], cwd=cwd, env={**env, **(env_extra or {})},
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_registry_uri_resolution(system, synthetic_prepared, tmp_path):
    """No tracking URI: the local store ``runs/mlflow.db`` of the working directory, else a one-line
    error saying where the registry was looked for; never MLflow's default ``./mlflow.db``."""
    args = ["recommend", "--data", str(synthetic_prepared), "--user", "u1", "--weights", "0.9,0.1", "-k", "3",
            "--model-uri", "models:/padirec-test/1"]
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _cli(args, empty)
    line = _one_error_line(proc.stderr)
    assert proc.returncode == 2 and "MLFLOW_TRACKING_URI is not set" in line and f"{empty}/runs/mlflow.db" in line
    assert not list(empty.iterdir()), "nothing may be created (no ./mlflow.db, no mlruns)"

    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    uri = f"sqlite:///{work / 'runs' / 'mlflow.db'}"
    register = ("import sys; from mlflow import MlflowClient; from padirec.tracking import model_registry as r\n"
                "c = MlflowClient(sys.argv[1]); run = c.create_run(c.create_experiment('t')).info.run_id\n"
                "tags = {t: '1' for t in getattr(r, 'REQUIRED_TAGS', ())}  # the registry's own, real function\n"
                "print(r.register_system(sys.argv[1], run, sys.argv[2], 'padirec-test', tags, 'kfp-1'))")
    reg = subprocess.run([sys.executable, "-c", register, uri, str(system)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert reg.returncode == 0 and reg.stdout.split()[-1] == "1", reg.stderr[-2000:]

    proc = _cli(args, work)  # found in the default local store
    assert proc.returncode == 0 and proc.stdout.count("score") == 3, proc.stderr[-2000:]
    assert not (work / "mlflow.db").exists()

    proc = _cli([*args[:-1], "models:/no-such-model/1"], empty, {"MLFLOW_TRACKING_URI": uri})
    line = _one_error_line(proc.stderr)
    assert proc.returncode == 2 and "no-such-model" in line and f"(registry {uri})" in line
    assert not list(empty.iterdir())
