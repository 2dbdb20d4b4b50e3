"""The one interface every controllable method implements, so the sweep need not know which is which.

A method turns task weights ``w`` (a point of the simplex, ``(p,)``) into something that ranks
items for every held-out user:

- ``fit()``: one-off work done before any task is known (training a hypernetwork, loading a
  generator). Not part of the response time.
- ``prepare(weights)``: the work done when a new task arrives; the response-time comparison times
  exactly this call. Adapter-producing methods (PaDiRec, Retrain, Soup, CMR, Hypernetwork)
  return the adapter's flat parameters ``(P,)``; ranking-function methods (MMR, DeepPRL) return
  whatever they need to rank (here, the weights themselves).
- ``scores(prepared, split)``: raw scores ``(U, num_items + 1)`` of every item for the users of
  ``split`` (``valid`` or ``test``), in the order of ``features.split(split).users``. The caller
  masks the history (``padirec.core.metrics.mask_history``); a method that builds a re-ranked
  top-k list (MMR) lifts that list above every other item, so full-ranking metrics at cutoff
  ``<= k`` see exactly its list.

A method also declares, in its own file: its ``key`` (the name in configs and reports), its
settings (``config_class``, a dataclass: the config's ``methods.<key>`` section, whose fields
carry their interval or choices as ``setting(..., range=...)``, checked when the config loads), ``build`` (how
it is made from a ``MethodContext`` and those settings) and its role in the analyses. Decorating
the class with ``register`` makes it known (``padirec.methods.registry`` imports every module of
this package): adding a method is adding one file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from padirec.adapters.adapter import apply_adapters
from padirec.adapters.bank import AdapterBank
from padirec.adapters.config import AdapterConfig
from padirec.adapters.features import Features
from padirec.core.layout import Layout, num_params
from padirec.core.plugins import NoSettings, Registry
from padirec.core.tasks import Band, validate_weights
from padirec.data.dataset import PreparedData
from padirec.diffusion.generator import Generator
from padirec.errors import ConfigError

# the held-out splits a task's ``prepare`` serves (the users of each are ranked)
HELD_OUT = ("valid", "test")


@dataclass
class MethodContext:
    """What a method may be built from: the stage's inputs, already read and checked."""

    features: Features
    data: PreparedData
    layout: Layout
    adapters: AdapterConfig  # how the bank's adapters trained (Retrain, CMR and DeepPRL train alike)
    seed: int
    k: int  # the evaluation cutoff
    max_len: int  # history length the backbone reads
    bank: AdapterBank | None = None
    generator: Generator | str | Path | None = None  # a trained generator or its folder (read on use)
    reuse_bank: bool = True  # False in the response-time comparison: a new task is never in the bank
    # the band protocol: tasks with w_acc in this closed interval are unseen; a method that draws its
    # own training tasks (CMR) must not draw them (the bank's are already held out)
    band: Band | tuple[float, float] | None = None  # ``Band``: w_acc or the distance to the centroid
    # one-off work that two methods of this evaluation do alike, done once and read by both (keyed
    # by everything it depends on): DeepPRL's heads are DeepPRL-static's model
    shared: dict[Any, Any] = field(default_factory=dict)

    @property
    def utilities(self) -> list[str]:
        return list(self.adapters.utilities)

    def require_bank(self, key: str) -> AdapterBank:
        if self.bank is None:
            raise ConfigError(f"method {key!r} needs the adapter bank (bank_dir)")
        return self.bank

    def load_generator(self, key: str) -> Generator:
        """The trained generator (read from its folder on first use, so methods that do not need
        it cost nothing)."""
        if self.generator is None:
            raise ConfigError(f"method {key!r} needs a trained generator (generator_dir)")
        if not isinstance(self.generator, Generator):
            self.generator = Generator.load(self.generator, self.features.item_embedding.device)
        return self.generator


class Method(ABC):
    """A controllable recommender: task weights -> a ranking of every item for every user."""

    key: ClassVar[str] = "method"
    config_class: ClassVar[type] = NoSettings  # its settings: the config's ``methods.<key>``
    produces_adapters: ClassVar[bool] = False
    # "proposed" (PaDiRec: the response-time headline, the case study), "reference" (Retrain,
    # assumed optimal: the Pearson correlations, robustness distances, the speed-up's numerator)
    role: ClassVar[str] = ""
    robustness: ClassVar[bool] = False  # its adapters enter the robustness analysis (paper Fig. 4)
    # it learns from other tasks (the bank's rows, or task draws): the band protocol rebuilds it
    # without the band's tasks (``padirec.evaluation.protocols``); False = a task's result depends
    # on that task alone
    learns_from_tasks: ClassVar[bool] = False
    uses_generator: ClassVar[bool] = False  # built from the trained generator
    # in the default roster (``evaluation.methods``); False: still runs when a config names it, and
    # the report states ``roster_note`` instead of a row (a variant that measured no different)
    in_roster: ClassVar[bool] = True
    roster_note: ClassVar[str] = ""

    def __init__(self, features: Features, utilities: list[str]) -> None:
        self.features = features
        self.utilities = list(utilities)

    @classmethod
    @abstractmethod
    def build(cls, ctx: MethodContext, settings: Any) -> Method:
        """The method for the stage inputs ``ctx`` and its ``settings`` (a ``config_class``)."""

    @property
    def device(self) -> torch.device:
        return self.features.item_embedding.device

    def fit(self) -> None:  # noqa: B027 - optional hook, most methods need no one-off work
        """One-off work before any task arrives (not timed as response time)."""

    def reused_fit_seconds(self) -> float:
        """Seconds of this method's one-off work that another method of the evaluation did and
        ``fit`` reused (``MethodContext.shared``): a reported fit time adds them, as the method alone
        would have spent them."""
        return 0.0

    def task_weights(self, weights: Any) -> torch.Tensor:
        """Validated task weights ``(p,)`` float32 on the method's device."""
        return torch.as_tensor(validate_weights(weights, len(self.utilities)), dtype=torch.float32,
                               device=self.device)

    @abstractmethod
    def prepare(self, weights: Any) -> Any:
        """The work done when task ``weights (p,)`` arrives; returns what ``scores`` needs."""

    def prepare_split(self, weights: Any, split: str) -> Any:
        """``prepare`` for one held-out split, for evaluation that reads only that split (the
        sweep): ``scores(prepare_split(w, s), s)`` equals ``scores(prepare(w), s)``. Methods whose
        ``prepare`` ranks every user of both splits override it; the response time still times
        ``prepare``, the whole of a new task's work."""
        return self.prepare(weights)

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


# ----------------------------------------------------------------------------- registry

METHODS: Registry = Registry("method", name_attribute="key")  # key -> class; filled by ``register``
ROLES = ("proposed", "reference", "")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method known under its ``key`` (the registry every kind uses)."""
    if cls.role not in ROLES:
        raise ValueError(f"method {cls.key!r}: role {cls.role!r} is not one of {ROLES}")
    return METHODS.register(cls)
