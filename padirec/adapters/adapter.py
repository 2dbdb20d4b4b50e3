"""The residual adapter ``h' = h + W2 relu(W1 h + b1) + b2`` and its flat parameter layout.

An adapter is a bottleneck ``dim -> bottleneck -> dim`` on the frozen backbone's user
representation (64 -> 8 -> 64: 1,096 parameters). Every method that produces adapters (the
adapter bank, Retrain, Soup, the hypernetworks, the diffusion generator) hands over flat vectors
``(P,)``; ``layout`` fixes the order so one vector means the same thing everywhere:
``W1 (bottleneck, dim)``, ``b1 (bottleneck,)``, ``W2 (dim, bottleneck)``, ``b2 (dim,)``.

Initialisation: ``W1`` Kaiming-uniform (as ``nn.Linear``), ``b1 = 0`` and ``W2 = b2 = 0``, so
an untrained adapter is exactly the identity and training starts from the backbone's own
ranking (as in LoRA / residual adapters). Measured on the synthetic test data (tiny SASRec,
valid NDCG@10 of the backbone 0.910): the identity start scores exactly the backbone before
training, an ``nn.Linear``-style random ``W2`` start 0.895; after training both reach a similar
trade-off, so the identity start costs nothing and makes "no adaptation" the origin of the
parameter space. Every task of a bank starts from
the same initial vector, which also keeps the hidden units aligned across tasks (no permutation
ambiguity), so the parameter manifold the generator learns varies smoothly with ``w``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

Layout = list[dict]  # [{"name": str, "shape": [int, ...]}, ...]


def layout(dim: int, bottleneck: int) -> Layout:
    """The flattening order of one adapter's tensors."""
    if dim < 1 or bottleneck < 1:
        raise ValueError(f"dim and bottleneck must be positive, got dim={dim}, bottleneck={bottleneck}")
    return [
        {"name": "W1", "shape": [bottleneck, dim]},
        {"name": "b1", "shape": [bottleneck]},
        {"name": "W2", "shape": [dim, bottleneck]},
        {"name": "b2", "shape": [dim]},
    ]


def num_params(lay: Layout) -> int:
    """``P``, the length of one flat adapter vector."""
    return sum(math.prod(t["shape"]) for t in lay)


def dims(lay: Layout) -> tuple[int, int]:
    """``(dim, bottleneck)`` of a layout (checks it is an adapter layout)."""
    names = [t["name"] for t in lay]
    if names != ["W1", "b1", "W2", "b2"]:
        raise ValueError(f"not an adapter layout: tensors {names}, expected W1, b1, W2, b2")
    bottleneck, dim = lay[0]["shape"]
    return dim, bottleneck


def flatten(tensors: dict[str, torch.Tensor], lay: Layout) -> torch.Tensor:
    """Named tensors (optionally with leading batch dims ``(..., *shape)``) -> ``(..., P)``."""
    parts = []
    for t in lay:
        x = tensors[t["name"]]
        shape = tuple(t["shape"])
        if tuple(x.shape[x.dim() - len(shape):]) != shape:
            raise ValueError(f"{t['name']}: expected trailing shape {shape}, got {tuple(x.shape)}")
        parts.append(x.reshape(*x.shape[: x.dim() - len(shape)], -1))
    return torch.cat(parts, dim=-1)


def unflatten(params: torch.Tensor, lay: Layout) -> dict[str, torch.Tensor]:
    """``(..., P)`` -> named views ``(..., *shape)`` (no copy)."""
    p = num_params(lay)
    if params.shape[-1] != p:
        raise ValueError(f"adapter params have {params.shape[-1]} values per row, layout needs {p}")
    out, start = {}, 0
    lead = params.shape[:-1]
    for t in lay:
        n = math.prod(t["shape"])
        out[t["name"]] = params[..., start:start + n].reshape(*lead, *t["shape"])
        start += n
    return out


def init_params(lay: Layout, generator: torch.Generator | None = None) -> torch.Tensor:
    """One initial adapter ``(P,)`` float32: identity map (``W2 = b2 = 0``), ``W1`` Kaiming-uniform."""
    dim, bottleneck = dims(lay)
    bound = 1.0 / math.sqrt(dim)  # nn.Linear's default for W1
    w1 = (torch.rand(bottleneck, dim, generator=generator) * 2 - 1) * bound
    zeros = {"b1": torch.zeros(bottleneck), "W2": torch.zeros(dim, bottleneck), "b2": torch.zeros(dim)}
    return flatten({"W1": w1, **zeros}, lay)


def apply_adapters(h: torch.Tensor, params: torch.Tensor, lay: Layout) -> torch.Tensor:
    """Apply ``N`` adapters at once.

    ``h``: ``(B, d)`` (the same users for every adapter) or ``(N, B, d)``; ``params``: ``(N, P)``.
    Returns ``(N, B, d)``.
    """
    if params.dim() != 2:
        raise ValueError(f"params must be (num_adapters, P), got shape {tuple(params.shape)}")
    t = unflatten(params, lay)
    w1, b1, w2, b2 = t["W1"], t["b1"], t["W2"], t["b2"]
    if h.dim() == 2:
        # (B, d) x (N, k, d) -> (N, B, k) without materialising N copies of h
        z = torch.einsum("bd,nkd->nbk", h, w1)
    elif h.dim() == 3:
        z = torch.einsum("nbd,nkd->nbk", h, w1)
    else:
        raise ValueError(f"h must be (batch, dim) or (N, batch, dim), got shape {tuple(h.shape)}")
    z = torch.relu(z + b1[:, None, :])
    return h + torch.einsum("nbk,ndk->nbd", z, w2) + b2[:, None, :]


class Adapter(nn.Module):
    """One adapter as a module, for a backbone's ``adapter`` hook: ``(B, d) -> (B, d)``."""

    def __init__(self, params: torch.Tensor, lay: Layout) -> None:
        super().__init__()
        self.layout = lay
        self.params = nn.Parameter(params.detach().reshape(1, -1).clone(), requires_grad=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return apply_adapters(h, self.params.to(h.dtype), self.layout)[0]
