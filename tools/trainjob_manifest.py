"""Write manifests/trainer/backbone-trainjob.yaml: the TrainJob the backbone step submits under
``backbone.launcher: trainjob``, for configs/ml1m.yaml on 2 CPU nodes, rendered by the step's own
code (``padirec.backbones.trainjob.render``). The step renders and submits its own at run time;
this file shows what it sends, and is applied by hand to run phase 1 outside a pipeline
(data staged first: docs/cluster.md). ``tests/backbones/test_trainjob.py`` checks that it is current.

    python tools/trainjob_manifest.py
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

from padirec.backbones.trainjob import render, worker_args
from padirec.config import load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "manifests" / "trainer" / "backbone-trainjob.yaml"
STAGED = "s3://padirec/trainjobs/ml1m-example"
HEADER = """\
# The TrainJob the backbone step submits (backbone.launcher: trainjob), rendered for
# configs/ml1m.yaml on 2 CPU nodes by tools/trainjob_manifest.py: do not edit by hand.
# Outside a pipeline: stage the prepared data under .../data, set the image, then
#   kubectl -n kubeflow create -f backbone-trainjob.yaml
# The trained backbone appears under .../backbone (docs/cluster.md, "The backbone on several nodes").
"""


def example() -> dict:
    config = load_config(ROOT / "configs" / "ml1m.yaml")
    cfg = dataclasses.replace(config.backbone, launcher="trainjob", trainjob=dataclasses.replace(
        config.backbone.trainjob, nodes=2, staging="s3://padirec/trainjobs", namespace="kubeflow"))
    args = worker_args(f"{STAGED}/data", f"{STAGED}/backbone", cfg, config.data.max_len, cfg.seed_for(config.seed))
    return render("padirec-backbone-ml1m-example", "kubeflow", "registry.example.com/padirec:0.1.0",
                  cfg.trainjob, cfg.processes, args)


def main() -> None:
    EXAMPLE.parent.mkdir(parents=True, exist_ok=True)
    tmp = EXAMPLE.with_name(f".{EXAMPLE.name}.tmp")
    tmp.write_text(HEADER + yaml.safe_dump(example(), sort_keys=False, width=120))
    os.replace(tmp, EXAMPLE)
    print(f"wrote {EXAMPLE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
