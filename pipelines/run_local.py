"""Run the pipeline on this machine through KFP's local runners.

Each run gets its own folder ``<run_dir>/<name>-<UTC time>-<suffix>/`` (KFP's pipeline root: every
step's artifacts), unique even for runs started in the same second; the MLflow store is shared by
all runs under ``<run_dir>`` unless a tracking URI is configured, so the MLflow UI shows every run
side by side.

Two ways to run a step:
- in this Python environment (``SubprocessRunner``), the default of ``padirec run``;
- in the project image, one container per step (``DockerRunner``), as on a cluster: pass
  ``Containers``. The steps then see only what a pod would see: the pipeline root (mounted by KFP),
  the environment that the compiled pipeline's Kubernetes settings pass, and servers by name.
  The stage cache (``<run_dir>/cache``, unless ``cache: false``) is mounted too: a cluster has
  KFP's cache instead, and a re-run here would otherwise retrain everything.

Locally a failed step is not retried (a deterministic error would only fail again, minutes later):
the run stops with one line naming the step and its error. Credentials never travel in the config
(``config.json``, the ``config_json`` parameter every step logs): the userinfo of a tracking URI
moves to ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` in the steps' environment, and any other
setting holding a URI with credentials is refused. SIGINT and SIGTERM stop the steps too
(``pipelines.interrupt``).
"""

import builtins
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from kfp import local

from padirec.config import Config, config_to_json
from padirec.core.secrets import refuse_credentials
from padirec.errors import PadirecError
from padirec.runtime.artifacts import atomic_write_json
from padirec.tracking import KFP_RUN_ID_ENV, PIPELINE_ROLE, redact, resolve_tracking_uri
from padirec.tracking.core import (
    TrackingError,
    apply_http_settings,
    check_reachable,
    credentials_to_env,
    server_down,
    split_userinfo,
)
from padirec.tracking.liveness import RUNNER_ENV, close_abandoned_runs, process_token
from pipelines.interrupt import stop_steps_on_signal
from pipelines.padirec_pipeline import DEFAULT_IMAGE, ClusterOptions, build_pipeline

log = logging.getLogger("padirec")
LOCAL = ClusterOptions(retries=0)  # locally, a failed step is not retried
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclasses.dataclass(frozen=True)
class Containers:
    """Run every step in ``image``. ``environment`` is what a pod gets from the ConfigMap and Secrets
    (see ``padirec_pipeline.step_environment``); ``extra_hosts`` maps cluster host names to
    addresses on this machine (containers use the host network)."""

    image: str
    environment: dict[str, str] = dataclasses.field(default_factory=dict)
    extra_hosts: dict[str, str] = dataclasses.field(default_factory=dict)


def new_run_folder(run_dir: Path, name: str, now: dt.datetime | None = None) -> tuple[Path, str]:
    """Create ``<run_dir>/<name>-<UTC time>-<random suffix>/``; returns it and the run's KFP run id
    (``local-<folder name>``). Runs started in the same second get different folders."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    if run_dir.exists() and not run_dir.is_dir():
        raise PadirecError(f"run_dir {run_dir} is a file, not a folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    while True:
        folder = run_dir / f"{name}-{stamp}-{uuid.uuid4().hex[:6]}"
        try:
            folder.mkdir(exist_ok=False)
        except FileExistsError:  # the same suffix drawn twice: draw again
            continue
        return folder, f"local-{folder.name}"


def run_local(cfg: Config, containers: Containers | None = None, data_version: str = "") -> Path:
    """Run the whole pipeline; returns the run folder."""
    run_dir = Path(cfg.run_dir).resolve()
    run_folder, kfp_run_id = new_run_folder(run_dir, cfg.name)
    apply_http_settings(cfg.tracking)  # this process's MLflow calls, and the steps' (they inherit it)
    env = {KFP_RUN_ID_ENV: kfp_run_id}  # the step subprocesses inherit it
    token = process_token()
    if containers is None:
        cfg, tracking_env = _local_tracking(cfg, run_dir)
        env.update(tracking_env, **{RUNNER_ENV: token})
        runner, image = local.SubprocessRunner(use_venv=False), DEFAULT_IMAGE
    else:
        cfg, runner = _container_runner(cfg, containers, run_folder, kfp_run_id)
        image = containers.image
    refuse_credentials(cfg.to_dict())
    commit = source_commit()  # the code this run starts from (a commit made meanwhile is not it)
    local.init(runner=runner, pipeline_root=str(run_folder), raise_on_error=True)
    (run_folder / "config.json").write_text(config_to_json(cfg))  # first: a failed run still says what it ran
    log.info("running pipeline %s locally (%s); artifacts under %s", cfg.name,
             f"each step in {image}" if containers else "this environment", run_folder)
    pipeline = build_pipeline(image, LOCAL)
    with _environment(env), stop_steps_on_signal(cfg, token), _root_logger_kept():
        if containers is None and cfg.tracking.uri != "none":
            _close_abandoned(cfg)
        try:
            pipeline(config_json=config_to_json(cfg), data_version=data_version)
        except RuntimeError as e:
            if "finished with status" not in str(e):
                raise
            raise PadirecError(_failure(str(e), cfg, kfp_run_id, run_folder)) from None
    atomic_write_json(run_folder / PROVENANCE, {"commit": commit, **provenance(cfg, kfp_run_id)})
    return run_folder


PROVENANCE = "run.json"  # what produced a finished run: the code's commit and its MLflow run


def source_commit() -> str | None:
    """The git commit of this checkout (``+dirty`` when tracked files changed), None outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def provenance(cfg: Config, kfp_run_id: str) -> dict[str, str | None]:
    """``{"kfp_run_id", "mlflow_run_id"}`` of a finished run (the MLflow pipeline run found by its KFP
    run id; None without tracking or when the server cannot say)."""
    run_id = None
    if cfg.tracking.uri != "none":
        try:
            from mlflow import MlflowClient

            uri = resolve_tracking_uri(cfg.tracking.uri, cfg.run_dir)
            check_reachable(uri)
            client = MlflowClient(uri)
            exp = client.get_experiment_by_name(cfg.tracking.experiment)
            found = client.search_runs([exp.experiment_id], f"tags.`kfp.run_id` = '{kfp_run_id}' and "
                                       f"tags.`padirec.role` = '{PIPELINE_ROLE}'", max_results=1) if exp else []
            run_id = found[0].info.run_id if found else None
        except Exception as e:  # the run succeeded; its record only lacks the MLflow id
            log.warning("could not look up the MLflow run of %s: %s", kfp_run_id, redact(str(e)))
    return {"kfp_run_id": kfp_run_id, "mlflow_run_id": run_id}


def _local_tracking(cfg: Config, run_dir: Path) -> tuple[Config, dict[str, str]]:
    """The config the steps get: the resolved tracking URI without credentials, and the variables
    that carry them instead (an HTTP URI's userinfo is already in this process's environment:
    ``resolve_tracking_uri``; a database URI, whose driver needs its password, travels whole in
    ``MLFLOW_TRACKING_URI``)."""
    env: dict[str, str] = {}
    uri = cfg.tracking.uri
    if uri != "none":
        uri = resolve_tracking_uri(uri, run_dir)
        if split_userinfo(uri)[0] != uri:
            env["MLFLOW_TRACKING_URI"], uri = uri, ""
    inherited = os.environ.get("MLFLOW_TRACKING_URI", "")
    if "MLFLOW_TRACKING_URI" not in env and split_userinfo(inherited)[0] != inherited:
        env["MLFLOW_TRACKING_URI"] = credentials_to_env(inherited)  # the steps inherit it without them
    return dataclasses.replace(cfg, run_dir=str(run_dir), tracking=dataclasses.replace(cfg.tracking, uri=uri)), env


# ``print`` as this module found it, before any local run: kfp's runner swaps ``builtins.print`` for
# an indenting one around each task, and overlapping parallel tasks can leave that one in place
_PRINT = builtins.print


@contextlib.contextmanager
def _root_logger_kept() -> Iterator[None]:
    """The root logger's handlers and level, and ``print``, as they were before the run. kfp's local
    runner swaps its own handler (and an indenting ``print``) in and out around each task, from a
    thread pool for parallel tasks; two tasks that overlap restore each other's, leaving a handler
    bound to the stream of that moment (closed later: 'I/O operation on closed file' on every log
    line after) and every later ``print`` indented."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        builtins.print = _PRINT


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _close_abandoned(cfg: Config) -> None:
    try:
        close_abandoned_runs(resolve_tracking_uri(cfg.tracking.uri, cfg.run_dir), cfg.tracking.experiment)
    except Exception as e:  # housekeeping of earlier runs must not stop this one
        log.warning("could not check for MLflow runs left open by dead local runs: %s", redact(str(e)))


def _failure(message: str, cfg: Config, kfp_run_id: str, run_folder: Path) -> str:
    """KFP's failure (colour codes, nested task names) as one line: the failed step and its error
    as its MLflow run recorded it."""
    tasks = re.findall(r"'([^']+)'", _ANSI.sub("", message).split("Inner task failed:", 1)[-1])
    step = tasks[0].replace("-", "_") if tasks else "?"
    reason = _step_failure(cfg, kfp_run_id, step)
    return (f"step {step} failed{': ' + reason if reason else ''} (its log is above; outputs under {run_folder})"
            ).replace("\n", " ")


def _step_failure(cfg: Config, kfp_run_id: str, step: str) -> str:
    if cfg.tracking.uri == "none":
        return ""
    uri = ""
    try:
        from mlflow import MlflowClient

        uri = resolve_tracking_uri(cfg.tracking.uri, cfg.run_dir)
        check_reachable(uri)  # one try: a server that is down says so at once, not after MLflow's retries
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(cfg.tracking.experiment)
        runs = client.search_runs([exp.experiment_id], f"tags.`kfp.run_id` = '{kfp_run_id}' and attributes.status = 'FAILED'",
                                  order_by=["attributes.start_time DESC"]) if exp else []
    except TrackingError as e:  # the server is gone: that is likely why the step failed
        return str(e)
    except Exception as e:  # the failure itself is reported either way
        return str(server_down(e, uri) or "")
    reasons = [r.data.tags["padirec.failure"] for r in runs if r.data.tags.get("padirec.failure")
               and r.data.tags.get("padirec.step", "").startswith(step)]
    return redact(reasons[0])[:500] if reasons else ""


def _container_runner(cfg: Config, containers: Containers, run_folder: Path, kfp_run_id: str):
    env = {**containers.environment, KFP_RUN_ID_ENV: kfp_run_id}
    uri = cfg.tracking.uri or env.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        raise PadirecError("steps in containers need an MLflow tracking server: set MLFLOW_TRACKING_URI in the "
                           "containers' environment or tracking.uri (a local SQLite store is not shared with them)")
    clean, user, password = split_userinfo(uri)
    if clean != uri:  # the credentials go to the containers' environment, not into the config
        env.update({k: v for k, v in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)) if v})
        if env.get("MLFLOW_TRACKING_URI") == uri:
            env["MLFLOW_TRACKING_URI"] = clean
        if cfg.tracking.uri:
            cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, uri=clean))
    # Steps run as the image's non-root user and write their outputs under the pipeline root.
    run_folder.chmod(0o777)
    mounts = []
    if cfg.cache:  # the stage cache (a cluster has KFP's): mounted at its own path, as the pipeline root is
        run_dir = Path(cfg.run_dir).resolve()
        cfg = dataclasses.replace(cfg, run_dir=str(run_dir))
        cache = cfg.cache_root()
        cache.mkdir(parents=True, exist_ok=True)
        cache.chmod(0o777)
        mounts.append(_bind(cache))
    runner = local.DockerRunner(network_mode="host", extra_hosts=dict(containers.extra_hosts), environment=env,
                                mounts=mounts)
    return cfg, runner


def _bind(folder: Path):
    from docker.types import Mount  # the Docker SDK: installed with KFP's local runner only

    return Mount(target=str(folder), source=str(folder), type="bind")


def find_output(run_folder: Path, pattern: str) -> Path | None:
    """The newest file under ``run_folder`` matching ``pattern`` (e.g. ``**/report/report.json``)."""
    found = sorted(run_folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
