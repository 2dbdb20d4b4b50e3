"""The README's Layout section names every top-level folder of the repository (tracked by git)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_top_level_folder_is_in_the_layout():
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    folders = {line.split("/")[0] for line in tracked.splitlines() if "/" in line}
    layout = re.search(r"^## Layout\n\n```\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M).group(1)
    named = set(re.findall(r"^(\S+)/ ", layout, re.M))
    assert folders <= named, f"add to the README's Layout section: {sorted(folders - named)}"


def test_every_benchmark_is_in_the_benchmarks_index():
    index = (ROOT / "benchmarks" / "README.md").read_text()
    missing = [p.name for p in sorted((ROOT / "benchmarks").glob("*.py")) if f"`{p.name}`" not in index]
    assert not missing, f"benchmarks/README.md does not list {missing}"
