"""A tiny end-to-end setup for the evaluation and baseline tests, built in seconds.

Synthetic prepared data (the session fixture ``synthetic_prepared``), a 16-dim SASRec trained
briefly by the library's backbone stage, its frozen features, a small adapter bank written to the ``adapter_bank`` contract of
``docs/internals.md`` and a tiny generator trained on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from padirec.adapters.bank import load_bank, write_bank
from padirec.adapters.config import AdapterConfig
from padirec.adapters.features import compute_features
from padirec.adapters.train import train_bank
from padirec.backbones.checkpoint import backbone_sha256, load_backbone
from padirec.config import Config
from padirec.core.layout import adapter_layout
from padirec.core.tasks import sample_tasks
from padirec.data.dataset import load_prepared
from padirec.diffusion.config import GeneratorConfig
from padirec.diffusion.train import train_generator
from padirec.methods.registry import MethodContext
from tests.tiny_backbone import MAX_LEN, train_tiny_backbone


def tiny_config() -> Config:
    cfg = Config(seed=0, device="cpu")
    cfg.data.source = "synthetic"
    cfg.tracking.registered_model = "padirec-smoke"  # synthetic data never names the production model
    cfg.data.max_len = MAX_LEN
    cfg.adapters = AdapterConfig(epochs=2, steps_per_epoch=4, checkpoints_per_task=2, batch_size=256,
                                 grid_size=3, num_random_tasks=4)
    cfg.generator = GeneratorConfig(size="tiny", train_steps=40, batch_size=32, num_train_timesteps=50,
                                    num_inference_steps=5, warmup_steps=5, log_every=20)
    m = cfg.methods
    m["hypernetwork"].steps, m["cmr"].epochs, m["mmr"].candidates = 100, 1, 20
    for key in ("deepprl_static", "deepprl", "modt4r"):  # trained baselines: one epoch runs end to end
        m[key].epochs = 1
    m["deepprl"].policy_steps = 20
    cfg.evaluation.response_time_repeats = 2
    cfg.evaluation.robustness_repeats = 1
    return cfg


def train_small_bank(out: Path, features, cfg: Config, backbone_dir: Path) -> Path:
    """Train a small bank (grid held out + random tasks) and write it to the internals contract."""
    ac = cfg.adapters
    weights, held_out = sample_tasks(len(ac.utilities), ac.grid_size, ac.num_random_tasks, ac.hold_out_grid, cfg.seed)
    ckpts = train_bank(features, weights, ac, cfg.seed).checkpoints  # (T, K, P)
    t, k, p = ckpts.shape
    rows = pd.DataFrame({
        "row": np.arange(t * k), "task_id": np.repeat(np.arange(t), k), "checkpoint": np.tile(np.arange(k), t),
        "held_out": np.repeat(held_out, k), "w": [list(weights[i]) for i in np.repeat(np.arange(t), k)],
        "shard": 0,
    })
    write_bank(out, ckpts.reshape(t * k, p), rows, adapter_layout(features.dim, ac.bottleneck), list(ac.utilities),
               backbone_sha256(backbone_dir), config={}, stats={}, held_out={"grid": True},
               shard={"index": 0, "count": 1})
    return out


def build_tiny(root: Path, data_dir: Path) -> dict:
    """Every stage input for the evaluation, under ``root``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only contend on a busy shared CPU
    try:
        return _build_tiny(root, data_dir)
    finally:
        torch.set_num_threads(threads)


def _build_tiny(root: Path, data_dir: Path) -> dict:
    cfg = tiny_config()
    data = load_prepared(data_dir)
    backbone_dir = root / "backbone"
    train_tiny_backbone(data_dir, backbone_dir, epochs=4)
    features = compute_features(load_backbone(backbone_dir), data, MAX_LEN)
    bank_dir = train_small_bank(root / "bank", features, cfg, backbone_dir)
    bank = load_bank(bank_dir)
    gen = train_generator(bank.params, bank.weights, bank.layout, cfg.generator, seed=0,
                          held_out_mask=torch.as_tensor(bank.held_out), utilities=bank.utilities)
    gen.save(root / "generator")
    context = MethodContext(features=features, data=data, layout=bank.layout, adapters=cfg.adapters, seed=cfg.seed,
                            k=cfg.evaluation.k, max_len=MAX_LEN, bank=bank, generator=gen)
    return {"cfg": cfg, "data": data, "data_dir": data_dir, "backbone_dir": backbone_dir, "features": features,
            "bank_dir": bank_dir, "bank": bank, "generator_dir": root / "generator", "generator": gen,
            "context": context}
