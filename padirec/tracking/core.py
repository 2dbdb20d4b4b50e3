"""Trackers and the MLflow client wrapper (re-exported by ``padirec.tracking``).

``NullTracker`` does nothing (unit tests, library use); ``MlflowTracker`` logs to one run on a
tracking server or a local SQLite store.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

from padirec.core.tracker import NullTracker, Tracker, flatten  # noqa: F401 (re-exported by padirec.tracking)
from padirec.errors import PadirecError

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


SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "MLFLOW_TRACKING_PASSWORD",
              "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME")
# scheme://userinfo@ : the userinfo runs to the last "@" before the path (a password may hold "@").
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#]*@")


def split_userinfo(uri: str) -> tuple[str, str | None, str | None]:
    """``(uri without userinfo, user, password)`` of ``scheme://user:password@host/...``
    (percent-decoded); ``(uri, None, None)`` when the URI has no userinfo."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.scheme or "@" not in parts.netloc:
        return uri, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    return clean, urllib.parse.unquote(user) or None, urllib.parse.unquote(password) if sep else None


def secret_values() -> list[str]:
    """The credentials of this process: every secret variable that is set, and the userinfo of
    ``MLFLOW_TRACKING_URI`` (raw and decoded). Values under 4 characters are left out: replacing
    them would garble every log line."""
    values = [os.environ.get(name, "") for name in SECRET_ENV]
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    _, user, password = split_userinfo(uri)
    values += [user or "", password or ""]
    netloc = urllib.parse.urlsplit(uri).netloc
    values += netloc.rpartition("@")[0].split(":", 1) if "@" in netloc else []
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def has_userinfo(text: str) -> bool:
    """Whether ``text`` holds a URL with userinfo (``scheme://user:password@host``)."""
    return bool(_USERINFO.search(str(text)))


def redact(text: str) -> str:
    """Remove credentials from a string before it is logged anywhere: the userinfo of every URL
    (``scheme://***@host``), and the value of every credential of this process (``secret_values``)."""
    text = _USERINFO.sub(r"\1***@", str(text))
    for value in secret_values():
        text = text.replace(value, "***")
    return text


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


class MlflowTracker:
    """Logs to one MLflow run through ``MlflowClient`` (explicit run ids, no global state, so
    pipeline steps in separate processes can each open their own nested run)."""

    def __init__(self, uri: str, run_id: str, kfp_run_id: str | None = None) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.run_id = run_id
        # The pipeline run this step belongs to: registration tags versions with it so that a
        # retried step finds the version its earlier attempt made (padirec.tracking.registry).
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

    def log_dataset(self, data_dir: Path, manifest: dict[str, Any]) -> None:
        """Record the prepared training table as the run's input dataset (``mlflow.log_input``)."""
        import mlflow
        import pandas as pd

        train = pd.read_parquet(Path(data_dir) / "train.parquet")
        dataset = mlflow.data.from_pandas(
            train, source=str(Path(data_dir).resolve()), name=manifest["config"].get("source", "data"),
            digest=manifest.get("data_checksum", "")[:32] or None,
        )
        # Through the client, not ``with mlflow.start_run(run_id)``: leaving that block ends the run,
        # and this run is the step's (or KFP's plugin's), ended only when the step ends.
        from mlflow.entities import DatasetInput, InputTag

        self.client.log_inputs(self.run_id, datasets=[DatasetInput(
            dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "train")])])


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
