"""The adapter layout: which named tensors make one flat adapter vector ``(P,)``, in what order.

Every method that produces adapters (the bank, Retrain, Soup, the hypernetworks, the diffusion
generator) and every reader of them (the tokenizer, serving) hands over flat vectors; the layout
fixes the order so one vector means the same thing everywhere. The residual adapter's layout is
``W1 (bottleneck, dim)``, ``b1 (bottleneck,)``, ``W2 (dim, bottleneck)``, ``b2 (dim,)``; artifacts
store it as JSON (``[{"name": "W1", "shape": [8, 64]}, ...]``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from padirec.errors import ArtifactError

Layout = list[dict[str, Any]]  # [{"name": "W1", "shape": [8, 64]}, ...] in flattening order

ADAPTER_TENSORS = ["W1", "b1", "W2", "b2"]


def adapter_layout(dim: int, bottleneck: int) -> Layout:
    """The layout of one residual adapter ``dim -> bottleneck -> dim``."""
    if dim < 1 or bottleneck < 1:
        raise ValueError(f"dim and bottleneck must be positive, got dim={dim}, bottleneck={bottleneck}")
    return [
        {"name": "W1", "shape": [bottleneck, dim]},
        {"name": "b1", "shape": [bottleneck]},
        {"name": "W2", "shape": [dim, bottleneck]},
        {"name": "b2", "shape": [dim]},
    ]


def layout_sizes(layout: Layout) -> list[int]:
    """Number of values of each tensor, in flattening order (a malformed layout is an ``ArtifactError``:
    layouts are read from manifests)."""
    try:
        return [math.prod(int(s) for s in entry["shape"]) for entry in layout]
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"adapter layout must be a list of {{'name', 'shape'}}, got {layout!r}") from e


def num_params(layout: Layout) -> int:
    """``P``, the length of one flat adapter vector."""
    return sum(layout_sizes(layout))


def dims(layout: Layout) -> tuple[int, int]:
    """``(dim, bottleneck)`` of a residual adapter's layout (checks that it is one)."""
    names = [t["name"] for t in layout]
    if names != ADAPTER_TENSORS:
        raise ValueError(f"not an adapter layout: tensors {names}, expected {', '.join(ADAPTER_TENSORS)}")
    bottleneck, dim = layout[0]["shape"]
    return dim, bottleneck


def check_width(params: torch.Tensor, layout: Layout) -> None:
    """``params (..., P)`` must have the layout's ``P`` values per row (``ValueError`` otherwise)."""
    p = num_params(layout)
    if params.shape[-1] != p:
        names = ", ".join(f"{e['name']}{tuple(e['shape'])}" for e in layout)
        raise ValueError(f"adapter params have {params.shape[-1]} values per row but the layout "
                         f"[{names}] needs {p}")


def flatten(tensors: dict[str, torch.Tensor], layout: Layout) -> torch.Tensor:
    """Named tensors (optionally with leading batch dims ``(..., *shape)``) -> ``(..., P)``."""
    parts = []
    for t in layout:
        x = tensors[t["name"]]
        shape = tuple(t["shape"])
        if tuple(x.shape[x.dim() - len(shape):]) != shape:
            raise ValueError(f"{t['name']}: expected trailing shape {shape}, got {tuple(x.shape)}")
        parts.append(x.reshape(*x.shape[: x.dim() - len(shape)], -1))
    return torch.cat(parts, dim=-1)


def unflatten(params: torch.Tensor, layout: Layout) -> dict[str, torch.Tensor]:
    """``(..., P)`` -> named views ``(..., *shape)`` (no copy)."""
    check_width(params, layout)
    out, start = {}, 0
    lead = params.shape[:-1]
    for t, n in zip(layout, layout_sizes(layout), strict=True):
        out[t["name"]] = params[..., start:start + n].reshape(*lead, *t["shape"])
        start += n
    return out
