"""The whole pipeline, locally, against real servers: SeaweedFS (S3) behind an MLflow tracking
server with a SQLite backend. Then: nested runs, the registered model version and its tags, the
``champion`` alias, a prediction from ``models:/padirec-smoke@champion`` in a fresh process,
``mlflow models serve`` answering, and a worse second run that does not take the alias."""

import builtins
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from padirec.config import load_config
from pipelines.run_local import find_output, run_local
from tests.servers import free_port, mlflow_server, seaweedfs

ROOT = Path(__file__).resolve().parents[2]
MODEL = "padirec-smoke"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("stack")
    with seaweedfs(work / "weed") as s3:
        env = {"MLFLOW_S3_ENDPOINT_URL": s3["endpoint"], "AWS_ACCESS_KEY_ID": s3["key"],
               "AWS_SECRET_ACCESS_KEY": s3["secret"], "PADIREC_S3_ENDPOINT": s3["endpoint"]}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        import boto3

        boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=s3["key"], aws_secret_access_key=s3["secret"],
                     region_name="us-east-1").create_bucket(Bucket="padirec-mlflow")
        try:
            with mlflow_server(work / "mlflow", artifacts_destination="s3://padirec-mlflow/artifacts", env=env) as uri:
                yield {"uri": uri, "s3": s3, "work": work}
        finally:
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _run(stack, **overrides):
    cfg = load_config(ROOT / "configs" / "smoke.yaml", {"tracking.uri": stack["uri"], "run_dir": str(stack["work"] / "runs"),
                                                        "promotion.min_avg_hv": 0.0, "promotion.min_pearson_ra": -1.0,
                                                        "promotion.min_pearson_rd": -1.0, **overrides})
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    folder = run_local(cfg)
    # kfp's local runner swaps root handlers and print from parallel threads; none of its may stay
    assert (root.handlers, root.level) == before
    assert builtins.print.__name__ == "print"  # not kfp's indented_print_function
    return folder


def test_pipeline_registers_and_promotes(stack, capfd):
    folder = _run(stack)
    _assert_no_credentials(stack, folder, capfd.readouterr())
    report = json.loads(find_output(folder, "**/report/report.json").read_text())
    features = json.loads(find_output(folder, "**/compute-features/features/manifest.json").read_text())
    assert features["kind"] == "features" and features["backbone_sha256"] == report["versions"]["backbone_sha256"]
    assert {"padirec", "retrain", "soup", "mmr", "cmr", "hypernetwork", "deepprl_static"} <= set(report["methods"])

    client = MlflowClient(stack["uri"])
    exp = client.get_experiment_by_name("padirec-smoke")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("padirec.role") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    made = json.loads((folder / "run.json").read_text())  # the README names these for its figures
    assert made["mlflow_run_id"] == parents[0].info.run_id and made["kfp_run_id"] == f"local-{folder.name}"
    assert made["commit"] is None or len(made["commit"].removesuffix("+dirty")) == 40
    steps = {r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert {"prepare_data", "train_backbone", "compute_features", "build_adapters_0", "build_adapters_1",
            "train_generator", "band_generator", "retrain_ceiling", "evaluate", "register_and_promote"} <= steps

    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == "1"
    for tag in ("data_checksum", "config", "quality.score", "quality.avg_hv", "quality.pearson_ra", "evaluation_key"):
        assert tag in champion.tags

    # the model's files live in the object store behind the server
    import boto3

    s3 = stack["s3"]
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=s3["key"],
                                           aws_secret_access_key=s3["secret"], region_name="us-east-1")
            .list_objects_v2(Bucket="padirec-mlflow").get("Contents", [])]
    assert any(k.endswith("generator.safetensors") for k in keys) and any("report.json" in k for k in keys)

    # a prediction from the champion in a fresh process
    data = find_output(folder, "**/prepare-data/data/manifest.json").parent
    code = (f"import mlflow, pandas as pd; from padirec.commands.recommend import user_history\n"
            f"m = mlflow.pyfunc.load_model('models:/{MODEL}@champion')\n"
            f"h = user_history({str(data)!r}, 'u1', 10)\n"
            f"out = m.predict(pd.DataFrame([{{'history': h, 'weights': [0.3, 0.7]}}]))\n"
            f"print(len(out.iloc[0]['item_ids']), out.iloc[0]['item_ids'][0])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_TRACKING_URI": stack["uri"]})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "10"


def _assert_no_credentials(stack, folder, captured):
    """No credential in the logs, the run folder's text files, MLflow params/tags or model tags."""
    secret = stack["s3"]["secret"]
    assert secret not in captured.out + captured.err
    for f in folder.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".md", ".yaml", ".txt", ".log", ".csv"):
            assert secret not in f.read_text(errors="ignore"), f
    client = MlflowClient(stack["uri"])
    for run in client.search_runs([client.get_experiment_by_name("padirec-smoke").experiment_id]):
        assert secret not in json.dumps(run.data.params) + json.dumps(run.data.tags)
    for mv in client.search_model_versions(f"name = '{MODEL}'"):
        assert secret not in json.dumps(mv.tags)


def test_models_serve_answers(stack):
    port = free_port()
    log = stack["work"] / "serve.log"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, "MLFLOW_TRACKING_URI": stack["uri"],  # uvicorn is in the venv's bin
                                 "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, log.read_text()[-2000:]
                time.sleep(1)
        body = json.dumps({"dataframe_records": [{"history": ["i1", "i2", "i3"], "weights": [0.5, 0.5]}]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=60).read())
        ranked = answer["predictions"][0]
        assert len(ranked["item_ids"]) == 10 and not {"i1", "i2", "i3"} & set(ranked["item_ids"])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_worse_run_does_not_take_the_alias(stack):
    """A backbone that barely moves from its initialisation (learning rate 1e-9; 0 is refused)
    ranks near chance: it passes the open gate but scores lower on the same evaluation. This run
    also evaluates its users in two shards (``evaluation.shards``): two ParallelFor steps and the
    timing of new tasks beside them, merged into the report that register_and_promote reads."""
    folder = _run(stack, **{"backbone.lr": 1e-9, "evaluation.shards": 2})
    client = MlflowClient(stack["uri"])
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    v2 = client.get_model_version(MODEL, "2")
    assert v2.tags["gate"] == "passed" and "does not beat champion v1 by the margin" in v2.tags["promotion"]

    report = json.loads(find_output(folder, "**/merge-evaluation/report/report.json").read_text())
    shards = report["analyses"]["shards"]
    assert shards["count"] == 2 and sum(shards["users"]) == report["uncertainty"]["users"]
    assert shards["adapter_max_difference"] == 0.0 and report["response_time"]
    assert shards["timed_users"] == report["uncertainty"]["users"]  # time_responses timed every user
    assert not list(folder.glob("**/evaluate/report/report.json"))  # the single step did not run
    run_id = json.loads((folder / "run.json").read_text())["mlflow_run_id"]
    steps = client.search_runs([client.get_run(run_id).info.experiment_id],
                               filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    status = {r.info.run_name: r.info.status for r in steps}
    for step in ("evaluate_shard_0", "evaluate_shard_1", "time_responses", "merge_evaluation", "register_and_promote"):
        assert status.get(step) == "FINISHED", (step, status)
    assert "evaluate" not in status
    merged = next(r for r in steps if r.info.run_name == "merge_evaluation")
    assert "padirec/avg_hv" in merged.data.metrics  # the report's figures, logged by the merge
