"""Follow a registry alias: serve the version it names, and swap to a new one when it moves.

``AliasFollower`` polls ``models:/NAME@ALIAS`` every ``poll_s`` seconds. When the alias names
another version, that version is downloaded and loaded in full (``mlflow.pyfunc.load_model``)
while the old one keeps serving; then one reference assignment swaps them. A request takes the
reference once, when it starts, so it finishes on the model it started with, and no request ever
sees a half-loaded model. A poll or load that fails (the tracking server down, the alias removed,
a broken version) is logged in one line and tried again at the next poll; the loaded model keeps
serving. ``models:/NAME/VERSION`` is served as is, never polled.
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from padirec.core.secrets import redact
from padirec.errors import ConfigError

log = logging.getLogger("padirec")
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class Served:
    """A loaded version: what one request uses from start to end."""

    name: str
    version: str
    model: Any  # mlflow.pyfunc.PyFuncModel
    input_schema: Any
    load_s: float

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``(name, alias, version)`` of ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""
    m = MODEL_URI.match(uri)
    if not m:
        raise ConfigError(f"model URI {uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    return m["name"], m["alias"], m["version"]


class AliasFollower:
    """Keeps ``current`` on the version that ``model_uri`` names (None until the first load)."""

    def __init__(self, model_uri: str, workdir: str | Path, poll_s: float = 15.0) -> None:
        if not poll_s > 0:
            raise ConfigError(f"poll interval {poll_s!r}: expected seconds > 0")
        self.name, self.alias, self.version = parse_model_uri(model_uri)
        self.model_uri = model_uri
        self.workdir = Path(workdir)
        self.poll_s = poll_s
        self.current: Served | None = None
        self.last_error: str | None = None
        self.last_poll: float | None = None  # time.time() of the last poll that reached the registry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ one poll

    def resolve(self) -> str:
        """The version the URI names now."""
        if self.version is not None:
            return self.version
        from mlflow import MlflowClient

        return str(MlflowClient().get_model_version_by_alias(self.name, self.alias).version)

    def load(self, version: str) -> Served:
        """Download and load ``version`` fully; nothing is served from it yet."""
        import mlflow

        started = time.monotonic()
        target = self.workdir / f"v{version}"
        shutil.rmtree(target, ignore_errors=True)  # a half-downloaded copy of an earlier attempt
        target.mkdir(parents=True)
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.name}/{version}", dst_path=str(target))
        path = list(sys.path)
        try:
            model = mlflow.pyfunc.load_model(local)
        finally:
            # MLflow prepends the model's code/ folder to sys.path; padirec is already imported from
            # the image (submodules follow the package's own path), and the folder is deleted
            # when the next version takes over, so it must not stay on the path.
            sys.path[:] = path
        return Served(self.name, version, model, model.metadata.get_input_schema(), time.monotonic() - started)

    def poll(self) -> bool:
        """Resolve the URI and swap to its version if it is not the one served; True if swapped."""
        version = self.resolve()
        self.last_poll = time.time()
        old = self.current
        if old is not None and old.version == version:
            return False
        served = self.load(version)
        self.current = served  # the swap: one reference assignment
        for stale in self.workdir.glob("v*"):  # the old model is in memory; its files are not read again
            if stale.name != f"v{version}":
                shutil.rmtree(stale, ignore_errors=True)
        log.info("serving %s (was %s), loaded in %.1f s", served.uri, old.uri if old else "nothing", served.load_s)
        return True

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
                self.last_error = None
            except Exception as e:  # the server keeps serving what it has; the next poll tries again
                self.last_error = redact(_one_line(e))
                log.warning("cannot update %s from %s: %s", "the model" if self.current is None else self.current.uri,
                            self.model_uri, self.last_error)
            if self.version is not None and self.current is not None:
                return  # a fixed version: nothing to follow
            self._stop.wait(self.poll_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="alias-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def alive(self) -> bool:
        """Whether the loop runs, or finished on purpose (a fixed version, loaded)."""
        return self._thread is not None and (self._thread.is_alive() or self.current is not None)


def _one_line(e: BaseException) -> str:
    text = str(getattr(e, "message", None) or e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]
