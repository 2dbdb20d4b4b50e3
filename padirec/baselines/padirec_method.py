"""PaDiRec as a method: the diffusion generator samples an adapter for the task (paper Alg. 2)."""

from __future__ import annotations

import zlib

import numpy as np
import torch

from padirec.adapters.adapter import Layout
from padirec.adapters.features import Features
from padirec.baselines.base import AdapterMethod
from padirec.diffusion.generator import Generator


class PaDiRec(AdapterMethod):
    """``prepare(w)`` = one guided, batched sampling pass of the generator: the mean of the
    generator's ``samples_per_task`` samples (``Generator.adapters``)."""

    key = "padirec"

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

    @torch.no_grad()
    def prepare(self, w) -> torch.Tensor:
        w = self.task(w)
        # noise fixed by (seed, task): results do not depend on the order tasks arrive in
        seed = (self.seed * 1_000_003 + zlib.crc32(np.round(w.cpu().numpy(), 6).tobytes())) % 2**31
        return self.generator.adapters(w.cpu(), seed=seed)[0].to(self.device)
