"""Serving under load: the pyfunc model behind ``mlflow models serve`` on 127.0.0.1.

Sends N requests (default 2,000) from C concurrent clients (default 8), three times: every request
with the same task weights; the weights changing between requests (11 tasks in turn: the adapter
cache serves most); and a new task in every request (weights never sent before: the generator runs
for each). Prints throughput, p50/p99 latency, the error count, how many distinct tasks each
scenario asked for (at most that many were generated; the cache keeps 256 per worker), and the CPU
time per request of the server (every process of ``mlflow models serve``: uvicorn's workers) and of
this load generator, which shares the machine: on 2 cores, throughput is about 2 cores divided by
their sum.

    python benchmarks/bench_serving.py --system runs/<run>/.../register-and-promote/system
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
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


def cpu_seconds(group: int) -> float:
    """User + system CPU seconds of every live process in process group ``group`` (Linux /proc)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == group:  # pgrp
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load(url: str, histories: list[list[str]], tasks: list[list[float]], n: int, clients: int,
         server_group: int | None = None) -> dict:
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

    server0, client0 = (cpu_seconds(server_group) if server_group else math.nan), own_cpu_seconds()
    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    server_cpu = (cpu_seconds(server_group) - server0) if server_group else math.nan
    client_cpu = own_cpu_seconds() - client0
    q = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "seconds": wall, "rps": len(latencies) / wall,
            "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "errors": errors, "tasks": len({tuple(t) for t in tasks[:n]}),
            "server_cpu_ms": server_cpu / n * 1000, "client_cpu_ms": client_cpu / n * 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", required=True, help="a system folder (register step output)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="server worker processes")
    args = ap.parse_args()

    import pandas as pd

    from padirec.serving import SERVING_THREADS_ENV
    from padirec.tracking.model_registry import save_pyfunc

    catalogue = pd.read_parquet(Path(args.system) / "catalogue.parquet")["source_id"].astype(str).tolist()
    rng = random.Random(0)
    histories = [rng.sample(catalogue, rng.randint(1, min(10, len(catalogue) - 10))) for _ in range(200)]
    with tempfile.TemporaryDirectory() as tmp:
        model = save_pyfunc(args.system, Path(tmp) / "model")
        proc, url = serve(model, args.workers)
        try:
            load(url, histories, [[0.5, 0.5]], 50, 2)  # warm-up: workers load the model
            group = proc.pid  # start_new_session: the server's processes form this group
            rows = {"same weights": load(url, histories, [[0.5, 0.5]], args.requests, args.clients, group),
                    "weights change per request": load(url, histories, [[w / 10, 1 - w / 10] for w in range(11)],
                                                       args.requests, args.clients, group),
                    # w_acc values never sent before (not on the 0.1 grid): every request generates
                    "new task every request": load(url, histories, [[a, 1 - a] for a in
                                                                    ((i + 0.5) / args.requests for i in range(args.requests))],
                                                   args.requests, args.clients, group)}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    threads = os.environ.get(SERVING_THREADS_ENV) or "1 (the default)"
    print(f"\nmlflow models serve, {args.workers} workers, torch threads per worker: {threads} ({SERVING_THREADS_ENV}); "
          f"{args.clients} concurrent clients, 127.0.0.1")
    print(f"{'scenario':<28}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'tasks':>7}"
          f"{'server CPU ms/req':>19}{'client CPU ms/req':>19}")
    for name, r in rows.items():
        print(f"{name:<28}{r['requests']:>9}{r['rps']:>9.1f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}"
              f"{r['tasks']:>7}{r['server_cpu_ms']:>19.2f}{r['client_cpu_ms']:>19.2f}")


if __name__ == "__main__":
    main()
