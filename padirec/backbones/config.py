"""Configuration of backbone training (phase 1): the settings every backbone shares, and each
backbone's own (``models.<name>``, the dataclass of its file)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from padirec.backbones.base import BACKBONES
from padirec.core.typed_config import POSITIVE, setting


@dataclass
class TrainJobSettings:
    """Phase 1 as a Kubeflow Trainer ``TrainJob`` (``backbone.launcher: trainjob``): ``nodes`` pods of
    ``backbone.processes`` ranks each, run by the Trainer's torch runtime. The backbone step uploads
    the prepared data to ``staging``, submits the job, waits, and downloads the trained backbone."""

    nodes: int = setting(2, range=POSITIVE)
    runtime: str = "torch-distributed"  # the ClusterTrainingRuntime the job runs on (the Trainer's PyTorch one)
    namespace: str = ""  # "" = the step pod's own namespace
    staging: str = ""  # s3://bucket/prefix: where the data goes in and the backbone comes out (required)
    image: str = ""  # "" = the step's own image (PADIREC_IMAGE, set when the pipeline is compiled)
    cpu: str = "4"  # per node: requests = limits
    memory: str = "16Gi"
    gpus: int = setting(0, range="[0, inf)")  # per node (nvidia.com/gpu); NCCL when each rank has one
    timeout_minutes: int = setting(240, range=POSITIVE)  # the job is deleted and the step fails past it


@dataclass
class BackboneConfig:
    """Model shape and phase-1 training. ``dim`` is the user representation size (64, fixed by
    the adapter shape). Defaults tuned on MovieLens-100K (full ranking, leave-one-out)."""

    model: str = setting("sasrec", choices=BACKBONES)  # a registered backbone: sasrec | gru4rec | tisasrec | lrurec
    dim: int = setting(64, range=POSITIVE)
    num_layers: int = setting(2, range=POSITIVE)
    num_heads: int = setting(1, range=POSITIVE)
    dropout: float = setting(0.2, range="[0, 1)")
    num_negatives: int = setting(9, range=POSITIVE)
    batch_size: int = setting(64, range=POSITIVE)  # training windows per step (each holds up to train_stride targets)
    lr: float = setting(1e-3, range="(0, inf)")
    weight_decay: float = setting(0.0, range="[0, inf)")
    epochs: int = setting(200, range=POSITIVE)
    patience: int = setting(10, range=POSITIVE)
    eval_every: int = setting(1, range=POSITIVE)
    eval_batch_size: int = setting(1024, range=POSITIVE)  # users per full-ranking evaluation batch
    # Targets per training window. 1 = one prefix per example, every history min(t, max_len)
    # items (exact, the most compute). s > 1 predicts the last s positions of each window at
    # once, about s times cheaper, histories max_len - s + 1 .. max_len items. 0 = max_len
    # (non-overlapping windows, as the original SASRec training): the default, measured on
    # MovieLens-100K to reach the quality bar at ~1/20 of the compute of stride 1.
    train_stride: int = setting(0, range="[0, inf)")
    # The backbone's own seed; -1 = the run's ``seed``. Pinned, runs under other seeds share one
    # backbone (and its cache entry): ``padirec experiment`` varies the bank, generator and
    # sampling over seeds, not phase 1.
    seed: int = setting(-1, range="[-1, 4294967295]")
    # Data-parallel ranks in the step's pod (DDP under torchrun, gloo on CPU, NCCL on GPU; the
    # step's threads are shared out over them). 1 = one plain process. The global batch stays
    # ``batch_size``, split over the ranks.
    processes: int = setting(1, range=POSITIVE)
    # Where the ranks run: ``local`` in the step's pod; ``trainjob`` on ``trainjob.nodes`` pods of a
    # Kubeflow Trainer TrainJob, ``processes`` ranks on each (``padirec.backbones.trainjob``).
    launcher: str = setting("local", choices=("local", "trainjob"))
    trainjob: TrainJobSettings = setting(default_factory=TrainJobSettings)
    # each backbone's own settings, by name (the ``config_class`` of ``padirec/backbones/<name>.py``)
    models: dict[str, Any] = setting(default_factory=BACKBONES.default_settings,
                                     from_dict=BACKBONES.read_settings)

    # settings that moved into a backbone's own section: configs and backbones saved before still load
    moved: ClassVar[dict[str, str]] = {"max_time_interval": "models.tisasrec.max_time_interval"}

    def seed_for(self, run_seed: int) -> int:
        """The seed phase 1 trains with in a run seeded ``run_seed``."""
        return run_seed if self.seed < 0 else self.seed

    def settings_for(self, name: str) -> Any:
        """Backbone ``name``'s own settings (its defaults where the config has none)."""
        return self.models.get(name) or BACKBONES.settings_class(name)()

    def chosen(self) -> BackboneConfig:
        """These settings with only the chosen model's own section: what the trained model depends
        on (its cache key, its manifest), so another backbone's settings or plugin change nothing."""
        return dataclasses.replace(self, models={self.model: self.settings_for(self.model)})
