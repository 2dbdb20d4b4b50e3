"""``padirec close-runs``: close the parent MLflow runs whose KFP run has ended without its exit
handler (``padirec.tracking.orphans``), asking the KFP API of each run's state. On a cluster the
CronJob of ``manifests/runs/close-runs-cronjob.yaml`` runs it; docs/cluster.md."""

from __future__ import annotations

import os
from collections.abc import Callable

from padirec.config import TrackingConfig
from padirec.errors import PadirecError
from padirec.tracking.core import apply_http_settings, check_reachable, credentials_to_env
from padirec.tracking.orphans import FINAL_STATES, GONE, Verdict, close_ended_runs
from pipelines.remote import _client


def kfp_state(client) -> Callable[[str], str | None]:
    """KFP's state of a run by id (``V2beta1RuntimeState``), None when KFP has no such run (404).
    Any other answer raises: a KFP that cannot say must not get runs closed."""
    from kfp_server_api import ApiException

    def state(run_id: str) -> str | None:
        try:
            run = client.get_run(run_id)
        except ApiException as e:
            if e.status == 404:
                return None
            raise PadirecError(f"KFP API: run {run_id}: {e.status} {e.reason}") from None
        return str(run.state or "RUNTIME_STATE_UNSPECIFIED")

    return state


def close_runs(host: str, experiment: str, tracking_uri: str | None = None, namespace: str | None = None,
               token: str | None = None, dry_run: bool = False) -> list[Verdict]:
    """``close_ended_runs`` on the MLflow server ``tracking_uri`` (default ``MLFLOW_TRACKING_URI``)
    with the KFP API at ``host``; MLflow's calls bounded as the steps' (``TrackingConfig``'s defaults)."""
    from mlflow import MlflowClient

    apply_http_settings(TrackingConfig())
    uri = credentials_to_env(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", ""))
    if not uri:
        raise PadirecError("close-runs needs the MLflow server: --tracking-uri or MLFLOW_TRACKING_URI")
    check_reachable(uri)
    return close_ended_runs(MlflowClient(uri), experiment, kfp_state(_client(host, namespace, token)), dry_run)


def describe(verdict: Verdict) -> str:
    """One line per parent run looked at."""
    if not verdict.closed:
        what = "would close" if verdict.kfp_state in FINAL_STATES | {GONE} else "left RUNNING"
        return f"{what}: {verdict.kfp_run_id} (KFP: {verdict.kfp_state}), MLflow run {verdict.mlflow_run_id}"
    return (f"closed as FAILED: {verdict.kfp_run_id} (KFP: {verdict.kfp_state}), MLflow run {verdict.mlflow_run_id} "
            f"and {verdict.step_runs} step run(s)")
