"""Run the pipeline on this machine through KFP's local runners.

Each run gets its own folder ``<run_dir>/<name>-<UTC time>-<suffix>/`` (KFP's pipeline root: every
step's artifacts); the MLflow store is shared by all runs under ``<run_dir>`` unless a tracking URI is
configured, so the MLflow UI shows every run side by side.

Two ways to run a step:
- in this Python environment (``SubprocessRunner``), the default of ``padirec run``;
- in the project image, one container per step (``DockerRunner``), as on a cluster: pass
  ``Containers``. The steps then see only what a pod would see: the pipeline root (mounted by KFP),
  the environment that the compiled pipeline's Kubernetes settings pass, and servers by name.
"""

import dataclasses
import datetime as dt
import logging
import os
import uuid
from pathlib import Path

from kfp import local

from padirec.config import Config, config_to_json
from padirec.errors import PadirecError
from padirec.tracking import KFP_RUN_ID_ENV, resolve_tracking_uri
from pipelines.padirec_pipeline import DEFAULT_IMAGE, build_pipeline

log = logging.getLogger("padirec")


@dataclasses.dataclass(frozen=True)
class Containers:
    """Run every step in ``image``. ``environment`` is what a pod gets from the ConfigMap and Secrets
    (see ``padirec_pipeline.step_environment``); ``extra_hosts`` maps cluster host names to
    addresses on this machine (containers use the host network)."""

    image: str
    environment: dict[str, str] = dataclasses.field(default_factory=dict)
    extra_hosts: dict[str, str] = dataclasses.field(default_factory=dict)


def run_local(cfg: Config, containers: Containers | None = None, data_version: str = "") -> Path:
    """Run the whole pipeline; returns the run folder."""
    run_dir = Path(cfg.run_dir).resolve()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    suffix = uuid.uuid4().hex[:6]  # two runs started in the same second get two folders
    run_folder = run_dir / f"{cfg.name}-{stamp}-{suffix}"
    run_folder.mkdir(parents=True, exist_ok=False)
    kfp_run_id = f"local-{cfg.name}-{stamp}-{suffix}"
    if containers is None:
        uri = cfg.tracking.uri if cfg.tracking.uri == "none" else resolve_tracking_uri(cfg.tracking.uri, run_dir)
        cfg = dataclasses.replace(cfg, run_dir=str(run_dir), tracking=dataclasses.replace(cfg.tracking, uri=uri))
        os.environ[KFP_RUN_ID_ENV] = kfp_run_id  # the step subprocesses inherit it
        runner = local.SubprocessRunner(use_venv=False)
        image = DEFAULT_IMAGE
    else:
        cfg, runner = _container_runner(cfg, containers, run_folder, kfp_run_id)
        image = containers.image
    local.init(runner=runner, pipeline_root=str(run_folder), raise_on_error=True)
    (run_folder / "config.json").write_text(config_to_json(cfg))  # first: a failed run still says what it ran
    log.info("running pipeline %s locally (%s); artifacts under %s", cfg.name,
             f"each step in {image}" if containers else "this environment", run_folder)
    build_pipeline(image)(config_json=config_to_json(cfg), data_version=data_version)
    return run_folder


def _container_runner(cfg: Config, containers: Containers, run_folder: Path, kfp_run_id: str):
    env = {**containers.environment, KFP_RUN_ID_ENV: kfp_run_id}
    uri = cfg.tracking.uri or env.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        raise PadirecError("steps in containers need an MLflow tracking server: set MLFLOW_TRACKING_URI in the "
                           "containers' environment or tracking.uri (a local SQLite store is not shared with them)")
    # Steps run as the image's non-root user and write their outputs under the pipeline root.
    run_folder.chmod(0o777)
    # The containers share no disk with this machine but the pipeline root: no local stage cache.
    cfg = dataclasses.replace(cfg, cache=False)
    runner = local.DockerRunner(network_mode="host", extra_hosts=dict(containers.extra_hosts), environment=env)
    return cfg, runner


def find_output(run_folder: Path, pattern: str) -> Path | None:
    """The newest file under ``run_folder`` matching ``pattern`` (e.g. ``**/report/report.json``)."""
    found = sorted(run_folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
