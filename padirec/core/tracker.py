"""What stages log to: the ``Tracker`` interface and ``NullTracker``.

Stages receive a tracker and never import mlflow; ``padirec.tracking`` implements it on MLflow
(``MlflowTracker``), on the top floor, so the stages below need only this interface.
"""

from __future__ import annotations

import os
from typing import Any, Protocol


class Tracker(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None: ...
    def log_artifacts(self, path: str | os.PathLike, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, Any]) -> None: ...
    def log_table(self, data: list[dict[str, Any]], artifact_file: str) -> None: ...


class NullTracker:
    """A tracker that records nothing (unit tests, library use, tracking off)."""

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

    def log_table(self, data: list[dict[str, Any]], artifact_file: str) -> None:
        pass


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b": v}`` (tracked params are flat)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
