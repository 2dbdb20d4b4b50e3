"""The utilities a task weighs, and the one table of the evaluation metric that measures each.

Task weights ``w`` have one entry per configured utility (``adapters.utilities``, in that order).
At cutoff ``k`` a utility is measured by:

- ``accuracy``: ``ndcg@k`` of the held-out item (higher is better);
- ``diversity``: ``alpha_ndcg@k`` of the top-k list (higher is better; needs item categories);
- ``fairness``: ``ndcg_gap@k``, the spread of NDCG@k between user groups (lower is better;
  needs user groups);
- ``novelty``: ``novelty@k``, the share of the top-k list in the long tail of the training
  split's popularity (higher is better; ``padirec.core.novelty``, the thesis' MODT4R).

The training loss of each utility lives in ``padirec.adapters.objectives`` under the same name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class UtilityMetric:
    metric: str  # metric key, "{k}" stands for the cutoff
    higher_is_better: bool
    needs: str = ""  # what the data must provide: "categories" | "groups" | ""


UTILITIES: dict[str, UtilityMetric] = {
    "accuracy": UtilityMetric("ndcg@{k}", True),
    "diversity": UtilityMetric("alpha_ndcg@{k}", True, needs="categories"),
    "fairness": UtilityMetric("ndcg_gap@{k}", False, needs="groups"),
    "novelty": UtilityMetric("novelty@{k}", True),
}


def metric_key(utility: str, k: int) -> str:
    """The metric key that measures ``utility`` at cutoff ``k``: ``metric_key("accuracy", 10) == "ndcg@10"``."""
    if utility not in UTILITIES:
        raise ValueError(f"unknown utility {utility!r}; known: {', '.join(UTILITIES)}")
    return UTILITIES[utility].metric.format(k=k)


def utility_metrics(utilities: Sequence[str], k: int) -> list[tuple[str, bool]]:
    """``[(metric key, higher is better)]`` for each utility, in the utilities' order."""
    return [(metric_key(u, k), UTILITIES[u].higher_is_better) for u in utilities]
