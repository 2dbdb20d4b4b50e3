"""The serving image of a registered model, as ``mlflow models build-docker`` builds it.

``tools/model_image.py`` builds MLflow's generated Dockerfile (``make model-image``) for the champion
of a finished tiny pipeline run (``tiny_run``), on the test base image (no registry here). The
container runs MLflow's own entrypoint (nginx on 8080 in front of the scoring server) in a network
namespace of its own (``--network none``): the ports are MLflow's, fixed at 8080 and 8000, and the
engine has no bridge, so with ``--network host`` they would be this machine's. Requests come from
inside it (``docker exec``), through nginx, as ``curl`` would from a published port. The figures
(build, size, time to /ping, first response) are printed and kept as ``record_property`` values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.containers.conftest import ROOT, _sh, docker

TAG = "padirec-smoke:test-model"
SCRIPT = ROOT / "tools" / "model_image.py"

# Runs in the container with its Python: one request to the scoring server, through nginx.
CLIENT = """
import json, sys, time, urllib.error, urllib.request
path, body = sys.argv[1], sys.argv[2]
req = urllib.request.Request("http://127.0.0.1:8080" + path, data=body.encode() if body else None,
                             headers={"Content-Type": "application/json"})
start = time.monotonic()
try:
    with urllib.request.urlopen(req, timeout=60) as r:
        status, text = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    status, text = e.code, e.read().decode()
except OSError as e:  # nginx or the scoring server not listening yet
    status, text = 0, str(e)
print(json.dumps({"status": status, "body": text, "seconds": time.monotonic() - start}))
"""


def _script(*args: str, env: dict | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("tag, says", [("padirec-smoke", "expected name:tag"), ("Padirec:v1", "expected name:tag"),
                                       ("padirec-smoke:latest", "'latest' is not immutable")])
def test_a_bad_tag_is_one_line(tag, says):
    proc = _script("--tag", tag, "--tracking-uri", "sqlite:////nonexistent/mlflow.db")
    assert proc.returncode == 2 and says in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def champion(tiny_run):
    from mlflow import MlflowClient

    cfg = tiny_run["cfg"]
    name = cfg.tracking.registered_model
    version = MlflowClient(cfg.tracking.uri).get_model_version_by_alias(name, "champion").version
    return {"uri": cfg.tracking.uri, "name": name, "version": str(version)}


@pytest.fixture(scope="module")
def base_image(docker_env) -> str:
    base = os.environ.get("PADIREC_TEST_BASE")
    if not base:
        base = "padirec-base:bookworm"
        _sh(["images/base.sh", base], env=docker_env, timeout=900)
    return base


@pytest.fixture(scope="module")
def model_image(docker_env, base_image, champion):
    """The image of ``models:/padirec-smoke@champion``; a rebuild reuses the layer cache (the model's
    environment depends only on its requirements, so only the model's own layers change)."""
    before = docker(docker_env, "image", "inspect", "-f", "{{.Id}}", TAG).stdout.strip()
    proc = _script("--model-uri", f"models:/{champion['name']}@champion", "--tracking-uri", champion["uri"],
                   "--tag", TAG, "--base", base_image, env=docker_env, timeout=1500)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
    last = proc.stdout.strip().splitlines()[-1]
    print(f"\n{proc.stdout.strip().splitlines()[0]}\n{last}")
    after = docker(docker_env, "image", "inspect", "-f", "{{.Id}}", TAG).stdout.strip()
    if before and before != after:  # the previous test image, now untagged: its own layers only
        docker(docker_env, "rmi", before)
    return {"tag": TAG, "build_s": float(last.split(" built in ")[1].split(" s")[0]),
            "reused_cache": "Using cache" in proc.stdout}


def _request(docker_env, container: str, path: str, body: str = "") -> dict:
    proc = docker(docker_env, "exec", container, "python", "-c", CLIENT, path, body, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_unknown_model_is_one_line(champion):
    proc = _script("--model-uri", f"models:/{champion['name']}@no-such-alias", "--tracking-uri", champion["uri"],
                   "--tag", TAG)
    assert proc.returncode == 2 and "no-such-alias" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(2400)  # a first build installs the model's environment (minutes on 2 cores)
def test_image_serves_the_champion(model_image, champion, docker_env, tmp_path, record_property):
    import mlflow
    import pandas as pd

    pinned = f"models:/{champion['name']}/{champion['version']}"
    labels = json.loads(docker(docker_env, "image", "inspect", "-f", "{{json .Config.Labels}}", TAG).stdout)
    assert labels["padirec.model"] == pinned and labels["padirec.torch"] == "cpu"
    size_mb = int(docker(docker_env, "image", "inspect", "-f", "{{.Size}}", TAG).stdout) / 1e6
    # made at build time, so MLflow's entrypoint relinking them cannot race nginx's open (model_image.py)
    links = docker(docker_env, "run", "--rm", "--network", "none", "--entrypoint", "readlink", TAG,
                   "/var/log/nginx/access.log", "/var/log/nginx/error.log")
    assert links.stdout.split() == ["/dev/stdout", "/dev/stderr"], links.stdout + links.stderr

    name = f"padirec-test-model-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    run = docker(docker_env, "run", "-d", "--name", name, "--network", "none", "-e", "MLFLOW_MODELS_WORKERS=1", TAG)
    assert run.returncode == 0, run.stderr
    try:
        ping = None
        while time.monotonic() - started < 180:
            state = docker(docker_env, "inspect", "-f", "{{.State.Running}}", name).stdout.strip()
            assert state == "true", f"the container stopped:\n{docker(docker_env, 'logs', name).stderr[-3000:]}"
            ping = _request(docker_env, name, "/ping")
            if ping["status"] == 200:
                break
            time.sleep(1)
        assert ping and ping["status"] == 200, f"no /ping in 180 s: {ping}"
        ping_s = time.monotonic() - started

        # the environment is the model's requirements alone: padirec is imported from the model's code/
        proc = docker(docker_env, "exec", name, "python", "-c",
                      "import importlib.util as u; print(u.find_spec('padirec') is None)")
        assert proc.stdout.strip() == "True", proc.stdout + proc.stderr

        model = mlflow.artifacts.download_artifacts(artifact_uri=pinned, dst_path=str(tmp_path / "model"),
                                                    tracking_uri=champion["uri"], registry_uri=champion["uri"])
        example = json.loads((Path(model) / "serving_input_example.json").read_text())  # logged with the model
        record = dict(zip(example["dataframe_split"]["columns"], example["dataframe_split"]["data"][0], strict=True))
        record["k"] = 4
        answer = _request(docker_env, name, "/invocations", json.dumps({"dataframe_records": [record]}))
        assert answer["status"] == 200, answer["body"][:2000]
        served = json.loads(answer["body"])["predictions"][0]
        ids, scores = served["item_ids"], served["scores"]
        assert len(ids) == 4 == len(set(ids)) and not set(ids) & set(record["history"])
        assert scores == sorted(scores, reverse=True) and len(served["titles"]) == 4
        # the same ranking as the registered model loaded here, from the registry
        here = mlflow.pyfunc.load_model(model).predict(pd.DataFrame([record])).iloc[0]
        assert list(here["item_ids"]) == ids
        assert [float(s) for s in here["scores"]] == pytest.approx(scores, rel=1e-4, abs=1e-5)

        # MLflow's schema check: no weights -> 400 before the model runs
        bad = _request(docker_env, name, "/invocations",
                       json.dumps({"dataframe_records": [{"history": record["history"]}]}))
        assert bad["status"] == 400, bad
        error = json.loads(bad["body"])
        assert error["error_code"] == "INVALID_PARAMETER_VALUE" and "missing inputs ['weights']" in error["message"]
        # padirec's check: an item the catalogue does not have
        unknown = _request(docker_env, name, "/invocations",
                           json.dumps({"dataframe_records": [{**record, "history": ["no-such-item"]}]}))
        assert unknown["status"] == 400 and "unknown item id" in json.loads(unknown["body"])["message"], unknown
        # JSON nested past Python's recursion limit: MLflow's scoring server parses the body before
        # the model sees it, and answers 500 (padirec serve: 400); the server keeps serving
        nested = _request(docker_env, name, "/invocations", "[" * 5000)
        assert nested["status"] in (400, 500), nested
        after = _request(docker_env, name, "/invocations", json.dumps({"dataframe_records": [record]}))
        assert after["status"] == 200 and json.loads(after["body"])["predictions"][0]["item_ids"] == ids, after
        print(f"nested JSON (5,000 levels): {nested['status']} from MLflow's scoring server; the next request 200")
    except BaseException:
        logs = docker(docker_env, "logs", "--tail", "40", name)
        print(f"\n{name} (last lines):\n{logs.stdout[-2000:]}{logs.stderr[-3000:]}")
        raise
    finally:
        docker(docker_env, "rm", "-f", name)

    figures = {"build_s": model_image["build_s"], "image_mb": size_mb, "ping_s": ping_s,
               "first_invocation_s": answer["seconds"]}
    for key, value in figures.items():
        record_property(key, round(value, 2))
    print(f"model image figures ({'layer cache reused' if model_image['reused_cache'] else 'cold'}):",
          json.dumps({k: round(v, 2) for k, v in figures.items()}))
