"""Manifests: checksums verified on load, schema versions checked, writes atomic."""

import json

import pytest

from padirec.errors import ArtifactError
from padirec.runtime.artifacts import atomic_write, atomic_write_json, read_manifest, write_manifest


def _artifact(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    write_manifest(tmp_path, "thing", ["a.bin"], config={"k": 1}, stats={"n": 1})
    return tmp_path


def test_round_trip(tmp_path):
    m = read_manifest(_artifact(tmp_path), kind="thing")
    assert m["stats"] == {"n": 1} and m["files"]["a.bin"]["bytes"] == 100


@pytest.mark.parametrize("damage", ["truncate", "tamper", "delete"])
def test_damaged_file_is_rejected(tmp_path, damage):
    d = _artifact(tmp_path)
    if damage == "truncate":
        (d / "a.bin").write_bytes(b"x" * 50)
    elif damage == "tamper":
        (d / "a.bin").write_bytes(b"y" * 100)
    else:
        (d / "a.bin").unlink()
    with pytest.raises(ArtifactError, match="checksum mismatch|missing"):
        read_manifest(d)


def test_incompatible_schema_version(tmp_path):
    d = _artifact(tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["schema_version"] = 99
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="schema_version 99 is not supported"):
        read_manifest(d)


@pytest.mark.parametrize("manifest,needle", [
    ([], "holds a JSON list, not an object"),
    ({"schema_version": 1, "files": ["a.bin"]}, "'files' is a list"),
    ({"schema_version": 1, "files": {"a.bin": {"bytes": 100}}}, "'a.bin' in 'files' has no sha256"),
])
def test_a_manifest_of_the_wrong_shape_is_refused(tmp_path, manifest, needle):
    (_artifact(tmp_path) / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=needle):
        read_manifest(tmp_path)


def test_credentials_in_a_uri_never_reach_an_artifact(tmp_path):
    uri = "https://alice:hunter22@mlflow.example/"
    (tmp_path / "a.bin").write_bytes(b"x")
    write_manifest(tmp_path, "report", ["a.bin"], config={"tracking": {"uri": uri}}, notes=[uri])
    atomic_write_json(tmp_path / "report.json", {"config": {"tracking": {"uri": uri}}, "k": 10})
    for name in ("manifest.json", "report.json"):
        text = (tmp_path / name).read_text()
        assert "hunter22" not in text and "alice" not in text and "https://***@mlflow.example/" in text
    assert json.loads((tmp_path / "report.json").read_text())["k"] == 10


def test_wrong_kind_and_missing_manifest(tmp_path):
    with pytest.raises(ArtifactError, match="expected a 'backbone' artifact"):
        read_manifest(_artifact(tmp_path), kind="backbone")
    with pytest.raises(ArtifactError, match="no manifest"):
        read_manifest(tmp_path / "nothing")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"v": 1})

    def crash(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "r.json", crash)
    assert json.loads((tmp_path / "r.json").read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
