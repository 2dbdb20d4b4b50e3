"""Fixtures of the serving tests: the tiny system, its ``Recommender`` and its pyfunc model."""

import pytest

from tests.fixtures import save_model, tiny_system


@pytest.fixture(scope="module")
def system(synthetic_prepared, tmp_path_factory):
    return tiny_system(synthetic_prepared, tmp_path_factory)


@pytest.fixture(scope="module")
def rec(system):
    from padirec.serving import Recommender

    return Recommender(system)


@pytest.fixture(scope="module")
def model_path(system, tmp_path_factory):
    return save_model(system, tmp_path_factory.mktemp("pyfunc") / "model")


@pytest.fixture(scope="module")
def model(model_path):
    import mlflow

    return mlflow.pyfunc.load_model(str(model_path))
