"""The pyfunc model behind ``mlflow models serve`` on 127.0.0.1: bad requests get a 400 naming the
field and the problem (no stack trace, no server path), ``k`` is honoured from params and per
record, the distinct weight vectors of a request are capped, and a request that times out stops
its work on the server."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from padirec.serving import MAX_RECORDS_ENV, MAX_TASKS_ENV
from tests.servers import free_port

pytestmark = pytest.mark.slow
TIMEOUT_S = 2
CAP = 4000  # far above the default, so one request outlasts the timeout on any machine
MAX_RECORDS = 2 * CAP


@contextlib.contextmanager
def serving(model_path: Path, folder: Path, timeout_s: int, env: dict[str, str]):
    """``mlflow models serve`` of the model, one worker, on a free port: ``{"url", "log", "pgid"}``."""
    port = free_port()
    log = folder / "serve.log"
    bin_dir = Path(sys.executable).parent
    proc = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", str(model_path), "--env-manager", "local",
                             "-h", "127.0.0.1", "-p", str(port), "-w", "1", "--timeout", str(timeout_s)],
                            env={**os.environ, **env, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(url + "/ping", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"mlflow models serve did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield {"url": url, "log": log, "pgid": proc.pid}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    with serving(model_path, tmp_path_factory.mktemp("serve"), TIMEOUT_S,
                 {MAX_TASKS_ENV: str(CAP), MAX_RECORDS_ENV: str(MAX_RECORDS)}) as s:
        yield s


def _post(server, records, params=None, raw=None):
    body = raw or json.dumps({"dataframe_records": records, **({"params": params} if params else {})})
    req = urllib.request.Request(server["url"] + "/invocations", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _history(rec):
    return list(rec.source_id[1:4])


def test_k_from_params_and_per_record(server, rec):
    h = _history(rec)
    for records, params, sizes in (([{"history": h, "weights": [0.3, 0.7]}], {"k": 3}, [3]),
                                   ([{"history": h, "weights": [0.3, 0.7]}], None, [10]),
                                   ([{"history": h, "weights": [0.3, 0.7], "k": 2}, {"history": h, "weights": [0.3, 0.7]}],
                                    {"k": 4}, [2, 4])):
        status, body = _post(server, records, params)
        assert status == 200, body
        assert [len(p["item_ids"]) for p in json.loads(body)["predictions"]] == sizes


def _nan_weights(h):
    return json.dumps({"dataframe_records": [{"history": h, "weights": [float("nan"), 1.0]}]})  # NaN: a JSON extension


@pytest.mark.parametrize("case,needle", [
    ("unknown item", "history has unknown item id(s) ['nope']"),
    ("NaN weights", "weights: task weights contain NaN"),
    ("10,000-item history", "history has 10000 items; this model reads at most 8"),
    ("k -3 per record", "k must be between 1 and 57"),
    ("k -3 in params", "k must be between 1 and 57"),
    ("k above the catalogue", "k must be between 1 and 57 (the 60 catalogue items minus the 3 in the history), got 61"),
    ("too many tasks", f"{CAP + 1} distinct weight vectors; at most {CAP} are allowed per request ({MAX_TASKS_ENV})"),
    ("too many records", f"this request has {MAX_RECORDS + 1} records; at most {MAX_RECORDS} are allowed per request "
                         f"({MAX_RECORDS_ENV})"),
])
def test_bad_request_gets_400_naming_field_and_problem(server, rec, system, case, needle):
    h = _history(rec)
    ok = {"history": h, "weights": [0.3, 0.7]}
    records, params, raw = [ok], None, None
    if case == "unknown item":
        records = [{**ok, "history": ["nope"]}]
    elif case == "NaN weights":
        raw = _nan_weights(h)
    elif case == "10,000-item history":
        records = [{**ok, "history": [h[0]] * 10_000}]
    elif case == "k -3 per record":
        records = [{**ok, "k": -3}]
    elif case == "k -3 in params":
        params = {"k": -3}
    elif case == "k above the catalogue":
        params = {"k": 61}
    elif case == "too many records":  # one task: only the records' cap applies
        records = [ok] * (MAX_RECORDS + 1)
    else:
        records = [{**ok, "weights": [i / CAP, 1 - i / CAP]} for i in range(CAP + 1)]
    status, body = _post(server, records, params, raw)
    assert status == 400, body
    reply = json.loads(body)
    assert reply["error_code"] == "INVALID_PARAMETER_VALUE" and needle in reply["message"], reply["message"][-500:]
    assert "stack_trace" not in reply
    for leak in ("Traceback", "site-packages", str(system), "/padirec/"):
        assert leak not in body, leak


def test_timed_out_request_stops_its_work(server, rec):
    h = _history(rec)
    records = [{"history": h, "weights": [i / CAP, 1 - i / CAP]} for i in range(1, CAP)]  # CAP - 1 new tasks
    started = time.monotonic()
    status, _ = _post(server, records)
    assert status == 504 and time.monotonic() - started < TIMEOUT_S + 10
    # the worker thread stops at its deadline, between two chunks or tasks, instead of computing all of them
    pattern = re.compile(r"request stopped at its deadline after (\d+) of (\d+) (chunks|distinct)")
    deadline = time.monotonic() + 60
    while not (found := pattern.search(server["log"].read_text())) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found, server["log"].read_text()[-3000:]
    assert int(found.group(1)) < int(found.group(2)), found.group(0)
    # and the server answers the next request
    status, body = _post(server, [{"history": h, "weights": [0.3, 0.7]}], {"k": 3})
    assert status == 200, body


def _peak_rss_mb(server) -> float:
    """The largest peak resident memory (VmHWM) among the server's processes (its process group)."""
    peaks = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if os.getpgid(int(status.parent.name)) == server["pgid"]:
                peaks += [int(line.split()[1]) / 1024 for line in status.read_text().splitlines()
                          if line.startswith("VmHWM:")]
        except (OSError, ValueError):  # a process gone meanwhile
            continue
    return max(peaks, default=0.0)


def test_a_request_of_250000_records_is_refused_and_the_server_lives(model_path, rec, tmp_path):
    """Issue 29's attack, on a server with the defaults (60 s timeout, 1,000 records): 250,000
    records (14 MB) once ran past the timeout and took 5 GB. MLflow still parses the body into a
    frame before the model sees it; the model then refuses it by the records' cap (a 400 naming the
    setting) instead of ranking it, and the next request is served. Prints the time and memory."""
    h = _history(rec)
    body = json.dumps({"dataframe_records": [{"history": h, "weights": [0.3, 0.7]}] * 250_000})
    with serving(model_path, tmp_path, 60, {}) as server:
        before = _peak_rss_mb(server)
        start = time.monotonic()
        status, text = _post(server, None, raw=body)
        seconds = time.monotonic() - start
        print(f"\n250,000 records ({len(body) / 2**20:.1f} MB): {status} in {seconds:.1f} s; "
              f"server peak RSS {before:.0f} -> {_peak_rss_mb(server):.0f} MB")
        assert status == 400 and MAX_RECORDS_ENV in text, text[:500]
        assert _post(server, [{"history": h, "weights": [0.3, 0.7]}])[0] == 200
