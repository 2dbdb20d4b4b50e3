"""Launch on a Kubeflow Pipelines cluster: one run now (``submit``) or a recurring run (``schedule``)."""

import dataclasses
import datetime as dt
import warnings
from pathlib import Path
from typing import Any

from padirec.config import Config, config_to_json
from padirec.core.secrets import refuse_credentials
from padirec.errors import PadirecError


def validate_cron(expr: str) -> str:
    """KFP cron expressions have SIX fields, the first being seconds: ``0 0 3 * * *`` is 03:00
    every day. A standard five-field expression is refused with the six-field one it most
    likely means."""
    fields = expr.split()
    if len(fields) == 5:
        raise PadirecError(
            f"cron {expr!r} has 5 fields, but KFP cron has a leading seconds field "
            f"(seconds minutes hours day-of-month month day-of-week); did you mean '0 {expr}'?")
    if len(fields) != 6:
        raise PadirecError(f"cron {expr!r} must have 6 fields (seconds minutes hours day-of-month month day-of-week)")
    allowed = set("0123456789*/,-?LW#") | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for name, value in zip(("seconds", "minutes", "hours", "day-of-month", "month", "day-of-week"), fields, strict=True):
        if not set(value.upper()) <= allowed:
            raise PadirecError(f"cron {expr!r}: the {name} field {value!r} has characters cron does not allow")
    if not fields[0].isdigit():
        raise PadirecError(f"cron {expr!r}: the seconds field should be a number (e.g. 0); {fields[0]!r} runs the "
                           "pipeline several times a minute")
    return expr


# KFP's ScheduledWorkflow replaces this macro with each triggered run's scheduled time.
SCHEDULED_TIME = "[[ScheduledTime]]"


def run_arguments(cfg: Config, data_version: str) -> dict[str, Any]:
    """The pipeline parameters for ``cfg``. On a cluster, tracking goes to a server: the config's
    ``tracking.uri`` if set, else ``MLFLOW_TRACKING_URI`` from the ``padirec-env`` ConfigMap."""
    if cfg.tracking.uri.startswith("sqlite") or cfg.tracking.uri == "none":
        raise PadirecError(f"on a cluster the MLflow tracking URI must be a server, not {cfg.tracking.uri!r}: leave "
                           "tracking.uri empty (the padirec-env ConfigMap sets MLFLOW_TRACKING_URI) or give one "
                           "with --tracking-uri")
    # Pods have no shared run folder: KFP's own cache replaces padirec's local one.
    cfg = dataclasses.replace(cfg, cache=False)
    # the parameters travel in the request body and every step logs them: credentials go in Secrets
    refuse_credentials({"config_json": cfg.to_dict(), "data_version": data_version})
    return {"config_json": config_to_json(cfg), "data_version": data_version}


def recurring_run_request(cfg: Config, cron: str, package: str | Path, job_name: str | None = None,
                          experiment: str = "padirec", max_concurrency: int = 1) -> dict[str, Any]:
    """The keyword arguments of ``kfp.Client.create_recurring_run`` for a schedule."""
    return {
        "experiment_name": experiment,
        "job_name": job_name or f"{cfg.name}-retrain",
        "description": f"padirec retraining of {cfg.name} on cron {cron}",
        "cron_expression": validate_cron(cron),
        "pipeline_package_path": str(package),
        "params": run_arguments(cfg, SCHEDULED_TIME),  # each scheduled run reads its own data snapshot
        "max_concurrency": max_concurrency,
        "no_catchup": True,
        "enabled": True,
    }


def _client(host: str):
    import kfp

    with warnings.catch_warnings():  # kfp warns on every client that it needs KFP >= 2.0.0-beta.2: noise
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=host)


def submit(cfg: Config, host: str, package: str | Path, experiment: str = "padirec", data_version: str = "") -> str:
    """Create one run from a compiled package; returns the run id. Without ``data_version`` the
    submission time is the version, so the data is read afresh; pass the same version again to
    reuse KFP's cached steps."""
    now = dt.datetime.now(dt.UTC)
    name = f"{cfg.name}-{now:%Y%m%d-%H%M%S}"
    result = _client(host).create_run_from_pipeline_package(
        str(package), arguments=run_arguments(cfg, data_version or f"{now:%Y%m%d%H%M%S}"), run_name=name,
        experiment_name=experiment)
    return result.run_id


def schedule(cfg: Config, host: str, cron: str, package: str | Path, experiment: str = "padirec") -> str:
    """Create a recurring run; returns its id."""
    request = recurring_run_request(cfg, cron, package, experiment=experiment)
    client = _client(host)
    exp = client.create_experiment(request.pop("experiment_name"))
    result = client.create_recurring_run(experiment_id=exp.experiment_id, **request)
    return result.recurring_run_id


def with_tracking(cfg: Config, uri: str | None) -> Config:
    return dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, uri=uri)) if uri else cfg
