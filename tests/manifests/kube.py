"""Helpers for the manifest tests: render a kustomization, and resolve a container's environment
the way the kubelet does, with the test's values in place of Secrets and cluster addresses."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def render(path: str | Path, root: Path = MANIFESTS) -> list[dict]:
    """``kubectl kustomize`` of ``root / path``, as a list of objects."""
    out = subprocess.run(["kubectl", "kustomize", str(root / path)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def objects(path: str | Path, root: Path = MANIFESTS) -> dict[tuple[str, str], dict]:
    """The rendered objects by ``(kind, name)``."""
    return {(o["kind"], o["metadata"]["name"]): o for o in render(path, root)}


def container(obj: dict, index: int = 0) -> dict:
    return obj["spec"]["template"]["spec"]["containers"][index]


def with_external_db(tmp: Path) -> Path:
    """A copy of the manifests with ``overlays/external-db``: the base plus components/external-db,
    as docs/cluster.md tells operators to compose it. Returns the copy's root."""
    root = tmp / "manifests"
    shutil.copytree(MANIFESTS, root)
    (root / "overlays" / "external-db").mkdir()
    (root / "overlays" / "external-db" / "kustomization.yaml").write_text(
        "resources: [../../base]\ncomponents: [../../components/external-db]\n")
    return root


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def resolve_env(c: dict, secrets: dict[tuple[str, str], str], override: dict[str, str] | None = None) -> dict[str, str]:
    """A container's ``env`` as the kubelet gives it: Secret references from ``secrets``
    (``(name, key) -> value``), ``override`` replacing literal values (a cluster address by the
    test's), and ``$(VAR)`` expanded from variables defined earlier in the list (``$$`` is ``$``)."""
    env: dict[str, str] = {}
    for e in c.get("env", []):
        if "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[(ref["name"], ref["key"])]
        elif override and e["name"] in override:
            env[e["name"]] = override[e["name"]]
        else:
            value = e.get("value", "")
            env[e["name"]] = _REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)
    return env
