"""Configuration of the adapter bank (phase 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from padirec.core.typed_config import POSITIVE, setting
from padirec.core.utilities import UTILITIES

CANDIDATE_LISTS = ("train", "topk")  # the choices of ``AdapterConfig.candidates``


@dataclass
class AdapterConfig:
    """Adapter bank: which tasks, how each adapter trains, how the bank is sharded.

    ``candidates``: the list the diversity loss ranks: ``train`` = the positive and its
    ``num_negatives`` negatives (the paper's training list); ``topk`` = that list plus the frozen
    backbone's ``topk_candidates`` best unseen items, closer to the full-ranking top-10 that
    alpha-NDCG@10 measures. An epoch is one pass over the training prefixes, capped at
    ``steps_per_epoch`` mini-batches (0 = no cap).
    """

    bottleneck: int = setting(8, range=POSITIVE)
    # what a task weighs, in the order of its weights: registered utilities (``padirec.core.utilities``)
    utilities: list[str] = setting(default_factory=lambda: ["accuracy", "diversity"], choices=UTILITIES)
    # random draws on the simplex, on top of the evaluation grid; chosen in docs/evaluation.md,
    # "More bank tasks?" (benchmarks/bank_settling.py --random-tasks 49 89 189)
    num_random_tasks: int = setting(89, range="[0, inf)")
    grid_size: int = setting(11, range="[2, inf)")  # w_acc in {0, 0.1, ..., 1}
    grid_centroid: bool = False  # the simplex's centroid joins the grid when the lattice lacks it (p = 3)
    hold_out_grid: bool = True  # keep the evaluation grid out of the generator's training set
    checkpoints_per_task: int = setting(5, range=POSITIVE)
    epochs: int = setting(20, range=POSITIVE)
    steps_per_epoch: int = setting(20, range=POSITIVE)  # 20 x 512 prefixes per epoch: 100 tasks x 5 checkpoints in minutes
    lr: float = setting(1e-2, range="(0, inf)")
    # lr factor during the checkpoint epochs (the last ``checkpoints_per_task``): 1 = constant lr,
    # below 1 the checkpoints settle; chosen in docs/evaluation.md, "Measured: a bank worth learning
    # from" (benchmarks/bank_settling.py --checkpoint-lr 1 0.1)
    checkpoint_lr: float = setting(1.0, range="(0, 1]")
    batch_size: int = setting(512, range=POSITIVE)
    alpha: float = setting(0.5, range="[0, 1]")  # alpha-DCG redundancy penalty
    temperature: float = setting(0.1, range="(0, inf)")  # soft-rank temperature
    num_negatives: int = setting(9, range=POSITIVE)
    # which candidate list the diversity loss sees: train | topk; chosen in docs/evaluation.md,
    # "Selection on validation" (benchmarks/controllability.py --candidates train,topk --split valid)
    candidates: str = setting("topk", choices=CANDIDATE_LISTS)
    topk_candidates: int = setting(20, range=POSITIVE)
    num_shards: int = setting(1, range=POSITIVE)
    # Training features: 1 = one backbone pass per training prefix (exact); s = one pass per window
    # of s targets (about s times less encoder work); measured in docs/scale.md, "The window pass
    # for the features"
    feature_stride: int = setting(1, range=POSITIVE)
    # each utility's own settings, by name (the ``config_class`` of its file; a plugin's included)
    utility_settings: dict[str, Any] = setting(default_factory=UTILITIES.default_settings,
                                               from_dict=UTILITIES.read_settings)
