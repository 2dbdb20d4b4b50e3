"""The one interface every controllable method implements, so the sweep need not know which is which.

A method turns a task ``w`` (preference weights on the simplex, ``(p,)``) into something that
ranks items for every held-out user:

- ``fit()``: one-off work done before any task is known (training a hypernetwork, loading a
  generator). Not part of the response time.
- ``prepare(w)``: the work done when a new task arrives; the response-time comparison times
  exactly this call. Adapter-producing methods (PaDiRec, Retrain, Soup, CMR, Hypernetwork)
  return the adapter's flat parameters ``(P,)``; ranking-function methods (MMR, DeepPRL) return
  whatever they need to rank (here, the weights themselves).
- ``scores(prepared, split)``: raw scores ``(U, num_items + 1)`` of every item for the users of
  ``split`` (``valid`` or ``test``), in the order of ``features.split(split).users``. The caller
  masks the history (``padirec.evaluation.metrics.mask_history``); a method that builds a
  re-ranked top-k list (MMR) lifts that list above every other item, so full-ranking metrics
  at cutoff ``<= k`` see exactly its list.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from padirec.adapters.adapter import Layout, apply_adapters, num_params
from padirec.adapters.features import Features
from padirec.adapters.tasks import validate_weights


class Method(ABC):
    """A controllable recommender: task weights -> a ranking of every item for every user."""

    key: ClassVar[str] = "method"
    produces_adapters: ClassVar[bool] = False

    def __init__(self, features: Features, utilities: list[str]) -> None:
        self.features = features
        self.utilities = list(utilities)

    @property
    def device(self) -> torch.device:
        return self.features.item_embedding.device

    def fit(self) -> None:  # noqa: B027 - optional hook, most methods need no one-off work
        """One-off work before any task arrives (not timed as response time)."""

    def task(self, w: Any) -> torch.Tensor:
        """Validated task weights ``(p,)`` float32 on the method's device."""
        return torch.as_tensor(validate_weights(w, len(self.utilities)), dtype=torch.float32, device=self.device)

    @abstractmethod
    def prepare(self, w: Any) -> Any:
        """The work done when task ``w`` ``(p,)`` arrives; returns what ``scores`` needs."""

    @abstractmethod
    def scores(self, prepared: Any, split: str) -> torch.Tensor:
        """Raw scores ``(U, num_items + 1)`` for the users of ``split`` (history not masked)."""


class AdapterMethod(Method):
    """A method whose ``prepare`` returns one adapter ``(P,)``; ranking is the adapted backbone's."""

    produces_adapters = True

    def __init__(self, features: Features, utilities: list[str], layout: Layout) -> None:
        super().__init__(features, utilities)
        self.layout = layout
        self.num_params = num_params(layout)

    def scores(self, prepared: torch.Tensor, split: str) -> torch.Tensor:
        params = torch.as_tensor(prepared, dtype=torch.float32, device=self.device).reshape(1, -1)
        if params.shape[1] != self.num_params:
            raise ValueError(f"{self.key}: adapter has {params.shape[1]} parameters, layout needs {self.num_params}")
        return adapted_scores(self.features, params, self.layout, split)[0]


@torch.no_grad()
def adapted_scores(features: Features, params: torch.Tensor, layout: Layout, split: str) -> torch.Tensor:
    """Scores ``(N, U, num_items + 1)`` of ``N`` adapters ``params (N, P)`` for ``split``'s users."""
    h = features.split(split).h
    return apply_adapters(h, params.to(h.device, h.dtype), layout) @ features.item_embedding.T


def as_numpy_tasks(tasks: Any, p: int) -> np.ndarray:
    """Validated tasks ``(T, p)`` float64."""
    arr = np.asarray(tasks, dtype=np.float64)
    return validate_weights(arr.reshape(-1, p), p)
