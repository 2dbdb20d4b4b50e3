"""Servable from the registry alone: ``models:/padirec-recommender@champion``, downloaded from a
real MLflow server, rebuilds in a brand-new virtualenv from nothing but what the model holds (its
``requirements.txt``, ``constraints.txt`` and ``code/``: no checkout, no padirec wheel) and ranks
the request logged as its input example.

pip reads its index and cache as configured on the machine (PyPI in CI; the torch wheel through
``constraints.txt`` of the checkout, as every install here). The figures (download, venv, pip,
load + predict, sizes) are printed and kept as ``record_property`` values.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import mlflow_server

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT_S = 900

PREDICT = """
import json, sys
import mlflow
model_dir = sys.argv[1]
model = mlflow.pyfunc.load_model(model_dir)
import padirec, torch
example = model.input_example
out = model.predict(example, params={"k": 5}).iloc[0].to_dict()  # the record's own k wins
print(json.dumps({"padirec": padirec.__file__, "torch": torch.__version__, "mlflow": mlflow.__version__,
                  "request": example.iloc[0].to_dict(), "item_ids": list(out["item_ids"]),
                  "scores": [float(s) for s in out["scores"]]}, default=lambda o: o.tolist()))
"""


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _run(cmd, cwd, timeout):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd[:4]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_champion_rebuilds_and_ranks_in_a_fresh_virtualenv(system, tmp_path, record_property):
    import mlflow
    from mlflow import MlflowClient

    from padirec.tracking.model_registry import REQUIRED_TAGS, register_system
    from padirec.tracking.promotion import ALIAS, PRODUCTION_MODEL

    figures: dict[str, float] = {}
    with mlflow_server(tmp_path / "server") as uri:
        client = MlflowClient(uri)
        run_id = client.create_run(client.create_experiment("fresh-env")).info.run_id
        tags = {t: "0.5" for t in REQUIRED_TAGS}
        version = register_system(uri, run_id, system, PRODUCTION_MODEL, tags, "kfp-fresh-env")
        client.set_registered_model_alias(PRODUCTION_MODEL, ALIAS, version)
        assert "torch" in client.get_model_version(PRODUCTION_MODEL, version).description
        started = time.monotonic()
        model = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{PRODUCTION_MODEL}@{ALIAS}",
                                                         dst_path=str(tmp_path / "model"),
                                                         tracking_uri=uri, registry_uri=uri))
        figures["download_s"] = time.monotonic() - started

    requirements = (model / "requirements.txt").read_text()
    assert "padirec" not in requirements and "-c constraints.txt" in requirements
    assert (model / "code" / "padirec" / "serving" / "__init__.py").exists()
    figures["model_mb"] = _du(model) / 2**20

    # Run from an empty folder, outside the checkout: nothing of it is on the path.
    work = tmp_path / "work"
    work.mkdir()
    venv = tmp_path / "venv"
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", venv], work, 120)
    figures["venv_s"] = time.monotonic() - started
    python = venv / "bin" / "python"
    started = time.monotonic()
    # --no-compile: pip byte-compiles every file it installs (torch alone has thousands), which
    # doubled the install here (356 s against 161 s); Python compiles what it imports on first use.
    _run([python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", "--no-compile",
          "-r", model / "requirements.txt", "-c", ROOT / "constraints.txt"], work, PIP_TIMEOUT_S)
    figures["pip_install_s"] = time.monotonic() - started
    figures["venv_mb"] = _du(venv) / 2**20

    started = time.monotonic()
    out = json.loads(_run([python, "-c", PREDICT, model], work, 300).strip().splitlines()[-1])
    figures["load_and_predict_s"] = time.monotonic() - started

    assert out["padirec"].startswith(str(model / "code" / "padirec")), out["padirec"]
    assert out["mlflow"] == mlflow.__version__ and out["torch"].split("+")[0] == "2.13.0"
    request = out["request"]
    assert len(out["item_ids"]) == request["k"] and len(set(out["item_ids"])) == request["k"]
    assert not set(out["item_ids"]) & set(request["history"])  # the history is never listed
    assert out["scores"] == sorted(out["scores"], reverse=True)

    for name, value in figures.items():
        record_property(name, round(value, 1))
    print("fresh-env figures:", json.dumps({k: round(v, 1) for k, v in figures.items()}))
