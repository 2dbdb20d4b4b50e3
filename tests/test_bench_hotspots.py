"""``make bench-hotspots`` at a tiny size: it runs, checks that old and new give the same values, and
prints one row per hot spot."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_hotspots_prints_every_row_at_a_tiny_size():
    out = subprocess.run([sys.executable, "benchmarks/bench_hotspots.py", "--users", "300", "--items", "120",
                          "--repeats", "1", "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "hot spot" not in line]
    assert [r.split(" | ")[0][2:] for r in rows] == [
        "SASRec training step (per step)", "evaluation of one score matrix",
        "backbone validation pass (first, later)", "DeepPRL greedy lists, one split"]
    for row in rows:
        old, new = (float(x) for x in row.split(" | ")[1:3])
        assert old > 0 and new > 0, row
