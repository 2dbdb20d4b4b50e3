"""Frozen-backbone features, computed once and shared by every adapter.

The backbone does not change in phase 2, so the user representation of every training prefix
and of every evaluation history is computed once. Training and evaluating any number of
adapters then only needs these tensors and the item embedding table.

Training examples are every prefix of each user's train sequence (history truncated to
``max_len``) predicting the next item, as in phase 1 (SPEC section 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from padirec.backbones.base import Backbone
from padirec.data.dataset import PreparedData

_CHUNK = 2048  # sequences per backbone forward pass


@dataclass
class EvalSplit:
    """Held-out users of one split (``valid`` or ``test``)."""

    users: torch.Tensor  # (U,) user ids
    h: torch.Tensor  # (U, d) backbone representation of each user's history
    targets: torch.Tensor  # (U,) held-out item
    mask_rows: torch.Tensor  # (H,) row index into users, with mask_cols: history items to mask
    mask_cols: torch.Tensor  # (H,) item ids (the target is never among them)
    groups: torch.Tensor | None  # (U,) user group, -1 unknown; None when the data has none


@dataclass
class Features:
    """Everything adapter training and evaluation needs from the data and the frozen backbone."""

    train_h: torch.Tensor  # (M, d) representation of each training prefix
    train_user: torch.Tensor  # (M,) user id of each prefix
    train_target: torch.Tensor  # (M,) next item of each prefix
    item_embedding: torch.Tensor  # (I + 1, d) row 0 = padding
    item_categories: torch.Tensor  # (I + 1, C) float multi-hot
    user_group: torch.Tensor | None  # (num_users + 1,) group per user id, -1 unknown
    seen_keys: torch.Tensor  # (S,) sorted user * (I + 1) + item over every train interaction
    valid: EvalSplit
    test: EvalSplit

    @property
    def dim(self) -> int:
        return self.train_h.shape[1]

    @property
    def num_items(self) -> int:
        return self.item_embedding.shape[0] - 1

    def split(self, name: str) -> EvalSplit:
        if name not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {name!r}")
        return self.valid if name == "valid" else self.test

    def to(self, device: torch.device | str) -> Features:
        def mv(x):
            return None if x is None else x.to(device)

        def mv_split(s: EvalSplit) -> EvalSplit:
            return EvalSplit(*(mv(getattr(s, f)) for f in EvalSplit.__dataclass_fields__))

        return Features(
            train_h=mv(self.train_h), train_user=mv(self.train_user), train_target=mv(self.train_target),
            item_embedding=mv(self.item_embedding), item_categories=mv(self.item_categories),
            user_group=mv(self.user_group), seen_keys=mv(self.seen_keys),
            valid=mv_split(self.valid), test=mv_split(self.test),
        )

    def is_seen(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Bool, same shape as ``items``: did ``users`` (broadcast) interact with it in train?"""
        keys = users * (self.num_items + 1) + items
        pos = torch.searchsorted(self.seen_keys, keys).clamp_max(self.seen_keys.numel() - 1)
        return self.seen_keys[pos] == keys


def training_prefixes(data: PreparedData, max_len: int) -> dict[str, np.ndarray]:
    """Every train prefix: ``users (M,)``, ``seqs (M, max_len)``, ``times (M, max_len)`` left-padded,
    ``targets (M,)``."""
    users, targets, seqs, times = [], [], [], []
    for u in data.users:
        items, ts = data.train_items[u], data.train_times[u]
        for i in range(1, len(items)):
            lo = max(0, i - max_len)
            s = np.zeros(max_len, dtype=np.int64)
            t = np.zeros(max_len, dtype=np.int64)
            s[max_len - (i - lo):] = items[lo:i]
            t[max_len - (i - lo):] = ts[lo:i]
            users.append(u)
            targets.append(items[i])
            seqs.append(s)
            times.append(t)
    if not users:
        raise ValueError("no training prefixes: every user has fewer than 2 train interactions")
    return {
        "users": np.asarray(users, dtype=np.int64), "targets": np.asarray(targets, dtype=np.int64),
        "seqs": np.stack(seqs), "times": np.stack(times),
    }


@torch.no_grad()
def _represent(backbone: Backbone, seqs: np.ndarray, times: np.ndarray, device: torch.device) -> torch.Tensor:
    out = []
    for s in range(0, len(seqs), _CHUNK):
        sq = torch.as_tensor(seqs[s:s + _CHUNK], device=device)
        tm = torch.as_tensor(times[s:s + _CHUNK], device=device)
        out.append(backbone.represent(sq, tm).float())
    return torch.cat(out)


def _eval_split(backbone: Backbone, data: PreparedData, split: str, max_len: int,
                device: torch.device) -> EvalSplit:
    batch = data.eval_batch(split, max_len)
    rows, cols = data.seen_items(split)
    groups = None if data.user_group is None else torch.as_tensor(data.user_group[batch["users"]], device=device)
    return EvalSplit(
        users=torch.as_tensor(batch["users"], device=device),
        h=_represent(backbone, batch["seqs"], batch["times"], device),
        targets=torch.as_tensor(batch["targets"], device=device),
        mask_rows=torch.as_tensor(rows, device=device),
        mask_cols=torch.as_tensor(cols, device=device),
        groups=groups,
    )


def compute_features(backbone: Backbone, data: PreparedData, max_len: int,
                     device: torch.device | str = "cpu") -> Features:
    """Run the frozen backbone once over every training prefix and every evaluation history.

    ``backbone`` must be in eval mode (``load_backbone`` returns it so); it is moved to ``device``.
    """
    device = torch.device(device)
    if backbone.num_items != data.num_items:
        raise ValueError(f"backbone scores {backbone.num_items} items but the data has {data.num_items}; "
                         "was the backbone trained on this prepared data?")
    backbone = backbone.to(device).eval()
    prefixes = training_prefixes(data, max_len)
    seen = np.unique(np.concatenate([
        u * (data.num_items + 1) + data.train_items[u] for u in data.users
    ]).astype(np.int64))
    return Features(
        train_h=_represent(backbone, prefixes["seqs"], prefixes["times"], device),
        train_user=torch.as_tensor(prefixes["users"], device=device),
        train_target=torch.as_tensor(prefixes["targets"], device=device),
        item_embedding=backbone.item_embedding.weight.detach().float().clone(),
        item_categories=torch.as_tensor(data.item_categories, dtype=torch.float32, device=device),
        user_group=None if data.user_group is None else torch.as_tensor(data.user_group, device=device),
        seen_keys=torch.as_tensor(seen, device=device),
        valid=_eval_split(backbone, data, "valid", max_len, device),
        test=_eval_split(backbone, data, "test", max_len, device),
    )
