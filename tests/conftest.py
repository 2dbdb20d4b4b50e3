"""Shared fixtures: small synthetic prepared data made once per test session, each test's KFP run
id, the tiny pipeline run and one torch thread. What they are built from is ``tests/fixtures.py``."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def synthetic_prepared(tmp_path_factory):
    """A prepared folder: 120 users, 60 items, 6 categories, planted next-item rule."""
    from padirec.data.prepare import prepare_synthetic

    out = tmp_path_factory.mktemp("synthetic_prepared")
    prepare_synthetic(out, num_users=120, num_items=60, num_categories=6, seed=0)
    return out


@pytest.fixture(autouse=True)
def kfp_run_id(monkeypatch):
    """Steps find their pipeline run by this variable (set by the runner locally, by the pod's label
    on a cluster); each test is its own pipeline run."""
    import uuid

    from padirec.tracking import KFP_RUN_ID_ENV

    run_id = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(KFP_RUN_ID_ENV, run_id)
    return run_id


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Every component run once on the smoke config (``tests/fixtures.py``): about 45 s."""
    from tests.fixtures import run_tiny_pipeline

    return run_tiny_pipeline(tmp_path_factory)


@pytest.fixture
def one_thread():
    """Small tensors: one intra-op thread avoids thread contention on a busy shared CPU (folders of
    tiny-tensor tests make it autouse in their conftest)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
