"""Trackers and the MLflow client wrapper (re-exported by ``padirec.tracking``).

``NullTracker`` does nothing (unit tests, library use); ``MlflowTracker`` logs to one run on a
tracking server or a local SQLite store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from padirec.errors import PadirecError


class Tracker(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None: ...
    def log_artifacts(self, path: str | os.PathLike, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, Any]) -> None: ...


class NullTracker:
    """A tracker that records nothing."""

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        pass

    def log_artifacts(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, Any]) -> None:
        pass


SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "MLFLOW_TRACKING_PASSWORD",
              "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME")


def redact(text: str) -> str:
    """Remove credentials from a string before it is logged anywhere: the user:password part of
    URLs, and the value of every secret environment variable that is set."""
    import re

    text = re.sub(r"(\w+://)[^/@\s:]+:[^/@\s]+@", r"\1***@", str(text))
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b": v}`` (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def local_tracking_uri(run_dir: str | os.PathLike) -> str:
    """The default tracking store: a SQLite database under the run folder (no server needed)."""
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


# ---------------------------------------------------------------- MLflow

class TrackingError(PadirecError):
    """The tracking server cannot be used (the message names the URI)."""


def resolve_tracking_uri(configured: str, run_dir: str | os.PathLike) -> str:
    """Config value, else ``MLFLOW_TRACKING_URI``, else SQLite under the run folder."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(run_dir)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, naming the URI, when an HTTP tracking server does not answer ``/health``."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            if r.status != 200:
                raise TrackingError(f"MLflow tracking server at {redact(uri)} answered /health with {r.status}")
    except (urllib.error.URLError, OSError) as e:
        raise TrackingError(f"MLflow tracking server at {redact(uri)} is not reachable: {getattr(e, 'reason', e)}") from e


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
        all_tags = {"padirec.version": _version(), **(tags or {})}
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
