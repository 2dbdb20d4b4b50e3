"""One data-parallel rank of phase 1, run by torchrun: in the step's pod
(``padirec.backbones.distributed``) or on the nodes of a TrainJob (``padirec.backbones.trainjob``),
where ``--data`` and ``--out`` are ``s3://`` folders."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from padirec.backbones.config import BackboneConfig
from padirec.backbones.distributed import backend_for
from padirec.core.typed_config import from_dict
from padirec.runtime.storage import is_s3, localize_folder, upload_folder


def worker(argv: list[str] | None = None) -> int:
    """One rank (run by torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous)."""
    import torch
    import torch.distributed as dist

    from padirec.backbones.stage import train_backbone_stage
    from padirec.runtime.progress import setup_logging

    ap = argparse.ArgumentParser(description="one data-parallel rank of phase 1")
    ap.add_argument("--data", required=True, help="the prepared data folder, local or s3://")
    ap.add_argument("--out", required=True, help="the backbone folder rank 0 writes, local or s3://")
    ap.add_argument("--backbone", required=True, help="BackboneConfig as JSON")
    ap.add_argument("--max-len", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    setup_logging()
    cfg = from_dict(BackboneConfig, json.loads(args.backbone), "--backbone")
    local_rank, local_ranks = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    device = args.device
    if device.startswith("cuda"):  # one GPU per local rank where there are enough, else shared
        device = f"cuda:{local_rank % torch.cuda.device_count()}"
        torch.cuda.set_device(device)
    torch.set_num_threads(int(os.environ.get("PADIREC_THREADS", "1")))
    dist.init_process_group(backend_for(device, local_ranks))
    try:
        with tempfile.TemporaryDirectory(prefix="padirec-rank-") as tmp:
            # every rank reads its own copy: ranks of other nodes share no file system
            data = localize_folder(args.data, Path(tmp) / "data") if is_s3(args.data) else args.data
            out = Path(tmp) / "backbone" if is_s3(args.out) else args.out
            train_backbone_stage(data, out, cfg, args.max_len, args.seed, device)
            if is_s3(args.out) and dist.get_rank() == 0:  # rank 0 holds the weights every rank agreed on
                upload_folder(out, args.out)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(worker())
