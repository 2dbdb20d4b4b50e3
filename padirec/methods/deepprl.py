"""DeepPRL, full form (Li & Tuzhilin 2024; docs/deepprl.md): a DDPG
actor-critic chooses each user's objective weights ``lambda_u`` from the user's state and context,
and the Mixture-of-HyperNetworks heads of ``deepprl_static`` rank with them.

- Stage 1 (the paper's L1 loop): the two heads of ``DeepPRLStatic`` (accuracy = backbone score +
  residual; diversity = the predicted marginal alpha-DCG gain, applied greedily), trained once.
- Stage 2 (the paper's Contextual Policy Gradient, DDPG): state ``s_u`` = the frozen backbone's
  representation; context ``C_u`` = the categories covered by the last ``context`` items, their
  mean item embedding, and the log time gap between the last two interactions. The actor
  ``mu(s, C, w)`` and the critic ``Q(s, C, w, lambda)`` are 3-hidden-layer sigmoid MLPs
  (``policy_hidden`` units, paper section 5.2), with target networks soft-updated by ``tau``
  (standard DDPG direction ``theta' <- tau theta + (1 - tau) theta'``), a replay buffer and
  Gaussian exploration noise.
- How the platform's task ``w`` enters (the paper has no platform weights: its weights are the
  policy's alone, so it is not controllable; see ``docs/deepprl.md``): ``w`` is the policy's
  *target mix* and the reward's scalarisation. The action is a bounded personal shift around it,
  ``lambda_u = sigmoid(logit(w_acc) + max_shift * 4 w_acc (1 - w_acc) * tanh(a_u))``: ``w_acc``
  itself when ``a_u = 0`` and at the pure tasks (nothing to trade there), at most ``max_shift``
  logits away in between. The actor sees ``w_acc`` (one policy for every task, as in Abels et al.
  2019's conditioned networks, a baseline the paper cites) and maximises the ``w``-scalarised
  reward ``w_acc r_acc + w_div r_div``.
- Reward and states (``padirec.methods.deepprl_simulator``, the paper's section 6): the policy plays
  ``horizon``-step episodes against a user simulator fitted on the training prefixes. A user answers
  each list by picking an item (recommended items are more attractive), so the next state (the
  user's last items, hence the categories they cover) depends on the action, and the critic's target
  is ``r + gamma Q'(s', mu'(s'))`` with ``gamma > 0``. ``r_acc`` = the expected NDCG@k of the user's
  own next pick, ``r_div`` = alpha-NDCG@k of the list; each normalised to [0, 1] between its values
  under ``lambda = 0`` and ``lambda = 1`` (paper section 4.4 requires objectives in [0, 1]).
- State: ``[s_u; C_u]`` as above, plus the categories covered by the user's last ``context`` items
  (simulated ones during training) and the user's traits ``(beta_u, c_u)`` fitted by the simulator
  from the user's training history (the paper's "personal information"): how closely the user
  follows the backbone and how much they like novelty, the signal a personal ``lambda_u`` can use.

- A fairness weight (``padirec.core.fairness``): the group gap linearised per user, ``s_u < 0``
  in the group the backbone serves better on validation (decided once in ``fit``). With ``w_fair``
  and the accuracy/diversity mix ``w_acc`` (accuracy's share of the rest), a user's list weighs
  the heads by ``((1 - w_fair) lambda_u + w_fair s_u, (1 - w_fair)(1 - lambda_u))`` and the reward
  is ``(1 - w_fair)(w_acc r_acc + (1 - w_acc) r_div) + w_fair s_u r_acc``. The policy is trained
  with ``w_fair ~ U[0, 1)`` besides ``w_acc`` and sees ``(w_acc, w_fair, s_u)``. Without the
  fairness utility (p = 2) none of this exists and nothing changes.

``prepare(w)`` computes every held-out user's ``lambda_u`` and greedy list for both splits (no
cache across tasks); ``scores`` lifts the list. Whether the personal ``lambda_u`` beats the best
fixed lambda on the validation split: ``benchmarks/deepprl_policy.py`` (docs/deepprl.md). It does
not, so ``deepprl`` is out of the default roster.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from padirec.adapters.config import AdapterConfig
from padirec.adapters.features import Features, training_prefixes
from padirec.core.fairness import fairness_weight
from padirec.core.typed_config import setting
from padirec.data.dataset import PreparedData
from padirec.methods.base import HELD_OUT, Method, MethodContext, register
from padirec.methods.deepprl_simulator import (
    Episode,
    UserSimulator,
    covered,
    fit_choice_model,
    histories,
)
from padirec.methods.deepprl_static import DeepPRLStatic, DeepPRLStaticConfig

log = logging.getLogger("padirec")

_HOUR = 3600.0


_CONTEXT_CHUNK = 32768  # prefixes per pass of ``user_context``: about 190 MB of gathers at d = 64


def user_context(data: PreparedData, features: Features, max_len: int, context_len: int = 10) -> dict[str, torch.Tensor]:
    """Context ``(rows, C + d + 1)`` per training prefix (``train``, the order of ``Features.train_h``)
    and per held-out user (``valid``/``test``): categories covered by the last ``context_len`` items,
    their mean item embedding, ``log1p`` of the hours between the last two interactions."""
    emb = features.item_embedding.detach().cpu()
    cats = features.item_categories.detach().cpu()

    def rows(seqs: np.ndarray, times: np.ndarray) -> torch.Tensor:
        last = torch.as_tensor(seqs[:, -context_len:])
        real = (last > 0).float()
        cover = cats[last].amax(1)  # padding row 0 has no category
        mean = (emb[last] * real[..., None]).sum(1) / real.sum(1, keepdim=True).clamp_min(1)
        t = torch.as_tensor(times[:, -2:], dtype=torch.float64)
        both = torch.as_tensor(seqs[:, -2] > 0)
        gap = torch.where(both, (t[:, 1] - t[:, 0]).clamp_min(0), torch.zeros_like(t[:, 0]))
        return torch.cat([cover, mean, torch.log1p(gap / _HOUR)[:, None].float()], dim=1)

    def context(seqs: np.ndarray, times: np.ndarray) -> torch.Tensor:
        # in chunks: the (rows, context_len, d) gathers of every training prefix at once held 6.4 GB
        # at ML-1M size; each row depends on its own prefix only, so the result is the same
        out = torch.empty(len(seqs), cats.shape[1] + emb.shape[1] + 1)
        for start in range(0, len(seqs), _CONTEXT_CHUNK):
            out[start:start + _CONTEXT_CHUNK] = rows(seqs[start:start + _CONTEXT_CHUNK], times[start:start + _CONTEXT_CHUNK])
        return out

    prefixes = training_prefixes(data, max_len)
    out = {"train": context(prefixes["seqs"], prefixes["times"])}
    for split in HELD_OUT:
        # the features' users: a user shard of the evaluation holds a range of them
        batch = data.eval_batch(split, max_len, features.split(split).users.cpu().numpy())
        out[split] = context(batch["seqs"], batch["times"])
    return {k: v.to(features.item_embedding.device) for k, v in out.items()}


def _mlp(inp: int, out: int, hidden: int) -> nn.Sequential:
    """3 fully connected hidden layers with sigmoid activations (paper section 5.2)."""
    return nn.Sequential(nn.Linear(inp, hidden), nn.Sigmoid(), nn.Linear(hidden, hidden), nn.Sigmoid(),
                         nn.Linear(hidden, hidden), nn.Sigmoid(), nn.Linear(hidden, out))


def personal_weight(w_acc: torch.Tensor, action: torch.Tensor, max_shift: float) -> torch.Tensor:
    """``lambda = sigmoid(logit(w_acc) + max_shift * 4 w_acc (1 - w_acc) * tanh(action))``; exactly
    ``w_acc`` at 0 and 1. Shapes broadcast."""
    inner = w_acc.clamp(1e-6, 1 - 1e-6)
    lam = torch.sigmoid(torch.logit(inner) + max_shift * 4 * w_acc * (1 - w_acc) * torch.tanh(action))
    return torch.where((w_acc <= 0) | (w_acc >= 1), w_acc, lam)


@dataclass
class DeepPRLConfig:
    """The config's ``methods.deepprl``; the heads take ``deepprl_static``'s defaults otherwise."""

    epochs: int = setting(60, range="[0, inf)")  # the heads' training epochs (as deepprl_static)
    candidates: int = setting(300, range="[0, inf)")  # the heads' serving pool (as deepprl_static)
    context: int = setting(10, range="[1, inf)")  # last items in the context and in the simulated history
    policy_steps: int = setting(400, range="[0, inf)")  # simulator steps, each a batch of users
    horizon: int = setting(5, range="[1, inf)")  # steps per simulated episode
    gamma: float = setting(0.9, range="[0, 1)")  # discount: the next state depends on the action (the simulator's users pick from the list)
    tau: float = setting(0.05, range="(0, 1]")
    max_shift: float = setting(2.0, range="[0, inf)")  # how far (in logits) a user's lambda may move from the platform's w_acc
    shift_penalty: float = setting(0.01, range="[0, inf)")  # actor loss + shift_penalty * action^2: keeps tanh out of saturation, where
    # the actor's gradient vanishes and every user stays stuck at one end
    exposure: float = setting(1.0, range="[0, inf)")  # the simulator's extra logit for a recommended item (an assumption; see the simulator)
    confidence: bool = False  # the state includes the accuracy head's confidence (entropy, top-k mass)


@dataclass
class PolicyTraining:
    """DDPG and simulator settings not exposed in the config (paper section 5.2 where it gives them)."""

    batch: int = 256  # simulated users per episode
    hidden: int = 64  # 3 sigmoid hidden layers of 64 units
    actor_lr: float = 1e-3
    critic_lr: float = 1e-2  # the paper's 0.01; at 1e-3 the sigmoid critic had not fit the buffer
    noise: float = 0.5  # std of the Gaussian exploration noise on the action (before tanh)
    warmup: float = 0.3  # fraction of the steps that train the critic alone, on broad random actions
    buffer: int = 20000
    updates: int = 4  # gradient steps per simulator step (a step's lists cost far more than an update)
    choice_sample: int = 8192  # training prefixes the simulator's choice model is fitted on
    choice_steps: int = 150


ACC_REWARD, DIV_REWARD = 0, 1


@register
class DeepPRL(Method):
    key = "deepprl"
    config_class = DeepPRLConfig
    # measured: the personal lambda_u does not beat the best fixed lambda, so deepprl_static's row
    # stands for both (one row per method); a config that names deepprl still runs it
    in_roster = False
    roster_note = ("its personal lambda_u (a DDPG policy trained on a user simulator) did not beat the best fixed "
                   "lambda on the valid split (benchmarks/deepprl_policy.py, docs/deepprl.md): "
                   "`deepprl_static` is DeepPRL's row")

    def __init__(self, features: Features, utilities: list[str], context: dict[str, torch.Tensor],
                 cfg: AdapterConfig, seed: int = 0, k: int = 10, settings: DeepPRLConfig | None = None,
                 training: PolicyTraining | None = None, shared: dict[Any, Any] | None = None) -> None:
        super().__init__(features, utilities)
        st = settings or DeepPRLConfig()
        self.pt = pt = training or PolicyTraining()
        if context["train"].shape[0] != features.train_h.shape[0]:
            raise ValueError(f"context has {context['train'].shape[0]} training rows, features {features.train_h.shape[0]}")
        if not (0 <= st.gamma < 1 and 0 < st.tau <= 1 and st.max_shift >= 0 and st.shift_penalty >= 0
                and st.horizon >= 1 and pt.noise >= 0 and 0 <= pt.warmup < 1):
            raise ValueError("DeepPRL: need 0 <= gamma < 1, 0 < tau <= 1, max_shift >= 0, shift_penalty >= 0, "
                             "horizon >= 1, noise >= 0, 0 <= warmup < 1")
        heads = DeepPRLStaticConfig()
        self.heads = DeepPRLStatic(features, utilities, cfg, seed, k, st.epochs, heads.steps_per_epoch, heads.hidden,
                                   heads.lr, heads.diversity_weight, st.candidates, shared=shared)
        self.context = {name: c.to(self.device) for name, c in context.items()}
        self.st, self.seed, self.k, self.alpha = st, seed, k, cfg.alpha
        self.actor: nn.Module | None = None
        self.simulator: UserSimulator | None = None
        self.history_of: dict[str, torch.Tensor] = {}  # last items per training prefix / held-out user
        self.norm: tuple[torch.Tensor, torch.Tensor] | None = None  # state mean, std
        self.reward_range: torch.Tensor | None = None  # (2, 2): [objective, (at lambda 0, at lambda 1)]
        self.history: list[dict[str, float]] = []
        self.train_signs: torch.Tensor | None = None  # s_u of each training prefix's user (fairness only)

    @classmethod
    def build(cls, ctx: MethodContext, settings: DeepPRLConfig) -> DeepPRL:
        context = user_context(ctx.data, ctx.features, ctx.max_len, settings.context)
        return cls(ctx.features, ctx.utilities, context, ctx.adapters, ctx.seed, ctx.k, settings, shared=ctx.shared)

    def reused_fit_seconds(self) -> float:
        return self.heads.reused_fit_seconds()

    # ------------------------------------------------------------------ pieces

    @torch.no_grad()
    def confidence(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, 2)`` how sure the accuracy head is about each state: the entropy of its softmax over
        every item and the probability mass of its top ``k`` (users with a sharp relevance estimate
        gain more from accuracy)."""
        logp = torch.log_softmax(self.heads.accuracy_of(h)[:, 1:], dim=1)
        entropy = -(logp.exp() * logp).sum(1)
        top = logp.topk(self.k, dim=1).values.exp().sum(1)
        return torch.stack([entropy, top], dim=1)

    def _raw_state(self, h: torch.Tensor, context: torch.Tensor, history: torch.Tensor,
                   users: torch.Tensor) -> torch.Tensor:
        assert self.simulator is not None
        traits = self.simulator.choice.traits(users)
        parts = [h, context, covered(history, self.features.item_categories), traits]
        return torch.cat(parts + ([self.confidence(h)] if self.st.confidence else []), dim=1)

    def _state(self, h: torch.Tensor, context: torch.Tensor, history: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        assert self.norm is not None
        return (self._raw_state(h, context, history, users) - self.norm[0]) / self.norm[1]

    def _episode_state(self, ep: Episode) -> torch.Tensor:
        """A simulated user's state: the start's ``s_u`` and context (no clock, no backbone pass in the
        simulator), the history as it is now."""
        return self._state(ep.h, self.context["train"][ep.rows], ep.history, ep.users)

    def _task(self, w: torch.Tensor, w_fair: torch.Tensor | None, signs: torch.Tensor | None) -> torch.Tensor:
        """What the policy is told about the task: ``(B, 1)`` ``w_acc``, or ``(B, 3)`` with ``w_fair``
        and the user's ``s_u``."""
        return w[:, None] if w_fair is None else torch.stack([w, w_fair, signs], 1)

    @torch.no_grad()
    def _lists(self, ep: Episode, lam: torch.Tensor, w_fair: torch.Tensor | None) -> torch.Tensor:
        """The greedy lists ``(B, k)`` of simulated users (consumed items cannot be listed)."""
        acc = self.heads.accuracy_of(ep.h).masked_fill(ep.blocked, -torch.inf)
        if w_fair is None:
            return self.heads.greedy_lists(ep.h, acc, lam[:, None], 1 - lam[:, None])
        assert self.train_signs is not None
        keep = (1 - w_fair) * lam
        return self.heads.greedy_lists(ep.h, acc, (keep + w_fair * self.train_signs[ep.rows])[:, None],
                                       (1 - w_fair - keep)[:, None])

    def _reward(self, raw: torch.Tensor, w_acc: torch.Tensor, w_fair: torch.Tensor | None = None,
                idx: torch.Tensor | None = None) -> torch.Tensor:
        """Scalarised reward ``(B,)``: each objective normalised between its lambda-0 and lambda-1 values
        (plus the fairness term of prefixes ``idx`` when ``w_fair`` is given)."""
        assert self.reward_range is not None
        lo, hi = self.reward_range.min(1).values, self.reward_range.max(1).values
        z = (raw - lo[:, None]) / (hi - lo).clamp_min(1e-6)[:, None]
        r = w_acc * z[ACC_REWARD] + (1 - w_acc) * z[DIV_REWARD]
        if w_fair is None:
            return r
        assert self.train_signs is not None and idx is not None
        return (1 - w_fair) * r + w_fair * self.train_signs[idx] * z[ACC_REWARD]

    # ------------------------------------------------------------------ training

    def _build_simulator(self) -> None:
        st, pt, f = self.st, self.pt, self.features
        self.history_of = histories(f, st.context)
        start = time.perf_counter()
        choice = fit_choice_model(f, self.history_of["train"], self.seed + 2, pt.choice_sample, pt.choice_steps)
        log.info("deepprl: simulator fitted in %.1fs: beta_u mean %.3f sd %.3f, c_u mean %.3f sd %.3f, NLL %.3f",
                 time.perf_counter() - start, float(choice.relevance.mean()), float(choice.relevance.std()),
                 float(choice.taste.mean()), float(choice.taste.std()), choice.nll)
        self.simulator = UserSimulator(f, choice, self.history_of["train"], self.alpha, st.exposure)

    def fit(self) -> None:
        if self.actor is not None:
            return
        self.heads.fit()
        st, pt, f, dev = self.st, self.pt, self.features, self.device
        fair = "fairness" in self.utilities and self.heads.signs is not None
        if fair:
            assert self.heads.signs is not None and f.user_group is not None
            self.train_signs = self.heads.signs.per_user(f.user_group[f.train_user])
        self._build_simulator()
        sim = self.simulator
        assert sim is not None
        gen = torch.Generator().manual_seed(self.seed + 1)
        m = f.train_h.shape[0]
        sample = torch.randperm(m, generator=gen)[:min(m, 4096)].to(dev)
        x_all = self._raw_state(f.train_h[sample], self.context["train"][sample], self.history_of["train"][sample],
                                f.train_user[sample])
        self.norm = (x_all.mean(0), x_all.std(0).clamp_min(1e-3))
        dim = x_all.shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            n_task = 3 if fair else 1
            actor, critic = _mlp(dim + n_task, 1, pt.hidden).to(dev), _mlp(dim + n_task + 1, 1, pt.hidden).to(dev)
        nn.init.zeros_(actor[-1].weight)  # the policy starts at lambda_u = w_acc for everyone
        nn.init.zeros_(actor[-1].bias)
        actor_t, critic_t = copy.deepcopy(actor).requires_grad_(False), copy.deepcopy(critic).requires_grad_(False)
        opt_a = torch.optim.Adam(actor.parameters(), lr=pt.actor_lr)
        opt_c = torch.optim.Adam(critic.parameters(), lr=pt.critic_lr)
        # the reward's scale: each objective's mean under lambda = 0 and lambda = 1, first step of an episode
        probe = torch.randperm(m, generator=gen)[:min(m, 4 * pt.batch)].to(dev)
        ends = []
        for v in (0.0, 1.0):
            ep = sim.start(probe)
            ends.append(torch.stack(sim.step(ep, self._lists(ep, torch.full((len(probe),), v, device=dev), None),
                                             gen)).mean(1))
        self.reward_range = torch.stack(ends, dim=1)  # (2 objectives, 2 ends)
        log.info("deepprl: reward range NDCG %.4f..%.4f, alpha-NDCG %.4f..%.4f", *self.reward_range.flatten().tolist())
        cap, b = pt.buffer, pt.batch
        n_in = dim + n_task
        buf = {"s": torch.zeros(cap, n_in, device=dev), "lam": torch.zeros(cap, device=dev),
               "r": torch.zeros(cap, device=dev), "s2": torch.zeros(cap, n_in, device=dev),
               "w": torch.zeros(cap, device=dev)}
        filled = pos = 0
        warmup = int(pt.warmup * st.policy_steps)
        start = time.perf_counter()
        ep = w = wf = None
        for step in range(st.policy_steps):
            t = step % st.horizon
            if t == 0:  # a new episode: users at random training prefixes, one task each
                ep = sim.start(torch.randint(0, m, (b,), generator=gen).to(dev))
                w = torch.rand(b, generator=gen).to(dev)
                wf = torch.rand(b, generator=gen).to(dev) if fair else None
            assert ep is not None and w is not None
            task = self._task(w, wf, None if wf is None else self.train_signs[ep.rows])
            x = torch.cat([self._episode_state(ep), task], 1)
            with torch.no_grad():
                if step < warmup:  # the critic first sees the whole action range
                    a = 1.5 * torch.randn(b, generator=gen).to(dev)
                else:
                    a = actor(x)[:, 0] + pt.noise * torch.randn(b, generator=gen).to(dev)
                lam = personal_weight(w, a, st.max_shift)
                r = self._reward(torch.stack(sim.step(ep, self._lists(ep, lam, wf), gen)), w, wf, ep.rows)
                x2 = torch.cat([self._episode_state(ep), task], 1)
            slots = (pos + torch.arange(b, device=dev)) % cap
            for name, value in (("s", x), ("lam", lam), ("r", r), ("s2", x2), ("w", w)):
                buf[name][slots] = value
            pos, filled = (pos + b) % cap, min(cap, filled + b)
            for _ in range(pt.updates):
                loss_c = self._update(buf, filled, gen, actor, critic, actor_t, critic_t, opt_a, opt_c,
                                      train_actor=step >= warmup)
            self.history.append({"reward": float(r.mean()), "critic": loss_c,
                                 "lambda_shift": float((lam - w).abs().mean())})
            if (step + 1) % max(1, st.policy_steps // 10) == 0:
                recent = self.history[-max(1, st.policy_steps // 10):]
                log.info("deepprl: policy step %d/%d, reward %.4f, critic MSE %.4f (%.1fs)", step + 1,
                         st.policy_steps, np.mean([h["reward"] for h in recent]),
                         np.mean([h["critic"] for h in recent]), time.perf_counter() - start)
        self.actor = actor.eval().requires_grad_(False)

    def _update(self, buf: dict[str, torch.Tensor], filled: int, gen: torch.Generator, actor: nn.Module,
                critic: nn.Module, actor_t: nn.Module, critic_t: nn.Module, opt_a: torch.optim.Optimizer,
                opt_c: torch.optim.Optimizer, train_actor: bool) -> float:
        """One DDPG step on a replay batch; returns the critic's MSE."""
        st, b = self.st, self.pt.batch
        s = torch.randint(0, filled, (b,), generator=gen).to(self.device)
        x, lam, r, x2, w = (buf[k][s] for k in ("s", "lam", "r", "s2", "w"))
        with torch.no_grad():
            lam2 = personal_weight(w, actor_t(x2)[:, 0], st.max_shift)
            # every step bootstraps: the horizon only re-draws users (a time limit, not the user's end;
            # the state has no clock, so a terminal last step would make Q ambiguous). (1 - gamma) keeps
            # Q on the reward's scale.
            y = (1 - st.gamma) * r + st.gamma * critic_t(torch.cat([x2, lam2[:, None]], 1))[:, 0]
        loss_c = F.mse_loss(critic(torch.cat([x, lam[:, None]], 1))[:, 0], y)
        opt_c.zero_grad(set_to_none=True)
        loss_c.backward()
        opt_c.step()
        if train_actor:
            a = actor(x)[:, 0]
            q = critic(torch.cat([x, personal_weight(w, a, st.max_shift)[:, None]], 1))[:, 0]
            loss_a = -q.mean() + st.shift_penalty * a.pow(2).mean()
            opt_a.zero_grad(set_to_none=True)
            loss_a.backward()
            opt_a.step()
        with torch.no_grad():
            for net, tgt in ((actor, actor_t), (critic, critic_t)):
                for param, target in zip(net.parameters(), tgt.parameters(), strict=True):
                    target.lerp_(param, st.tau)
        return float(loss_c.detach())

    # ------------------------------------------------------------------ serving

    def mix_weight(self, weights: Any) -> float:
        """The platform's ``w_acc`` among accuracy and diversity (accuracy's share of ``w_acc + w_div``)."""
        w_acc, _ = self.heads.mix_weights(weights)
        return w_acc

    @torch.no_grad()
    def user_weights(self, w_acc: float, split: str, w_fair: float = 0.0) -> torch.Tensor:
        """Each held-out user's ``lambda_u (U,)`` for the platform's ``w_acc`` (and ``w_fair``)."""
        self.fit()
        assert self.actor is not None
        s = self.features.split(split)
        w = torch.full((s.h.shape[0],), float(w_acc), device=self.device)
        fair = self.train_signs is not None
        task = self._task(w, torch.full_like(w, w_fair) if fair else None,
                          self.heads.fair_signs(split)[:, 0] if fair else None)
        x = self._state(s.h, self.context[split], self.history_of[split], s.users)
        a = self.actor(torch.cat([x, task], 1))[:, 0]
        return personal_weight(w, a, self.st.max_shift)

    def prepare(self, weights: Any, splits: tuple[str, ...] = HELD_OUT) -> dict[str, torch.Tensor]:
        """Per task: every held-out user's ``lambda_u`` and greedy list, both splits."""
        w_acc = self.mix_weight(weights)
        w_fair = fairness_weight(self.task_weights(weights), self.utilities)
        out = {}
        for split in splits:
            lam = self.user_weights(w_acc, split, w_fair)[:, None]
            if w_fair == 0:
                out[split] = self.heads.rank((lam, 1 - lam), split)
                continue
            keep = (1 - w_fair) * lam
            out[split] = self.heads.rank((keep + w_fair * self.heads.fair_signs(split), 1 - w_fair - keep), split)
        return out

    def prepare_split(self, weights: Any, split: str) -> dict[str, torch.Tensor]:
        return self.prepare(weights, (split,))

    def scores(self, prepared: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        return prepared[split]


__all__ = ["DeepPRL", "DeepPRLConfig", "PolicyTraining", "personal_weight", "user_context"]
