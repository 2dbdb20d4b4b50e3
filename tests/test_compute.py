"""torch's threads follow the cores a step is given: the override, the cgroup quota, the affinity."""

import os

import torch

from padirec.runtime.compute import THREADS_ENV, cores_given, cpu_quota, set_torch_threads


def test_cgroup_v2_and_v1_quotas(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path) is None  # no limit
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cpu_quota(v1) == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert cpu_quota(v1) is None
    assert cpu_quota(tmp_path / "nothing") is None


def test_override_then_set(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(THREADS_ENV, "1")
        assert cores_given() == (1, THREADS_ENV)
        assert set_torch_threads() == {"torch_threads": 1, "torch_threads_source": THREADS_ENV}
        assert torch.get_num_threads() == 1
        monkeypatch.setenv(THREADS_ENV, "many")  # ignored with a warning
        threads, source = cores_given()
        assert source != THREADS_ENV and 1 <= threads <= len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)
