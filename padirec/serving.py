"""The deployable model: (history, task weights) -> ranked items.

A *system* folder bundles what ranking needs: the frozen backbone, the generator, and the item
catalogue (source ids, titles, category names). ``Recommender`` serves it: a request's weights are
turned into an adapter by the generator (cached per task, so a platform switching between a few
tasks pays the generation once per task), the adapter transforms the user representation, and
every item is scored; the history is masked.

Requests are validated strictly (``RequestError``): unknown item ids, an empty history, a
history longer than the model's maximum length, weights off the simplex.
"""

from __future__ import annotations

import shutil
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from padirec.artifacts import atomic_write, read_manifest, write_manifest
from padirec.errors import PadirecError, TaskWeightsError

CATALOGUE = "catalogue.parquet"


class RequestError(PadirecError):
    """A serving request is invalid (the message names the field and the problem)."""


def build_system(data_dir: str | Path, backbone_dir: str | Path, generator_dir: str | Path,
                 out_dir: str | Path, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bundle backbone + generator + catalogue into ``out_dir`` (a ``system`` artifact)."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    data_manifest = read_manifest(data_dir, kind="prepared_data")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, src in (("backbone", backbone_dir), ("generator", generator_dir)):
        read_manifest(src)  # verify before copying
        target = out_dir / name
        tmp = out_dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    items = pd.read_parquet(data_dir / "items.parquet")
    id_map = pd.read_parquet(data_dir / "id_map_items.parquet")
    names = data_manifest.get("category_names") or []
    catalogue = items.merge(id_map, on="item_id").sort_values("item_id")
    catalogue["category_names"] = [[names[c] if c < len(names) else str(c) for c in cats] for cats in catalogue["categories"]]
    atomic_write(out_dir / CATALOGUE, lambda tmp: catalogue[["item_id", "source_id", "title", "category_names"]]
                 .to_parquet(tmp, index=False))
    files = [CATALOGUE] + [str(p.relative_to(out_dir)) for p in sorted(out_dir.glob("*/*")) if p.is_file()]
    return write_manifest(out_dir, "system", files, config={}, stats=summary or {},
                          data_checksum=data_manifest.get("data_checksum", ""))


class Recommender:
    """Serve a system folder. Thread-safe: the adapter cache is guarded by a lock."""

    def __init__(self, system_dir: str | Path, device: str = "cpu", cache_size: int = 256,
                 sampling_seed: int = 0) -> None:
        from padirec.backbones import load_backbone
        from padirec.diffusion.generator import Generator

        system_dir = Path(system_dir)
        self.manifest = read_manifest(system_dir, kind="system")
        self.device = torch.device(device)
        self.backbone = load_backbone(system_dir / "backbone", self.device)
        self.generator = Generator.load(system_dir / "generator", self.device)
        cat = pd.read_parquet(system_dir / CATALOGUE)
        self.internal = dict(zip(cat["source_id"].astype(str), cat["item_id"].astype(int), strict=True))
        n = self.backbone.num_items + 1
        self.source_id = np.array([""] * n, dtype=object)
        self.title = np.array([""] * n, dtype=object)
        self.categories: list[list[str]] = [[] for _ in range(n)]
        for row in cat.itertuples(index=False):
            self.source_id[row.item_id] = str(row.source_id)
            self.title[row.item_id] = row.title
            self.categories[row.item_id] = list(row.category_names)
        self.max_len = int(self.backbone.max_len)
        self.utilities = list(self.generator.utilities)
        self.seed = sampling_seed
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- validation

    def check_weights(self, weights: Any) -> tuple[float, ...]:
        try:
            w = [float(x) for x in weights]
        except (TypeError, ValueError) as e:
            raise RequestError(f"weights must be a list of {len(self.utilities)} numbers ({', '.join(self.utilities)}), got {weights!r}") from e
        try:
            from padirec.diffusion.generator import check_task_weights

            check_task_weights(w, len(self.utilities))
        except TaskWeightsError as e:
            raise RequestError(f"weights: {e} (utilities: {', '.join(self.utilities)})") from e
        return tuple(round(x, 6) for x in w)

    def check_history(self, history: Any) -> list[int]:
        if history is None or isinstance(history, str) or not hasattr(history, "__len__") or len(history) == 0:
            raise RequestError("history must be a non-empty list of item ids")
        if len(history) > self.max_len:
            raise RequestError(f"history has {len(history)} items; this model reads at most {self.max_len} "
                               "(send the most recent ones)")
        unknown = [h for h in history if str(h) not in self.internal]
        if unknown:
            raise RequestError(f"history has unknown item id(s) {unknown[:5]} ({len(unknown)} in all)")
        return [self.internal[str(h)] for h in history]

    # ---------------------------------------------------------------- ranking

    def adapter(self, weights: tuple[float, ...]) -> torch.Tensor:
        """The generated adapter ``(1, P)`` for a task, from the cache or the generator."""
        with self._lock:
            if weights in self._cache:
                self._cache.move_to_end(weights)
                return self._cache[weights]
        params = self.generator.adapters(list(weights), seed=self.seed)
        with self._lock:
            self._cache[weights] = params
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return params

    @torch.inference_mode()
    def recommend_many(self, requests: list[dict[str, Any]], k: int = 10) -> list[dict[str, list]]:
        """``requests``: dicts with ``history`` (source item ids, oldest first), ``weights`` and
        optional ``timestamps`` and ``k``. Returns per request ``item_ids``, ``scores``,
        ``titles``, ``categories`` (best first)."""
        from padirec.adapters.adapter import apply_adapters

        if not requests:
            return []
        seqs = torch.zeros(len(requests), self.max_len, dtype=torch.long)
        times = torch.zeros(len(requests), self.max_len, dtype=torch.long)
        tasks = []
        for r, req in enumerate(requests):
            if not isinstance(req, dict):
                raise RequestError(f"request {r}: expected an object with history and weights")
            items = self.check_history(req.get("history"))
            tasks.append(self.check_weights(req.get("weights")))
            seqs[r, self.max_len - len(items):] = torch.tensor(items)
            ts = req.get("timestamps")
            if ts is not None:
                if len(ts) != len(items):
                    raise RequestError(f"request {r}: timestamps has {len(ts)} values for {len(items)} history items")
                times[r, self.max_len - len(items):] = torch.tensor([int(t) for t in ts])
        h = self.backbone.represent(seqs.to(self.device), times.to(self.device))
        out: list[dict[str, list]] = [{} for _ in requests]
        for task in set(tasks):
            rows = [i for i, t in enumerate(tasks) if t == task]
            adapted = apply_adapters(h[rows], self.adapter(task), self.generator.layout)[0]
            scores = self.backbone.score_all(adapted)
            scores[:, 0] = -torch.inf
            for j, r in enumerate(rows):
                scores[j, seqs[r][seqs[r] > 0]] = -torch.inf
            for j, r in enumerate(rows):
                kk = int(requests[r].get("k", k))
                top = torch.topk(scores[j], min(kk, self.backbone.num_items))
                ids = top.indices.cpu().numpy()
                out[r] = {"item_ids": [str(s) for s in self.source_id[ids]], "scores": top.values.cpu().tolist(),
                          "titles": [str(t) for t in self.title[ids]],
                          "categories": [self.categories[i] for i in ids]}
        return out

    def recommend(self, history: list, weights: list[float], k: int = 10, timestamps: list | None = None) -> dict[str, list]:
        return self.recommend_many([{"history": history, "weights": weights, "k": k, "timestamps": timestamps}])[0]
