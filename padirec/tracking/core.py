"""Trackers and the MLflow client wrapper (re-exported by ``padirec.tracking``).

``NullTracker`` does nothing (unit tests, library use); ``MlflowTracker`` logs to one run on a
tracking server or a local SQLite store: params, metrics, artifacts, tables (``log_table``), the
prepared data as an MLflow dataset (``prepared_dataset``, the same entity on every step that uses
it) and the pipeline's parent run (``log_to_parent``). ``system_metrics`` samples CPU, memory and
GPU into a run while a step works.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from padirec.core.secrets import (  # noqa: F401 (re-exported by padirec.tracking)
    SECRET_ENV,
    redact,
    split_userinfo,
)
from padirec.core.tracker import NullTracker, Tracker, flatten  # noqa: F401 (re-exported by padirec.tracking)
from padirec.errors import PadirecError

log = logging.getLogger("padirec")
PIPELINE_ROLE = "pipeline"  # the padirec.role tag of a pipeline's parent run
DEAD_RUN = "step ended without closing its run (killed?)"


def search_all_runs(client: Any, exp_id: str, filter_string: str) -> list:
    """Every run of an experiment matching ``filter_string``, page after page."""
    runs, token = [], None
    while True:
        page = client.search_runs([exp_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def local_tracking_uri(run_dir: str | os.PathLike) -> str:
    """The default tracking store: a SQLite database under the run folder (no server needed)."""
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


# ---------------------------------------------------------------- MLflow

class TrackingError(PadirecError):
    """The tracking server cannot be used (the message names the URI)."""


def resolve_tracking_uri(configured: str, run_dir: str | os.PathLike) -> str:
    """Config value, else ``MLFLOW_TRACKING_URI``, else SQLite under the run folder. The userinfo
    of an HTTP URI moves to ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (``credentials_to_env``)."""
    return credentials_to_env(configured or os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(run_dir))


def credentials_to_env(uri: str) -> str:
    """``http(s)://user:password@host/`` -> ``http(s)://host/``, with ``MLFLOW_TRACKING_USERNAME``
    and ``MLFLOW_TRACKING_PASSWORD`` set in this process's environment (MLflow's client reads them,
    and steps started from here inherit them), so the credentials never travel in the URI: not in
    the config, a log line or a link MLflow prints. Other schemes (a database URI, whose driver
    needs them) are returned as they are. Different credentials already in the environment are
    an error (which one is meant?)."""
    clean, user, password = split_userinfo(uri)
    if clean == uri or not uri.startswith(("http://", "https://")):
        return uri
    for name, value in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)):
        if value is None:
            continue
        if os.environ.get(name) not in (None, "", value):
            raise TrackingError(f"the tracking URI {redact(uri)} carries credentials and {name} is set to "
                                "another value: give them once, in MLFLOW_TRACKING_USERNAME/PASSWORD")
        os.environ[name] = value
    return clean


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, naming the URI (redacted), when an HTTP tracking server does not answer
    ``/health``. The userinfo of the URI, or ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, goes in an
    Authorization header, never in the host name."""
    if not uri.startswith(("http://", "https://")):
        return
    import base64
    import urllib.error
    import urllib.request

    clean, user, password = split_userinfo(uri)
    user = user or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = password if password is not None else os.environ.get("MLFLOW_TRACKING_PASSWORD")
    request = urllib.request.Request(clean.rstrip("/") + "/health")
    if user:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise TrackingError(f"MLflow tracking server at {redact(clean)} is not reachable: "
                            f"{redact(getattr(e, 'reason', e))}") from e
    if status != 200:
        raise TrackingError(f"MLflow tracking server at {redact(clean)} answered /health with {status}")


# The variables MLflow's HTTP client reads at every call (mlflow.environment_variables), by setting
HTTP_ENV = {"http_max_retries": "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
            "http_backoff_factor": "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
            "http_timeout_s": "MLFLOW_HTTP_REQUEST_TIMEOUT"}
# What MLflow's message holds when no server answered (refused, reset, or every attempt timed out)
_NO_ANSWER = ("Max retries exceeded", "with timeout exception", "Connection aborted", "RemoteDisconnected",
              "Connection refused", "Read timed out")
_CAUSE = re.compile(r"\[Errno -?\d+\] ([^\"')]+)|(Read timed out|Connection aborted|RemoteDisconnected|"
                    r"too many \d+ error responses)")


def apply_http_settings(tracking: Any) -> None:
    """Bound MLflow's HTTP calls by the config (``tracking.http_*``): set ``HTTP_ENV`` in this
    process, which processes started from here inherit. The config wins over the environment: it is
    what a pipeline run carries to every pod."""
    for key, name in HTTP_ENV.items():
        os.environ[name] = str(getattr(tracking, key))


def call_bound_s(tracking: Any) -> float:
    """The longest one MLflow call can take when the server is down or hung: every attempt times out,
    with urllib3's backoff between them (none before the first retry, then factor x 2^(k-1), at most
    120 s, plus up to 1 s of MLflow's jitter)."""
    n, factor = tracking.http_max_retries, tracking.http_backoff_factor
    return (n + 1) * tracking.http_timeout_s + sum(min(120.0, factor * 2 ** (k - 1)) + 1 for k in range(2, n + 1))


def server_down(error: BaseException, uri: str) -> TrackingError | None:
    """``error`` (or one it was raised from) as one line naming the server (redacted) and the cause,
    when it is MLflow's client giving up on a server that did not answer; None for any other error."""
    seen: BaseException | None = error
    for _ in range(10):  # the chain a stage may have wrapped it in
        if seen is None:
            return None
        text = str(seen)
        if text.startswith("API request to ") and any(m in text for m in _NO_ANSWER):
            m = _CAUSE.search(text)
            cause = (m.group(1) or m.group(2)).strip() if m else "no answer"
            return TrackingError(
                f"MLflow tracking server at {redact(split_userinfo(uri)[0])} stopped answering ({cause}) after "
                f"{os.environ.get(HTTP_ENV['http_max_retries'], '?')} retries of "
                f"{os.environ.get(HTTP_ENV['http_timeout_s'], '?')} s (tracking.http_max_retries, tracking.http_timeout_s)")
        seen = seen.__cause__ or seen.__context__
    return None


class MlflowTracker:
    """Logs to one MLflow run through ``MlflowClient`` (explicit run ids, no global state, so
    pipeline steps in separate processes can each open their own nested run)."""

    def __init__(self, uri: str, run_id: str, kfp_run_id: str | None = None) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.run_id = run_id
        # The pipeline run this step belongs to: registration tags versions with it so that a
        # retried step finds the version its earlier attempt made (padirec.tracking.model_registry).
        self.kfp_run_id = kfp_run_id
        self.client = MlflowClient(tracking_uri=uri)

    @classmethod
    def start(
        cls,
        uri: str,
        experiment: str,
        run_name: str,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        artifact_location: str | None = None,
    ) -> MlflowTracker:
        from mlflow import MlflowClient

        check_reachable(uri)
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            if artifact_location is None and uri.startswith("sqlite:///"):
                # Keep artifacts beside the local database, not in the current directory.
                artifact_location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
            try:
                exp_id = client.create_experiment(experiment, artifact_location=artifact_location)
            except Exception:  # created concurrently by another step
                exp_id = client.get_experiment_by_name(experiment).experiment_id
        else:
            exp_id = exp.experiment_id
        all_tags = {"padirec.version": _version(), "mlflow.user": safe_user(), **(tags or {})}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(exp_id, run_name=run_name, tags={k: str(v) for k, v in all_tags.items()})
        return cls(uri, run.info.run_id)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, redact(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_metric_key(k), float(v), now, step or 0) for k, v in flatten(metrics).items()
                 if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        # Batched (100 a call, MLflow's limit): a step's identifying tags land together.
        items = [RunTag(k, redact(v)) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, tags=items[i:i + 100])

    def log_dataset(self, data_dir: Path, manifest: dict[str, Any] | None = None, context: str = "prepared") -> None:
        """Record the prepared data (``prepared_dataset``) as an input of this run (``mlflow.log_input``):
        ``prepared`` on the data step that made it, ``training``/``evaluation`` on the steps that use it.
        Through the client, not ``with mlflow.start_run(run_id)``: leaving that block ends the run,
        and this run is the step's (or KFP's plugin's), ended only when the step ends."""
        self.log_input(prepared_dataset(data_dir, manifest), context)

    def log_input(self, dataset: Any, context: str) -> None:
        """Log an ``mlflow.entities.Dataset`` as an input of this run with ``mlflow.data.context``."""
        from mlflow.entities import DatasetInput, InputTag

        self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])])

    def log_pipeline_dataset(self, context: str) -> Any:
        """Log as this run's input the prepared dataset that an earlier step of the same pipeline run
        (tag ``kfp.run_id``) logged: for a step that gets no data folder. Returns it (None when no
        step of this pipeline run logged one, e.g. every earlier step was a KFP cache hit)."""
        run = self.client.get_run(self.run_id)
        kfp_id = run.data.tags.get("kfp.run_id", "").replace("'", "")
        if not kfp_id:
            return None
        for other in search_all_runs(self.client, run.info.experiment_id, f"tags.`kfp.run_id` = '{kfp_id}'"):
            for given in other.inputs.dataset_inputs if other.inputs else []:
                if other.info.run_id != self.run_id:
                    self.log_input(given.dataset, context)
                    return given.dataset
        log.info("run %s: no step of pipeline run %s logged a dataset", self.run_id, kfp_id)
        return None

    def log_table(self, data: Any, artifact_file: str) -> None:
        """A table (``{column: [values]}``, rows as a list of dicts, or a DataFrame) as a JSON artifact
        that the MLflow UI shows as a table (``mlflow.log_table``): per-task results, one row each."""
        import pandas as pd

        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        self.client.log_table(self.run_id, data=frame, artifact_file=artifact_file)

    def parent_run_id(self) -> str | None:
        """The pipeline's parent run of this step's run (padirec's own or KFP's plugin's)."""
        return self.client.get_run(self.run_id).data.tags.get("mlflow.parentRunId")

    def log_to_parent(self, params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None) -> str | None:
        """Params (only those the parent lacks: a param never changes) and metrics on the pipeline's
        parent run, so that pipeline runs compare in the UI. Returns the parent's id (None without one)."""
        parent = self.parent_run_id()
        if parent is None:
            return None
        MlflowTracker(self.uri, parent).log_summary(params or {}, metrics or {})
        return parent

    def log_summary(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """Params this run lacks (flattened, redacted by ``log_params``) and metrics (at step 0)."""
        have = self.client.get_run(self.run_id).data.params
        missing = {k: v for k, v in flatten(params).items() if k not in have}
        if missing:
            self.log_params(missing)
        if metrics:
            self.log_metrics(metrics)


# ---------------------------------------------------------------- datasets

def dataset_reference(data_dir: str | os.PathLike, manifest: dict[str, Any] | None = None) -> dict[str, str]:
    """What names the prepared data wherever it is used: ``name`` (the source), ``digest`` (the data
    checksum, as MLflow keeps it: 32 characters), ``source`` (where the data came from: the
    configured URI or path, the wheel of MovieLens-100K, the synthetic generator and its settings;
    never the folder a pod wrote it to), ``source_type``. Read from the folder's manifest."""
    import json

    if manifest is None:
        manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    cfg = manifest.get("config") or {}
    source = cfg.get("source", "data")
    if source == "tables":
        uri = cfg.get("interactions", "")
        name = f"tables:{Path(urllib.parse.urlsplit(uri).path).stem or 'interactions'}"
    elif source == "synthetic":
        uri = "padirec.data.synthetic.generate?" + urllib.parse.urlencode(sorted((cfg.get("synthetic") or {}).items()))
        name = source
    elif source == "ml-100k" and not cfg.get("path"):
        uri, name = "pypi:recbole==1.2.1/recbole/dataset_example/ml-100k", source
    else:
        uri, name = cfg.get("path", ""), source
    uri = redact(uri)
    scheme = urllib.parse.urlsplit(uri).scheme
    source_type = ("s3" if scheme == "s3" else "http" if scheme in ("http", "https") else "code"
                   if source == "synthetic" or scheme == "pypi" else "local")
    return {"name": name, "digest": (manifest.get("data_checksum") or "")[:32], "source": uri,
            "source_type": source_type}


def prepared_dataset(data_dir: str | os.PathLike, manifest: dict[str, Any] | None = None) -> Any:
    """The prepared data as an ``mlflow.entities.Dataset``: ``dataset_reference``, the schema of
    ``train.parquet`` and the manifest's statistics as its profile. The same entity on every step
    (MLflow keeps one dataset per name and digest in an experiment)."""
    import json

    import pyarrow.parquet as pq
    from mlflow.entities import Dataset
    from mlflow.types.schema import ColSpec, Schema

    if manifest is None:
        manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    ref = dataset_reference(data_dir, manifest)
    schema = ""
    train = Path(data_dir) / "train.parquet"
    if train.is_file():
        fields = pq.read_schema(train)
        schema = json.dumps({"mlflow_colspec": Schema([ColSpec(_mlflow_type(f.type), f.name) for f in fields]).to_dict()})
    stats = {k: v for k, v in (manifest.get("stats") or {}).items() if isinstance(v, int | float)}
    return Dataset(name=ref["name"], digest=ref["digest"] or "unknown", source_type=ref["source_type"],
                   source=json.dumps({"uri": ref["source"]}), schema=schema or None,
                   profile=json.dumps(stats) if stats else None)


def _mlflow_type(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "long"
    if pa.types.is_floating(arrow_type):
        return "double"
    if pa.types.is_timestamp(arrow_type):
        return "datetime"
    if pa.types.is_binary(arrow_type):
        return "binary"
    return "string"  # strings, and lists shown as their text


# ---------------------------------------------------------------- system metrics

SYSTEM_METRICS_INTERVAL_S = 10.0  # MLflow's default; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it


@contextmanager
def system_metrics(tracker: Any, interval_s: float = SYSTEM_METRICS_INTERVAL_S) -> Iterator[None]:
    """MLflow's system metrics (``system/cpu_utilization_percentage``, ``system/system_memory_usage_*``,
    disk, network; ``system/gpu_*`` where ``pynvml`` finds an NVIDIA GPU) sampled every
    ``interval_s`` seconds into ``tracker``'s run while the block runs. One last sample is logged
    when the block ends, so a step shorter than the interval has its figures too; the sampling
    thread stops with the block. Nothing at all without ``psutil`` or an ``MlflowTracker``, and a
    monitor that fails never fails the step."""
    monitor = None
    if isinstance(tracker, MlflowTracker):
        try:
            import psutil  # noqa: F401 (MLflow's CPU monitor needs it)
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop lines per step
            monitor = SystemMetricsMonitor(tracker.run_id, sampling_interval=interval_s, tracking_uri=tracker.uri)
            monitor.start()
        except Exception as e:  # psutil missing, or a monitor that cannot start
            log.info("system metrics off for run %s: %s", tracker.run_id, redact(str(e)))
            monitor = None
    try:
        yield
    finally:
        if monitor is not None:
            _stop(monitor, tracker.uri)


def _stop(monitor: Any, uri: str) -> None:
    try:
        monitor.finish()  # stops and joins the thread; samples since the last log are kept
        check_reachable(uri)  # a server that went down: no last sample, no wait on MLflow's retries
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    except Exception as e:
        log.warning("could not log the last system metrics: %s", redact(str(e)))


def safe_user() -> str:
    """Who ran it, for MLflow's ``mlflow.user`` tag: the OS user, never ``MLFLOW_TRACKING_USERNAME``
    (MLflow's own default, and a credential)."""
    import getpass

    try:
        user = getpass.getuser()
    except (ImportError, KeyError, OSError):
        user = "unknown"
    return redact(user)


def _metric_key(key: str) -> str:
    # MLflow metric names allow alphanumerics, _ - . / and space; "@" is not among them.
    return key.replace("@", "_at_")


def _version() -> str:
    from padirec import __version__

    return __version__


def load_served_model(model_uri: str):
    """The registered pyfunc model (``models:/padirec-recommender@champion``) as MLflow serves it."""
    import mlflow

    return mlflow.pyfunc.load_model(model_uri)
