"""PaDiRec as a method: the diffusion generator samples an adapter for the task (paper Alg. 2)."""

from __future__ import annotations

import zlib

import numpy as np
import torch

from padirec.adapters.features import Features
from padirec.core.layout import Layout
from padirec.diffusion.generator import Generator
from padirec.methods.base import AdapterMethod, MethodContext, NoSettings, register

# The noise seed of a task is (seed * SEED_STRIDE + crc32(task weights)) mod 2^31: fixed by the run's
# seed and the task alone, so results do not depend on the order tasks arrive in; the large prime
# stride keeps the noise of different run seeds apart for the same task.
SEED_STRIDE = 1_000_003


@register
class PaDiRec(AdapterMethod):
    """``prepare(weights)`` = one guided, batched sampling pass of the generator: the mean of the
    generator's ``samples_per_task`` samples (``Generator.adapters``)."""

    key = "padirec"
    learns_from_tasks = True
    uses_generator = True
    role = "proposed"
    robustness = True

    def __init__(
        self, features: Features, utilities: list[str], layout: Layout, generator: Generator, seed: int = 0,
    ) -> None:
        super().__init__(features, utilities, layout)
        if generator.layout != layout:
            raise ValueError("the generator was trained on a different adapter layout than the bank's")
        if list(generator.utilities) != list(utilities):
            raise ValueError(f"the generator's utilities {generator.utilities} differ from {utilities}")
        self.generator = generator
        self.seed = seed

    @classmethod
    def build(cls, ctx: MethodContext, settings: NoSettings) -> PaDiRec:
        return cls(ctx.features, ctx.utilities, ctx.layout, ctx.load_generator(cls.key), ctx.seed)

    @torch.no_grad()
    def prepare(self, weights) -> torch.Tensor:
        w = self.task_weights(weights)
        seed = (self.seed * SEED_STRIDE + zlib.crc32(np.round(w.cpu().numpy(), 6).tobytes())) % 2**31
        return self.generator.adapters(w.cpu(), seed=seed)[0].to(self.device)
