"""Analyses beyond the sweep: robustness of generated adapters (paper RQ1) and a case study.

Robustness: the same Gaussian noise (absolute standard deviation ``noise``, one draw per task
and repeat, shared by every method) is added to the adapters of the methods that declare
``robustness`` (Retrain, PaDiRec and the Hypernetwork); the mean absolute change of NDCG@k and alpha-NDCG@k over tasks and repeats
measures how flat the solution is (the paper's "stable" vs "sharp" solutions). Similarity to
the reference method's (Retrain's) adapter is the inverse Euclidean distance ``1 / (1 + ||theta - theta_ref||)``
(1 = identical; the ``1 +`` keeps Retrain's own value finite).

Case study: one user's top-k at ``w_acc = 0.1`` and ``0.9`` (the rest of the weight on
diversity), with titles and categories.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from padirec.adapters.features import Features
from padirec.core.layout import Layout
from padirec.core.metrics import mask_history
from padirec.data.dataset import PreparedData
from padirec.evaluation.sweep import SplitEvaluator
from padirec.methods.base import Method, adapted_scores
from padirec.methods.registry import METHODS, method_with_role


def robustness(
    adapters: Mapping[str, torch.Tensor],
    features: Features,
    layout: Layout,
    evaluator: SplitEvaluator,
    noise: float = 0.05,
    repeats: int = 5,
    seed: int = 0,
    methods: tuple[str, ...] | None = None,
) -> dict[str, dict[str, float]]:
    """Per method (those of ``methods`` present in ``adapters {method: (T, P)}``; default: the
    registered methods that declare ``robustness``): ``ndcg_change``/``alpha_ndcg_change`` mean
    and std of the absolute metric change under noise, and ``inverse_distance`` mean/std to the
    reference method's adapters (absent without it)."""
    per_user = robustness_per_user(adapters, features, layout, evaluator, noise, repeats, seed, methods)
    return robustness_figures(per_user, adapters, evaluator.k)


def robustness_per_user(
    adapters: Mapping[str, torch.Tensor], features: Features, layout: Layout, evaluator: SplitEvaluator,
    noise: float = 0.05, repeats: int = 5, seed: int = 0, methods: tuple[str, ...] | None = None,
) -> dict[str, dict[str, list[dict[str, np.ndarray]]]]:
    """The user-level half of ``robustness``: per method, NDCG@k and alpha-NDCG@k of every user
    ``(U,)`` float64 for each task, ``clean`` (T entries) and ``noisy`` (repeat by repeat, R x T)."""
    if methods is None:
        methods = tuple(key for key, cls in METHODS.items() if cls.robustness)
    if noise <= 0 or repeats < 1:
        raise ValueError(f"robustness needs noise > 0 and repeats >= 1, got {noise}, {repeats}")
    present = [m for m in methods if m in adapters]
    if not present:
        return {}
    keys = (f"ndcg@{evaluator.k}", f"alpha_ndcg@{evaluator.k}")
    shape = adapters[present[0]].shape
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randn(repeats, *shape, generator=gen) * noise  # (R, T, P): shared by every method

    def users(params: torch.Tensor) -> dict[str, np.ndarray]:
        out = evaluator.per_user(adapted_scores(features, params, layout, evaluator.split_name)[0])
        return {key: out[key].detach().to(torch.float64).cpu().numpy() for key in keys}

    out: dict[str, dict[str, list[dict[str, np.ndarray]]]] = {}
    for m in present:
        params = adapters[m].float()
        if params.shape != shape:
            raise ValueError(f"robustness: {m} adapters {tuple(params.shape)} differ from {tuple(shape)}")
        noisy = [params + draws[r] for r in range(repeats)]
        out[m] = {"clean": [users(params[t:t + 1]) for t in range(shape[0])],
                  "noisy": [users(n[t:t + 1]) for n in noisy for t in range(shape[0])]}
    return out


def robustness_figures(per_user: Mapping[str, Mapping[str, list[dict[str, np.ndarray]]]],
                       adapters: Mapping[str, torch.Tensor], k: int) -> dict[str, dict[str, float]]:
    """``robustness``'s figures from ``robustness_per_user`` (or user shards' values joined)."""
    reference = method_with_role("reference")

    def mean(v: np.ndarray) -> float:  # as ``SplitEvaluator.aggregate`` takes it
        return float(torch.from_numpy(np.asarray(v, dtype=np.float64)).mean()) if len(v) else 0.0

    out: dict[str, dict[str, float]] = {}
    for m, values in per_user.items():
        clean, n_tasks = values["clean"], len(values["clean"])
        d_acc, d_div = [], []
        for i, noisy in enumerate(values["noisy"]):
            t = i % n_tasks
            d_acc.append(abs(mean(noisy[f"ndcg@{k}"]) - mean(clean[t][f"ndcg@{k}"])))
            d_div.append(abs(mean(noisy[f"alpha_ndcg@{k}"]) - mean(clean[t][f"alpha_ndcg@{k}"])))
        out[m] = {
            "ndcg_change_mean": float(np.mean(d_acc)), "ndcg_change_std": float(np.std(d_acc)),
            "alpha_ndcg_change_mean": float(np.mean(d_div)), "alpha_ndcg_change_std": float(np.std(d_div)),
        }
        if reference in adapters:
            inv = 1.0 / (1.0 + (adapters[m].float() - adapters[reference].float()).norm(dim=1))
            out[m]["inverse_distance_mean"] = float(inv.mean())
            out[m]["inverse_distance_std"] = float(inv.std(unbiased=False))
    return out


def case_study(
    method: Method,
    data: PreparedData,
    features: Features,
    utilities: list[str],
    k: int = 10,
    user: int = 0,
    w_accs: tuple[float, ...] = (0.1, 0.9),
    split: str = "test",
) -> dict[str, Any]:
    """One user's top-``k`` under ``method`` at each ``w_acc`` (rest on diversity).

    ``user`` 0 picks the first user whose held-out item is in the list at the largest
    ``w_acc`` (else the first user). Returns ``{"method", "user", "target", "history",
    "lists": {str(w_acc): [{"item", "title", "categories"}]}}``.
    """
    s = features.split(split)
    users = s.users.cpu().numpy()
    lists = {}
    for w_acc in w_accs:
        w = np.zeros(len(utilities))
        w[utilities.index("accuracy")] = w_acc
        w[utilities.index("diversity")] = 1.0 - w_acc
        scores = mask_history(method.scores(method.prepare_split(w, split), split), s.mask_rows, s.mask_cols)
        lists[w_acc] = scores.topk(k, dim=1).indices.cpu().numpy()  # (U, k)
    if user:
        rows = np.flatnonzero(users == user)
        if not len(rows):
            raise ValueError(f"case study user {user} is not among the {split} users")
        row = int(rows[0])
    else:
        hits = np.flatnonzero((lists[max(w_accs)] == s.targets.cpu().numpy()[:, None]).any(1))
        row = int(hits[0]) if len(hits) else 0

    def describe(item: int) -> dict[str, Any]:
        cats = np.flatnonzero(data.item_categories[item])
        return {"item": int(item), "title": data.item_titles[item],
                "categories": [data.category_names[c] for c in cats]}

    history = data.history(split, int(users[row]))[0][-5:]
    return {
        "method": method.key,
        "user": int(users[row]),
        "target": describe(int(s.targets[row])),
        "history": [describe(int(i)) for i in history],
        "lists": {f"{w_acc:g}": [describe(int(i)) for i in lists[w_acc][row]] for w_acc in w_accs},
    }
