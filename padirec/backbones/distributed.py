"""Phase 1 on PyTorch's distributed engine: ``backbone.processes`` data-parallel ranks (DDP) in
one pod, launched by ``torchrun``; a Kubeflow Trainer ``TrainJob`` (``manifests/trainer/``) runs
the same worker on several nodes.

``launch`` starts ``torchrun --standalone --nproc-per-node N -m padirec.backbones.ddp_worker``
and waits; each rank runs ``ddp_worker.worker``: it joins the group (``gloo`` on CPU, ``nccl`` on CUDA),
trains with ``padirec.backbones.train.train_backbone`` (which splits every batch over the ranks),
and rank 0 writes the stage's output folder, the same files as a single-process run, so the
checkpoint loads in the single-process code. The torch threads of the step's cores are shared out
over the ranks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from padirec.backbones.config import BackboneConfig

log = logging.getLogger("padirec")


def backend_for(device: str, local_ranks: int = 1) -> str:
    """The collective backend: NCCL when every rank on a node has a GPU of its own, else gloo (CPU
    ranks, or more ranks than GPUs: NCCL refuses two ranks on one device; gloo reduces CUDA
    tensors too)."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.device_count() >= local_ranks:
            return "nccl"
    return "gloo"


def launch(data_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: BackboneConfig, max_len: int, seed: int,
           device: str, threads: int) -> dict[str, Any]:
    """Train on ``cfg.processes`` ranks under torchrun and wait; returns rank 0's ``metrics.json``.
    ``threads``: the step's torch threads, shared out over the ranks (at least one each)."""
    per_rank = max(1, threads // cfg.processes)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={cfg.processes}",
           "-m", "padirec.backbones.ddp_worker", "--data", str(data_dir), "--out", str(out_dir),
           "--backbone", json.dumps(dataclasses.asdict(cfg)), "--max-len", str(max_len), "--seed", str(seed),
           "--device", device]
    env = {**os.environ, "OMP_NUM_THREADS": str(per_rank), "PADIREC_THREADS": str(per_rank)}
    log.info("backbone %s: %d data-parallel ranks (%s), %d thread(s) each", cfg.model, cfg.processes,
             backend_for(device, cfg.processes), per_rank)
    done = subprocess.run(cmd, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun with {cfg.processes} ranks exited with {done.returncode} (the ranks' log is above)")
    return json.loads((Path(out_dir) / "metrics.json").read_text())
