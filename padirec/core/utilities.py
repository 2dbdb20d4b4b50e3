"""The utilities a task weighs: one registry, each utility with its loss and the metric that
measures it.

Task weights ``w`` have one entry per configured utility (``adapters.utilities``, in that order).
A utility is one file: a ``Utility`` subclass with its ``name``, its ``metric`` (the evaluation
metric's key, ``{k}`` standing for the cutoff), whether higher is better, what the data must
provide (``needs``), its own settings (``config_class``, a dataclass whose fields carry their
ranges: the config's ``adapters.utility_settings.<name>``), its training ``loss``, and the
``register_utility`` decorator; ``padirec.adapters.utilities`` imports every file that defines one.
The built-ins (``padirec.adapters.objectives``), at cutoff ``k``:

- ``accuracy``: ``ndcg@k`` of the held-out item (higher is better);
- ``diversity``: ``alpha_ndcg@k`` of the top-k list (higher is better; needs item categories);
- ``fairness``: ``ndcg_gap@k``, the spread of NDCG@k between user groups (lower is better;
  needs user groups);
- ``novelty``: ``novelty@k``, the share of the top-k list in the long tail of the training
  split's popularity (higher is better; ``padirec.core.novelty``, the thesis' MODT4R).

A plugin file registers its own the same way (``plugins`` in the config).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from padirec.core.plugins import NoSettings, Registry


class Utility:
    """Base class. Subclasses implement ``loss``."""

    name: ClassVar[str] = "utility"
    metric: ClassVar[str] = ""  # metric key, "{k}" stands for the cutoff
    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[str] = ""  # what the data must provide: "categories" | "groups" | ""
    config_class: ClassVar[type] = NoSettings  # its own settings: ``adapters.utility_settings.<name>``

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings if settings is not None else self.config_class()

    def loss(self, batch: Any) -> Any:
        """The loss of every adapter, ``(N,)``, on a ``padirec.adapters.objectives.CandidateBatch``."""
        raise NotImplementedError


UTILITIES: Registry = Registry("utility")
register_utility = UTILITIES.register


def metric_key(utility: str, k: int) -> str:
    """The metric key that measures ``utility`` at cutoff ``k``: ``metric_key("accuracy", 10) == "ndcg@10"``."""
    if utility not in UTILITIES:
        raise ValueError(f"unknown utility {utility!r}; known: {', '.join(UTILITIES)}")
    return UTILITIES[utility].metric.format(k=k)


def utility_metrics(utilities: Sequence[str], k: int) -> list[tuple[str, bool]]:
    """``[(metric key, higher is better)]`` for each utility, in the utilities' order."""
    return [(metric_key(u, k), UTILITIES[u].higher_is_better) for u in utilities]
