"""The data stage alone at 10x and 20x MovieLens-1M, reading partitioned Parquet.

    .venv/bin/python benchmarks/bench_data.py [--scales 10,20] [--work DIR] [--markdown FILE]

For each scale it writes the interactions as a Hive-partitioned Parquet folder (one folder per
month, ``month=1999-07/``, with a rating column the stage does not read) and the items as one
Parquet file, then runs the data stage (``padirec.data.stage.run_data_stage``, source ``tables``,
the folder read through ``pyarrow.dataset``) in a fresh process, and prints its wall time and the
process's peak resident memory (imports included). Time it alone: on 2 shared cores anything
else running changes the figures.

The tables have ML-1M's shape at ``scale`` (6,040 users, 3,706 items, 1,000,209 ratings per unit):
``padirec.data.synthetic_ml1m``'s per-user lengths and Zipf item popularity, but items drawn in one
vectorised call (with replacement) and random timestamps, not its learnable walk: the data stage's
cost depends on the rows, users and items, not on what can be learnt from them, and the walk's
per-user draw takes too long at 20x.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from padirec.data.synthetic_ml1m import FIRST_TS, GENRES, LAST_TS, MAX_LEN, ML1M, user_lengths  # noqa: E402

STAGE = """
import json, sys, time
from padirec.data.config import DataConfig
from padirec.data.stage import run_data_stage
start = time.perf_counter()
m = run_data_stage(DataConfig(source="tables", interactions=sys.argv[1], items=sys.argv[2]), sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - start, "users": m["stats"]["num_users"], "items": m["stats"]["num_items"]}))
"""


def write_tables(folder: Path, scale: float, seed: int = 0) -> dict[str, int]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds

    rng = np.random.default_rng(seed)
    num_users, num_items = int(round(ML1M["users"] * scale)), int(round(ML1M["items"] * scale))
    total = int(round(ML1M["ratings"] * scale))
    lengths = user_lengths(num_users, total, min(MAX_LEN, num_items), rng)
    popularity = 1.0 / np.arange(1, num_items + 1)
    popularity = popularity[rng.permutation(num_items)] / popularity.sum()
    users = np.repeat(np.arange(1, num_users + 1), lengths)
    items = rng.choice(num_items, size=len(users), p=popularity) + 1
    stamps = rng.integers(FIRST_TS, LAST_TS, size=len(users))
    table = pa.table({"user_id": users, "item_id": items, "rating": rng.integers(1, 6, len(users)).astype(np.int8),
                      "timestamp": stamps,
                      "month": pd.to_datetime(stamps, unit="s").strftime("%Y-%m").to_numpy()})
    ds.write_dataset(table, folder / "interactions", format="parquet", existing_data_behavior="delete_matching",
                     partitioning=ds.partitioning(pa.schema([("month", pa.string())]), flavor="hive"),
                     max_rows_per_file=2_000_000)
    cats = [[GENRES[g] for g in sorted({i * len(GENRES) // num_items, int(rng.integers(len(GENRES)))})]
            for i in range(num_items)]
    pd.DataFrame({"item_id": np.arange(1, num_items + 1), "title": [f"Movie {i}" for i in range(1, num_items + 1)],
                  "categories": cats}).to_parquet(folder / "items.parquet")
    return {"users": num_users, "items": num_items, "ratings": len(users),
            "files": len(list((folder / "interactions").rglob("*.parquet")))}


def run_stage(folder: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", STAGE, str(folder / "interactions"), str(folder / "items.parquet"),
                           str(folder / "prepared")], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the data stage failed:\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of the children is the largest child's: a later, smaller run would not show
    if peak <= before:
        print(f"warning: the peak of this run is not above an earlier one's ({before / 1024:.0f} MB)")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**out, "wall": wall, "peak_mb": peak / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", default="10,20")
    ap.add_argument("--work", default="/tmp/padirec-bench-data")
    ap.add_argument("--markdown", default="")
    args = ap.parse_args()
    rows = ["| scale | ratings | users | items | Parquet files | write s | stage wall s | stage s (in process) | peak MB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for scale in sorted(float(s) for s in args.scales.split(",")):  # the smaller first: see run_stage's warning
        folder = Path(args.work) / f"x{scale:g}"
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        counts = write_tables(folder, scale)
        written = time.perf_counter() - start
        print(f"x{scale:g}: {counts} written in {written:.0f} s; running the data stage", flush=True)
        r = run_stage(folder)
        rows.append(f"| {scale:g} | {counts['ratings']:,} | {r['users']:,} | {r['items']:,} | {counts['files']} | "
                    f"{written:.0f} | {r['wall']:.1f} | {r['seconds']:.1f} | {r['peak_mb']:.0f} |")
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(f"\n{table}")
    if args.markdown:
        Path(args.markdown).write_text(f"<!-- written by: benchmarks/bench_data.py --scales {args.scales} -->\n\n{table}\n")


if __name__ == "__main__":
    main()
