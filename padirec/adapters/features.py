"""Frozen-backbone features, computed once and shared by every adapter.

The backbone does not change in phase 2, so the user representation of every training prefix
and of every evaluation history is computed once. Training and evaluating any number of
adapters then only needs these tensors and the item embedding table.

Training examples are every prefix of each user's train sequence (history truncated to
``max_len``) predicting the next item, as the backbone trains on them. Their representations come
from one encoder pass per window (``training_examples``): ``stride=1`` (the default) is one pass per
prefix, the exact features; ``stride=s`` reads ``s`` positions of each pass, as backbone training
does, about ``s`` times less work. Each pass is copied out at once, so only the kept rows stay alive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    # the backbone's masked top-n items per training example, by n (``adapters.train.backbone_topk``):
    # the features never change, so the bank, Retrain, CMR and DeepPRL compute it once between them
    # (not an __init__ argument: a Features built from changed tensors starts without it)
    topk_cache: dict[int, torch.Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)

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

        moved = Features(
            train_h=mv(self.train_h), train_user=mv(self.train_user), train_target=mv(self.train_target),
            item_embedding=mv(self.item_embedding), item_categories=mv(self.item_categories),
            user_group=mv(self.user_group), seen_keys=mv(self.seen_keys),
            valid=mv_split(self.valid), test=mv_split(self.test),
        )
        moved.topk_cache.update({n: mv(t) for n, t in self.topk_cache.items()})
        return moved

    def is_seen(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Bool, same shape as ``items``: did ``users`` (broadcast) interact with it in train?"""
        keys = users * (self.num_items + 1) + items
        pos = torch.searchsorted(self.seen_keys, keys).clamp_max(self.seen_keys.numel() - 1)
        return self.seen_keys[pos] == keys


def training_examples(data: PreparedData, max_len: int, stride: int = 1) -> dict[str, np.ndarray]:
    """Every train prefix as an example, and the encoder windows that produce their features.

    Examples, in user order then time order (as ``training_prefixes``): ``users (M,)``,
    ``targets (M,)``, ``window (M,)`` the window whose hidden state at ``position (M,)`` is the
    example's representation. Windows: ``seqs``/``times (W, max_len)`` left-padded, each the
    prefix that ends at its last target, the last ``stride`` targets of a user read from one
    window, as ``backbones.train.training_windows`` groups them (windows end at the user's last
    target, then every ``stride`` targets back). ``stride=1``: one window per example, the exact
    prefix truncated to ``max_len`` (position ``max_len - 1``); ``stride=s``: about ``s`` times
    fewer encoder passes, the histories ``max_len - s + 1`` to ``max_len`` items long.
    """
    if not 1 <= stride <= max_len:
        raise ValueError(f"stride must be in 1..max_len ({max_len}), got {stride}")
    users = data.users
    lengths = np.array([len(data.train_items[u]) for u in users], dtype=np.int64)
    n_ex = np.maximum(lengths - 1, 0)  # targets x_1 .. x_{n-1}
    if n_ex.sum() == 0:
        raise ValueError("no training prefixes: every user has fewer than 2 train interactions")
    zeros = np.zeros(max_len, np.int64)
    # each user's sequence behind max_len zeros: x_j at off_u + max_len + j; the prefix ending
    # before x_e (inputs x_{e-L}..x_{e-1}, zeros before x_0) is padded[off_u + e : off_u + e + L]
    padded_items = np.concatenate([np.concatenate([zeros, np.asarray(data.train_items[u], np.int64)]) for u in users])
    padded_times = np.concatenate([np.concatenate([zeros, np.asarray(data.train_times[u], np.int64)]) for u in users])
    offsets = np.concatenate([[0], np.cumsum(lengths + max_len)[:-1]])
    n_win = -(-n_ex // stride)

    # examples: i = 1..n-1 per user; its window ends at e = n-1 - stride*k with k = (n-1-i) // stride
    ex_user = np.repeat(np.arange(len(users)), n_ex)
    i = np.arange(n_ex.sum()) - np.repeat(np.cumsum(n_ex) - n_ex, n_ex) + 1
    k = (lengths[ex_user] - 1 - i) // stride
    e = lengths[ex_user] - 1 - stride * k
    win_first = np.cumsum(n_win) - n_win  # windows in time order: the j-th has k = n_win - 1 - j
    window = win_first[ex_user] + n_win[ex_user] - 1 - k
    position = max_len - 1 - (e - i)

    # windows: j = 0..n_win-1 per user, ending at e = n-1 - stride*(n_win-1-j)
    win_user = np.repeat(np.arange(len(users)), n_win)
    j = np.arange(n_win.sum()) - np.repeat(win_first, n_win)
    win_end = lengths[win_user] - 1 - stride * (n_win[win_user] - 1 - j)
    starts = offsets[win_user] + win_end
    view = np.lib.stride_tricks.sliding_window_view
    return {
        "users": users[ex_user].astype(np.int64),
        "targets": padded_items[offsets[ex_user] + max_len + i],
        "window": window.astype(np.int64), "position": position.astype(np.int64),
        "seqs": np.ascontiguousarray(view(padded_items, max_len)[starts]),
        "times": np.ascontiguousarray(view(padded_times, max_len)[starts]),
    }


def training_prefixes(data: PreparedData, max_len: int) -> dict[str, np.ndarray]:
    """Every train prefix: ``users (M,)``, ``seqs (M, max_len)``, ``times (M, max_len)`` left-padded,
    ``targets (M,)``."""
    ex = training_examples(data, max_len, stride=1)
    return {"users": ex["users"], "targets": ex["targets"], "seqs": ex["seqs"], "times": ex["times"]}


@torch.no_grad()
def _represent(backbone: Backbone, seqs: np.ndarray, times: np.ndarray, device: torch.device,
               window: np.ndarray | None = None, position: np.ndarray | None = None) -> torch.Tensor:
    """``(M, d)`` hidden states: of each sequence's last position, or (``window``/``position``
    ``(M,)``, ``window`` non-decreasing) of position ``position[m]`` of sequence ``window[m]``.

    Written into one preallocated tensor: no chunk's encoder output outlives its pass."""
    n = len(seqs) if window is None else len(window)
    out = torch.empty(n, backbone.dim, dtype=torch.float32, device=device)
    for s in range(0, len(seqs), _CHUNK):
        e = min(s + _CHUNK, len(seqs))
        sq = torch.as_tensor(seqs[s:e], device=device)
        tm = torch.as_tensor(times[s:e], device=device)
        if window is None:
            out[s:e] = backbone.represent(sq, tm)
            continue
        lo, hi = np.searchsorted(window, [s, e])
        hidden = backbone.encode(sq, tm)  # (chunk, max_len, d)
        out[lo:hi] = hidden[torch.as_tensor(window[lo:hi] - s, device=device),
                            torch.as_tensor(position[lo:hi], device=device)]
    return out


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
                     device: torch.device | str = "cpu", stride: int = 1) -> Features:
    """Run the frozen backbone once over the training windows and every evaluation history.

    ``stride`` (see ``training_examples``): 1 = each training prefix's own pass (the exact
    features); ``s`` = one pass per window of ``s`` targets, as backbone training groups them.
    ``backbone`` must be in eval mode (``load_backbone`` returns it so); it is moved to ``device``.
    """
    device = torch.device(device)
    if backbone.num_items != data.num_items:
        raise ValueError(f"backbone scores {backbone.num_items} items but the data has {data.num_items}; "
                         "was the backbone trained on this prepared data?")
    backbone = backbone.to(device).eval()
    ex = training_examples(data, max_len, stride)
    seen = np.unique(np.concatenate([
        u * (data.num_items + 1) + data.train_items[u] for u in data.users
    ]).astype(np.int64))
    if stride == 1:  # one window per example, read at its last position
        train_h = _represent(backbone, ex["seqs"], ex["times"], device)
    else:
        train_h = _represent(backbone, ex["seqs"], ex["times"], device, ex["window"], ex["position"])
    return Features(
        train_h=train_h,
        train_user=torch.as_tensor(ex["users"], device=device),
        train_target=torch.as_tensor(ex["targets"], device=device),
        item_embedding=backbone.item_embedding.weight.detach().float().clone(),
        item_categories=torch.as_tensor(data.item_categories, dtype=torch.float32, device=device),
        user_group=None if data.user_group is None else torch.as_tensor(data.user_group, device=device),
        seen_keys=torch.as_tensor(seen, device=device),
        valid=_eval_split(backbone, data, "valid", max_len, device),
        test=_eval_split(backbone, data, "test", max_len, device),
    )
