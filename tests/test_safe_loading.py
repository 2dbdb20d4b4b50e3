"""No pickle on any load path: tensors are safetensors, everything else JSON or Parquet, and the
MLflow model is logged from code."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNSAFE = re.compile(
    r"import (pickle|cloudpickle|dill|joblib)|(pickle|dill|joblib)\.loads?\(|(?<![\w.])torch\.load\("
    r"|(?<![\w.])(np|numpy)\.load\(|yaml\.load\(|yaml\.unsafe_load|(?<![\w.])eval\(")


def test_library_never_unpickles():
    offenders = []
    for folder in ("padirec", "components", "pipelines"):
        for f in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(f.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if UNSAFE.search(code) and "literal_eval" not in code:
                    offenders.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "unsafe deserialisation:\n" + "\n".join(offenders)


def test_the_config_yaml_loader_is_a_safe_loader():
    import yaml

    from padirec.core import typed_config

    assert issubclass(typed_config._Yaml12Loader, yaml.SafeLoader)
    assert typed_config.yaml_load("a: 1e-3") == {"a": 0.001}
    import pytest

    from padirec.errors import ConfigError

    with pytest.raises(ConfigError, match="never run"):  # no Python objects, as safe_load
        typed_config.yaml_load("!!python/object/apply:os.system ['true']")


def test_pyfunc_model_is_logged_from_code():
    registry = (ROOT / "padirec" / "tracking" / "model_registry.py").read_text()
    assert "python_model=str(PYFUNC_CODE)" in registry
    assert "set_model(" in (ROOT / "padirec" / "tracking" / "pyfunc_model.py").read_text()


def test_the_check_catches_unsafe_calls_and_not_safe_ones():
    for bad in ("x = torch.load(f)", "import pickle", "pickle.loads(b)", "eval(s)", "np.load(f)", "yaml.load(t)"):
        assert UNSAFE.search(bad), bad
    for good in ("model.eval()", "safetensors.torch.load_file(p)", "ast.literal_eval(x)", "yaml.safe_load(t)"):
        assert not UNSAFE.search(good), good
