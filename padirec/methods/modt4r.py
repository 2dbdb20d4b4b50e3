"""MODT4R (thesis Chapter 4): a multi-objective Decision Transformer for recommendation.

A user's training sequence is a trajectory ``<s_t, R_acc_t, R_div_t, a_t>`` (t = 1..T, ``a_t``
the item that follows the first ``t`` items); a causal Transformer (MoTrans) reads it and
predicts each action from the tokens before it, so at inference the returns-to-go written into
the trajectory steer the next item. Design choices (see ``docs/modt4r.md`` for the measurements):

- UserTrans (the state encoder): the trained backbone itself, frozen. ``s_t`` is the backbone's
  representation of the first ``t`` items (``Features.train_h``; ``valid.h`` / ``test.h`` for the
  held-out step), so the method needs no encoder training of its own. Its item-prediction layer
  ``Y_t = W_u s_t + b_u`` (Eq. 4.13) is trainable and starts from the backbone's item embeddings
  (``Y`` starts as the backbone's own scores); ``L_S`` is its full-softmax cross-entropy.
- MoTrans: GPT-style pre-norm blocks over 4 tokens per step (state through a linear map; each
  return ``R * E_o + b_o``; the action's embedding, a trainable copy of the backbone's item
  table, tied with the action output layer ``A_t``), plus step-position and token-type
  embeddings, over the last ``context`` steps.
- Which output predicts what (the thesis reads each return from its own token, which already
  contains it under a causal mask): ``R_acc_t`` from the state token, ``R_div_t`` from the
  ``R_acc`` token, ``a_t`` from the ``R_div`` token (everything of step ``t`` but the action).
- Returns: accuracy ``R_acc_t = T - t + 1`` (Eq. 4.3), fed as ``log(1 + R)``. Diversity: a
  per-step reward summed over the next ``horizon`` steps (truncated at the sequence's end),
  divided by ``horizon`` (a mean reward per step), with the reward either ``category`` (the
  fraction of ``a_t``'s categories absent from the previous ``window`` items, the category
  coverage gain) or ``embedding`` (Eq. 4.5: ``Sim(prev) - Sim(prev + a_t)``, ``Sim`` the mean
  pairwise cosine of backbone item embeddings over the previous ``window`` items, 1 for one item).
- Loss (Eq. 4.17): ``L_S + L_a + beta * L_R``, ``L_R`` the MSE of both (encoded) returns.
- Control (a new task is one forward pass): with ``w_acc`` and ``w_div`` (renormalised to sum
  1 when a fairness weight is present), the trajectory's accuracy returns-to-go are scaled by
  ``w_acc`` and the diversity returns-to-go by ``w_div``, the last (to-be-predicted) step asking
  for ``w_div * target`` with ``target`` the ``target_quantile`` of the training diversity
  returns; then ``score = log_softmax(A) + alpha * log_softmax(Y)`` (Eq. 4.19) with
  ``alpha = alpha_min + alpha_scale * w_acc / (1 - w_acc)``, computed as the convex mix
  ``(1 - lambda) A + lambda Y``, ``lambda = alpha / (1 + alpha)`` (same ranking; ``w_acc = 1``
  is ``Y`` alone, the ``alpha -> inf`` limit).
- A fairness weight (``padirec.core.fairness``): user ``u``'s ``Y`` is weighted
  ``lambda + w_fair s_u / (w_acc + w_div)`` instead of ``lambda`` (the group gap linearised per
  user; ``s_u < 0`` in the group the backbone serves better on validation, decided once in
  ``fit``); all-fairness weights rank by ``s_u Y`` alone. The returns-to-go stay those of the
  renormalised ``(w_acc, w_div)``. Without a fairness weight nothing changes.
- The novelty return (the thesis' third objective, Eq. 4.4, with the ``novelty`` utility): the
  reward of step ``t`` is 1 when its action is in the long tail of the training split
  (``padirec.core.novelty``: outside the 10% most popular items), summed over the next ``horizon``
  steps and divided by ``horizon`` as the diversity return is. The trajectory is then
  ``<s_t, R_acc_t, R_nov_t, R_div_t, a_t>`` (the thesis' order, Eq. 4.1): ``R_nov_t`` is read from
  the ``R_acc`` token, ``R_div_t`` from the ``R_nov`` token, ``a_t`` from the ``R_div`` token. At
  inference the novelty returns-to-go are scaled by ``w_nov`` and the predicted step asks for
  ``w_nov * target`` (the ``target_quantile`` of the training novelty returns), with
  ``(w_acc, w_div, w_nov)`` renormalised to sum 1 and ``alpha`` from that ``w_acc``. Without the
  novelty utility the model and its trajectories are those of two returns, unchanged.
- Defaults (``category`` reward, horizon 1, ``beta`` 0.5, ``alpha_min`` 0.25, frozen ``Y``) were
  chosen on ML-100K's validation split; ``docs/modt4r.md`` has the measurements.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from padirec.adapters.features import Features
from padirec.core.dropout import FastDropout
from padirec.core.fairness import (
    GroupSigns,
    fairness_weight,
    group_signs,
    relevance_coefficients,
)
from padirec.core.novelty import long_tail_items
from padirec.core.typed_config import setting
from padirec.data.dataset import PreparedData
from padirec.methods.base import HELD_OUT, Method, MethodContext, register

log = logging.getLogger("padirec")

_EVAL_CHUNK = 512
_SCORE_CHUNK = 2048  # users per chunk of ``scores``


# ----------------------------------------------------------------------------- rewards and returns

def step_rewards(items: np.ndarray, item_categories: np.ndarray, unit_embedding: np.ndarray | None,
                 kind: str, window: int) -> np.ndarray:
    """Diversity reward of each action ``items[t]``, t = 1..n-1, against the ``window`` items
    before it: ``(n - 1,)`` float64.

    ``category``: fraction of the action's categories absent from the previous items (0 when
    it has none). ``embedding``: ``Sim(prev) - Sim(prev + a)``, Sim the mean pairwise cosine
    (1 for a single item), ``unit_embedding`` the row-normalised item embeddings.
    """
    n = len(items)
    out = np.zeros(max(n - 1, 0), dtype=np.float64)
    if kind == "category":
        cats = item_categories[items].astype(bool)
        for t in range(1, n):
            prev = cats[max(0, t - window):t].any(0)
            total = cats[t].sum()
            out[t - 1] = (cats[t] & ~prev).sum() / total if total else 0.0
        return out
    if kind != "embedding" or unit_embedding is None:
        raise ValueError(f"diversity reward must be 'category' or 'embedding', got {kind!r}")
    emb = unit_embedding[items]

    def sim(vecs: np.ndarray) -> float:
        m = len(vecs)
        if m < 2:
            return 1.0
        s = vecs.sum(0)
        return float((s @ s - m) / (m * (m - 1)))

    for t in range(1, n):
        prev = emb[max(0, t - window):t]
        out[t - 1] = sim(prev) - sim(np.vstack([prev, emb[t:t + 1]]))
    return out


def returns_to_go(rewards: np.ndarray, horizon: int) -> np.ndarray:
    """``sum_{t'=t}^{min(t+horizon-1, T)} r_t' / horizon`` for each t (truncated at the end)."""
    c = np.concatenate([[0.0], np.cumsum(rewards)])
    t = np.arange(len(rewards))
    return (c[np.minimum(t + horizon, len(rewards))] - c[t]) / horizon


def accuracy_returns(num_steps: int) -> np.ndarray:
    """``R_acc_t = T - t + 1`` (Eq. 4.3) for t = 1..T."""
    return np.arange(num_steps, 0, -1, dtype=np.float64)


def encode_acc(r: np.ndarray | torch.Tensor) -> Any:
    return np.log1p(r) if isinstance(r, np.ndarray) else torch.log1p(r)


# ----------------------------------------------------------------------------- the model

class MODT(nn.Module):
    """UserTrans's item-prediction layer and MoTrans (the causal Transformer over trajectories)."""

    def __init__(self, item_embedding: torch.Tensor, context: int, layers: int = 1, heads: int = 2,
                 dropout: float = 0.1, returns: int = 2) -> None:
        super().__init__()
        n, d = item_embedding.shape
        self.context = context
        self.user_head = nn.Parameter(item_embedding.clone())  # W_u, (N, d): starts as the backbone's scores
        self.user_bias = nn.Parameter(torch.zeros(n))
        self.item = nn.Parameter(item_embedding.clone())  # action embedding, tied with W_a
        self.item_bias = nn.Parameter(torch.zeros(n))
        self.state = nn.Linear(d, d)
        # E_o per return, in token order (acc, div; or acc, nov, div): a return's token is R * E_o + b_o
        self.ret_e = nn.Parameter(torch.randn(returns, d) / d**0.5)
        self.ret_b = nn.Parameter(torch.zeros(returns, d))
        self.pos = nn.Embedding(context, d)
        self.kind = nn.Embedding(returns + 2, d)
        nn.init.normal_(self.pos.weight, std=0.02)
        nn.init.normal_(self.kind.weight, std=0.02)
        self.scale = float(item_embedding[1:].norm(dim=1).mean().clamp_min(1e-6))  # item vectors -> unit size
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout, batch_first=True, norm_first=True,
                                           activation="gelu")
        # its three dropout layers with cheaper CPU masks (they took 13% of MODT4R's training at ML-1M size)
        layer.dropout, layer.dropout1, layer.dropout2 = (FastDropout(dropout) for _ in range(3))
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head_ret = nn.Linear(d, returns)
        self.d = d

    def user_logits(self, s: torch.Tensor) -> torch.Tensor:
        """``Y = W_u s + b_u`` (Eq. 4.13): ``(..., d) -> (..., N)``."""
        return s @ self.user_head.T + self.user_bias

    def action_logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.item.T + self.item_bias

    def forward(self, states: torch.Tensor, returns: tuple[torch.Tensor, ...],
                actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``states (B, K, d)``, ``returns`` each ``(B, K)`` (encoded, in token order), ``actions (B, K)``
        (0 = padding/unknown) -> outputs at the state token and at each return token, each
        ``(B, K, d)``. Padding goes at the end of each row (the causal mask keeps it out of every
        real step)."""
        b, k, d = states.shape
        e_ret = [r[..., None] * self.ret_e[i] + self.ret_b[i] for i, r in enumerate(returns)]
        e_act = self.item[actions] / self.scale
        tokens = torch.stack([self.state(states), *e_ret, e_act], dim=2)  # (B, K, 2 + R, d)
        tokens = tokens + self.pos.weight[:k, None, :] + self.kind.weight
        n = tokens.shape[2]
        x = tokens.reshape(b, n * k, d)
        mask = torch.triu(torch.full((n * k, n * k), float("-inf"), device=x.device), diagonal=1)
        h = self.norm(self.blocks(x, mask=mask, is_causal=True)).reshape(b, k, n, d)
        return tuple(h[:, :, i] for i in range(n - 1))


# ----------------------------------------------------------------------------- trajectories

@dataclass
class Trajectories:
    """Every training step, rows in ``Features.train_h`` order (contiguous per user)."""

    start: np.ndarray  # (U,) first row of each user (data.users order)
    length: np.ndarray  # (U,) steps per user
    r_acc: torch.Tensor  # (M,) encoded accuracy return
    r_div: torch.Tensor  # (M,) diversity return (mean reward per step over the horizon)
    rewards: list[np.ndarray]  # per user, the diversity reward of each step
    r_nov: torch.Tensor | None = None  # (M,) novelty return (the same horizon), with the novelty utility


def build_trajectories(data: PreparedData, features: Features, kind: str, window: int, horizon: int,
                       unit_embedding: np.ndarray | None, tail: np.ndarray | None = None) -> Trajectories:
    """Every training step's returns; ``tail (num_items + 1,)`` bool (the long tail) adds the novelty
    return."""
    lengths = np.asarray([max(len(data.train_items[u]) - 1, 0) for u in data.users], dtype=np.int64)
    if int(lengths.sum()) != features.train_h.shape[0]:
        raise ValueError(f"the data has {int(lengths.sum())} training steps, features {features.train_h.shape[0]}")
    start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    users = np.repeat(data.users, lengths)
    if not np.array_equal(users, features.train_user.cpu().numpy()):
        raise ValueError("features' training prefixes are not in the data's user order")
    rewards, acc, div, nov = [], [], [], []
    for u, n in zip(data.users, lengths, strict=True):
        r = step_rewards(data.train_items[u], data.item_categories, unit_embedding, kind, window)
        rewards.append(r)
        acc.append(encode_acc(accuracy_returns(int(n))))
        div.append(returns_to_go(r, horizon))
        if tail is not None:
            nov.append(returns_to_go(novelty_rewards(data.train_items[u], tail), horizon))
    cat = lambda xs: torch.as_tensor(np.concatenate(xs), dtype=torch.float32)  # noqa: E731
    return Trajectories(start, lengths, cat(acc), cat(div), rewards, cat(nov) if tail is not None else None)


def novelty_rewards(items: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """``r_nov`` of each action ``items[t]``, t = 1..n-1 (Eq. 4.4): 1 for a long-tail item, ``(n - 1,)``."""
    return tail[np.asarray(items, dtype=np.int64)[1:]].astype(np.float64)


# ----------------------------------------------------------------------------- the method

@dataclass
class MODT4RConfig:
    context: int = setting(10, range="[1, inf)")  # steps MoTrans reads (4 tokens each)
    layers: int = setting(1, range="[1, inf)")
    heads: int = setting(2, range="[1, inf)")
    dropout: float = setting(0.1, range="[0, 1)")
    epochs: int = setting(3, range="[1, inf)")
    batch_size: int = setting(128, range="[1, inf)")  # trajectory windows per step
    lr: float = setting(1e-3, range="(0, inf)")
    beta: float = setting(0.5, range="[0, inf)")  # weight of the return loss L_R
    diversity_reward: str = setting("category", choices=("category", "embedding"))
    window: int = setting(10, range="[1, inf)")  # previous items a step's diversity reward compares against
    horizon: int = setting(1, range="[1, inf)")  # steps summed into the diversity return-to-go
    target_quantile: float = setting(0.95, range="[0, 1]")  # diversity return asked for at w_div = 1 (quantile of training returns)
    alpha_scale: float = setting(1.0, range="(0, inf)")  # c in alpha = alpha_min + c * w_acc / (1 - w_acc) (Eq. 4.19)
    alpha_min: float = setting(0.25, range="[0, inf)")  # alpha at w_acc = 0 (never the action scores alone)
    user_lr: float = setting(0.0, range="[0, inf)")  # UserTrans head's learning rate (0: frozen, Y = the backbone's scores)


@register
class MODT4R(Method):
    key = "modt4r"
    config_class = MODT4RConfig

    def __init__(self, features: Features, utilities: list[str], data: PreparedData, seed: int = 0,
                 cfg: MODT4RConfig | None = None, k: int = 10) -> None:
        super().__init__(features, utilities)
        for name in ("accuracy", "diversity"):
            if name not in utilities:
                raise ValueError(f"MODT4R needs the {name!r} utility, got {utilities}")
        self.cfg = cfg = cfg or MODT4RConfig()
        if cfg.context < 1 or cfg.horizon < 1 or cfg.window < 1:
            raise ValueError("MODT4R context, horizon and window must be >= 1")
        if features.dim % cfg.heads:
            raise ValueError(f"MODT4R heads ({cfg.heads}) must divide the representation size ({features.dim})")
        if not 0.0 <= cfg.target_quantile <= 1.0:
            raise ValueError(f"MODT4R target_quantile must be in [0, 1], got {cfg.target_quantile}")
        self.data, self.seed = data, seed
        emb = features.item_embedding.detach().cpu().numpy().astype(np.float64)
        unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        self.unit = unit if cfg.diversity_reward == "embedding" else None
        self.tail = long_tail_items(features).cpu().numpy() if "novelty" in utilities else None
        self.traj = build_trajectories(data, features, cfg.diversity_reward, cfg.window, cfg.horizon, self.unit,
                                       self.tail)
        self.div_target = self._target(self.traj.r_div)
        self.nov_target = self._target(self.traj.r_nov) if self.traj.r_nov is not None else 1.0
        self.model: MODT | None = None
        self.losses: list[float] = []  # mean training loss per epoch
        self._inputs: dict[str, dict[str, torch.Tensor]] = {}
        self.k = k  # the cutoff of the NDCG that decides the fairness signs
        self.signs: GroupSigns | None = None

    @classmethod
    def build(cls, ctx: MethodContext, settings: MODT4RConfig) -> MODT4R:
        return cls(ctx.features, ctx.utilities, ctx.data, ctx.seed, settings, ctx.k)

    def _target(self, returns: torch.Tensor) -> float:
        """The return the predicted step asks for at full weight: a quantile of the training returns."""
        r = returns.numpy()
        return float(np.quantile(r, self.cfg.target_quantile)) if len(r) else 1.0

    def _returns(self, acc: torch.Tensor, div: torch.Tensor, nov: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The returns in token order: ``(acc, div)``, or the thesis' ``(acc, nov, div)``."""
        return (acc, div) if nov is None else (acc, nov, div)

    # ---- training

    def _windows(self, gen: torch.Generator) -> torch.Tensor:
        """``(W, 2)``: start row and length of non-overlapping windows of at most ``context`` steps
        within one user, covering every training step once (their boundaries shift per epoch)."""
        k = self.cfg.context
        out = []
        for s0, n in zip(self.traj.start, self.traj.length, strict=True):
            if n == 0:
                continue
            shift = int(torch.randint(0, k, (1,), generator=gen))
            bounds = np.unique(np.clip(np.arange(-shift, n + k, k), 0, n))
            out.append(np.stack([s0 + bounds[:-1], np.diff(bounds)], 1))
        return torch.as_tensor(np.concatenate(out), dtype=torch.long)

    def _gather(self, win: torch.Tensor) -> tuple[torch.Tensor, ...]:
        k = self.cfg.context
        offs = torch.arange(k)
        valid = offs[None, :] < win[:, 1:2]
        rows = torch.where(valid, win[:, :1] + offs, torch.zeros_like(offs))
        f = self.features
        states = f.train_h[rows.to(self.device)]
        nov = None if self.traj.r_nov is None else self.traj.r_nov[rows]
        return (states, self._returns(self.traj.r_acc[rows], self.traj.r_div[rows], nov),
                f.train_target[rows.to(self.device)].cpu() * valid, valid)

    def loss(self, model: MODT, win: torch.Tensor, user_loss: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
        """``L_S + L_a + beta * L_R`` of a batch of windows, and each part. ``user_loss=False`` leaves
        ``L_S`` out (a frozen UserTrans head: it has no gradient, only a cost)."""
        states, returns, actions, valid = self._gather(win)
        dev = self.device
        returns, actions, valid = tuple(r.to(dev) for r in returns), actions.to(dev), valid.to(dev)
        h = model(states, returns, actions)  # state token, then each return's token
        target = actions[valid]
        l_a = F.cross_entropy(model.action_logits(h[-1][valid]), target)
        # each return is read from the token before its own (which, under the causal mask, contains it)
        pred = model.head_ret(torch.stack([x[valid] for x in h[:-1]], 1))  # (n, R, R)
        l_r = sum(F.mse_loss(pred[:, i, i], r[valid]) for i, r in enumerate(returns))
        total = l_a + self.cfg.beta * l_r
        parts = {"L_a": float(l_a.detach()), "L_R": float(l_r.detach())}
        if user_loss:
            l_s = F.cross_entropy(model.user_logits(states[valid]), target)
            total = l_s + total
            parts["L_S"] = float(l_s.detach())
        return total, parts

    def fit(self) -> None:
        cfg = self.cfg
        if "fairness" in self.utilities:
            self.signs = group_signs(self.features, self.k)
        gen = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = MODT(self.features.item_embedding.detach(), cfg.context, cfg.layers, cfg.heads,
                         cfg.dropout, 2 if self.tail is None else 3).to(self.device)
            user = [model.user_head, model.user_bias]
            rest = [p for n, p in model.named_parameters() if not n.startswith("user_")]
            if cfg.user_lr > 0:
                opt = torch.optim.Adam([{"params": rest}, {"params": user, "lr": cfg.user_lr}], lr=cfg.lr)
            else:
                model.user_head.requires_grad_(False)
                model.user_bias.requires_grad_(False)
                opt = torch.optim.Adam(rest, lr=cfg.lr)
            start = time.perf_counter()
            self.losses = []
            frozen_l_s = 0.0
            for epoch in range(cfg.epochs):
                model.train()
                wins = self._windows(gen)
                wins = wins[torch.randperm(len(wins), generator=gen)]
                # A frozen head's L_S is the same every epoch and trains nothing: measured in the first
                # epoch only (about a sixth of MODT4R's training time at ML-1M size went to it)
                user_loss = cfg.user_lr > 0 or epoch == 0
                total, parts, steps = 0.0, {"L_S": 0.0, "L_a": 0.0, "L_R": 0.0}, 0
                for b in range(0, len(wins), cfg.batch_size):
                    loss, p = self.loss(model, wins[b:b + cfg.batch_size], user_loss)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach())
                    parts = {n: parts[n] + p.get(n, 0.0) for n in parts}
                    steps += 1
                steps = max(steps, 1)
                if user_loss:
                    frozen_l_s = parts["L_S"] / steps
                else:
                    parts["L_S"], total = frozen_l_s * steps, total + frozen_l_s * steps
                self.losses.append(total / steps)
                log.info("modt4r: epoch %d/%d, loss %.4f (%s) %.1fs", epoch + 1, cfg.epochs, self.losses[-1],
                         ", ".join(f"{n} {v / steps:.3f}" for n, v in parts.items()),
                         time.perf_counter() - start)
        self.model = model.eval().requires_grad_(False)
        self._inputs = {}

    # ---- inference

    def _split_inputs(self, split: str) -> dict[str, torch.Tensor]:
        """The trajectory of each held-out user of ``split``: the last ``context - 1`` observed
        steps and the step to predict (right-padded), with unscaled returns."""
        if split in self._inputs:
            return self._inputs[split]
        k, f, data, cfg = self.cfg.context, self.features, self.data, self.cfg
        ev = f.split(split)
        pos = {int(u): i for i, u in enumerate(data.users)}
        valid_pos = {int(u): i for i, u in enumerate(f.valid.users.cpu().tolist())}
        n_users = ev.users.shape[0]
        states = torch.zeros(n_users, k, f.dim, device=self.device)
        actions = torch.zeros(n_users, k, dtype=torch.long)
        r_acc = torch.zeros(n_users, k)
        r_div = torch.zeros(n_users, k)
        r_nov = torch.zeros(n_users, k)
        last = torch.zeros(n_users, dtype=torch.long)
        for row, u in enumerate(ev.users.cpu().tolist()):
            items = data.history(split, u)[0]
            p = len(items)  # steps 1..p-1 observed, step p to predict
            s0, n = int(self.traj.start[pos[u]]), int(self.traj.length[pos[u]])
            past_states = f.train_h[s0:s0 + n]
            if split == "test":
                past_states = torch.cat([past_states, f.valid.h[valid_pos[u]][None]])
            m = min(k - 1, p - 1)  # observed steps kept: actions items[lo + 1:p]
            lo = (p - 1) - m
            st = max(0, lo + 1 - cfg.window)  # rewards of the kept steps need only their windows
            rewards = step_rewards(items[st:p], data.item_categories, self.unit, cfg.diversity_reward, cfg.window)
            div = returns_to_go(rewards, cfg.horizon)[lo - st:]
            acc = accuracy_returns(p)  # the predicted step is step p: R_acc = 1
            states[row, :m] = past_states[lo:]
            states[row, m] = ev.h[row]
            actions[row, :m] = torch.as_tensor(np.array(items[lo + 1:p]))
            r_acc[row, :m + 1] = torch.as_tensor(acc[lo:], dtype=torch.float32)
            r_div[row, :m] = torch.as_tensor(div, dtype=torch.float32)
            if self.tail is not None:
                nov = returns_to_go(novelty_rewards(items[st:p], self.tail), cfg.horizon)[lo - st:]
                r_nov[row, :m] = torch.as_tensor(nov, dtype=torch.float32)
            last[row] = m
        out = {"states": states, "actions": actions, "r_acc": r_acc, "r_div": r_div, "r_nov": r_nov, "last": last}
        self._inputs[split] = out
        return out

    def objective_weights(self, weights: Any) -> tuple[float, float, float]:
        """``(w_acc, w_div, w_nov)`` renormalised to sum 1 (without the fairness weight; ``w_nov = 0``
        without the novelty utility)."""
        w = self.task_weights(weights)
        acc, div = float(w[self.utilities.index("accuracy")]), float(w[self.utilities.index("diversity")])
        nov = float(w[self.utilities.index("novelty")]) if "novelty" in self.utilities else 0.0
        total = acc + div + nov
        return (acc / total, div / total, nov / total) if total > 0 else (1.0, 0.0, 0.0)

    @torch.no_grad()
    def action_representation(self, split: str, w_acc: float, w_div: float, w_nov: float = 0.0) -> torch.Tensor:
        """MoTrans's output at the last R_div token of each user, ``(U, d)``, with the returns
        scaled by the task."""
        if self.model is None:
            self.fit()
        assert self.model is not None
        x = self._split_inputs(split)
        rows = torch.arange(x["last"].shape[0])
        r_acc = encode_acc(x["r_acc"] * w_acc)
        r_div = x["r_div"] * w_div
        r_div[rows, x["last"]] = w_div * self.div_target
        r_nov = None
        if self.tail is not None:
            r_nov = x["r_nov"] * w_nov
            r_nov[rows, x["last"]] = w_nov * self.nov_target
        returns = self._returns(r_acc, r_div, r_nov)
        out = []
        for i in range(0, rows.shape[0], _EVAL_CHUNK):
            sl = slice(i, i + _EVAL_CHUNK)
            h_div = self.model(x["states"][sl], tuple(r[sl].to(self.device) for r in returns),
                               x["actions"][sl].to(self.device))[-1]
            out.append(h_div[torch.arange(h_div.shape[0]), x["last"][sl].to(self.device)])
        return torch.cat(out)

    def mixing(self, w_acc: float) -> float:
        """``lambda = alpha / (1 + alpha)``, ``alpha = alpha_min + c * w_acc / (1 - w_acc)`` (1 at ``w_acc = 1``)."""
        if w_acc >= 1.0:
            return 1.0
        alpha = self.cfg.alpha_min + self.cfg.alpha_scale * w_acc / (1.0 - w_acc)
        return alpha / (1.0 + alpha)

    def prepare(self, weights: Any, splits: tuple[str, ...] = HELD_OUT) -> dict[str, Any]:
        """One MoTrans forward pass per held-out split: ``{"lam", "valid", "test"}`` (each ``(U, d)``),
        and ``"relevance"`` (``{split: (U, 1)}``, the weight of ``Y``) when the task has a fairness weight."""
        w_acc, w_div, w_nov = self.objective_weights(weights)
        out = {"lam": self.mixing(w_acc),
               **{split: self.action_representation(split, w_acc, w_div, w_nov) for split in splits}}
        w = self.task_weights(weights)
        w_fair = fairness_weight(w, self.utilities)
        if w_fair > 0:
            if self.signs is None:
                raise ValueError("MODT4R: a fairness weight needs user groups")
            acc, div = float(w[self.utilities.index("accuracy")]), float(w[self.utilities.index("diversity")])
            out["relevance"] = {split: relevance_coefficients(out["lam"], acc, div, w_fair, self.signs.per_user(
                self.features.split(split).groups))[:, None] for split in splits}
        return out

    def prepare_split(self, weights: Any, split: str) -> dict[str, Any]:
        return self.prepare(weights, (split,))

    @torch.no_grad()
    def scores(self, prepared: dict[str, Any], split: str) -> torch.Tensor:
        """``(1 - lambda) log_softmax(A) + lambda log_softmax(Y)``, ``(U, num_items + 1)``: Eq. 4.19's
        ``A + alpha Y`` divided by ``1 + alpha`` (the same ranking; ``alpha -> inf`` at ``w_acc = 1``).

        A chunk of users at a time, in place: one ``(U, N)`` matrix in all (the whole split's ``Y``,
        ``A`` and their mix held three, 2.2 GB each at 5x ML-1M's size; a cache of ``Y`` two more)."""
        assert self.model is not None
        lam = prepared["lam"]
        h = self.features.split(split).h
        weight = prepared["relevance"][split] if "relevance" in prepared else lam
        out = h.new_empty(h.shape[0], self.model.user_bias.shape[0])
        for lo in range(0, h.shape[0], _SCORE_CHUNK):
            rows = slice(lo, lo + _SCORE_CHUNK)
            mix = F.log_softmax(self.model.user_logits(h[rows]), dim=1)
            mix.mul_(weight[rows] if isinstance(weight, torch.Tensor) else weight)
            if lam < 1.0:
                mix.add_(F.log_softmax(self.model.action_logits(prepared[split][rows]), dim=1).mul_(1.0 - lam))
            out[rows] = mix
        out[:, 0] = -math.inf
        return out
