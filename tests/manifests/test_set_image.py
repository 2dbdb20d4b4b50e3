"""manifests/set_image.py pins the production overlay's image, and the overlay then renders to
manifests that can be applied as they are: concrete tags, no placeholders, the database wired,
MLflow's allowed hosts and Host-checked probes in place."""

import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.manifests.kube import MANIFESTS, container, objects, render

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")
IMAGE = "registry.example.com/padirec:0.1.0-abcdef123456"
PLACEHOLDER = re.compile(r"REPLACE|PLACEHOLDER|CHANGE_?ME|TODO|<[a-z-]+>", re.I)


def set_image(root, image):
    return subprocess.run([sys.executable, str(root / "set_image.py"), image], capture_output=True, text=True)


@pytest.fixture
def copy(tmp_path):
    root = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, root)
    return root


def assert_applicable(objs: dict, padirec_image: str) -> None:
    text = yaml.safe_dump_all(list(objs.values()))
    assert not PLACEHOLDER.search(text), PLACEHOLDER.search(text)
    for o in objs.values():
        for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            name, _, tag = c["image"].rpartition(":")
            assert "/" not in tag and tag and tag != "latest", c["image"]
            if name.endswith("padirec"):
                assert c["image"] == padirec_image
    mlflow = container(objs[("Deployment", "mlflow")])
    env = {e["name"]: e for e in mlflow["env"]}
    assert "mlflow.padirec.svc.cluster.local:5000" in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert mlflow[probe]["exec"]["command"][-1] == "mlflow.padirec.svc.cluster.local"  # the Host header
    secret = (env["PGPASSWORD"] if "PGPASSWORD" in env else env["MLFLOW_BACKEND_STORE_URI"])["valueFrom"]["secretKeyRef"]
    if ("StatefulSet", "postgres") in objs:
        assert secret["name"] == "padirec-postgres"
    else:
        assert secret == {"name": "padirec-mlflow-db", "key": "uri"}


def test_committed_production_overlay_is_applicable():
    assert_applicable(objects("overlays/production"), "registry.example.com/padirec:0.1.0")


def test_set_image_then_render(copy):
    before = (copy / "overlays/production/kustomization.yaml").read_text()
    done = set_image(copy, IMAGE)
    assert done.returncode == 0, done.stderr
    after = (copy / "overlays/production/kustomization.yaml").read_text()
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert changed == ["    newTag: 0.1.0-abcdef123456"], "only the tag line changes; comments stay"
    assert not list((copy / "overlays/production").glob(".kustomization.*")), "temp file left behind"
    assert_applicable(objects("overlays/production", root=copy), IMAGE)
    assert before == (MANIFESTS / "overlays/production/kustomization.yaml").read_text(), "the real tree is untouched"


def test_set_image_with_external_db(copy):
    kust = copy / "overlays/production/kustomization.yaml"
    kust.write_text(kust.read_text().replace("# components:\n#   - ", "components:\n  - "))
    assert set_image(copy, "registry.example.com:5000/team/padirec:1.10").returncode == 0
    objs = objects("overlays/production", root=copy)
    assert ("StatefulSet", "postgres") not in objs
    assert_applicable(objs, "registry.example.com:5000/team/padirec:1.10")


@pytest.mark.parametrize("tag", ["", ":0.1.0-abcdef123456"])  # with a tag too, the digest decides
def test_set_image_digest(copy, tag):
    image = "registry.example.com/padirec@sha256:" + "ab" * 32
    assert set_image(copy, image.replace("@", f"{tag}@")).returncode == 0
    assert image in [c["image"] for o in render("overlays/production", root=copy)
                     for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])]


@pytest.mark.parametrize("image", ["registry.example.com/padirec:latest", "registry.example.com/padirec",
                                   "localhost:5000/padirec", "Registry/Padirec:1", "padirec:bad tag",
                                   "padirec@sha256:abc", "padirec@sha256:" + "AB" * 32, "padirec@md5:" + "ab" * 16])
def test_set_image_refuses(copy, image):
    before = (copy / "overlays/production/kustomization.yaml").read_text()
    done = set_image(copy, image)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("set_image.py: "), done.stderr
    assert (copy / "overlays/production/kustomization.yaml").read_text() == before
