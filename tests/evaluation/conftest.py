"""Fixtures for the evaluation tests: the tiny end-to-end setup (``tests.fixtures.build_tiny``)."""

from __future__ import annotations

import pytest

from tests.fixtures import build_tiny


@pytest.fixture(scope="session")
def tiny(synthetic_prepared, tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("tiny_eval"), synthetic_prepared)


@pytest.fixture(autouse=True)
def _small_tensors(one_thread):
    """Every test here works on tiny tensors: one torch thread (tests/conftest.py)."""
