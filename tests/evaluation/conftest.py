"""Fixtures for the evaluation tests: the tiny end-to-end setup of ``tiny.py``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch


def tiny_module():
    """``tiny.py`` beside this file (tests are not a package, so load it by path)."""
    spec = importlib.util.spec_from_file_location("padirec_tests_tiny", Path(__file__).with_name("tiny.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny(synthetic_prepared, tmp_path_factory):
    return tiny_module().build_tiny(tmp_path_factory.mktemp("tiny_eval"), synthetic_prepared)


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one intra-op thread avoids thread contention on a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
