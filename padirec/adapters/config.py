"""Configuration of the adapter bank (phase 2)."""

from __future__ import annotations

from dataclasses import dataclass, field

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

    bottleneck: int = 8
    utilities: list[str] = field(default_factory=lambda: ["accuracy", "diversity"])
    # random draws on the simplex, on top of the evaluation grid; chosen in docs/evaluation.md,
    # "More bank tasks?" (benchmarks/bank_settling.py --random-tasks 49 89 189)
    num_random_tasks: int = 89
    grid_size: int = 11  # w_acc in {0, 0.1, ..., 1}
    grid_centroid: bool = False  # the simplex's centroid joins the grid when the lattice lacks it (p = 3)
    hold_out_grid: bool = True  # keep the evaluation grid out of the generator's training set
    checkpoints_per_task: int = 5
    epochs: int = 20
    steps_per_epoch: int = 20  # 20 x 512 prefixes per epoch: 100 tasks x 5 checkpoints in minutes
    lr: float = 1e-2
    # lr factor during the checkpoint epochs (the last ``checkpoints_per_task``): 1 = constant lr,
    # below 1 the checkpoints settle; chosen in docs/evaluation.md, "Measured: a bank worth learning
    # from" (benchmarks/bank_settling.py --checkpoint-lr 1 0.1)
    checkpoint_lr: float = 1.0
    batch_size: int = 512
    alpha: float = 0.5  # alpha-DCG redundancy penalty
    temperature: float = 0.1  # soft-rank temperature
    num_negatives: int = 9
    # which candidate list the diversity loss sees: train | topk; chosen in docs/evaluation.md,
    # "Selection on validation" (benchmarks/controllability.py --candidates train,topk --split valid)
    candidates: str = "topk"
    topk_candidates: int = 20
    num_shards: int = 1
    # Training features: 1 = one backbone pass per training prefix (exact); s = one pass per window
    # of s targets (about s times less encoder work); measured in docs/scale.md, "The window pass
    # for the features"
    feature_stride: int = 1
