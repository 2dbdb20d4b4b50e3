"""The project image, checked statically (no Docker engine here): pinned installs, non-root,
and immutable tags derived from the version and the commit."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "images" / "Dockerfile").read_text()


def test_installs_the_pinned_lock_through_the_torch_constraint():
    assert "pip install -r requirements.lock -c constraints.txt" in DOCKERFILE
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", (ROOT / "requirements.lock").read_text(), re.M)
    assert "pip install torch==2.13.0 --index-url" in DOCKERFILE  # the CPU variant, same version


def test_runs_as_non_root_and_never_latest():
    assert re.search(r"^USER 10001$", DOCKERFILE, re.M)
    assert ":latest" not in DOCKERFILE


def test_make_tags_are_version_and_commit():
    out = subprocess.run(["make", "-n", "images"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    tags = re.findall(r"-t (\S+)", out)
    assert len(tags) == 2 and all(re.fullmatch(rf"padirec:{re.escape(version)}-(\w{{12}}|dev)(-cpu)?", t) for t in tags)
