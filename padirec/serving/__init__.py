"""The deployable model: (history, task weights) -> ranked items.

A *system* folder bundles what ranking needs: the frozen backbone, the generator, and the item
catalogue (source ids, titles, category names). ``Recommender`` serves it: a request's weights are
turned into an adapter by the generator (cached per task, so a platform switching between a few
tasks pays the generation once per task), the adapter transforms the user representation, and
every item is scored; the history and the padding item are never listed.

History items the model has not seen (new in the catalogue since it was trained) are dropped and
listed in the reply's ``ignored``: one new item must not fail the whole request. A history with no
known item at all is refused: there is nothing to rank from, and a popularity fallback would
answer with a list the client cannot tell from a personal one.

Requests are otherwise validated strictly (``RequestError``, whose message starts with the field):
an empty history, a history longer than the model's maximum length, weights off the
simplex, ``k`` outside 1..(items the request can rank), bad timestamps, and more distinct weight
vectors in one request than ``max_tasks`` (``PADIREC_SERVING_MAX_TASKS``, default 32: generation
is the expensive part), and more records than ``max_records`` (``PADIREC_SERVING_MAX_RECORDS``,
default 1,000: a record costs a forward pass and a score row over the whole catalogue). Records are
ranked in chunks of ``chunk_rows``, so memory follows the chunk, not the request. A ``deadline``
is checked between chunks and tasks, so a request whose client has given up stops computing
(``RequestTimeout``).

torch's threads in a server: ``serving_threads`` (``PADIREC_SERVING_THREADS``, default 1 per
worker process of MLflow's scoring server). One request's tensors are too small for intra-op
threads to share out, and the threads' spin-waits take the cores the other workers need.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from padirec.data.columns import MAX_TIMESTAMP
from padirec.errors import ConfigError, PadirecError, TaskWeightsError
from padirec.runtime.artifacts import atomic_write, read_manifest, write_manifest

log = logging.getLogger("padirec")
CATALOGUE = "catalogue.parquet"
DEFAULT_K = 10
MAX_TASKS_ENV = "PADIREC_SERVING_MAX_TASKS"
# One generation costs about 3 ms on one CPU thread (MovieLens-100K, one DDIM step x 8 samples), so 32 new tasks fit well
# inside MLflow's default 60 s request timeout.
DEFAULT_MAX_TASKS = 32
MAX_RECORDS_ENV = "PADIREC_SERVING_MAX_RECORDS"
# 250,000 records in one request took 5.7 GB and ran 40 s past its 504 (issue 29); 1,000 rank in
# well under a second on one thread (MovieLens-100K), and a platform can split a bigger batch.
DEFAULT_MAX_RECORDS = 1000
# Rows per forward pass: the score matrix is rows x catalogue floats (256 x 100k items = 100 MB).
CHUNK_ROWS = 256
SERVING_THREADS_ENV = "PADIREC_SERVING_THREADS"


class RequestError(PadirecError):
    """A serving request is invalid (the message names the field and the problem)."""


class RequestTimeout(PadirecError):
    """A request ran past its deadline and was stopped between tasks."""


def model_signature():
    """The pyfunc signature: the request's columns and a params schema with ``k``.

    Inputs: ``history`` (a list of item ids of any JSON scalar type: source ids are strings or
    numbers), ``weights`` (a list of numbers), and optionally ``k`` and ``timestamps``. MLflow
    answers a request without ``history`` or ``weights``, or with one that is not a list, with its
    own 400 ("Model is missing inputs", "Failed to convert column"); ``Recommender`` checks the
    rest (known ids, the simplex, the range of ``k``) and names the field. ``k`` and ``timestamps``
    are declared but untyped: MLflow fills a record without them with NaN, which a ``long`` column
    refuses (so records with and without ``k`` could not mix), a ``double`` column refuses an
    ``int64`` DataFrame column, and a ``long`` would cut 2.5 to 2 before ``Recommender``'s
    whole-number check could refuse it. Without the params schema MLflow drops ``params`` before
    ``predict`` ("Ignoring provided params").
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, Array, ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec(Array(AnyType()), "history"), ColSpec(Array("double"), "weights"),
                     ColSpec(AnyType(), "k", required=False), ColSpec(AnyType(), "timestamps", required=False)])
    return ModelSignature(inputs=inputs, params=ParamSchema([ParamSpec("k", "long", DEFAULT_K)]))


def input_example(system_dir: str | Path, history_len: int = 3) -> pd.DataFrame | None:
    """A real request for the system in ``system_dir``: its first catalogue items as the history
    (at most the backbone's maximum length), equal weights over its utilities, and ``k``; None
    for a folder whose manifests do not say how many utilities and items it has.

    Logged with the model (``input_example.json``, ``serving_input_example.json``): it shows a
    client the request format, and MLflow checks at logging time that the model answers it. Read
    from the catalogue and the manifests only (loading the models is MLflow's check)."""
    system_dir = Path(system_dir)
    if not (system_dir / CATALOGUE).exists():
        return None
    backbone = read_manifest(system_dir / "backbone", verify=False).get("config") or {}
    generator = read_manifest(system_dir / "generator", verify=False)
    p = len(generator.get("utilities") or []) or (generator.get("dit") or {}).get("num_conditions")
    max_len = backbone.get("max_len")
    if not p or not max_len:
        return None
    ids = pd.read_parquet(system_dir / CATALOGUE).sort_values("item_id")["source_id"].astype(str).tolist()
    history = ids[:min(history_len, int(max_len), len(ids) - 1)]
    return pd.DataFrame([{"history": history, "weights": [1.0 / p] * p,
                          "k": min(DEFAULT_K, len(ids) - len(history))}])


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


def _positive_env(name: str) -> int | None:
    """The whole number >= 1 in environment variable ``name``, or None where it is unset."""
    raw = os.environ.get(name, "")
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name}={raw!r}: expected a whole number >= 1")
    return value


def max_tasks_setting() -> int:
    """``PADIREC_SERVING_MAX_TASKS`` or the default; a bad value fails when the model loads."""
    value = _positive_env(MAX_TASKS_ENV)
    return DEFAULT_MAX_TASKS if value is None else value


def max_records_setting() -> int:
    """``PADIREC_SERVING_MAX_RECORDS`` or the default; a bad value fails when the model loads."""
    value = _positive_env(MAX_RECORDS_ENV)
    return DEFAULT_MAX_RECORDS if value is None else value


def serving_threads(in_server: bool) -> int | None:
    """torch's intra-op threads for a process that serves: ``PADIREC_SERVING_THREADS``, else 1 in a
    worker of a scoring server (``in_server``), else None (leave the caller's setting). With 2
    workers on 2 cores and the weights changing per request, 1 thread each served 362 req/s (median
    of 3 rounds) against 300 with torch's default of 2 (``make bench-serving``, docs/serving.md).
    A bad value fails when the model loads."""
    value = _positive_env(SERVING_THREADS_ENV)
    if value is None:
        return 1 if in_server else None
    return value


class Recommender:
    """Serve a system folder. Thread-safe: the adapter cache is guarded by a lock."""

    def __init__(self, system_dir: str | Path, device: str = "cpu", cache_size: int = 256,
                 sampling_seed: int = 0, max_tasks: int | None = None, max_records: int | None = None,
                 chunk_rows: int = CHUNK_ROWS) -> None:
        from padirec.backbones import load_backbone
        from padirec.diffusion.generator import Generator

        system_dir = Path(system_dir)
        self.manifest = read_manifest(system_dir, kind="system")
        self.data_checksum = str(self.manifest.get("data_checksum", ""))
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
        self.max_tasks = max_tasks if max_tasks is not None else max_tasks_setting()
        self.max_records = max_records if max_records is not None else max_records_setting()
        self.chunk_rows = chunk_rows
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- validation

    def check_weights(self, weights: Any) -> tuple[float, ...]:
        from padirec.core.tasks import validate_weights

        try:
            w = [float(x) for x in weights]
        except (TypeError, ValueError) as e:
            raise RequestError(f"weights must be a list of {len(self.utilities)} numbers ({', '.join(self.utilities)}), got {_short(weights)}") from e
        try:
            w = validate_weights(w, len(self.utilities)).tolist()
        except TaskWeightsError as e:
            raise RequestError(f"weights: {_short(str(e), 300, quote=False)} (utilities: {', '.join(self.utilities)})") from e
        # Rounded only to merge float noise in the cache key: 12 decimals keep the sum within the
        # weights' tolerance for any p (6 decimals made (1/3, 1/3, 1/3) sum to 0.999999).
        return tuple(round(x, 12) for x in w)

    def check_history(self, history: Any) -> tuple[list[int], list[bool]]:
        """The internal ids of the known items, and for each history position whether it is known."""
        if history is None or isinstance(history, str | bytes | dict) or not hasattr(history, "__len__") or len(history) == 0:
            raise RequestError("history must be a non-empty list of item ids")
        if len(history) > self.max_len:
            raise RequestError(f"history has {len(history)} items; this model reads at most {self.max_len} "
                               "(send the most recent ones)")
        known = [str(h) in self.internal for h in history]
        if not any(known):
            raise RequestError(f"history has unknown item id(s) {_short(list(history)[:5])} ({len(history)} in all) "
                               "and no item this model knows: nothing to rank from")
        return [self.internal[str(h)] for h, ok in zip(history, known, strict=True) if ok], known

    def check_k(self, k: Any, items: list[int]) -> int:
        """1 <= k <= the items this request can rank: the catalogue minus the history (which is
        never listed, nor is the padding item)."""
        whole = isinstance(k, numbers.Integral) or (isinstance(k, float) and k.is_integer())
        if isinstance(k, bool) or not whole:
            raise RequestError(f"k must be a whole number, got {_short(k)}")
        rankable = self.backbone.num_items - len(set(items))
        if not 1 <= int(k) <= rankable:
            raise RequestError(f"k must be between 1 and {rankable} (the {self.backbone.num_items} catalogue items "
                               f"minus the {len(set(items))} in the history), got {int(k)}")
        return int(k)

    @staticmethod
    def check_timestamps(ts: Any, n: int) -> list[int]:
        try:
            if isinstance(ts, str | bytes | dict):  # iterable, but "123" is not [1, 2, 3]
                raise TypeError(type(ts).__name__)
            values = [float(t) for t in ts]
        except (TypeError, ValueError) as e:
            raise RequestError(f"timestamps must be a list of numbers (seconds), one per history item, got {_short(ts)}") from e
        if len(values) != n:
            raise RequestError(f"timestamps has {len(values)} values for {n} history items")
        if not all(math.isfinite(v) and 0 <= v < MAX_TIMESTAMP for v in values):
            raise RequestError(f"timestamps must be finite, non-negative seconds, got {_short(ts)}")
        return [int(v) for v in values]

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

    def _parse(self, r: int, req: Any, k: Any, many: bool) -> tuple[list[int], tuple[float, ...], int, list[int] | None, list[str]]:
        where = f"record {r}: " if many else ""
        try:
            if not isinstance(req, dict):
                raise RequestError("expected an object with history and weights")
            history = req.get("history")
            items, known = self.check_history(history)
            task = self.check_weights(req.get("weights"))
            kk = self.check_k(req["k"] if req.get("k") is not None else k, items)
            ts = req.get("timestamps")
            times = self.check_timestamps(ts, len(known)) if ts is not None else None
        except RequestError as e:
            raise RequestError(f"{where}{e}") from None
        if times is not None:  # the timestamps of the dropped items go with them
            times = [t for t, ok in zip(times, known, strict=True) if ok]
        ignored = [str(h) for h, ok in zip(history, known, strict=True) if not ok]
        return items, task, kk, times, ignored

    def check_records(self, n: int) -> None:
        """Refuse a request of more than ``max_records`` records before any of them is read."""
        if n > self.max_records:
            raise RequestError(f"this request has {n} records; at most {self.max_records} are allowed per request "
                               f"({MAX_RECORDS_ENV}): split it")

    @torch.inference_mode()
    def recommend_many(self, requests: list[dict[str, Any]], k: Any = DEFAULT_K,
                       deadline: float | None = None) -> list[dict[str, list]]:
        """``requests``: dicts with ``history`` (source item ids, oldest first), ``weights`` and
        optional ``timestamps`` and ``k`` (else the ``k`` argument). ``deadline``: a
        ``time.monotonic()`` instant after which the work stops. Returns per request
        ``item_ids``, ``scores``, ``titles``, ``categories`` (best first) and ``ignored`` (the
        history items the model does not know, dropped before ranking)."""
        if not requests:
            return []
        self.check_records(len(requests))
        parsed = [self._parse(r, req, k, len(requests) > 1) for r, req in enumerate(requests)]
        distinct = list(dict.fromkeys(p[1] for p in parsed))
        if len(distinct) > self.max_tasks:
            raise RequestError(f"weights: this request has {len(distinct)} distinct weight vectors; at most "
                               f"{self.max_tasks} are allowed per request ({MAX_TASKS_ENV}): split it")
        out: list[dict[str, list]] = []
        chunks = range(0, len(parsed), self.chunk_rows)
        for c, start in enumerate(chunks):
            _check_deadline(deadline, f"{c} of {len(chunks)} chunks of {self.chunk_rows} records")
            out += self._rank_chunk(parsed[start:start + self.chunk_rows], deadline)
        return out

    def _rank_chunk(self, parsed: list[tuple], deadline: float | None) -> list[dict[str, list]]:
        """Rank one chunk of parsed records: one forward pass, then one adapter per distinct task."""
        from padirec.adapters.adapter import apply_adapters

        rows_of: dict[tuple[float, ...], list[int]] = {}  # the records of each distinct task, in one pass
        for i, p in enumerate(parsed):
            rows_of.setdefault(p[1], []).append(i)
        seqs = torch.zeros(len(parsed), self.max_len, dtype=torch.long)
        times = torch.zeros(len(parsed), self.max_len, dtype=torch.long)
        for r, (items, _, _, ts, _) in enumerate(parsed):
            seqs[r, self.max_len - len(items):] = torch.tensor(items)
            if ts is not None:
                times[r, self.max_len - len(items):] = torch.tensor(ts)
        h = self.backbone.represent(seqs.to(self.device), times.to(self.device))
        out: list[dict[str, list]] = [{} for _ in parsed]
        for done, (task, rows) in enumerate(rows_of.items()):
            _check_deadline(deadline, f"{done} of {len(rows_of)} distinct weight vectors of a chunk")
            adapted = apply_adapters(h[rows], self.adapter(task), self.generator.layout)[0]
            scores = self.backbone.score_all(adapted)
            scores[:, 0] = -torch.inf
            for j, r in enumerate(rows):
                scores[j, seqs[r][seqs[r] > 0]] = -torch.inf
                top = torch.topk(scores[j], parsed[r][2])
                ids = top.indices.cpu().numpy()
                out[r] = {"item_ids": [str(s) for s in self.source_id[ids]], "scores": top.values.cpu().tolist(),
                          "titles": [str(t) for t in self.title[ids]],
                          "categories": [self.categories[i] for i in ids], "ignored": parsed[r][4]}
        return out

    def recommend(self, history: list, weights: list[float], k: Any = DEFAULT_K, timestamps: list | None = None) -> dict[str, list]:
        return self.recommend_many([{"history": history, "weights": weights, "k": k, "timestamps": timestamps}])[0]


def _check_deadline(deadline: float | None, done: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        log.warning("request stopped at its deadline after %s", done)
        raise RequestTimeout(f"the request ran past its time limit and was stopped after {done}")


def _short(value: Any, limit: int = 80, quote: bool = True) -> str:
    """A request value in an error message, cut so a 10,000-item field cannot flood the reply."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def unknown_item_share(model_data: str | Path, new_data: str | Path, max_len: int | None = None) -> dict[str, Any]:
    """How many of a newer snapshot's test users would send a history item that a model trained on
    ``model_data`` (a prepared folder) does not know. Each user's request is their history before
    the test item in ``new_data`` (train then valid, the most recent ``max_len``), in source ids.
    ``with_unknown``: requests that failed with a 400 before unknown items were dropped;
    ``all_unknown``: those still refused (no known item)."""
    known = set(pd.read_parquet(Path(model_data) / "id_map_items.parquet")["source_id"].astype(str))
    new_data = Path(new_data)
    source = pd.read_parquet(new_data / "id_map_items.parquet").set_index("item_id")["source_id"].astype(str)
    train = pd.read_parquet(new_data / "train.parquet")
    train = train.sort_values(["user_id", "seq"], kind="stable") if "seq" in train else train
    # valid after train, then a stable sort by user: each user's items stay in time order
    seen = pd.concat([train, pd.read_parquet(new_data / "valid.parquet")]).sort_values("user_id", kind="stable")
    seen = seen[seen["user_id"].isin(pd.read_parquet(new_data / "test.parquet")["user_id"])]
    if max_len is not None:
        seen = seen.groupby("user_id").tail(max_len)
    unknown = ~source.reindex(seen["item_id"]).isin(known).to_numpy()
    per_user = pd.DataFrame({"user_id": seen["user_id"].to_numpy(), "unknown": unknown}).groupby("user_id")["unknown"]
    users = int(per_user.ngroups)
    with_unknown, all_unknown = int(per_user.any().sum()), int(per_user.all().sum())
    return {"test_users": users, "with_unknown": with_unknown, "all_unknown": all_unknown,
            "share_with_unknown": with_unknown / users if users else 0.0,
            "share_all_unknown": all_unknown / users if users else 0.0}
