"""How many CPU threads a step may use, and torch set to it.

torch starts one thread per core of the machine, but a pod (or a container, or a shared machine)
is given fewer: threads that outnumber the cores given make every batch wait (a SASRec batch took
120-340 ms with 2 threads competing for one busy core, 20 ms with one). The cores given are, in
order: ``PADIREC_THREADS``; the cgroup CPU quota (a Kubernetes CPU limit; the compiled pipeline
sets the limit to the step's request); the CPUs this process may run on.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger("padirec")
THREADS_ENV = "PADIREC_THREADS"


def cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The cgroup's CPU limit in cores (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 else None
    except (OSError, ValueError):
        return None


def cores_given() -> tuple[int, str]:
    """``(threads, where the number came from)``."""
    if os.environ.get(THREADS_ENV):
        try:
            return max(1, int(os.environ[THREADS_ENV])), THREADS_ENV
        except ValueError:
            log.warning("%s=%r is not a whole number; ignored", THREADS_ENV, os.environ[THREADS_ENV])
    quota = cpu_quota()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if quota is not None and quota < affinity:
        return max(1, math.floor(quota)), "cgroup CPU quota"
    return max(1, affinity), "CPU affinity"


def set_torch_threads() -> dict[str, int | str]:
    """Set torch's intra-op threads to the cores given; returns what was set (for the step's run)."""
    import torch

    threads, source = cores_given()
    torch.set_num_threads(threads)
    log.info("torch threads: %d (%s)", threads, source)
    return {"torch_threads": threads, "torch_threads_source": source}
