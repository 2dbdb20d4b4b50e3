"""The MLflow pyfunc model, logged "from code": MLflow runs this file on load instead of
unpickling an object, so no pickle is on the load path.

Input: a DataFrame with columns ``history`` (list of item ids, oldest first), ``weights`` (list of
task weights, one per utility) and optionally ``k`` and ``timestamps``; ``params={"k": N}`` sets
``k`` for records without one (it needs the params schema of ``padirec.serving.model_signature``).
The signature's input schema names these columns: MLflow itself answers a request without
``history`` or ``weights``, or with one that is not a list, with a 400 before ``predict`` runs.
The model carries the padirec package in its ``code/`` folder (``registry.save_pyfunc``), so the
imports below need only the model's ``requirements.txt``.
Output: one row per request with ``item_ids``, ``scores``, ``titles`` and ``categories`` (lists,
best first).

Errors: MLflow's scoring server turns an ``MlflowException`` into a reply with its HTTP status and
message, and any other exception into "Encountered an unexpected error" with the server's stack
trace. So a bad request becomes ``INVALID_PARAMETER_VALUE`` (400, the message names the field), a
request past the server's timeout ``DEADLINE_EXCEEDED``, and a fault of ours ``INTERNAL_ERROR``
with the details in the server log only.
"""

import logging
import os
import time

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import DEADLINE_EXCEEDED, INTERNAL_ERROR

log = logging.getLogger("padirec")
# Set by ``mlflow models serve`` (--timeout) for its workers; the scoring server answers 504 at
# that point but leaves the worker thread running, so predict stops its own work by then.
TIMEOUT_ENV = "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"
# MLflow's scoring server (``mlflow models serve``, the image's entrypoint) gives each worker the
# model's path in this variable (``mlflow.pyfunc.scoring_server._SERVER_MODEL_PATH``): a worker
# sets torch's threads for serving, an in-process ``load_model`` leaves its caller's setting alone
SERVER_MODEL_PATH_ENV = "__pyfunc_model_path__"


class PadirecRecommender(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import torch

        from padirec.serving import Recommender, serving_threads

        threads = serving_threads(in_server=SERVER_MODEL_PATH_ENV in os.environ)
        if threads is not None:
            torch.set_num_threads(threads)
            log.info("padirec: torch threads %d per serving process", threads)
        self.recommender = Recommender(context.artifacts["system"])

    def predict(self, context, model_input, params=None):
        from padirec.serving import DEFAULT_K, RequestError, RequestTimeout

        started = time.monotonic()
        timeout = _timeout()
        try:  # before the records are copied out of the frame: a huge request costs nothing more
            self.recommender.check_records(len(model_input) if isinstance(model_input, pd.DataFrame | list) else 1)
        except RequestError as e:
            raise MlflowException.invalid_parameter_value(str(e)) from None
        if isinstance(model_input, pd.DataFrame):
            requests = model_input.to_dict("records")
        elif isinstance(model_input, dict):
            requests = [model_input]
        else:
            requests = list(model_input)
        k = (params or {}).get("k", DEFAULT_K)
        requests = [{key: (v.tolist() if hasattr(v, "tolist") and not isinstance(v, str) else v)
                     for key, v in r.items() if not (key in ("k", "timestamps") and _missing(v))}
                    if isinstance(r, dict) else r for r in requests]
        try:
            out = self.recommender.recommend_many(requests, k=k, deadline=started + timeout if timeout else None)
        except RequestError as e:
            raise MlflowException.invalid_parameter_value(str(e)) from None
        except RequestTimeout as e:
            raise MlflowException(str(e), error_code=DEADLINE_EXCEEDED) from None
        except Exception:
            log.exception("padirec: ranking failed")
            raise MlflowException("internal error while ranking (the server log has the details)",
                                  error_code=INTERNAL_ERROR) from None
        return pd.DataFrame(out)


def _timeout() -> float:
    try:
        return max(float(os.environ.get(TIMEOUT_ENV, "") or 0), 0.0)
    except ValueError:
        return 0.0


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


mlflow.models.set_model(PadirecRecommender())
