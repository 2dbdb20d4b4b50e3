"""Parent runs on a cluster that no exit handler closed: ``padirec close-runs`` (a CronJob).

A pipeline's parent MLflow run is closed by its exit handler (``finish_pipeline_run``). When that
task never runs (the run deleted, the workflow controller lost it, the exit pod never scheduled),
the parent and any step run a killed pod left open stay RUNNING for ever. ``close_ended_runs``
asks KFP for the state of each such parent's ``kfp.run_id`` and closes those whose KFP run has
ended, or that KFP no longer knows, as FAILED: tag ``padirec.failure`` says why, ``kfp.state``
what KFP said. Runs whose KFP run still goes on are left alone, and so are local runs (tag
``padirec.local_runner``: ``liveness.close_abandoned_runs`` judges those by their runner's process).

The KFP lookup is a function (``kfp_state``), so this module needs no KFP client.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from padirec.tracking.core import search_all_runs
from padirec.tracking.liveness import RUNNER_TAG, running_parents

log = logging.getLogger("padirec")

# KFP v2's final run states (kfp_server_api V2beta1RuntimeState); the others go on or may resume
FINAL_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
LOCAL_PREFIX = "local-"  # the KFP run id of a local run (pipelines.run_local.new_run_folder)
GONE = "GONE"  # the kfp.state tag of a run that KFP no longer has (deleted)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One RUNNING parent run: its KFP run, what KFP says of it, and whether it was closed."""

    kfp_run_id: str
    mlflow_run_id: str
    kfp_state: str
    closed: bool
    step_runs: int = 0  # the step runs closed with it


def close_ended_runs(client: object, experiment: str, kfp_state: Callable[[str], str | None],
                     dry_run: bool = False) -> list[Verdict]:
    """Close (see the module docstring) the RUNNING parent runs of ``experiment`` whose KFP run has
    ended; ``client`` is an ``MlflowClient``, ``kfp_state(run_id)`` KFP's state of a run (None when
    KFP has no such run; an error when KFP cannot say, and then nothing more is closed).
    ``dry_run``: only say what would be closed. Returns a ``Verdict`` per parent looked at."""
    exp = client.get_experiment_by_name(experiment)
    verdicts = []
    for parent in running_parents(client, exp):
        kfp_id = parent.data.tags.get("kfp.run_id", "")
        if not kfp_id or RUNNER_TAG in parent.data.tags or kfp_id.startswith(LOCAL_PREFIX) or "'" in kfp_id:
            continue  # a local run (KFP never heard of it), or an id a filter cannot quote
        state = kfp_state(kfp_id)
        state = GONE if state is None else state
        if state not in FINAL_STATES and state != GONE:
            verdicts.append(Verdict(kfp_id, parent.info.run_id, state, closed=False))
            continue
        steps = [r for r in search_all_runs(client, exp.experiment_id,
                                            f"tags.`kfp.run_id` = '{kfp_id}' and attributes.status = 'RUNNING'")
                 if r.info.run_id != parent.info.run_id]
        if not dry_run:
            _close(client, parent.info.run_id, steps, state)
        verdicts.append(Verdict(kfp_id, parent.info.run_id, state, closed=not dry_run, step_runs=len(steps)))
    return verdicts


def failure_reason(state: str) -> str:
    """The ``padirec.failure`` tag of a parent closed because its KFP run is in ``state``."""
    if state == GONE:
        return "KFP has no such run any more (deleted?) and its exit handler never closed this run (padirec close-runs)"
    return f"the KFP run ended {state} and its exit handler never closed this run (padirec close-runs)"


def _close(client: object, parent_id: str, steps: list, state: str) -> None:
    # steps first: a parent closed last says every run under it is
    for run in steps:
        client.set_tag(run.info.run_id, "padirec.failure", f"its KFP run ended {state} with this step's run still open "
                       "(killed?) (padirec close-runs)")
        client.set_terminated(run.info.run_id, status="FAILED")
    client.set_tag(parent_id, "padirec.failure", failure_reason(state))
    client.set_tag(parent_id, "kfp.state", state)
    client.set_terminated(parent_id, status="FAILED")
    log.warning("closed MLflow run %s as FAILED (%d step run(s) with it): %s", parent_id, len(steps),
                failure_reason(state))
