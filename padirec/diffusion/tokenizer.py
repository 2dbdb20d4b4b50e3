"""Adapter parameters <-> normalised tokens: the generator's preprocessing.

A flattened adapter row ``(P,)`` is cut along its layout (``W1``, ``b1``, ``W2``, ``b2`` in
flattening order). ``ParamNormalizer`` z-scores each layout tensor with dataset statistics: one
mean/std per tensor (``mode="tensor"``, the paper's choice) or one per coordinate
(``mode="element"``: the bank's rows share most of their values, so per-coordinate statistics
leave the denoiser only the variation across tasks to learn). ``ParamTokenizer`` splits each tensor
into contiguous chunks of ``token_size`` values (a chunk never straddles two tensors; the last
chunk of a tensor is zero-padded). Both are exactly invertible up to float error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from padirec.core.layout import Layout, check_width, layout_sizes, num_params
from padirec.errors import ArtifactError, ConfigError

NORMALIZATION_MODES = ("tensor", "element")


@dataclass
class ParamNormalizer:
    """Per-tensor (or per-coordinate) z-score. ``mean``/``std``: ``(P,)`` expanded per value."""

    layout: Layout
    mode: str
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, params: torch.Tensor, layout: Layout, mode: str = "tensor") -> ParamNormalizer:
        """Statistics of ``params (N, P)``. Constant coordinates get a tiny std floor, not 0."""
        if mode not in NORMALIZATION_MODES:
            raise ConfigError(f"generator.normalization: {mode!r} is not one of {NORMALIZATION_MODES}")
        check_width(params, layout)
        if params.ndim != 2 or params.shape[0] < 1:
            raise ArtifactError(f"adapter params must be (N, P) with N >= 1, got {tuple(params.shape)}")
        x = params.detach().double()
        means, stds = [], []
        start = 0
        for size in layout_sizes(layout):
            block = x[:, start:start + size]
            start += size
            if mode == "tensor":
                m = block.mean().expand(size)
                s = block.std(unbiased=False).expand(size)
            else:
                m = block.mean(0)
                s = block.std(0, unbiased=False)
            # floor relative to the tensor's overall scale so a constant coordinate stays finite
            floor = 1e-3 * float(block.std(unbiased=False)) + 1e-8
            means.append(m)
            stds.append(s.clamp_min(floor))
        return cls(layout, mode, torch.cat(means).float(), torch.cat(stds).float())

    def normalize(self, params: torch.Tensor) -> torch.Tensor:
        """``(N, P)`` raw -> ``(N, P)`` z-scored."""
        check_width(params, self.layout)
        return (params - self.mean.to(params)) / self.std.to(params)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, P)`` z-scored -> ``(N, P)`` raw."""
        return z * self.std.to(z) + self.mean.to(z)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable statistics (stored in the generator manifest)."""
        return {"mode": self.mode, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], layout: Layout) -> ParamNormalizer:
        try:
            mean = torch.tensor(state["mean"], dtype=torch.float32)
            std = torch.tensor(state["std"], dtype=torch.float32)
            mode = state["mode"]
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"normaliser statistics are malformed: {e}") from e
        p = num_params(layout)
        if mean.shape != (p,) or std.shape != (p,):
            raise ArtifactError(f"normaliser statistics have {mean.numel()}/{std.numel()} values, "
                                f"the layout needs {p}")
        return cls(layout, mode, mean, std)


class ParamTokenizer:
    """Flattened rows ``(N, P)`` <-> tokens ``(N, T, token_size)``, chunks within each tensor."""

    def __init__(self, layout: Layout, token_size: int) -> None:
        if token_size < 1:
            raise ConfigError(f"generator.token_size must be >= 1, got {token_size}")
        self.layout = layout
        self.token_size = token_size
        self.sizes = layout_sizes(layout)
        self.num_params = sum(self.sizes)
        # index of each real value inside the padded (T * token_size) buffer
        slots, token = [], 0
        for size in self.sizes:
            n_tok = -(-size // token_size)
            slots.append(torch.arange(size) + token * token_size)
            token += n_tok
        self.num_tokens = token
        self.slots = torch.cat(slots)  # (P,)

    def encode(self, params: torch.Tensor) -> torch.Tensor:
        """``(N, P)`` -> ``(N, T, token_size)``, padding zero."""
        check_width(params, self.layout)
        buf = params.new_zeros(params.shape[0], self.num_tokens * self.token_size)
        buf[:, self.slots.to(params.device)] = params
        return buf.view(params.shape[0], self.num_tokens, self.token_size)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(N, T, token_size)`` -> ``(N, P)``, padding dropped."""
        if tokens.shape[1:] != (self.num_tokens, self.token_size):
            raise ArtifactError(f"tokens must be (N, {self.num_tokens}, {self.token_size}), "
                                f"got {tuple(tokens.shape)}")
        flat = tokens.reshape(tokens.shape[0], -1)
        return flat[:, self.slots.to(tokens.device)]
