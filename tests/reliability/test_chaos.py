"""Chaos: ``padirec run`` on the smoke config is killed at stages, then run again, on one tracking
store and one run folder (so the stage cache carries over):

1. SIGINT as soon as ``train_backbone``'s MLflow run appears (Ctrl-C);
2. SIGTERM as soon as ``train_generator``'s run appears (the backbone and adapters are cached now;
   this run's generator trains far longer, so that it is still training when the signal comes);
3. SIGKILL right after the registration step created its model version (the runner cannot stop
   anything: each step stops itself, and the next run closes the MLflow runs left open);
4. a re-run to the end.

After each kill no step process is left; after the re-run no MLflow run is RUNNING, every version
carries every registration tag, the re-run reused the cached stages, and ``champion`` stayed where
it was, because the re-run did not earn it (a better version of the same evaluation holds it).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from padirec.tracking.liveness import process_token
from padirec.tracking.model_registry import REQUIRED_TAGS
from pipelines.interrupt import step_processes

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MODEL, EXPERIMENT = "padirec-chaos", "padirec-chaos"


def padirec_command() -> list[str]:
    module = "pipelines" if (ROOT / "pipelines" / "__main__.py").exists() else "padirec"
    return [sys.executable, "-m", module]


class Chaos:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.uri = f"sqlite:///{work / 'mlflow.db'}"
        self.client = MlflowClient(self.uri)
        self.client.search_experiments()  # the store exists before the runs' processes race to create it
        self.count = 0

    def start(self, *settings: str) -> tuple[subprocess.Popen, str]:
        self.count += 1
        log = self.work / f"run{self.count}"
        args = [*padirec_command(), "run", "--config", "configs/smoke.yaml", "--set", f"run_dir={self.work / 'runs'}",
                "--set", f"tracking.uri={self.uri}", "--set", f"tracking.experiment={EXPERIMENT}",
                "--set", f"tracking.registered_model={MODEL}", "--set", "promotion.min_avg_hv=0",
                "--set", "promotion.min_pearson_ra=-1", "--set", "promotion.min_pearson_rd=-1", *(a for kv in settings for a in ("--set", kv))]
        proc = subprocess.Popen(args, cwd=ROOT, stdout=open(f"{log}.out", "w"), stderr=open(f"{log}.err", "w"),
                                start_new_session=True)
        return proc, process_token(proc.pid)

    def wait_for(self, proc: subprocess.Popen, found, what: str, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while not found():
            assert proc.poll() is None, f"the run ended before {what}: {self.log_tail()}"
            assert time.time() < deadline, f"no {what} after {timeout} s"
            time.sleep(0.3)

    def step_running(self, step: str):
        def found() -> bool:
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            return bool(exp and self.client.search_runs(
                [exp.experiment_id], f"tags.`padirec.step` = '{step}' and attributes.status = 'RUNNING'"))
        return found

    def versions(self) -> list:
        try:
            return self.client.search_model_versions(f"name = '{MODEL}'")
        except Exception:  # no registered model yet
            return []

    def runs(self) -> list:
        return self.client.search_runs([self.client.get_experiment_by_name(EXPERIMENT).experiment_id])

    def log_tail(self) -> str:
        return (self.work / f"run{self.count}.err").read_text()[-3000:]


def _steps_gone(token: str, timeout: float) -> bool:
    deadline = time.time() + timeout
    while step_processes(token):
        if time.time() > deadline:
            return False
        time.sleep(0.3)
    return True


def _kill(proc, token, sig, stage):
    proc.send_signal(sig)  # to the runner alone, as `kill` does
    code = proc.wait(timeout=60)
    # SIGINT/SIGTERM: the runner stops its steps before it exits; SIGKILL: each step stops itself
    assert _steps_gone(token, 0 if sig != signal.SIGKILL else 30), f"step processes left after {sig.name} at {stage}"
    return code


def test_killed_runs_leave_nothing_half_done_and_the_rerun_resumes(tmp_path):
    chaos = Chaos(tmp_path)
    procs = []
    try:
        proc, token = chaos.start()
        procs.append(proc)
        chaos.wait_for(proc, chaos.step_running("train_backbone"), "train_backbone run")
        assert _kill(proc, token, signal.SIGINT, "train_backbone") == 128 + signal.SIGINT
        assert [r.info.status for r in chaos.runs() if r.info.status == "RUNNING"] == []  # closed at once

        # a generator that trains until killed: the smoke one can finish between poll and signal
        proc, token = chaos.start("generator.train_steps=1000000")
        procs.append(proc)
        chaos.wait_for(proc, chaos.step_running("train_generator"), "train_generator run")
        assert _kill(proc, token, signal.SIGTERM, "train_generator") == 128 + signal.SIGTERM
        runs = {(r.info.run_name, r.info.status): r.data.tags.get("padirec.failure", "") for r in chaos.runs()}
        assert runs.get(("train_generator", "FAILED"), "").startswith("SIGTERM"), runs
        assert "RUNNING" not in {status for _, status in runs}, runs

        proc, token = chaos.start()
        procs.append(proc)
        chaos.wait_for(proc, lambda: chaos.versions(), "model version")
        assert _kill(proc, token, signal.SIGKILL, "register_and_promote") == -signal.SIGKILL
        [orphan] = chaos.versions()
        # what a champion of the same evaluation that the re-run cannot beat looks like
        best = chaos.client.create_model_version(MODEL, source=f"{tmp_path.as_uri()}/earlier", tags={
            **orphan.tags, "quality.score": "0.99", "gate": "passed", "kfp.run_id": "earlier-run"})
        chaos.client.set_registered_model_alias(MODEL, "champion", best.version)

        proc, token = chaos.start()
        procs.append(proc)
        assert proc.wait(timeout=600) == 0, chaos.log_tail()
        assert _steps_gone(token, 0)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    runs = chaos.runs()
    assert [(r.info.run_name, r.data.tags.get("kfp.run_id")) for r in runs if r.info.status == "RUNNING"] == []
    parents = {r.data.tags["kfp.run_id"]: r for r in runs if r.data.tags.get("padirec.role") == "pipeline"}
    assert len(parents) == 4 and [p.info.status for p in parents.values()].count("FINISHED") == 1
    killed = [p for p in parents.values() if p.data.tags.get("padirec.failure", "").startswith("padirec run (the local runner) died")]
    assert len(killed) == 1  # the SIGKILLed run's parent, closed by the re-run
    for version in chaos.versions():
        assert set(REQUIRED_TAGS) <= set(version.tags), f"v{version.version} lacks registration tags"
    rerun = max(chaos.versions(), key=lambda v: int(v.version))
    assert rerun.tags["gate"] == "passed" and f"does not beat champion v{best.version}" in rerun.tags["promotion"]
    assert chaos.client.get_model_version_by_alias(MODEL, "champion").version == best.version
    out = (tmp_path / "run4.out").read_text()
    assert out.count("reusing the cached result") >= 4  # backbone, both adapter shards, generator
