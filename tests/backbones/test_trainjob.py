"""Phase 1 as a Kubeflow Trainer TrainJob: the manifest against the Trainer's own API models, the
example in manifests/trainer/, the step's submit-and-wait, and (slow) the whole path with the
job's two nodes run here as two torchrun processes, reading and writing a real SeaweedFS."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

from padirec.backbones import BackboneConfig, load_backbone
from padirec.backbones.config import TrainJobSettings
from padirec.backbones.trainjob import (
    TrainJobError,
    job_state,
    render,
    submit,
    train_on_trainjob,
    wait,
    worker_args,
)
from padirec.config import load_config
from padirec.errors import ConfigError
from tests.servers import free_port, seaweedfs
from tools.trainjob_manifest import EXAMPLE, example

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"num_layers": 1, "lr": 5e-3, "batch_size": 64, "train_stride": 5, "epochs": 6, "patience": 100}


def trainjob_cfg(**trainjob) -> BackboneConfig:
    return BackboneConfig(**SETTINGS, launcher="trainjob", trainjob=TrainJobSettings(**trainjob))


@pytest.mark.parametrize("gpus", [0, 2])
def test_the_manifest_is_a_trainjob_the_trainer_reads_whole(gpus):
    """The Trainer's API models drop a field they do not know without a word, so the manifest must
    come back from them unchanged: every field is one the TrainJob has, spelled its way."""
    cfg = trainjob_cfg(nodes=3, gpus=gpus, staging="s3://b/p")
    body = render("padirec-backbone-0123456789ab", "team-a", "registry.example.com/padirec:1", cfg.trainjob,
                  2, worker_args("s3://b/p/x/data", "s3://b/p/x/backbone", cfg, 50, 0))
    assert TrainerV1alpha1TrainJob.from_dict(body).to_dict() == body
    trainer = body["spec"]["trainer"]
    assert trainer["numNodes"] == 3 and trainer["numProcPerNode"] == 2
    assert trainer["command"][:1] == ["torchrun"] and trainer["args"][-1] == ("cuda" if gpus else "cpu")
    assert trainer["resourcesPerNode"]["limits"].get("nvidia.com/gpu") == (str(gpus) if gpus else None)
    env = {e["name"]: e for e in trainer["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "padirec-s3", "key": "AWS_SECRET_ACCESS_KEY"}}
    assert env["PADIREC_THREADS"]["value"] == "2"  # 4 cores over 2 ranks
    assert not any("value" in e and "secret" in e["value"].lower() for e in trainer["env"])


def test_the_example_in_manifests_is_what_the_step_submits():
    text = EXAMPLE.read_text()
    body = yaml.safe_load(text)
    assert body == example()  # regenerate: python tools/trainjob_manifest.py
    assert TrainerV1alpha1TrainJob.from_dict(body).to_dict() == body


def test_a_trainjob_without_staging_is_refused_at_load(tmp_path):
    with pytest.raises(ConfigError, match=r"backbone.trainjob.staging: '': .*s3://bucket/prefix"):
        load_config(ROOT / "configs" / "smoke.yaml", {"backbone.launcher": "trainjob"})
    with pytest.raises(ConfigError, match="backbone.launcher"):
        load_config(ROOT / "configs" / "smoke.yaml", {"backbone.launcher": "slurm"})
    for key, bad in (("cpu", "four"), ("memory", "16 GB"), ("namespace", "Team_A")):
        with pytest.raises(ConfigError, match=f"backbone.trainjob.{key}: '{bad}'"):
            load_config(ROOT / "configs" / "smoke.yaml", {f"backbone.trainjob.{key}": bad})


class Jobs:
    """The TrainJobs API over a dict, with each job's conditions scripted by ``states``."""

    def __init__(self, states=()):
        self.store, self.states, self.deleted = {}, list(states), []

    def create(self, body):
        self.store[body["metadata"]["name"]] = body

    def get(self, name):
        job = self.store.get(name)
        if job is not None and self.states:
            job["status"] = {"conditions": [{"type": t, "status": "True", "message": m} for t, m in [self.states.pop(0)]]}
        return job

    def delete(self, name):
        self.deleted.append(name)
        self.store.pop(name, None)


def body(name="padirec-backbone-aaaaaaaaaaaa"):
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"trainer": {"numNodes": 2, "numProcPerNode": 1}}}


def test_wait_returns_on_complete_and_fails_with_the_jobs_message():
    jobs = Jobs([("Created", ""), ("Created", ""), ("Complete", "done")])
    submit(jobs, body())
    wait(jobs, body()["metadata"]["name"], 60, poll_s=0, sleep=lambda s: None)
    jobs = Jobs([("Failed", "trainer node-0 exited with 1")])
    submit(jobs, body())
    with pytest.raises(TrainJobError, match="failed: trainer node-0 exited with 1"):
        wait(jobs, body()["metadata"]["name"], 60, poll_s=0, sleep=lambda s: None)


def test_past_its_time_the_job_is_deleted():
    jobs, now = Jobs([("Created", "")] * 5), iter(range(0, 1000, 40))
    submit(jobs, body())
    with pytest.raises(TrainJobError, match="still Created after 2 min"):
        wait(jobs, body()["metadata"]["name"], 120, clock=lambda: next(now), sleep=lambda s: None)
    assert jobs.deleted == [body()["metadata"]["name"]]


def test_a_retried_step_waits_on_its_running_job_and_replaces_a_failed_one():
    jobs = Jobs()
    jobs.store["padirec-backbone-aaaaaaaaaaaa"] = {**body(), "status": {"conditions": [{"type": "Created", "status": "True"}]}}
    running = jobs.store["padirec-backbone-aaaaaaaaaaaa"]
    submit(jobs, body())
    assert jobs.store["padirec-backbone-aaaaaaaaaaaa"] is running and not jobs.deleted
    running["status"] = {"conditions": [{"type": "Failed", "status": "True", "message": "OOMKilled"}]}
    submit(jobs, body())
    assert jobs.deleted == ["padirec-backbone-aaaaaaaaaaaa"] and "status" not in jobs.store["padirec-backbone-aaaaaaaaaaaa"]
    assert job_state(jobs.store["padirec-backbone-aaaaaaaaaaaa"]) == ("Submitted", "")


class LocalTrainer(Jobs):
    """The Trainer's torch runtime, here: ``create`` runs each of the job's ``numNodes`` pods as a
    torchrun process with the rendezvous variables the runtime sets (``PET_*``) and the env the
    manifest asks for, resolved from the ConfigMap and Secret given."""

    def __init__(self, config_map: dict, secret: dict):
        super().__init__()
        self.sources = {"configMapKeyRef": config_map, "secretKeyRef": secret}

    def create(self, job):
        trainer, name = job["spec"]["trainer"], job["metadata"]["name"]
        env = {e["name"]: e.get("value") or self.sources[next(iter(e["valueFrom"]))][next(iter(e["valueFrom"].values()))["key"]]
               for e in trainer["env"]}
        port = free_port()
        pods = []
        for node in range(trainer["numNodes"]):
            pet = {"PET_NNODES": str(trainer["numNodes"]), "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]),
                   "PET_NODE_RANK": str(node), "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(port)}
            torchrun = str(Path(sys.executable).parent / trainer["command"][0])
            pods.append(subprocess.Popen([torchrun, *trainer["command"][1:], *trainer["args"]],
                                         env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env, **pet}))
        codes = [p.wait(timeout=600) for p in pods]
        failed = [i for i, c in enumerate(codes) if c]
        condition = ({"type": "Failed", "message": f"node {failed}"} if failed else {"type": "Complete"})
        self.store[name] = {**job, "status": {"conditions": [{**condition, "status": "True"}]}}


@pytest.mark.slow
def test_two_nodes_train_the_backbone_the_step_outputs(synthetic_prepared, tmp_path, monkeypatch):
    with seaweedfs(tmp_path / "weed") as s3:
        keys = {"AWS_ACCESS_KEY_ID": s3["key"], "AWS_SECRET_ACCESS_KEY": s3["secret"]}
        for k, v in {**keys, "PADIREC_S3_ENDPOINT": s3["endpoint"], "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(k, v)
        from padirec.runtime.storage import client

        client().create_bucket(Bucket="staging")
        cfg = trainjob_cfg(nodes=2, cpu="1", staging="s3://staging/trainjobs", namespace="runs", image="padirec:test")
        trainer = LocalTrainer({"PADIREC_S3_ENDPOINT": s3["endpoint"], "AWS_DEFAULT_REGION": "us-east-1"}, keys)
        metrics = train_on_trainjob(synthetic_prepared, tmp_path / "backbone", cfg, 10, 0, jobs=trainer)
        assert metrics["processes"] == 2 and metrics["epochs"] == SETTINGS["epochs"]
        model = load_backbone(tmp_path / "backbone")  # the single-process loader, checksums verified
        assert sum(p.numel() for p in model.parameters()) == metrics["num_parameters"]
        assert json.loads((tmp_path / "backbone" / "metrics.json").read_text()) == metrics
        assert trainer.deleted and not trainer.store  # the finished job is removed
        one = dataclasses.replace(cfg, launcher="local")
        from padirec.backbones.stage import train_backbone_stage

        single = train_backbone_stage(synthetic_prepared, tmp_path / "one", one, 10, 0, "cpu")
        assert abs(single["valid"]["ndcg@10"] - metrics["valid"]["ndcg@10"]) <= 0.005
