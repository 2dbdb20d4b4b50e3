"""Pipeline runs in MLflow: a run per step, grouped under one parent per KFP pipeline run.

The mode is chosen from the environment each time a step starts (``plugin_run_id``):

* **KFP's MLflow plugin (KEP-12862)**, detected by a non-empty ``MLFLOW_RUN_ID``. KFP's API server
  has made the parent run; KFP's driver has made this task's nested run and set
  ``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_ID`` and ``MLFLOW_RUN_ID`` on the container; KFP's
  launcher ends the nested run, and the API server ends the parent and closes nested runs left
  open. padirec then creates no run: it logs into ``MLFLOW_RUN_ID`` on the plugin's server, tags
  it, never ends it on success and marks it FAILED when the step raises. The plugin's server wins
  over the config's and the ``padirec-env`` ConfigMap's: the run is there. The container gets two
  ``MLFLOW_TRACKING_URI`` (the plugin's driver sets one, the compiled pipeline maps the ConfigMap's)
  and which one Kubernetes keeps depends on their order, so padirec reads the plugin's endpoint
  from ``KFP_MLFLOW_TRACKING_URI``, which only KFP sets, and falls back to ``MLFLOW_TRACKING_URI``.
* **Otherwise** (local runs, KFP without the plugin) padirec makes the parent run itself, found by
  its ``kfp.run_id`` tag or created, and a nested run per step, and ends both.

The KFP run id comes from ``PADIREC_KFP_RUN_ID``, not from a component input: KFP's cache key
hashes the inputs, and a per-run value made every step a cache miss.

A step that dies must not stay RUNNING. SIGTERM (pod deleted, evicted, timed out) raises
``StepTerminated`` inside the step, so the run ends FAILED. SIGKILL (OOM) cannot be caught: the
next attempt of the same step, and the exit handler (``finish_pipeline_run``), mark such runs FAILED.
Locally, a step also stops when ``padirec run`` dies, and the next local run closes what a dead
runner left open (``liveness``).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from padirec.runtime.cluster_env import KFP_RUN_ID_ENV  # noqa: F401 - where the steps read it
from padirec.tracking.core import (
    DEAD_RUN,
    PIPELINE_ROLE,
    MlflowTracker,
    NullTracker,
    Tracker,
    TrackingError,
    _version,
    apply_http_settings,
    check_reachable,
    credentials_to_env,
    flatten,
    redact,
    resolve_tracking_uri,
    search_all_runs,
    server_down,
)
from padirec.tracking.core import system_metrics as sample_system_metrics
from padirec.tracking.liveness import runner_tags, runner_watchdog

log = logging.getLogger("padirec")

PLUGIN_RUN_ENV = "MLFLOW_RUN_ID"
PLUGIN_URI_ENV = "KFP_MLFLOW_TRACKING_URI"  # KFP's API server sets it on the launcher's container
# Ids and step names go into MLflow filter strings between quotes: no quote, backslash or control
# character (a config's name is part of a local run's id, so anything else is allowed).
_ID = re.compile(r"[^'\"`\\\x00-\x1f]{1,250}")
_ID_RULE = "at most 250 characters, none of ' \" ` \\ or control characters"


def kfp_run_id() -> str:
    """The KFP run id of this pipeline run, from ``PADIREC_KFP_RUN_ID``."""
    value = os.environ.get(KFP_RUN_ID_ENV, "").strip()
    if not value:
        raise TrackingError(f"{KFP_RUN_ID_ENV} is not set: on a cluster the compiled pipeline sets it from "
                            "the pod label pipeline/runid, and locally the runner sets it")
    if not _ID.fullmatch(value):
        raise TrackingError(f"{KFP_RUN_ID_ENV}={value!r} cannot be used as a run id ({_ID_RULE})")
    return value


def plugin_run_id() -> str | None:
    """The nested run that KFP's MLflow plugin made for this task (``MLFLOW_RUN_ID``), else None."""
    return os.environ.get(PLUGIN_RUN_ENV, "").strip() or None


def package_path() -> str:
    """The folder of the imported ``padirec`` package: shows which installed copy ran a step."""
    import padirec

    return os.path.dirname(padirec.__file__)


class StepTerminated(SystemExit):
    """SIGTERM arrived during a step. A ``SystemExit`` (code 143, as a default SIGTERM death) so
    that the process exits quietly and no ``except Exception`` in a stage swallows it."""


def pipeline_run_id(uri: str, experiment: str, kfp_run_id: str, run_name: str = "padirec",
                    params: dict[str, Any] | None = None) -> str:
    """The parent MLflow run of one pipeline run (without the plugin), found by its ``kfp.run_id``
    tag or created; a new parent gets ``params`` (the config: ``config_params``), so that pipeline
    runs compare in MLflow's UI from their first step on.

    KFP's exit handler cannot depend on other tasks, so the parent run cannot be passed from a
    first step to the last: every step (and the exit handler) finds it by the KFP run id.
    """
    from mlflow import MlflowClient

    check_reachable(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        found = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`kfp.run_id` = '{_quoted(kfp_run_id)}' and tags.`padirec.role` = '{PIPELINE_ROLE}'",
            max_results=1,
        )
        if found:
            return found[0].info.run_id
    parent = MlflowTracker.start(uri, experiment, run_name,
                                 tags={"kfp.run_id": kfp_run_id, "padirec.role": PIPELINE_ROLE, **runner_tags()})
    if params:
        parent.log_params(params)
    return parent.run_id


def config_params(cfg: Any) -> dict[str, Any]:
    """The config as the parent run's params: flattened (``backbone.epochs``), values redacted when
    logged (``MlflowTracker.log_params``)."""
    return flatten(cfg.to_dict())


@contextmanager
def step_tracker(cfg: Any, step: str, system_metrics: bool = False) -> Iterator[Tracker]:
    """The MLflow run of one pipeline step (see the module docstring for the two modes).

    ``cfg`` is a ``padirec.config.Config``; ``tracking.uri = "none"`` disables tracking, and only
    then is ``PADIREC_KFP_RUN_ID`` not needed. The run is tagged ``padirec.step``, ``kfp.run_id``
    and ``padirec.package_path``. It ends FINISHED (own runs only), or FAILED when the step raises
    or gets SIGTERM; a run of an earlier attempt of the same step left RUNNING is marked FAILED.
    ``system_metrics``: MLflow's system metrics (CPU, memory, GPU) sampled into the run while the
    step runs (``core.system_metrics``), stopped before the run ends.
    """
    if cfg.tracking.uri == "none":
        yield NullTracker()
        return
    apply_http_settings(cfg.tracking)  # before the first MLflow call: a server that goes down fails the step soon
    kfp_id = kfp_run_id()
    tags = {"kfp.run_id": kfp_id, "padirec.step": _quoted(step), "padirec.package_path": package_path()}
    plugin = plugin_run_id()
    uri = _plugin_uri(cfg) if plugin else resolve_tracking_uri(cfg.tracking.uri, cfg.run_dir)
    # The handler is in place before the run exists, but holds a SIGTERM until the run can be
    # marked FAILED: a step stopped between the two would leave its run RUNNING.
    with _sigterm_raises(armed=False) as guard, runner_watchdog() as dog:
        with _one_line_when_down(uri):
            tracker = _open_plugin_run(uri, plugin, tags) if plugin else _open_step_run(uri, cfg, kfp_id, step, tags)
        tracker.kfp_run_id = kfp_id
        sampling = sample_system_metrics(tracker) if system_metrics else nullcontext()
        try:
            guard.arm()
            with sampling:
                yield tracker
        except BaseException as e:
            guard.disarm()  # a second SIGTERM must not interrupt marking the run FAILED
            # C code (torch's tensor and storage builders) can turn the handler's exception into its
            # own error; the step still died of SIGTERM and must exit as such (143).
            error = e if guard.fired is None or isinstance(e, StepTerminated) else StepTerminated(128 + guard.fired)
            down = server_down(e, uri) if isinstance(e, Exception) else None
            if down is not None:  # marking the run would only wait out the retries again
                log.warning("MLflow run %s stays RUNNING: its server is gone (the exit handler or padirec "
                            "close-runs closes it)", tracker.run_id)
                raise down from None  # MLflow's own text is a long urllib3 chain, the cause is in this line
            _mark_failed(tracker, error, runner_died=dog.runner_died)
            if error is e:
                raise
            raise error from e
        guard.disarm()
        if not plugin:  # the plugin's launcher ends its own run
            with _one_line_when_down(uri):
                tracker.end("FINISHED")


def finish_pipeline_run(cfg: Any, state: str) -> str | None:
    """The exit handler's work; returns the parent run's id (None when tracking is off).

    Without the plugin: every run of this pipeline run still RUNNING (a step killed by SIGKILL or
    OOM) is marked FAILED with the tag ``padirec.failure``, then the parent is tagged ``kfp.state``
    and ended FINISHED (``state == "SUCCEEDED"``) or FAILED. With the plugin, the parent belongs to
    KFP's API server, which ends it and closes open nested runs: it gets the ``kfp.state`` tag and
    the config as params where it lacks them (``config_params``).
    """
    if cfg.tracking.uri == "none":
        return None
    apply_http_settings(cfg.tracking)
    plugin = plugin_run_id()
    uri = _plugin_uri(cfg) if plugin else resolve_tracking_uri(cfg.tracking.uri, cfg.run_dir)
    with _one_line_when_down(uri):
        return _finish(cfg, state, uri, plugin)


def _finish(cfg: Any, state: str, uri: str, plugin: str | None) -> str:
    from mlflow import MlflowClient

    kfp_id = kfp_run_id()
    if plugin:
        check_reachable(uri)
        client = MlflowClient(tracking_uri=uri)
        parent = client.get_run(plugin).data.tags.get("mlflow.parentRunId") or plugin
        client.set_tag(parent, "kfp.state", state)
        _try_params(MlflowTracker(uri, parent), cfg)
        return parent
    run_id = pipeline_run_id(uri, cfg.tracking.experiment, kfp_id, cfg.name)
    tracker = MlflowTracker(uri, run_id, kfp_id)
    exp_id = tracker.client.get_run(run_id).info.experiment_id
    dead = [r for r in search_all_runs(tracker.client, exp_id, f"tags.`kfp.run_id` = '{kfp_id}' and attributes.status = 'RUNNING'")
            if r.info.run_id != run_id]
    _close_dead(tracker.client, dead)
    _try_params(tracker, cfg)
    tracker.set_tags({"kfp.state": state})
    tracker.end("FINISHED" if state == "SUCCEEDED" else "FAILED")
    return run_id


# ---------------------------------------------------------------- helpers

@contextmanager
def _one_line_when_down(uri: str) -> Iterator[None]:
    """MLflow's error for a server that stopped answering, raised as one line naming it (``server_down``)."""
    try:
        yield
    except Exception as e:
        down = server_down(e, uri)
        if down is None:
            raise
        raise down from None


def _try_params(tracker: MlflowTracker, cfg: Any) -> None:
    # The exit handler must close the run even if the params cannot be written.
    try:
        tracker.log_summary(config_params(cfg), {})
    except Exception as e:
        log.warning("could not log the config to the pipeline run %s: %s", tracker.run_id, redact(str(e)))


def _plugin_uri(cfg: Any) -> str:
    # The plugin's run lives on the plugin's server: its URI wins over the config (module docstring).
    env_uri = (os.environ.get(PLUGIN_URI_ENV, "") or os.environ.get("MLFLOW_TRACKING_URI", "")).strip()
    if env_uri and cfg.tracking.uri and cfg.tracking.uri != env_uri:
        log.warning("KFP's MLflow plugin is on: tracking to its server %s, not to the configured %s",
                    redact(env_uri), redact(cfg.tracking.uri))
    return credentials_to_env(env_uri) if env_uri else resolve_tracking_uri(cfg.tracking.uri, cfg.run_dir)


def _open_plugin_run(uri: str, run_id: str, tags: dict[str, str]) -> MlflowTracker:
    from mlflow.exceptions import MlflowException

    check_reachable(uri)
    tracker = MlflowTracker(uri, run_id)
    try:
        tracker.client.get_run(run_id)
    except MlflowException as e:
        raise TrackingError(f"{PLUGIN_RUN_ENV}={run_id} (set by KFP's MLflow plugin) is not a run on "
                            f"{redact(uri)}: {e.message}") from e
    tracker.set_tags({**tags, "padirec.version": _version()})
    return tracker


def _open_step_run(uri: str, cfg: Any, kfp_id: str, step: str, tags: dict[str, str]) -> MlflowTracker:
    experiment = cfg.tracking.experiment
    parent = pipeline_run_id(uri, experiment, kfp_id, cfg.name, config_params(cfg))
    tracker = MlflowTracker(uri, parent)
    exp_id = tracker.client.get_run(parent).info.experiment_id
    # A retry: close the earlier attempt if it was killed before it could close its run.
    earlier = search_all_runs(tracker.client, exp_id, f"tags.`kfp.run_id` = '{kfp_id}' and tags.`padirec.step` = '{step}'")
    _close_dead(tracker.client, [r for r in earlier if r.info.status == "RUNNING"])
    return MlflowTracker.start(uri, experiment, step, parent_run_id=parent,
                               tags={**tags, "padirec.attempt": str(len(earlier) + 1)})


def _close_dead(client: Any, runs: list) -> None:
    for run in runs:
        log.warning("MLflow run %s (%s) was left RUNNING: marking it FAILED", run.info.run_id, run.info.run_name)
        client.set_tag(run.info.run_id, "padirec.failure", DEAD_RUN)
        client.set_terminated(run.info.run_id, status="FAILED")


def _mark_failed(tracker: MlflowTracker, error: BaseException, runner_died: bool = False) -> None:
    reason = ("SIGTERM: the local runner (padirec run) died" if runner_died and isinstance(error, StepTerminated)
              else "SIGTERM (pod deleted, evicted or timed out, or padirec run stopped)" if isinstance(error, StepTerminated)
              else "SIGINT (Ctrl-C)" if isinstance(error, KeyboardInterrupt)
              else f"{type(error).__name__}: {redact(str(error))}")
    try:
        tracker.set_tags({"padirec.failure": reason[:1000]})
        tracker.end("FAILED")
    except Exception as e:  # the step's own error is the one to report
        log.warning("could not mark MLflow run %s FAILED: %s", tracker.run_id, redact(str(e)))


def _quoted(value: str) -> str:
    if not _ID.fullmatch(value):
        raise TrackingError(f"{value!r} cannot be used as a step name or run id ({_ID_RULE})")
    return value


class _Guard:
    def __init__(self, armed: bool) -> None:
        self.armed = armed
        self.pending = False
        self.fired: int | None = None  # the signal whose handler raised StepTerminated

    def arm(self) -> None:
        """From now on SIGTERM raises; one held meanwhile raises here."""
        self.armed = True
        if self.pending:
            self.pending = False
            self.armed = False
            self.fired = signal.SIGTERM
            raise StepTerminated(128 + signal.SIGTERM)

    def disarm(self) -> None:
        self.armed = False


@contextmanager
def _sigterm_raises(armed: bool = True) -> Iterator[_Guard]:
    """While armed, SIGTERM raises ``StepTerminated``; once disarmed (the run is being closed) it
    is held and delivered again after the previous handler is back. Main thread only: Python runs
    signal handlers there and refuses to install them anywhere else."""
    guard = _Guard(armed)
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return

    def handler(signum: int, frame: Any) -> None:
        if guard.armed:
            guard.armed = False
            guard.fired = signum
            raise StepTerminated(128 + signum)
        guard.pending = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield guard
    finally:
        # None: a handler not installed from Python; the default is the closest we can restore.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        if guard.pending:
            signal.raise_signal(signal.SIGTERM)
