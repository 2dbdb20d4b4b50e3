"""Everything that talks to MLflow. Stages receive a ``Tracker``; they never import mlflow.

``NullTracker`` does nothing (unit tests, library use); ``MlflowTracker`` logs to a tracking
server or a local SQLite store (``core``). Pipeline steps open their run with ``step_tracker``
and the exit handler calls ``finish_pipeline_run`` (``pipeline``: the KFP run id from
``PADIREC_KFP_RUN_ID``, KFP's MLflow plugin, steps that die). The model registry is
``model_registry``; the quality gate, ``champion`` and the last step are ``promotion``.
"""

from padirec.tracking.core import (
    SECRET_ENV,
    MlflowTracker,
    NullTracker,
    Tracker,
    TrackingError,
    check_reachable,
    flatten,
    load_served_model,
    local_tracking_uri,
    redact,
    resolve_tracking_uri,
)
from padirec.tracking.pipeline import (
    DEAD_RUN,
    KFP_RUN_ID_ENV,
    PIPELINE_ROLE,
    PLUGIN_RUN_ENV,
    StepTerminated,
    finish_pipeline_run,
    kfp_run_id,
    package_path,
    pipeline_run_id,
    plugin_run_id,
    step_tracker,
)

__all__ = [
    "DEAD_RUN", "KFP_RUN_ID_ENV", "PIPELINE_ROLE", "PLUGIN_RUN_ENV", "SECRET_ENV", "MlflowTracker",
    "NullTracker", "StepTerminated", "Tracker", "TrackingError", "check_reachable", "finish_pipeline_run",
    "flatten", "kfp_run_id", "load_served_model", "local_tracking_uri", "package_path", "pipeline_run_id",
    "plugin_run_id", "redact", "resolve_tracking_uri", "step_tracker",
]
