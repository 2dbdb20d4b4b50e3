"""Stage ``compute_features``: the frozen backbone's features, computed once per pipeline.

The adapter shards, the response-time step and the evaluate step all need the same ``Features``
(every training prefix and every valid/test history through the frozen backbone) and, with
``adapters.candidates = "topk"``, the backbone's masked top-k list per training prefix. The
pipeline computes them once, right after the backbone, into a ``features`` artifact:

``features.safetensors``: every tensor of ``Features`` under its field name (``valid.h``,
``test.mask_rows``, ...; the optional ``user_group`` and ``<split>.groups`` only when the data has
user groups) and ``topk.<n>`` ``(M, <= n)`` int64 for each precomputed ``backbone_topk(features, n)``.
The manifest (kind ``features``) carries ``backbone_sha256``, ``data_checksum``, ``max_len``,
``feature_stride`` and ``topk`` (the list of ``n``), so a consumer checks the artifact matches its
other inputs and settings (``load_features``). Contract in ``docs/internals.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from padirec.adapters.config import CANDIDATE_LISTS, AdapterConfig
from padirec.adapters.features import EvalSplit, Features, compute_features
from padirec.adapters.train import backbone_topk
from padirec.backbones.checkpoint import backbone_sha256, load_backbone
from padirec.core.tracker import NullTracker, Tracker
from padirec.data.dataset import PreparedData, load_prepared
from padirec.errors import ArtifactError, ConfigError
from padirec.runtime.artifacts import atomic_write, read_manifest, write_manifest
from padirec.runtime.seeding import pick_device

log = logging.getLogger("padirec")

KIND = "features"
TENSORS = "features.safetensors"
_TOP = ("train_h", "train_user", "train_target", "item_embedding", "item_categories", "seen_keys")
_OPTIONAL = ("user_group",)
_SPLIT_OPTIONAL = ("groups",)


def topk_size(cfg: AdapterConfig) -> int | None:
    """The ``n`` of the top-k lists the adapters train on, or None (``candidates = "train"``)."""
    return cfg.topk_candidates if cfg.candidates == "topk" else None


def save_features(features: Features, out_dir: str | os.PathLike, *, backbone_sha256: str, data_checksum: str,
                  max_len: int, feature_stride: int, config: dict[str, Any] | None = None,
                  stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``features`` (with every list in its ``topk_cache``) as a ``features`` artifact; returns
    the manifest. The tensors file is written under a temporary name, then renamed."""
    tensors = {name: getattr(features, name) for name in _TOP + _OPTIONAL}
    for split in ("valid", "test"):
        tensors.update({f"{split}.{name}": getattr(features.split(split), name) for name in EvalSplit.__dataclass_fields__})
    tensors.update({f"topk.{n}": t for n, t in features.topk_cache.items()})
    flat = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items() if t is not None}
    atomic_write(Path(out_dir) / TENSORS, lambda tmp: save_file(flat, tmp))
    return write_manifest(out_dir, KIND, [TENSORS], config or {}, stats, backbone_sha256=backbone_sha256,
                          data_checksum=data_checksum, max_len=max_len, feature_stride=feature_stride,
                          topk=sorted(features.topk_cache))


def load_features(in_dir: str | os.PathLike, device: torch.device | str = "cpu", *,
                  backbone_sha256: str | None = None, data_checksum: str | None = None,
                  max_len: int | None = None, feature_stride: int | None = None,
                  topk: int | None = None) -> Features:
    """Read a ``features`` artifact (checksums verified) onto ``device``, its top-k lists in
    ``topk_cache``. Each given expectation (the consumer's backbone and data, its settings, the
    ``n`` of a top-k list it needs) must match the manifest, else ``ArtifactError``."""
    in_dir = Path(in_dir)
    manifest = read_manifest(in_dir, kind=KIND)
    expected = {"backbone_sha256": backbone_sha256, "data_checksum": data_checksum, "max_len": max_len,
                "feature_stride": feature_stride}
    for key, want in expected.items():
        if key not in manifest:
            raise ArtifactError(f"{in_dir}: features manifest lacks {key!r}")
        if want is not None and manifest[key] != want:
            raise ArtifactError(f"{in_dir}: features made with {key} {_short(manifest[key])}, but this step has "
                                f"{_short(want)}; they belong to other inputs or settings")
    if topk is not None and topk not in manifest.get("topk", []):
        raise ArtifactError(f"{in_dir}: features hold top-k lists for n in {manifest.get('topk', [])}, not "
                            f"adapters.topk_candidates {topk}; they were made with other adapters settings")
    tensors = load_file(str(in_dir / TENSORS), device=str(torch.device(device)))
    needed = [*_TOP, *(f"{s}.{n}" for s in ("valid", "test") for n in EvalSplit.__dataclass_fields__
                       if n not in _SPLIT_OPTIONAL), *(f"topk.{n}" for n in manifest.get("topk", []))]
    missing = [name for name in needed if name not in tensors]
    if missing:
        raise ArtifactError(f"{in_dir / TENSORS}: missing tensor(s) {missing}")

    def split(name: str) -> EvalSplit:
        return EvalSplit(**{f: tensors.get(f"{name}.{f}") for f in EvalSplit.__dataclass_fields__})

    features = Features(**{name: tensors[name] for name in _TOP}, user_group=tensors.get("user_group"),
                        valid=split("valid"), test=split("test"))
    m, d = features.train_h.shape
    if features.train_user.shape != (m,) or features.train_target.shape != (m,) or features.item_embedding.shape[1] != d:
        raise ArtifactError(f"{in_dir / TENSORS}: train_h {(m, d)}, train_user {tuple(features.train_user.shape)}, "
                            f"train_target {tuple(features.train_target.shape)} and item_embedding "
                            f"{tuple(features.item_embedding.shape)} do not agree")
    for n in manifest.get("topk", []):
        top = tensors[f"topk.{n}"]
        if top.dim() != 2 or top.shape[0] != m or not 0 < top.shape[1] <= n:
            raise ArtifactError(f"{in_dir / TENSORS}: topk.{n} has shape {tuple(top.shape)}, not ({m}, <= {n})")
        features.topk_cache[n] = top
    return features


def _short(value: Any) -> str:
    text = str(value)
    return f"{text[:12]}..." if len(text) == 64 else text  # a sha256: its head is enough to tell


def features_stage(data_dir: str | os.PathLike, backbone_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   cfg: AdapterConfig, max_len: int, device: str, tracker: Tracker | None = None) -> dict[str, Any]:
    """Compute the frozen features (and the top-k lists of ``cfg``) once and write the ``features``
    artifact to ``out_dir``. Returns its stats."""
    if cfg.candidates not in CANDIDATE_LISTS:
        raise ConfigError(f"adapters.candidates must be 'train' or 'topk', got {cfg.candidates!r}")
    tracker = tracker or NullTracker()
    dev = pick_device(device)
    data = load_prepared(data_dir)
    backbone = load_backbone(backbone_dir, dev)  # verifies the backbone's checksums
    tracker.log_params({"max_len": max_len, "feature_stride": cfg.feature_stride, "topk": topk_size(cfg) or 0})
    start = time.perf_counter()
    features = compute_features(backbone, data, max_len, dev, cfg.feature_stride)
    features_seconds = time.perf_counter() - start
    n = topk_size(cfg)
    if n is not None:
        backbone_topk(features, n)
    seconds = time.perf_counter() - start
    config = {"max_len": max_len, "adapters": dataclasses.asdict(cfg)}
    stats = {"num_examples": int(features.train_h.shape[0]), "dim": features.dim, "num_items": features.num_items,
             "features_seconds": features_seconds, "topk_seconds": seconds - features_seconds, "seconds": seconds}
    manifest = save_features(features, out_dir, backbone_sha256=backbone_sha256(backbone_dir),
                             data_checksum=data.manifest["data_checksum"], max_len=max_len,
                             feature_stride=cfg.feature_stride, config=config, stats=stats)
    size = manifest["files"][TENSORS]["bytes"]
    tracker.log_metrics({"features_seconds": features_seconds, "topk_seconds": seconds - features_seconds,
                         "features_mb": size / 2**20})
    log.info("features: %d training examples (dim %d) on %s in %.1fs, %.1f MB written to %s",
             stats["num_examples"], stats["dim"], dev, seconds, size / 2**20, out_dir)
    return {**stats, "bytes": size}


def frozen_features(data: PreparedData, backbone_dir: str | os.PathLike, features_dir: str | os.PathLike | None,
                    cfg: AdapterConfig, max_len: int, device: torch.device | str) -> Features:
    """The features a consumer step works on: read from ``features_dir`` (the pipeline's
    ``features`` artifact, checked against ``backbone_dir``, ``data`` and the settings), or, with
    none (the library's commands, benchmarks on older run folders), computed here."""
    if features_dir is None:
        return compute_features(load_backbone(backbone_dir, device), data, max_len, device, cfg.feature_stride)
    read_manifest(backbone_dir, kind="backbone")  # verifies the weights' checksum, as load_backbone does
    return load_features(features_dir, device, backbone_sha256=backbone_sha256(backbone_dir),
                         data_checksum=data.manifest.get("data_checksum"), max_len=max_len,
                         feature_stride=cfg.feature_stride, topk=topk_size(cfg))
