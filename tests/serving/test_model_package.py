"""What the logged pyfunc model holds (``save_pyfunc``, as ``register_system`` logs it): a real
request for its system as input example, the request schema (a violation is MLflow's own
``INVALID_PARAMETER_VALUE``), the padirec code, and requirements pinned to the lock, so that it is
servable without the checkout (the fresh-virtualenv test rebuilds it: ``test_fresh_env.py``)."""

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException
from packaging.utils import canonicalize_name

from padirec.tracking.model_registry import SERVING_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_ONLY = ("kfp", "great-expectations", "boto3", "psycopg", "padirec")


def test_input_example_is_a_real_request_for_the_system(model, model_path, rec):
    import json

    example = model.input_example
    request = example.iloc[0]
    assert list(example.columns) == ["history", "weights", "k"]
    assert request["history"] and len(request["history"]) <= rec.max_len
    assert all(str(h) in rec.internal for h in request["history"])  # ids of the system's own catalogue
    assert len(request["weights"]) == len(rec.utilities) and sum(request["weights"]) == pytest.approx(1)
    assert len(model.predict(example).iloc[0]["item_ids"]) == request["k"]
    serving = json.loads((model_path / "serving_input_example.json").read_text())
    assert serving["dataframe_split"]["columns"] == ["history", "weights", "k"]  # what a client posts


def _pins(lines):
    return {canonicalize_name(m.group(1)): m.group(2)
            for m in (re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s\\;]+)", ln) for ln in lines) if m}


def test_requirements_pin_what_serving_imports_at_the_locked_versions(model_path):
    requirements = (model_path / "requirements.txt").read_text().splitlines()
    assert requirements[-1] == "-c constraints.txt"
    pinned = _pins(requirements)
    assert sorted(pinned) == sorted(canonicalize_name(p) for p in SERVING_PACKAGES)
    constraints = _pins((model_path / "constraints.txt").read_text().splitlines())
    assert set(pinned.items()) <= set(constraints.items())
    assert not [p for p in PIPELINE_ONLY if p in constraints]
    # the image's versions: requirements.lock, and the checkout's constraints.txt for torch
    locked = {**_pins((ROOT / "requirements.lock").read_text().splitlines()),
              **_pins((ROOT / "constraints.txt").read_text().splitlines())}
    assert {n: (v, locked.get(n)) for n, v in constraints.items() if locked.get(n) != v} == {}


def test_model_carries_the_package_code_and_the_torch_note(model_path):
    import torch

    code, package = model_path / "code" / "padirec", ROOT / "padirec"
    assert sorted(p.relative_to(code) for p in code.rglob("*.py")) == sorted(p.relative_to(package) for p in package.rglob("*.py"))
    assert (code / "serving" / "__init__.py").read_text() == (package / "serving" / "__init__.py").read_text()
    assert not list(code.rglob("*.pyc"))
    meta = yaml.safe_load((model_path / "MLmodel").read_text())
    assert meta["flavors"]["python_function"]["code"] == "code"
    assert f"torch {torch.__version__}" in meta["metadata"]["serving"]
    assert "download.pytorch.org/whl/cpu" in meta["metadata"]["serving"]


@pytest.mark.parametrize("record,needle", [
    ({"history": None, "weights": None}, "Model is missing inputs ['history', 'weights']"),
    ({"weights": None}, "Model is missing inputs ['weights']"),
    ({"weights": "abc"}, "Expected data to be list or numpy array, got str"),
    ({"history": "i0"}, "Expected data to be list or numpy array, got str"),
])
def test_schema_violation_is_mlflows_invalid_parameter_value(model, rec, record, needle):
    """In process, MLflow's message quotes the frame and the schema; over HTTP it names the column
    (``test_http_schema.py``)."""
    full = {"history": list(rec.source_id[1:4]), "weights": [0.3, 0.7], **record}
    frame = pd.DataFrame([{k: v for k, v in full.items() if v is not None}])
    with pytest.raises(MlflowException) as err:
        model.predict(frame)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE" and needle in err.value.message, err.value.message
    assert err.value.get_http_status_code() == 400
