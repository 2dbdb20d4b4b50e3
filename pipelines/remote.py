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


# KFP's recurring runs replace this macro in a run's parameters with the run's scheduled time in
# UTC, formatted by the Go layout after the dot (here YYYYMMDD: the snapshot of that day). KFP 2.x
# fills it in runs of a recurring run only (backend/src/common/util/parameter_formatter.go).
SCHEDULED_TIME = "[[ScheduledTime.20060102]]"


def run_arguments(cfg: Config, data_version: str, scheduled: bool = False) -> dict[str, Any]:
    """The pipeline parameters for ``cfg`` (``scheduled``: of a recurring run, whose snapshot KFP
    fills in each run from ``SCHEDULED_TIME``). On a cluster, tracking goes to a server: the config's
    ``tracking.uri`` if set, else ``MLFLOW_TRACKING_URI`` from the ``padirec-env`` ConfigMap."""
    if cfg.tracking.uri.startswith("sqlite") or cfg.tracking.uri == "none":
        raise PadirecError(f"on a cluster the MLflow tracking URI must be a server, not {cfg.tracking.uri!r}: leave "
                           "tracking.uri empty (the padirec-env ConfigMap sets MLFLOW_TRACKING_URI) or give one "
                           "with --tracking-uri")
    # Pods have no shared run folder: KFP's own cache replaces padirec's local one.
    cfg = dataclasses.replace(cfg, cache=False)
    # the parameters travel in the request body and every step logs them: credentials go in Secrets
    refuse_credentials({"config_json": cfg.to_dict(), "data_version": data_version})
    if not scheduled:  # a run now: its snapshot must be known
        cfg.data.for_snapshot(data_version)
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
        "params": run_arguments(cfg, SCHEDULED_TIME, scheduled=True),  # each scheduled run reads its own data snapshot
        "max_concurrency": max_concurrency,
        "no_catchup": True,
        "enabled": True,
    }


# Where a pod finds its service account's token: the default token when padirec runs in a cluster.
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def read_token(token_file: str | None) -> str | None:
    """The bearer token for the KFP API: from ``token_file``, else the pod's service-account token
    where it exists, else None (no Authorization header). Never logged."""
    path = Path(token_file) if token_file else SERVICE_ACCOUNT_TOKEN
    if not token_file and not path.is_file():
        return None
    try:
        token = path.read_text().strip()
    except OSError as e:
        raise PadirecError(f"--token-file {path}: cannot read it ({e.strerror})") from None
    if not token:
        raise PadirecError(f"--token-file {path}: the file is empty")
    return token


def plugins_input(cfg: Config) -> dict[str, Any]:
    """The run's input to KFP's MLflow plugin (KFP >= 2.17, ``plugins_input.mlflow``): the config's
    experiment, so that the plugin's parent run lands where padirec's step runs go. Ignored by a
    KFP whose plugin is off."""
    return {"mlflow": {"experiment_name": cfg.tracking.experiment}}


def _client(host: str, namespace: str | None = None, token: str | None = None, plugins: dict | None = None):
    import kfp

    with warnings.catch_warnings():  # kfp warns on every client that it needs KFP >= 2.0.0-beta.2: noise
        warnings.simplefilter("ignore", FutureWarning)
        # kfp's own options: the namespace goes into each experiment, the token into an
        # "Authorization: Bearer" header. kfp's default namespace "kubeflow" stands for "none given".
        client = kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)
    if plugins:
        _send_plugins_input(client, plugins)
    return client


def _send_plugins_input(client, plugins: dict) -> None:
    """kfp 2.17's Client builds the run and recurring-run bodies without ``plugins_input``, which
    the API's models (kfp_server_api) carry: add it to the body the client built, just before it is sent."""
    for api, create, body in ((client._run_api, "run_service_create_run", "run"),
                              (client._recurring_run_api, "recurring_run_service_create_recurring_run", "recurring_run")):
        send = getattr(api, create)

        def with_plugins(*args, _send=send, _body=body, **kwargs):
            kwargs[_body].plugins_input = plugins
            return _send(*args, **kwargs)
        setattr(api, create, with_plugins)


def submit(cfg: Config, host: str, package: str | Path, experiment: str = "padirec", data_version: str = "",
           namespace: str | None = None, token: str | None = None) -> str:
    """Create one run from a compiled package; returns the run id. ``data_version`` is the snapshot
    (default: the config's ``data.snapshot``), never the clock: the same snapshot submitted again
    hits KFP's cache on every cached step. ``namespace``: the profile namespace of a multi-user Kubeflow."""
    now = dt.datetime.now(dt.UTC)
    name = f"{cfg.name}-{now:%Y%m%d-%H%M%S}"
    arguments = run_arguments(cfg, data_version or cfg.data.snapshot)
    result = _client(host, namespace, token, plugins_input(cfg)).create_run_from_pipeline_package(
        str(package), arguments=arguments, run_name=name, experiment_name=experiment, namespace=namespace)
    return result.run_id


def schedule(cfg: Config, host: str, cron: str, package: str | Path, experiment: str = "padirec",
             namespace: str | None = None, token: str | None = None) -> str:
    """Create a recurring run (in ``namespace``'s experiment); returns its id."""
    request = recurring_run_request(cfg, cron, package, experiment=experiment)
    client = _client(host, namespace, token, plugins_input(cfg))
    exp = client.create_experiment(request.pop("experiment_name"), namespace=namespace)
    result = client.create_recurring_run(experiment_id=exp.experiment_id, **request)
    return result.recurring_run_id


def with_tracking(cfg: Config, uri: str | None) -> Config:
    return dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, uri=uri)) if uri else cfg
