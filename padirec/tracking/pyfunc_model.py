"""The MLflow pyfunc model, logged "from code": MLflow runs this file on load instead of
unpickling an object, so no pickle is on the load path.

Input: a DataFrame with columns ``history`` (list of item ids, oldest first), ``weights`` (list of
task weights, one per utility) and optionally ``k`` and ``timestamps``. Output: one row per
request with ``item_ids``, ``scores``, ``titles`` and ``categories`` (lists, best first).
"""

import mlflow
import pandas as pd


class PadirecRecommender(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from padirec.serving import Recommender

        self.recommender = Recommender(context.artifacts["system"])

    def predict(self, context, model_input, params=None):
        if isinstance(model_input, pd.DataFrame):
            requests = model_input.to_dict("records")
        elif isinstance(model_input, dict):
            requests = [model_input]
        else:
            requests = list(model_input)
        k = int((params or {}).get("k", 10))
        requests = [{key: (list(v) if hasattr(v, "tolist") and not isinstance(v, str) else v)
                     for key, v in r.items() if not (key in ("k", "timestamps") and _missing(v))} for r in requests]
        return pd.DataFrame(self.recommender.recommend_many(requests, k=k))


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


mlflow.models.set_model(PadirecRecommender())
