"""The local stage cache: a hit needs the same stage, settings and inputs; entries are verified."""

import json
import shutil
from pathlib import Path

from padirec.runtime.artifacts import write_manifest
from padirec.runtime.cache import cache_key, run_cached


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


def _edit_manifest(entry, edit):
    manifest = json.loads((entry / "manifest.json").read_text())
    edit(manifest)
    (entry / "manifest.json").write_text(json.dumps(manifest))


def test_unreadable_entry_is_a_miss_and_is_recomputed(tmp_path):
    # a run killed mid-write, a disk error or a hand edit: each is a miss, never an error
    src = _input(tmp_path, b"a")
    key = cache_key("s", {}, [src])
    entry = tmp_path / "cache" / "s" / key
    damage = {
        "garbage": lambda: (entry / "stage_result.json").write_bytes(b"\x00\xff{not json"),
        "truncated": lambda: (entry / "stage_result.json").write_text('{"seconds": 1.'),
        "not an object": lambda: (entry / "stage_result.json").write_text("[1, 2]"),
        "missing": lambda: (entry / "stage_result.json").unlink(),
        "no manifest": lambda: (entry / "manifest.json").unlink(),
        # valid JSON of the wrong shape, and a file where the entry's folder belongs
        "manifest a list": lambda: (entry / "manifest.json").write_text("[]"),
        "files a list": lambda: _edit_manifest(entry, lambda m: m.update(files=list(m["files"]))),
        "no sha256": lambda: _edit_manifest(entry, lambda m: m["files"]["y.bin"].pop("sha256")),
        "a plain file": lambda: (shutil.rmtree(entry), entry.write_text("not an entry")),
    }
    calls = []
    run_cached(tmp_path / "cache", "s", key, tmp_path / "o0", _stage(calls)(tmp_path / "o0"))
    for i, (what, spoil) in enumerate(damage.items(), start=1):
        spoil()
        out = tmp_path / f"o{i}"
        assert run_cached(tmp_path / "cache", "s", key, out, _stage(calls)(out))["cache"] == "miss", what
        assert len(calls) == i + 1 and (out / "y.bin").read_bytes() == b"result"
        # the recomputed result is stored again, whole, and serves the next run
        assert json.loads((entry / "stage_result.json").read_text()) == {"seconds": 1.0}
    again = run_cached(tmp_path / "cache", "s", key, tmp_path / "o9", _stage(calls)(tmp_path / "o9"))
    assert again["cache"] == "hit" and len(calls) == len(damage) + 1
    assert [p.name for p in (tmp_path / "cache" / "s").iterdir()] == [key]  # no temporary folder left


def test_a_changed_source_file_is_a_miss(tmp_path, monkeypatch):
    """The key holds the package's source: after a code change, nothing made by the old code is reused."""
    import shutil

    import padirec
    from padirec.runtime import cache

    copy = tmp_path / "padirec"
    shutil.copytree(Path(padirec.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "manifest.json").write_text('{"kind": "x", "files": {}}')
    monkeypatch.setattr(cache, "code_version", lambda: cache.source_hash(copy))
    before = cache_key("s", {"lr": 1}, [src])
    assert cache_key("s", {"lr": 1}, [src]) == before  # stable while nothing changes
    stage = copy / "backbones" / "train.py"
    stage.write_text(stage.read_text() + "\n# a one-line change\n")
    assert cache_key("s", {"lr": 1}, [src]) != before


def test_an_artifact_recording_a_data_checksum_is_keyed_by_its_files(tmp_path):
    """A ``features`` folder records the data checksum it came from; two such folders of other
    content (another backbone, same data) must not share a key, as the prepared data's do."""
    keys = []
    for content in (b"backbone one", b"backbone two"):
        d = tmp_path / content.decode().replace(" ", "_")
        d.mkdir()
        (d / "features.safetensors").write_bytes(content)
        write_manifest(d, "features", ["features.safetensors"], config={}, data_checksum="same data")
        keys.append(cache_key("s", {}, [d]))
    assert keys[0] != keys[1]
