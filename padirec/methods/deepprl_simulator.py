"""The user simulator DeepPRL's policy trains on, built from the training data as the paper's
section 6 builds its own (after Sun et al. 2019b): a discrete-choice model of each user's next item,
shown top-``k`` lists, answered stochastically, the history updated with the answer.

- **Choice model.** User ``u`` at a history picks item ``i`` with probability
  ``softmax_i(beta_u * s_u . e_i + c_u * novel_u(i))`` over the items the user has not consumed:
  ``s_u . e_i`` is the frozen backbone's score (relevance, the paper's ``o_1``), ``novel_u(i) = 1``
  when ``i`` has a category absent from the user's last ``length`` items (Yelp-style novelty, the
  paper's ``o_2``), and ``c_u = c + delta_u`` is the user's own taste for novelty (the paper's
  personalised ``c_{u,i}``); ``beta_u`` is how closely the user follows the backbone. Both are
  fitted per user by maximum likelihood on the training prefixes' logged next items, shrunk towards
  the population's values by a Gaussian prior. A user who barely follows the backbone gains little
  from accuracy and could be served more diversity: the personal signal ``lambda_u`` may use.
- **Response.** A recommended item is ``exposure`` logits more attractive than the same item
  unrecommended: the list changes what the user consumes next, so the next state (the history)
  depends on the action. Logs cannot tell how strong that is; ``exposure`` is an assumption.
- **Reward.** ``r_acc`` = the expected NDCG@k of the user's own next pick (the choice model without
  the exposure boost: the offline metric the policy is judged by reads logged next items that no
  list of ours influenced); ``r_div`` = the list's alpha-NDCG@k, as the report measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from padirec.adapters.features import Features
from padirec.adapters.train import seen_pairs
from padirec.core.metrics import alpha_ndcg_at_k


def histories(features: Features, length: int) -> dict[str, torch.Tensor]:
    """The last ``length`` items ``(rows, length)`` (left-padded with 0) before each training prefix's
    target (``train``, the order of ``Features.train_h``) and before each held-out user's target
    (``valid``: the user's train targets; ``test``: those and the valid target). The first item of a
    user's sequence is never a target, so it is missing here."""
    f = features
    dev = f.train_user.device
    m = f.train_user.shape[0]
    order = torch.sort(f.train_user, stable=True).indices  # user order, time order within a user
    users = f.train_user[order]
    targets = f.train_target[order]
    pos = torch.arange(m, device=dev)
    first = torch.ones(m, dtype=torch.bool, device=dev)
    first[1:] = users[1:] != users[:-1]
    start = torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), 0).values  # each row's user's first row
    back = torch.arange(length, 0, -1, device=dev)

    def window(end: torch.Tensor, begin: torch.Tensor) -> torch.Tensor:
        rows = end[:, None] - back + 1  # the rows up to and including ``end``
        ok = (rows >= begin[:, None]) & (end[:, None] >= 0)
        return torch.where(ok, targets[rows.clamp(0, max(m - 1, 0))], torch.zeros_like(rows))

    train = torch.empty(m, length, dtype=torch.long, device=dev)
    train[order] = window(pos - 1, start)
    out = {"train": train}
    n = int(users.max()) + 2 if m else 1
    last = torch.full((n,), -1, dtype=torch.long, device=dev).scatter_reduce(0, users, pos, "amax")
    begin = torch.full((n,), m, dtype=torch.long, device=dev).scatter_reduce(0, users, pos, "amin")
    for split in ("valid", "test"):
        u = f.split(split).users.clamp_max(last.shape[0] - 1)
        out[split] = window(last[u], begin[u])
    valid_of = dict(zip(f.valid.users.tolist(), f.valid.targets.tolist(), strict=True))
    then = torch.tensor([valid_of.get(int(u), 0) for u in f.test.users], dtype=torch.long, device=dev)
    out["test"] = torch.where((then > 0)[:, None], torch.cat([out["test"][:, 1:], then[:, None]], 1), out["test"])
    return out


def covered(history: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` the categories of the items in ``history (B, L)`` (padding 0 has none)."""
    return categories[history].amax(1)


def novelty(history: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
    """``(B, N + 1)`` 1 where an item has a category absent from the history, else 0."""
    return ((1 - covered(history, categories)) @ categories.T > 0).float()


@dataclass
class ChoiceModel:
    """The fitted discrete-choice model, per user id: ``relevance (num_users + 1,)`` = ``beta_u``
    (how closely the user follows the backbone's scores) and ``taste`` = ``c_u`` (novelty)."""

    relevance: torch.Tensor
    taste: torch.Tensor
    nll: float  # mean negative log-likelihood of the fitting prefixes' next items

    def logits(self, h: torch.Tensor, users: torch.Tensor, history: torch.Tensor, features: Features) -> torch.Tensor:
        """Unmasked choice logits ``(B, N + 1)``."""
        base = h @ features.item_embedding.T
        return self.relevance[users][:, None] * base + self.taste[users][:, None] * novelty(history,
                                                                                            features.item_categories)

    def traits(self, users: torch.Tensor) -> torch.Tensor:
        """``(B, 2)`` what the model knows of each user: ``(beta_u, c_u)``, the policy's personal information."""
        return torch.stack([self.relevance[users], self.taste[users]], 1)


def unavailable(features: Features, users: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, N + 1)`` True for padding and every train item of ``users`` (but ``keep (B,)``)."""
    rows, cols = seen_pairs(features, users)
    out = torch.zeros(len(users), features.num_items + 1, dtype=torch.bool, device=users.device)
    out[rows, cols] = True
    out[:, 0] = True
    if keep is not None:
        out[torch.arange(len(users), device=users.device), keep] = False
    return out


def fit_choice_model(features: Features, history: torch.Tensor, seed: int = 0, sample: int = 8192,
                     steps: int = 150, prior: float = 1.0, batch: int = 1024) -> ChoiceModel:
    """Maximum likelihood of ``sample`` training prefixes' next items under the choice model, with
    ``beta_u = beta + b_u`` and ``c_u = c + d_u``; ``b_u, d_u ~ N(0, prior)`` keep users with few
    prefixes near the population's ``beta`` and ``c``. Each Adam step reads ``batch`` of the sample
    (a full-sample step over every item took 0.7 s on ML-100K, one thread)."""
    f = features
    gen = torch.Generator().manual_seed(seed)
    m = f.train_h.shape[0]
    idx = torch.randperm(m, generator=gen)[:min(m, sample)].to(f.train_h.device)
    users, target = f.train_user[idx], f.train_target[idx]
    raw = f.train_h[idx] @ f.item_embedding.T
    scale = float(raw.std().clamp_min(1e-6))
    base = raw / scale  # unit scale: beta starts sane; a shift per row cancels in the softmax
    nov = novelty(history[idx], f.item_categories)
    blocked = unavailable(f, users, keep=target)
    n_users = max(int(x.max()) for x in (f.train_user, f.valid.users, f.test.users)) + 1  # every user has traits
    beta, c = torch.ones((), requires_grad=True), torch.zeros((), requires_grad=True)
    b_u, d_u = torch.zeros(n_users, requires_grad=True), torch.zeros(n_users, requires_grad=True)
    opt = torch.optim.Adam([beta, c, b_u, d_u], lr=0.05)

    def nll(rows: slice | torch.Tensor = slice(None)) -> torch.Tensor:
        u = users[rows]
        logits = (beta + b_u[u])[:, None] * base[rows] + (c + d_u[u])[:, None] * nov[rows]
        return F.cross_entropy(logits.masked_fill(blocked[rows], -torch.inf), target[rows])

    for _ in range(steps):
        rows = torch.randperm(len(idx), generator=gen)[:batch].to(idx.device)
        loss = nll(rows) + 0.5 * (b_u.pow(2).sum() + d_u.pow(2).sum()) / (prior * len(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return ChoiceModel((beta + b_u) / scale, (c + d_u).clone(), float(nll()))


@dataclass
class Episode:
    """Simulated users in flight: their state ``h``, ids, last items and what they cannot pick."""

    rows: torch.Tensor  # (B,) training prefixes the episode started from
    users: torch.Tensor
    h: torch.Tensor
    history: torch.Tensor  # (B, L)
    blocked: torch.Tensor  # (B, N + 1) consumed items (train and simulated) and padding


class UserSimulator:
    """Section 6's loop on ``features``: ``start`` users at training prefixes, ``step`` them with lists."""

    def __init__(self, features: Features, choice: ChoiceModel, history: torch.Tensor, alpha: float = 0.5,
                 exposure: float = 1.0) -> None:
        self.features, self.choice, self.history = features, choice, history
        self.alpha, self.exposure = alpha, exposure

    def start(self, rows: torch.Tensor) -> Episode:
        f = self.features
        users = f.train_user[rows]
        return Episode(rows, users, f.train_h[rows], self.history[rows].clone(), unavailable(f, users))

    def step(self, ep: Episode, lists: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards ``(r_acc, r_div)`` of lists ``(B, k)``; the users then pick (drawn with ``gen``),
        and ``ep``'s history and blocked items move on."""
        f = self.features
        logits = self.choice.logits(ep.h, ep.users, ep.history, f).masked_fill(ep.blocked, -torch.inf)
        own = torch.softmax(logits, 1)
        discount = 1.0 / torch.log2(torch.arange(2, lists.shape[1] + 2, device=lists.device, dtype=own.dtype))
        r_acc = (own.gather(1, lists) * discount).sum(1)  # expected NDCG@k of one relevant next item
        r_div = alpha_ndcg_at_k(lists, f.item_categories, self.alpha).to(own.dtype)
        boosted = logits.scatter_add(1, lists, torch.full(lists.shape, self.exposure, dtype=logits.dtype,
                                                              device=lists.device))
        pick = torch.multinomial(torch.softmax(boosted, 1).cpu(), 1, generator=gen)[:, 0].to(lists.device)
        ep.history = torch.cat([ep.history[:, 1:], pick[:, None]], 1)
        ep.blocked[torch.arange(len(pick), device=pick.device), pick] = True
        return r_acc, r_div


__all__ = ["ChoiceModel", "Episode", "UserSimulator", "covered", "fit_choice_model", "histories", "novelty",
           "unavailable"]
