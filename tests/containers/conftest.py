"""The container engine and the project image for the container tests.

The engine is started (or reused) by ``images/engine.sh``; with no image registry reachable, the
base image is made by ``images/base.sh`` (debootstrap) unless ``PADIREC_TEST_BASE`` names one; the
CPU image is built by ``images/build.sh`` from ``images/Dockerfile``, the same file as the CUDA
image. The engine keeps its data between runs, so an unchanged image rebuilds from its layer cache.
Without a container engine the tests skip, except in CI, where they must run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "padirec:0.1.0-test-cpu"


def _sh(cmd: list[str], env: dict | None = None, timeout: int = 1800) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


@pytest.fixture(scope="session")
def docker_env():
    """``{"DOCKER_HOST": ..., "DOCKER": ...}`` for a running engine; sets DOCKER_HOST for KFP's runner."""
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI must run the container tests: dockerd is missing or not root (see .ci/run)")
        pytest.skip("no Docker engine here (apt-get install docker.io debootstrap; run as root)")
    host = _sh(["images/engine.sh", "start"], timeout=120).strip().splitlines()[-1]
    cli = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"  # the engine's own client
    env = {"DOCKER_HOST": host, "DOCKER": cli, "DOCKER_BUILDKIT": "0"}
    saved = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    yield env
    if saved is None:
        os.environ.pop("DOCKER_HOST", None)
    else:
        os.environ["DOCKER_HOST"] = saved


@pytest.fixture(scope="session")
def project_image(docker_env) -> str:
    """The CPU project image, built from the working tree; prints the build time and size."""
    base = os.environ.get("PADIREC_TEST_BASE")
    if not base:
        base = "padirec-base:bookworm"
        _sh(["images/base.sh", base], env=docker_env, timeout=900)
    start = time.time()
    out = _sh(["images/build.sh", "cpu", IMAGE], env={**docker_env, "BASE": base})
    print(f"\n{out.strip().splitlines()[-1]} (this build: {time.time() - start:.0f} s, layer cache kept)")
    return IMAGE


def docker(docker_env: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """The engine's client; returns the completed process (the caller checks it)."""
    return subprocess.run([docker_env["DOCKER"], *args], env={**os.environ, **docker_env}, capture_output=True,
                          text=True, timeout=timeout)
