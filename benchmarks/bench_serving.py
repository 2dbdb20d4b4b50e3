"""Serving under load: the pyfunc model behind ``mlflow models serve`` on 127.0.0.1.

Sends N requests (default 2,000) from C concurrent clients (default 8), three times: every request
with the same task weights; the weights changing between requests (11 tasks in turn: the adapter
cache serves most); and a new task in every request (weights never sent before: the generator runs
for each). Prints throughput, p50/p99 latency, the error count and how many distinct tasks each
scenario asked for (at most that many were generated; the cache keeps 256 per worker).

    python benchmarks/bench_serving.py --system runs/<run>/.../register-and-promote/system
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(model_dir: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", str(model_dir),
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)],
                            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/ping", timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("mlflow models serve exited") from None
            time.sleep(0.5)
    raise RuntimeError("server did not start")


def load(url: str, histories: list[list[str]], tasks: list[list[float]], n: int, clients: int) -> dict:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(n))

    def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            body = json.dumps({"dataframe_records": [{"history": rng.choice(histories), "weights": tasks[i % len(tasks)]}]})
            req = urllib.request.Request(url + "/invocations", data=body.encode(), headers={"Content-Type": "application/json"})
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    ok = r.status == 200 and len(json.loads(r.read())["predictions"][0]["item_ids"]) == 10
            except OSError:
                ok = False
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                errors += not ok

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "seconds": wall, "rps": len(latencies) / wall,
            "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "errors": errors, "tasks": len({tuple(t) for t in tasks[:n]})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", required=True, help="a system folder (register step output)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="server worker processes")
    args = ap.parse_args()

    import pandas as pd

    from padirec.tracking.registry import save_pyfunc

    catalogue = pd.read_parquet(Path(args.system) / "catalogue.parquet")["source_id"].astype(str).tolist()
    rng = random.Random(0)
    histories = [rng.sample(catalogue, rng.randint(1, min(10, len(catalogue) - 10))) for _ in range(200)]
    with tempfile.TemporaryDirectory() as tmp:
        model = save_pyfunc(args.system, Path(tmp) / "model")
        proc, url = serve(model, args.workers)
        try:
            load(url, histories, [[0.5, 0.5]], 50, 2)  # warm-up: workers load the model
            rows = {"same weights": load(url, histories, [[0.5, 0.5]], args.requests, args.clients),
                    "weights change per request": load(url, histories, [[w / 10, 1 - w / 10] for w in range(11)],
                                                       args.requests, args.clients),
                    # w_acc values never sent before (not on the 0.1 grid): every request generates
                    "new task every request": load(url, histories, [[a, 1 - a] for a in
                                                                    ((i + 0.5) / args.requests for i in range(args.requests))],
                                                   args.requests, args.clients)}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    print(f"\nmlflow models serve, {args.workers} workers, {args.clients} concurrent clients, 127.0.0.1")
    print(f"{'scenario':<28}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'tasks':>7}")
    for name, r in rows.items():
        print(f"{name:<28}{r['requests']:>9}{r['rps']:>9.1f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}"
              f"{r['tasks']:>7}")


if __name__ == "__main__":
    main()
