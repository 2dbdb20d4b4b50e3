"""One data-parallel rank of phase 1, run by torchrun (``padirec.backbones.distributed``)."""

from __future__ import annotations

import argparse
import json
import os

from padirec.backbones.config import BackboneConfig
from padirec.backbones.distributed import backend_for


def worker(argv: list[str] | None = None) -> int:
    """One rank (run by torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous)."""
    import torch
    import torch.distributed as dist

    from padirec.backbones.stage import train_backbone_stage
    from padirec.runtime.progress import setup_logging

    ap = argparse.ArgumentParser(description="one data-parallel rank of phase 1")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--backbone", required=True, help="BackboneConfig as JSON")
    ap.add_argument("--max-len", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    setup_logging()
    cfg = BackboneConfig(**json.loads(args.backbone))
    local_rank, local_ranks = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    device = args.device
    if device.startswith("cuda"):  # one GPU per local rank where there are enough, else shared
        device = f"cuda:{local_rank % torch.cuda.device_count()}"
        torch.cuda.set_device(device)
    torch.set_num_threads(int(os.environ.get("PADIREC_THREADS", "1")))
    dist.init_process_group(backend_for(device, local_ranks))
    try:
        train_backbone_stage(args.data, args.out, cfg, args.max_len, args.seed, device)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(worker())
