"""What a pod of this project reads from the cluster, by the names of the objects in
``manifests/runs/``: the settings ConfigMap and the Secrets. The compiled pipeline gives them to
every step (``pipelines.padirec_pipeline``), and a TrainJob gives the S3 part to its trainer pods
(``padirec.backbones.trainjob``)."""

from __future__ import annotations

SETTINGS_CONFIG_MAP = "padirec-env"
SETTINGS_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "PADIREC_S3_ENDPOINT", "AWS_DEFAULT_REGION")
S3_SETTINGS_KEYS = ("PADIREC_S3_ENDPOINT", "AWS_DEFAULT_REGION")  # what reaching the object store needs
S3_SECRET = "padirec-s3"
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
MLFLOW_SECRET = "padirec-mlflow"  # optional: a tracking server without authentication needs none
MLFLOW_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
KFP_RUN_ID_ENV = "PADIREC_KFP_RUN_ID"  # the run id (the pod's pipeline/runid label)
IMAGE_ENV = "PADIREC_IMAGE"  # the step's own image, set at compile time: what a TrainJob runs
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # the pod's namespace and token
