"""The local stage cache: a hit needs the same stage, settings and inputs; entries are verified."""

import json

from padirec.artifacts import write_manifest
from padirec.cache import cache_key, run_cached


def _input(tmp_path, content: bytes):
    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    (d / "x.bin").write_bytes(content)
    write_manifest(d, "thing", ["x.bin"], config={})
    return d


def _stage(calls):
    def run(out):
        def go():
            calls.append(1)
            out.mkdir(parents=True, exist_ok=True)
            (out / "y.bin").write_bytes(b"result")
            write_manifest(out, "out", ["y.bin"], config={})
            return {"seconds": 1.0}
        return go
    return run


def test_hit_miss_and_key_changes(tmp_path):
    calls = []
    src = _input(tmp_path, b"a")
    key = cache_key("s", {"lr": 1}, [src])
    assert run_cached(tmp_path / "cache", "s", key, tmp_path / "o1", _stage(calls)(tmp_path / "o1"))["cache"] == "miss"
    hit = run_cached(tmp_path / "cache", "s", key, tmp_path / "o2", _stage(calls)(tmp_path / "o2"))
    assert hit == {"seconds": 1.0, "cache": "hit"} and len(calls) == 1
    assert (tmp_path / "o2" / "y.bin").read_bytes() == b"result" and not (tmp_path / "o2" / "stage_result.json").exists()
    assert cache_key("s", {"lr": 2}, [src]) != key
    assert cache_key("t", {"lr": 1}, [src]) != key
    assert cache_key("s", {"lr": 1}, [_input(tmp_path, b"b")]) != key


def test_tampered_entry_is_recomputed(tmp_path):
    calls = []
    src = _input(tmp_path, b"a")
    key = cache_key("s", {}, [src])
    run_cached(tmp_path / "cache", "s", key, tmp_path / "o1", _stage(calls)(tmp_path / "o1"))
    (tmp_path / "cache" / "s" / key / "y.bin").write_bytes(b"tampered")
    assert run_cached(tmp_path / "cache", "s", key, tmp_path / "o2", _stage(calls)(tmp_path / "o2"))["cache"] == "miss"
    assert len(calls) == 2 and json.loads((tmp_path / "cache" / "s" / key / "stage_result.json").read_text())


def test_disabled_cache_always_runs(tmp_path):
    calls = []
    run_cached(None, "s", "k", tmp_path / "o", _stage(calls)(tmp_path / "o"))
    run_cached(None, "s", "k", tmp_path / "o", _stage(calls)(tmp_path / "o"))
    assert len(calls) == 2
