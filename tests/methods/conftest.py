"""Fixtures for the baseline tests: random frozen features (no backbone), built in milliseconds."""

from __future__ import annotations

import pytest

from padirec.core.layout import adapter_layout
from tests.fixtures import random_features


@pytest.fixture
def features():
    return random_features()


@pytest.fixture
def features_factory():
    """``random_features`` itself, for tests that need other sizes or user groups."""
    return random_features


@pytest.fixture
def lay(features):
    return adapter_layout(features.dim, 4)


@pytest.fixture(autouse=True)
def _small_tensors(one_thread):
    """Every test here works on tiny tensors: one torch thread (tests/conftest.py)."""
