#!/usr/bin/env python3
"""Set the padirec image of the production overlay: python manifests/set_image.py IMAGE

IMAGE is REGISTRY/NAME:TAG, e.g. registry.example.com/padirec:0.1.0-abcdef123456, or
REGISTRY/NAME@sha256:<64 hex> (a digest names the build itself; a tag given with it is dropped).
`latest` and an image without a tag are refused: the overlay must name one build. Only the
`images:` entry for padirec changes (the rest of the file, comments included, stays as it is),
and the file is replaced atomically. Same effect as, in manifests/overlays/production:
    kustomize edit set image padirec=IMAGE
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import yaml

KUSTOMIZATION = Path(__file__).resolve().parent / "overlays" / "production" / "kustomization.yaml"
NAME = re.compile(r"[a-z0-9]+(?:[._:/-][a-z0-9]+)*")  # registry (with port) and path, lower case
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def parse(image: str) -> dict:
    """``{"newName", "newTag"}`` or ``{"newName", "digest"}``; ValueError says what is wrong."""
    if "@" in image:
        name, digest = image.split("@", 1)
        if name.rfind(":") > name.rfind("/"):  # name:tag@digest: the digest decides
            name = name[: name.rfind(":")]
        if not DIGEST.fullmatch(digest):
            raise ValueError(f"bad digest {digest!r} (want sha256:<64 hex>)")
        fields = {"newName": name, "digest": digest}
    else:
        slash = image.rfind("/")
        colon = image.rfind(":")
        if colon <= slash:  # a colon before the last slash is a registry port, not a tag
            raise ValueError(f"{image!r} has no tag: give REGISTRY/padirec:TAG")
        name, tag = image[:colon], image[colon + 1:]
        if tag == "latest":
            raise ValueError(f"{image!r}: 'latest' is not a release; give the version-commit tag")
        if not TAG.fullmatch(tag):
            raise ValueError(f"bad tag {tag!r}")
        fields = {"newName": name, "newTag": tag}
    if not NAME.fullmatch(fields["newName"]):
        raise ValueError(f"bad image name {fields['newName']!r}")
    return fields


def _scalar(value: str) -> str:
    """``value`` as YAML that reads back as the same string (a tag like 1.10 would be a float)."""
    return value if yaml.safe_load(value) == value else f'"{value}"'


def rewrite(text: str, fields: dict) -> str:
    """The kustomization's text with the padirec entry of ``images:`` holding exactly ``fields``."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.fullmatch(r"\s*-\s*name:\s*padirec\s*", line)), None)
    if start is None:
        raise ValueError(f"{KUSTOMIZATION.name} has no images entry 'name: padirec'")
    indent = " " * (len(lines[start]) - len(lines[start].lstrip(" -")))
    end = start + 1  # the entry's own lines are indented deeper than its dash
    dash = len(lines[start]) - len(lines[start].lstrip())
    while end < len(lines) and lines[end].strip() and len(lines[end]) - len(lines[end].lstrip()) > dash:
        end += 1
    body = [f"{indent}{key}: {_scalar(value)}\n" for key, value in fields.items()]
    new = "".join(lines[:start + 1] + body + lines[end:])
    entry = next(e for e in yaml.safe_load(new)["images"] if e["name"] == "padirec")
    if {k: v for k, v in entry.items() if k != "name"} != fields:  # never write what we did not mean
        raise ValueError(f"rewriting {KUSTOMIZATION} gave {entry}")
    return new


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: set_image.py REGISTRY/padirec:TAG | REGISTRY/padirec@sha256:<64 hex>", file=sys.stderr)
        return 2
    try:
        new = rewrite(KUSTOMIZATION.read_text(), parse(argv[0]))
    except ValueError as e:
        print(f"set_image.py: {e}", file=sys.stderr)
        return 2
    fd, tmp = tempfile.mkstemp(dir=KUSTOMIZATION.parent, prefix=".kustomization.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(new)
        os.chmod(tmp, KUSTOMIZATION.stat().st_mode & 0o777)
        os.replace(tmp, KUSTOMIZATION)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"{KUSTOMIZATION}: padirec -> {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
