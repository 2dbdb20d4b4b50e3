"""The request schema behind ``mlflow models serve`` (the server of ``test_http.py``): the logged
input example is answered as it stands, and a request that breaks the signature gets MLflow's own
400 naming the column, before padirec sees it."""

import json

import pytest

from tests.serving.test_http import _post, server  # noqa: F401  (the module's server fixture)

pytestmark = pytest.mark.slow


def test_the_logged_input_example_is_answered(server, model_path):  # noqa: F811
    example = (model_path / "serving_input_example.json").read_text()
    for _ in range(3):  # this server times out at 2 s: a cold first request on a busy machine can
        status, body = _post(server, None, raw=example)  # pass it; the adapter it made is cached
        if status != 504:
            break
    assert status == 200, body
    k = json.loads(example)["dataframe_split"]["data"][0][2]
    assert [len(p["item_ids"]) for p in json.loads(body)["predictions"]] == [k]


@pytest.mark.parametrize("change,needle", [
    ({"weights": None}, "Model is missing inputs ['weights']"),
    ({"history": None, "weights": None}, "Model is missing inputs ['history', 'weights']"),
    ({"weights": "0.3,0.7"}, "Failed to convert column weights to type 'Array(double)'"),
    ({"weights": ["a", "b"]}, "Failed to convert column weights to type 'Array(double)'"),
    ({"history": "i0"}, "Failed to convert column history to type 'Array(Any)'"),
])
def test_schema_violation_gets_mlflows_400(server, rec, change, needle):  # noqa: F811
    record = {k: v for k, v in {"history": list(rec.source_id[1:4]), "weights": [0.3, 0.7], **change}.items()
              if v is not None}
    status, body = _post(server, [record])
    assert status == 400, body
    reply = json.loads(body)
    # INVALID_PARAMETER_VALUE for a missing column, BAD_REQUEST for one that does not convert: both 400
    assert reply["error_code"] in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"), reply
    assert needle in reply["message"], reply["message"][-500:]
    assert "stack_trace" not in reply and "Traceback" not in body
