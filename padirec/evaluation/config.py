"""Configuration of the evaluation sweep, the baselines and the response-time comparison."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BaselinesConfig:
    """Settings of the compared methods (``padirec/baselines``)."""

    mmr_candidates: int = 100  # MMR re-ranks the backbone's top-N
    cmr_epochs: int = 10  # passes over the training prefixes; 0 = the adapters' epochs (one Retrain's budget)
    cmr_tasks_per_batch: int = 8  # task draws sharing each mini-batch
    hypernetwork_steps: int = 2000
    hypernetwork_hidden: int = 256
    hypernetwork_lr: float = 1e-3
    deepprl_epochs: int = 3
    deepprl_hidden: int = 64
    deepprl_context: int = 10  # last items whose categories form the context
    deepprl_lr: float = 1e-3
    deepprl_diversity_loss: str = "l1"  # l1 (the paper's) | bce (soft labels)
    retrain_from_bank: bool = True  # sweep: reuse the bank's adapter when it trained the exact task


@dataclass
class EvaluationConfig:
    k: int = 10
    alpha: float = 0.5
    methods: list[str] = field(default_factory=lambda: ["padirec", "retrain", "soup", "mmr", "cmr", "hypernetwork", "deepprl"])
    sampled: bool = False  # 1 + 99 negatives instead of full ranking (for comparison only)
    response_time_repeats: int = 5
    robustness_noise: float = 0.05
    robustness_repeats: int = 5
    case_study_user: int = 0  # 0 = pick automatically
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
