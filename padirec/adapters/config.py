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
    alpha-NDCG@10 measures. Chosen on the validation split (MovieLens-100K, SASRec, full ranking,
    11-point grid, ``benchmarks/controllability.py --split valid``, seeds 0-2): ``topk`` gives
    Spearman(w_acc, NDCG@10) = +1.000 / +1.000 / +0.991 and Spearman(w_acc, alpha-NDCG@10) =
    -1.000 / -0.982 / -1.000, alpha-NDCG@10 from 0.730 to 0.457, front hypervolume 0.0841 / 0.0833
    / 0.0850; ``train`` gives +0.827 / +0.973 / +0.918 and -0.491 / -0.864 / -0.736, alpha-NDCG@10
    at most 0.557, hypervolume 0.0723 / 0.0733 / 0.0740 (its NDCG@10 is flat for w_acc >= 0.5).
    Hence ``topk`` is the default (it was first chosen on test, with the same outcome); it costs
    about 2.5x the training time of ``train`` (16 s vs 6 s for the 11 grid tasks, idle 2-core box).
    An epoch is one pass over the training prefixes, capped at
    ``steps_per_epoch`` mini-batches (0 = no cap).
    """

    bottleneck: int = 8
    utilities: list[str] = field(default_factory=lambda: ["accuracy", "diversity"])
    num_random_tasks: int = 89  # random draws on the simplex, on top of the evaluation grid
    grid_size: int = 11  # w_acc in {0, 0.1, ..., 1}
    hold_out_grid: bool = True  # keep the evaluation grid out of the generator's training set
    checkpoints_per_task: int = 5
    epochs: int = 20
    steps_per_epoch: int = 20  # 20 x 512 prefixes per epoch: 100 tasks x 5 checkpoints in minutes
    lr: float = 1e-2
    # lr factor during the checkpoint epochs (the last ``checkpoints_per_task``): 1 = constant lr
    # (the checkpoints keep moving, about 10% relative L2 per epoch on ML-100K); below 1 they settle
    # around the converged adapter, as parameter-diffusion work collects its checkpoints
    # (benchmarks/bank_settling.py measures both on the validation split)
    checkpoint_lr: float = 1.0
    batch_size: int = 512
    alpha: float = 0.5  # alpha-DCG redundancy penalty
    temperature: float = 0.1  # soft-rank temperature
    num_negatives: int = 9
    candidates: str = "topk"  # which candidate list the diversity loss sees: train | topk
    topk_candidates: int = 20
    num_shards: int = 1
    # Training features: 1 = one backbone pass per training prefix (exact); s = one pass per window
    # of s targets, as backbone training groups them (about s times less encoder work). At 20 on
    # ML-100K (valid, 3 tasks) every metric moved by 0.008 or less; the ML-1M config uses it.
    feature_stride: int = 1
