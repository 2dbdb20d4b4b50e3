"""The batch loop shared by the smoothed ranking losses (diversity's alpha-DCG, novelty's DCG): their
pairwise ``(N, b, L, L)`` terms are computed a chunk of the batch at a time, with a hand-written
gradient recomputed per chunk instead of stored, so memory stays bounded for a bank's hundred
adapters at once."""

from __future__ import annotations

from collections.abc import Callable

import torch

Terms = Callable[[slice, bool], tuple[torch.Tensor, torch.Tensor | None]]


def chunks(scores: torch.Tensor) -> list[slice]:
    """Slices of the batch axis of ``scores (N, B, L)`` small enough for the pairwise terms."""
    budget = (1 << 26) if scores.is_cuda else (1 << 20)  # pairwise elements per chunk
    n, b, length = scores.shape
    step = max(1, budget // max(1, n * length * length))
    return [slice(s, s + step) for s in range(0, b, step)]


def chunked_loss(scores: torch.Tensor, terms: Terms) -> torch.Tensor:
    """The batch mean ``(N,)`` of the loss ``terms`` computes chunk by chunk over ``scores (N, B, L)``,
    differentiable in ``scores`` through the gradient ``terms`` returns (its other inputs are
    constants). The gradient is only ``(N, B, L)``: computed in the same pass and stored, so backward
    merely scales it and no pairwise tensor is kept."""
    return _ChunkedLoss.apply(scores, terms)


class _ChunkedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, terms):
        out, grad = chunked_terms(scores, terms, ctx.needs_input_grad[0])
        ctx.save_for_backward(grad)
        return out / scores.shape[1]

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return grad * (grad_out / grad.shape[1])[:, None, None], None


def chunked_terms(scores: torch.Tensor, terms: Terms, want_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``terms(chunk, want_grad)`` -> the chunk's loss ``(N,)`` and gradient ``(N, b, L)``, summed
    (loss) and placed (gradient) over the whole batch of ``scores (N, B, L)``."""
    out = scores.new_zeros(scores.shape[0])
    grad = torch.empty_like(scores) if want_grad else None
    for sl in chunks(scores):
        loss, g = terms(sl, want_grad)
        out += loss
        if want_grad:
            grad[:, sl] = g
    return out, grad
