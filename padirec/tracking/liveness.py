"""Local runs that die: steps stop with their runner, and the next run closes what was left open.

``padirec run`` (``pipelines.run_local``) sets ``PADIREC_LOCAL_RUNNER`` to a token naming its own
process (host, pid, start time: a reused pid is not mistaken for it). Every step it starts inherits
the token, and:

- the step's ``runner_watchdog`` checks once a second that the runner lives; when the runner is
  gone (SIGKILL, OOM: it could not stop its steps) the step sends itself SIGTERM, so it stops and
  its MLflow run ends FAILED instead of training on for nobody;
- the pipeline's parent run is tagged ``padirec.local_runner`` with the token, so the next local
  run (``close_abandoned_runs``) finds parent runs still RUNNING whose runner is dead, and closes
  them and every run of theirs still RUNNING as FAILED: their exit handler never ran.

A token of another host is never judged: that runner may well be alive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from padirec.tracking.core import DEAD_RUN, PIPELINE_ROLE, search_all_runs

log = logging.getLogger("padirec")

RUNNER_ENV = "PADIREC_LOCAL_RUNNER"
RUNNER_TAG = "padirec.local_runner"
RUNNER_DIED = "padirec run (the local runner) died before its exit handler ran"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), "" where
    there is no /proc, None when the process does not exist or is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
    return None if fields[0] in ("Z", "X") else fields[19]


def process_token(pid: int | None = None) -> str:
    """``host:pid:start time`` of a process (this one by default)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or ''}"


def is_alive(token: str) -> bool:
    """Whether the process named by ``token`` still runs; True for another host's (unknowable)."""
    host, pid, started = token.rsplit(":", 2) if token.count(":") >= 2 else (token, "", "")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    now = _start_time(int(pid))
    if now is None:
        return False
    if now == "" and not Path("/proc").is_dir():  # no /proc: only whether the pid exists
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return not started or now == started


class Watchdog:
    runner_died = False


@contextlib.contextmanager
def runner_watchdog(interval: float = 1.0) -> Iterator[Watchdog]:
    """While a step runs under a local runner (``PADIREC_LOCAL_RUNNER``), SIGTERM this process
    once the runner is gone. Yields a ``Watchdog`` whose ``runner_died`` says whether it fired."""
    dog = Watchdog()
    token = os.environ.get(RUNNER_ENV, "")
    if not token:
        yield dog
        return
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(interval):
            if not is_alive(token):
                dog.runner_died = True
                log.warning("the local runner (%s) is gone: stopping this step", token)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="padirec-runner-watchdog", daemon=True)
    thread.start()
    try:
        yield dog
    finally:
        stop.set()


def runner_tags() -> dict[str, str]:
    """The tag that marks a pipeline's parent run with its local runner (none outside one)."""
    token = os.environ.get(RUNNER_ENV, "")
    return {RUNNER_TAG: token} if token else {}


def running_parents(client: Any, exp: Any) -> list:
    """The pipeline runs (parents) of the experiment ``exp`` still RUNNING; none when ``exp`` is None."""
    if exp is None:
        return []
    return search_all_runs(client, exp.experiment_id,
                           f"tags.`padirec.role` = '{PIPELINE_ROLE}' and attributes.status = 'RUNNING'")


def close_abandoned_runs(uri: str, experiment: str) -> list[str]:
    """Close the pipeline runs of local runners that died (see the module docstring); returns the
    KFP run ids closed."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    closed = []
    for parent in running_parents(client, exp):
        token = parent.data.tags.get(RUNNER_TAG, "")
        kfp_id = parent.data.tags.get("kfp.run_id", "")
        if not token or is_alive(token) or "'" in kfp_id:
            continue
        for run in search_all_runs(client, exp.experiment_id, f"tags.`kfp.run_id` = '{kfp_id}' and attributes.status = 'RUNNING'"):
            failure = RUNNER_DIED if run.info.run_id == parent.info.run_id else DEAD_RUN
            client.set_tag(run.info.run_id, "padirec.failure", failure)
            if run.info.run_id == parent.info.run_id:
                client.set_tag(run.info.run_id, "kfp.state", "FAILED")
            client.set_terminated(run.info.run_id, status="FAILED")
        log.warning("pipeline run %s was left RUNNING by a local runner that died: closed its MLflow runs as FAILED",
                    kfp_id)
        closed.append(kfp_id)
    return closed
