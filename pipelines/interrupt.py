"""Stopping a local run: SIGINT or SIGTERM to ``padirec run`` stops its step processes too.

KFP's ``SubprocessRunner`` starts each step as a child process (``sh -c ... python -m
kfp.dsl.executor_main``) in the runner's process group; killing the runner alone used to orphan
them, and they went on writing. ``stop_steps_on_signal`` installs handlers for SIGINT and SIGTERM
that

1. send SIGTERM to every step process of this run (found by the ``PADIREC_LOCAL_RUNNER`` token in
   their environment, so nothing else the caller started is touched), and keep doing so for any
   step KFP starts while the run unwinds; a step turns SIGTERM into ``StepTerminated`` and ends its
   MLflow run FAILED;
2. raise ``Interrupted`` in the main thread, which stops KFP's orchestration (no retry, no next step);
3. on the way out, wait for the steps to end (SIGKILL after ``grace`` seconds), then close the
   pipeline's MLflow runs as the exit handler would (``finish_pipeline_run(cfg, "FAILED")``).

A second signal while stopping sends SIGKILL at once. SIGKILL to the runner cannot be caught: then
each step stops on its own (``padirec.tracking.liveness.runner_watchdog``) and the next local run
closes the MLflow runs left open (``close_abandoned_runs``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from padirec.tracking.liveness import RUNNER_ENV

log = logging.getLogger("padirec")


class Interrupted(SystemExit):
    """``padirec run`` got SIGINT or SIGTERM; exits with 128 + the signal number, as a process
    killed by it would."""


def step_processes(token: str) -> list[int]:
    """The pids of the processes whose environment holds ``PADIREC_LOCAL_RUNNER=token`` (the steps
    of one local run, and anything they started), this process excluded."""
    marker = f"{RUNNER_ENV}={token}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                stat = (entry / "stat").read_text()
                if stat[stat.rindex(")") + 2] not in "ZX":  # a zombie has ended already
                    found.append(pid)
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
    return found


class _Stopper:
    """Terminates the steps of ``token`` from a background thread until told to stop."""

    def __init__(self, token: str, grace: float) -> None:
        self.token, self.grace = token, grace
        self.signalled: set[int] = set()
        self.kill_now = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="padirec-step-stopper", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.grace
        while not self.done.is_set():
            kill = self.kill_now.is_set() or time.monotonic() > deadline
            for pid in step_processes(self.token):
                if kill or pid not in self.signalled:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
                    self.signalled.add(pid)
            self.done.wait(0.2)

    def wait_for_steps(self) -> int:
        """Wait until no step process is left (the stopper escalates to SIGKILL); returns how
        many were signalled."""
        while step_processes(self.token):
            time.sleep(0.2)
        self.done.set()
        self.thread.join(timeout=5)
        return len(self.signalled)


@contextlib.contextmanager
def stop_steps_on_signal(cfg: Any, token: str, grace: float = 20.0) -> Iterator[None]:
    """See the module docstring. ``cfg`` is the run's config (for closing its MLflow runs); only
    the main thread can install signal handlers, elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopper: list[_Stopper] = []

    def handler(signum: int, frame: Any) -> None:
        if stopper:  # a second signal: no more patience
            stopper[0].kill_now.set()
            return
        log.warning("%s: stopping the step processes of this run", signal.Signals(signum).name)
        stopper.append(_Stopper(token, grace))
        stopper[0].thread.start()
        raise Interrupted(128 + signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if stopper:
            count = stopper[0].wait_for_steps()
            log.error("interrupted: %d step process(es) stopped; %s", count, _close_runs(cfg))
        for s, h in previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)


def _close_runs(cfg: Any) -> str:
    """Close the pipeline's MLflow runs as the exit handler would; returns what state they are in.
    FAILED only when they were closed: a server that is down leaves them RUNNING."""
    from padirec.tracking import finish_pipeline_run, redact

    if cfg.tracking.uri == "none":
        return "tracking is off (no MLflow runs)"
    try:
        finish_pipeline_run(cfg, "FAILED")
    except Exception as e:  # the interruption is what the caller must see
        return (f"their MLflow runs could not be closed and are still RUNNING ({redact(str(e))}); the next "
                "local run closes them").replace("\n", " ")
    return "their MLflow runs are FAILED"
