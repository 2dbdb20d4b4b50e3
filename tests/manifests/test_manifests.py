"""Each kustomize overlay renders (kubectl kustomize) to the objects padirec needs, hardened."""

import re
import shutil
import subprocess
from pathlib import Path

import kfp
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2] / "manifests"
pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")


def render(overlay: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / overlay)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("overlay", ["base", "overlays/dev", "overlays/production"])
def test_overlay_objects(overlay):
    objs = {(o["kind"], o["metadata"]["name"]): o for o in render(overlay)}
    for key in [("Deployment", "mlflow"), ("Service", "mlflow"), ("Job", "mlflow-db-migrate"),
                ("StatefulSet", "object-store"), ("Service", "object-store"), ("ConfigMap", "kfp-launcher"),
                ("ConfigMap", "padirec-env"), ("Namespace", "padirec")]:
        assert key in objs, f"{overlay}: {key} missing"
    assert not [k for k in objs if k[0] == "Secret"], "secrets are created out of band, never rendered"
    mlflow = objs[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
    assert mlflow["readinessProbe"]["httpGet"]["path"] == "/health"
    assert any(e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "padirec-mlflow-db" for e in mlflow["env"])
    for o in objs.values():
        spec = o.get("spec", {}).get("template", {}).get("spec")
        if not spec:
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in spec["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert not c["image"].endswith(":latest") and ":" in c["image"], c["image"]
    launcher = objs[("ConfigMap", "kfp-launcher")]["data"]
    assert launcher["defaultPipelineRoot"].startswith("s3://")
    assert "secretRef" in launcher["providers"]


def test_production_scales_mlflow():
    objs = {(o["kind"], o["metadata"]["name"]): o for o in render("overlays/production")}
    assert objs[("Deployment", "mlflow")]["spec"]["replicas"] == 2


def test_kfp_install_pinned_to_the_sdk_version():
    text = (ROOT / "kfp" / "kustomization.yaml").read_text()
    refs = set(re.findall(r"\?ref=([\w.]+)", text))
    assert refs == {kfp.__version__}


def test_secret_templates_hold_no_values():
    for f in (ROOT / "secrets").glob("*.example"):
        for value in re.findall(r'=(.+)$|"(?:accessKey|secretKey)": "([^"]*)"', f.read_text(), re.M):
            assert not any(value), f"{f.name} holds a value"
