"""Configuration of backbone training (phase 1)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BackboneConfig:
    """Model shape and phase-1 training. ``dim`` is the user representation size (64, fixed by
    the adapter shape). Defaults tuned on MovieLens-100K (full ranking, leave-one-out)."""

    model: str = "sasrec"  # sasrec | gru4rec | tisasrec | lrurec
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 1
    dropout: float = 0.2
    num_negatives: int = 9
    batch_size: int = 64  # training windows per step (each holds up to train_stride targets)
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 200
    patience: int = 10
    eval_every: int = 1
    max_time_interval: int = 256  # TiSASRec: relative intervals are clipped at this many units
    eval_batch_size: int = 1024  # users per full-ranking evaluation batch
    # Targets per training window. 1 = one prefix per example, every history min(t, max_len)
    # items (exact, the most compute). s > 1 predicts the last s positions of each window at
    # once, about s times cheaper, histories max_len - s + 1 .. max_len items. 0 = max_len
    # (non-overlapping windows, as the original SASRec training): the default, measured on
    # MovieLens-100K to reach the quality bar at ~1/20 of the compute of stride 1.
    train_stride: int = 0
    # The backbone's own seed; -1 = the run's ``seed``. Pinned, runs under other seeds share one
    # backbone (and its cache entry): ``padirec experiment`` varies the bank, generator and
    # sampling over seeds, not phase 1.
    seed: int = -1
    # Data-parallel ranks in the step's pod (DDP under torchrun, gloo on CPU, NCCL on GPU; the
    # step's threads are shared out over them). 1 = one plain process. The global batch stays
    # ``batch_size``, split over the ranks.
    processes: int = 1

    def seed_for(self, run_seed: int) -> int:
        """The seed phase 1 trains with in a run seeded ``run_seed``."""
        return run_seed if self.seed < 0 else self.seed
