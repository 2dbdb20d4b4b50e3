"""Is the fairness utility (the NDCG@10 gap between user groups) measurable and controllable?

    nice .venv/bin/python benchmarks/fairness.py --run runs/<name>-<time> [--w-fair 0 0.5 0.9 1] \
        [--seeds 0 1] [--epochs 20] [--resamples 1000] [--out fairness.json] [--threads 1]

Reads a finished run's prepared data and backbone (nothing else) and measures on the VALIDATION
split only (the test split is never read):

1. The backbone alone: each group's NDCG@10, the gap with its 95% bootstrap interval over users.
2. Adapters (``padirec.adapters.train``, utilities ``[accuracy, fairness]``, ``w_acc = 1 -
   w_fair``, the run's adapter settings otherwise) for every ``--w-fair`` and ``--seeds``, with
   two fairness losses:
   - ``batch``: the shipped loss (``objectives._fairness``): ``|gap|`` of the soft NDCG of the
     positive in its list (1 + 9 negatives), between the groups of one mini-batch of prefixes;
   - ``population``: the large-group estimate. Every ``--sign-every`` steps the gap is measured
     on the whole training population (every prefix, each user weighted equally, as the metric
     weighs users; fixed negatives), and a mini-batch's loss is that gap's linearisation,
     ``sum_g c_g m_g`` with ``c_g = sign(m_g - mean m) - mean sign`` from the population and
     ``m_g`` the batch's user-weighted group means: an unbiased estimate of the population gap's
     gradient, where the batch loss's ``|.|`` of a noisy estimate has a random sign.
   Per adapter: NDCG@10, ``ndcg_gap@10`` (the report's metric) with its interval
   (``padirec.evaluation.uncertainty``: percentile bootstrap over users), the signed gap (group 0
   minus group 1) with its interval, and the training population's signed gap (what the losses
   see). Then, per loss and seed, the change of the gap from the smallest to the largest
   ``w_fair``, paired (the same user draws for both adapters), with its interval: the fairness
   weight controls the gap where that interval excludes 0 and the gap falls.
3. MMR with the fairness weight (``padirec.methods.mmr``, the per-user linearisation of
   ``padirec.core.fairness``), cross-fitted: the group signs are decided on one half of the
   validation users (even rows) and the gap is measured on the other half (odd rows), so the
   measured change is not the noise the signs were chosen on.

Prints the tables; writes them as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from run_folder import find  # benchmarks/run_folder.py

K = 10
MMR_TASKS = [(1.0, 0.0, 0.0), (0.5, 0.0, 0.5), (0.0, 0.0, 1.0), (0.5, 0.5, 0.0), (0.25, 0.5, 0.25), (0.0, 0.5, 0.5)]


# ----------------------------------------------------------------------------- the population loss


def user_weights(features) -> torch.Tensor:
    """``1 / n_u`` for each training prefix (``n_u`` its user's prefixes): each user counts once."""
    counts = torch.bincount(features.train_user)
    return 1.0 / counts[features.train_user].float()


def group_means(values: torch.Tensor, groups: torch.Tensor, weights: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Weighted group means ``(N, G)`` of ``values (N, B)``; ``present (G,)`` the group ids."""
    onehot = (groups[:, None] == present[None, :]).float() * weights[:, None]  # (B, G)
    return (values @ onehot) / onehot.sum(0).clamp_min(1e-12)


@torch.no_grad()
def population_means(features, params, lay, cands, weights, present, temperature) -> torch.Tensor:
    """Each adapter's user-weighted group means ``(N, G)`` of the soft NDCG of every training prefix
    (candidate lists ``cands (M, 1 + k)``, fixed)."""
    from padirec.adapters.adapter import apply_adapters
    from padirec.adapters.objectives import soft_ndcg

    groups = features.user_group[features.train_user]
    num = torch.zeros(params.shape[0], len(present))
    den = torch.zeros(len(present))
    for s in range(0, cands.shape[0], 8192):
        sl = slice(s, s + 8192)
        h = apply_adapters(features.train_h[sl], params, lay)
        scores = torch.einsum("nbd,bld->nbl", h, features.item_embedding[cands[sl]])
        onehot = (groups[sl, None] == present[None, :]).float() * weights[sl, None]
        num += soft_ndcg(scores, temperature) @ onehot
        den += onehot.sum(0)
    return num / den.clamp_min(1e-12)


def train_population(features, weights: np.ndarray, cfg, seed: int, sign_every: int) -> torch.Tensor:
    """Adapters ``(N, P)`` for tasks ``weights (N, 2)`` over ``[accuracy, fairness]``, the fairness
    term from the population's gap (module docstring); otherwise as ``train_bank``."""
    from padirec.adapters.adapter import apply_adapters, init_params
    from padirec.adapters.objectives import bce_loss, soft_ndcg
    from padirec.adapters.train import candidate_lists, sample_negatives
    from padirec.core.layout import adapter_layout

    f = features
    lay = adapter_layout(f.dim, cfg.bottleneck)
    gen = torch.Generator().manual_seed(seed)
    params = init_params(lay, gen).repeat(len(weights), 1).requires_grad_(True)
    opt = torch.optim.Adam([params], lr=cfg.lr)
    w = torch.as_tensor(weights, dtype=torch.float32)
    uw = user_weights(f)
    groups = f.user_group[f.train_user]
    present = torch.unique(groups[groups >= 0])
    fixed = torch.Generator().manual_seed(seed + 10_000)
    pop = torch.cat([f.train_target[:, None], sample_negatives(f, f.train_user, cfg.num_negatives, fixed)], 1)
    m = f.train_h.shape[0]
    steps = min(-(-m // cfg.batch_size), cfg.steps_per_epoch or m)
    coef = torch.zeros(len(weights), len(present))
    for _ in range(cfg.epochs):
        perm = torch.randperm(m, generator=gen)
        for step in range(steps):
            if step % sign_every == 0:
                means = population_means(f, params.detach(), lay, pop, uw, present, cfg.temperature)
                side = torch.sign(means - means.mean(1, keepdim=True))
                coef = side - side.mean(1, keepdim=True)  # d gap / d m_g of sum_g |m_g - mean m|
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            cands = candidate_lists(f, idx, cfg.num_negatives, gen)
            h = apply_adapters(f.train_h[idx], params, lay)
            scores = torch.einsum("nbd,bld->nbl", h, f.item_embedding[cands])
            fair = (coef * group_means(soft_ndcg(scores, cfg.temperature), groups[idx], uw[idx], present)).sum(1)
            loss = (w[:, 0] * bce_loss(scores) + w[:, 1] * fair).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return params.detach()


# ----------------------------------------------------------------------------- measuring


def signed_replicates(values: np.ndarray, groups: np.ndarray, counts: list[np.ndarray]) -> np.ndarray:
    """Group 0 minus group 1 of per-user ``values (R, U)`` on every draw: ``(R, B)``."""
    out = []
    for c in counts:
        means = []
        for g in (0, 1):
            wg = c * (groups == g)[None, :]
            means.append(values @ wg.T / wg.sum(1)[None, :])
        out.append(means[0] - means[1])
    return np.concatenate(out, axis=1)


def measure(per_user: list[np.ndarray], groups: np.ndarray, counts: list[np.ndarray], confidence: float) -> list[dict]:
    """Per adapter (per-user NDCG@K ``(U,)`` each): NDCG@K, the metric ``ndcg_gap@K`` and the signed
    gap, each with its percentile interval over the same user draws."""
    from padirec.evaluation.uncertainty import metric_replicates, percentile_ci

    rows = {"m": [{f"ndcg@{K}": v} for v in per_user]}
    reps = metric_replicates(rows, [f"ndcg@{K}", f"ndcg_gap@{K}"], K, counts, groups)["m"]
    full = metric_replicates(rows, [f"ndcg@{K}", f"ndcg_gap@{K}"], K, [np.ones((1, len(groups)))], groups)["m"]
    values = np.stack(per_user)
    signed = signed_replicates(values, groups, counts)
    signed_point = signed_replicates(values, groups, [np.ones((1, len(groups)))])[:, 0]
    out = []
    for i in range(len(per_user)):
        out.append({
            "ndcg": float(full[f"ndcg@{K}"][i, 0]),
            "gap": float(full[f"ndcg_gap@{K}"][i, 0]),
            "gap_ci": percentile_ci(reps[f"ndcg_gap@{K}"][i], confidence).tolist(),
            "signed": float(signed_point[i]),
            "signed_ci": percentile_ci(signed[i], confidence).tolist(),
            "_signed_reps": signed[i],
            "_gap_reps": reps[f"ndcg_gap@{K}"][i],
        })
    return out


def per_user_ndcg(features, scores: torch.Tensor, split: str = "valid") -> np.ndarray:
    """NDCG@K ``(U,)`` of raw scores ``(U, num_items + 1)`` of ``split``'s users (history masked)."""
    from padirec.core.metrics import mask_history, ndcg_at_k, target_rank

    s = features.split(split)
    scores = mask_history(scores, s.mask_rows, s.mask_cols)
    return ndcg_at_k(target_rank(scores, s.targets), K).double().numpy()


def subset(split, keep: torch.Tensor):
    """The rows ``keep`` of an ``EvalSplit`` (history masks re-indexed)."""
    pos = torch.full((split.users.shape[0],), -1, dtype=torch.long)
    pos[keep] = torch.arange(len(keep))
    sel = pos[split.mask_rows] >= 0
    return dataclasses.replace(split, users=split.users[keep], h=split.h[keep], targets=split.targets[keep],
                               mask_rows=pos[split.mask_rows[sel]], mask_cols=split.mask_cols[sel],
                               groups=split.groups[keep])


def fmt_ci(point: float, ci) -> str:
    return f"{point:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run folder of `padirec run` (its data and backbone)")
    ap.add_argument("--w-fair", type=float, nargs="+", default=[0.0, 0.5, 0.9, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=0, help="0: the run's adapters.epochs")
    ap.add_argument("--sign-every", type=int, default=5, help="steps between population gap measurements")
    ap.add_argument("--losses", nargs="+", default=["batch", "population"], choices=["batch", "population"])
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--no-mmr", action="store_true")
    ap.add_argument("--out", default="fairness.json")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the dev box is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from padirec.adapters.features import compute_features
    from padirec.adapters.train import train_bank
    from padirec.backbones import load_backbone
    from padirec.config import config_from_json
    from padirec.core.fairness import group_signs
    from padirec.core.layout import adapter_layout
    from padirec.data.dataset import load_prepared
    from padirec.evaluation.uncertainty import bootstrap_counts, percentile_ci
    from padirec.methods.base import adapted_scores
    from padirec.methods.mmr import MMR

    start = time.perf_counter()
    run = Path(args.run)
    cfg = config_from_json((run / "config.json").read_text())
    data = load_prepared(find(run, "**/prepare-data/data/manifest.json"))
    if data.user_group is None:
        raise SystemExit(f"{run}: the data has no user groups; the fairness utility needs them")
    features = compute_features(load_backbone(find(run, "**/train-backbone/backbone/manifest.json")), data,
                                cfg.data.max_len, "cpu", cfg.adapters.feature_stride)
    groups = features.valid.groups.numpy()
    n_users = len(groups)
    counts = list(bootstrap_counts(n_users, args.resamples, cfg.seed))
    out: dict = {"run": str(run), "split": "valid", "k": K, "users": n_users, "resamples": args.resamples,
                 "confidence": args.confidence, "group_sizes": {int(g): int((groups == g).sum()) for g in np.unique(groups)}}
    print(f"{run.name}: valid split, {n_users} users, groups {out['group_sizes']}; "
          f"{args.resamples} bootstrap draws over users, {args.confidence:.0%} intervals")

    # 1. the backbone alone
    bare = per_user_ndcg(features, features.valid.h @ features.item_embedding.T)
    b = measure([bare], groups, counts, args.confidence)[0]
    print(f"\nbackbone: NDCG@{K} {b['ndcg']:.4f} (group 0 {bare[groups == 0].mean():.4f}, group 1 "
          f"{bare[groups == 1].mean():.4f}); ndcg_gap@{K} {b['gap']:.4f} [{b['gap_ci'][0]:.4f}, {b['gap_ci'][1]:.4f}]; "
          f"signed {fmt_ci(b['signed'], b['signed_ci'])}; "
          f"standard deviation of the gap's replicates {np.std(b['_gap_reps'], ddof=1):.4f}")
    se = float(np.std(b["_signed_reps"], ddof=1))
    print(f"standard error of the signed gap {se:.4f}: the smallest gap this split detects (two-sided 5%, "
          f"power 80%) is 2.8 x SE = {2.8 * se:.4f}")
    out["backbone"] = {k: v for k, v in b.items() if not k.startswith("_")} | {"signed_se": se, "mde": 2.8 * se}

    # 2. adapters, per loss, w_fair and seed
    epochs = args.epochs or cfg.adapters.epochs
    acfg = dataclasses.replace(cfg.adapters, utilities=["accuracy", "fairness"], epochs=epochs, checkpoints_per_task=1,
                               candidates="train")  # no diversity term: its candidate list is never used
    lay = adapter_layout(features.dim, acfg.bottleneck)
    w_fair = sorted(args.w_fair)
    tasks = np.array([[1.0 - x, x] for x in w_fair])
    uw = user_weights(features)
    present = torch.unique(features.user_group[features.user_group >= 0])
    fixed = torch.Generator().manual_seed(12345)
    from padirec.adapters.train import sample_negatives

    pop = torch.cat([features.train_target[:, None],
                     sample_negatives(features, features.train_user, acfg.num_negatives, fixed)], 1)
    from padirec.adapters.adapter import init_params

    start_means = population_means(features, init_params(lay)[None], lay, pop, uw, present, acfg.temperature)[0]
    print(f"training population (every prefix, users weighted equally, soft NDCG of the positive among "
          f"1 + {acfg.num_negatives} fixed negatives), the backbone: group 0 {start_means[0]:.4f}, group 1 "
          f"{start_means[1]:.4f}, gap g0-g1 {start_means[0] - start_means[1]:+.4f}")
    out["train_population_backbone"] = start_means.tolist()
    rows, deltas = [], []
    print(f"\nadapters: utilities [accuracy, fairness], w_acc = 1 - w_fair, {epochs} epochs x "
          f"{acfg.steps_per_epoch} steps of {acfg.batch_size}, lr {acfg.lr}")
    header = (f"{'loss':<11}{'w_fair':>6}{'seed':>5}{'NDCG@10':>9}  {'ndcg_gap@10 [95% CI]':<27}"
              f"{'signed gap g0-g1 [95% CI]':<29}{'train gap g0-g1':>15}{'secs':>6}")
    print(header)
    for loss in args.losses:
        for seed in args.seeds:
            t = time.perf_counter()
            if loss == "batch":
                params = train_bank(features, tasks, acfg, seed).checkpoints[:, -1]
            else:
                params = train_population(features, tasks, acfg, seed, args.sign_every)
            secs = time.perf_counter() - t
            scores = adapted_scores(features, params, lay, "valid")
            per_user = [per_user_ndcg(features, scores[i]) for i in range(len(tasks))]
            measured = measure(per_user, groups, counts, args.confidence)
            train_means = population_means(features, params, lay, pop, uw, present, acfg.temperature)
            for i, x in enumerate(w_fair):
                r = measured[i]
                train_gap = float(train_means[i, 0] - train_means[i, 1])
                print(f"{loss:<11}{x:>6.2f}{seed:>5}{r['ndcg']:>9.4f}  "
                      f"{r['gap']:.4f} [{r['gap_ci'][0]:.4f}, {r['gap_ci'][1]:.4f}]{'':<4}"
                      f"{fmt_ci(r['signed'], r['signed_ci']):<29}{train_gap:>+15.4f}{secs / len(tasks):>6.0f}")
                rows.append({"loss": loss, "w_fair": x, "seed": seed, "train_gap": train_gap,
                             **{k: v for k, v in r.items() if not k.startswith("_")}})
            lo, hi = measured[0], measured[-1]
            d_gap = hi["_gap_reps"] - lo["_gap_reps"]
            d_signed = hi["_signed_reps"] - lo["_signed_reps"]
            deltas.append({"loss": loss, "seed": seed, "from": w_fair[0], "to": w_fair[-1],
                           "gap": hi["gap"] - lo["gap"], "gap_ci": percentile_ci(d_gap, args.confidence).tolist(),
                           "signed": hi["signed"] - lo["signed"],
                           "signed_ci": percentile_ci(d_signed, args.confidence).tolist(),
                           "train_gap": float(rows[-1]["train_gap"] - rows[-len(tasks)]["train_gap"]),
                           "ndcg": hi["ndcg"] - lo["ndcg"]})
    print(f"\nchange from w_fair = {w_fair[0]:g} to {w_fair[-1]:g} (paired: the same user draws)")
    print(f"{'loss':<11}{'seed':>5}  {'d ndcg_gap@10 [95% CI]':<29}{'d signed gap [95% CI]':<29}"
          f"{'d train gap':>12}{'d NDCG@10':>10}")
    for d in deltas:
        print(f"{d['loss']:<11}{d['seed']:>5}  {fmt_ci(d['gap'], d['gap_ci']):<29}{fmt_ci(d['signed'], d['signed_ci']):<29}"
              f"{d['train_gap']:>+12.4f}{d['ndcg']:>+10.4f}")
    out["adapters"] = {"epochs": epochs, "steps_per_epoch": acfg.steps_per_epoch, "rows": rows, "changes": deltas}

    # 3. MMR, cross-fitted on the two halves of the validation users
    if not args.no_mmr:
        order = torch.arange(n_users)
        fit_half = dataclasses.replace(features, valid=subset(features.valid, order[order % 2 == 0]))
        eval_half = dataclasses.replace(features, valid=subset(features.valid, order[order % 2 == 1]))
        mmr = MMR(eval_half, ["accuracy", "diversity", "fairness"], K, cfg.methods["mmr"].candidates)
        mmr.signs = group_signs(fit_half, K)
        eval_groups = eval_half.valid.groups.numpy()
        eval_counts = list(bootstrap_counts(len(eval_groups), args.resamples, cfg.seed))
        per_user = [per_user_ndcg(eval_half, mmr.scores(mmr.prepare(list(w)), "valid")) for w in MMR_TASKS]
        measured = measure(per_user, eval_groups, eval_counts, args.confidence)
        print(f"\nMMR (accuracy, diversity, fairness), signs from the even validation rows "
              f"({mmr.signs.sign}, backbone NDCG@{K} by group {({g: round(v, 4) for g, v in mmr.signs.ndcg.items()})}), "
              f"measured on the odd rows ({len(eval_groups)} users)")
        print(f"{'task':<20}{'NDCG@10':>9}  {'ndcg_gap@10 [95% CI]':<27}{'signed gap g0-g1 [95% CI]':<29}")
        for w, r in zip(MMR_TASKS, measured, strict=True):
            print(f"{str(w):<20}{r['ndcg']:>9.4f}  {r['gap']:.4f} [{r['gap_ci'][0]:.4f}, {r['gap_ci'][1]:.4f}]{'':<4}"
                  f"{fmt_ci(r['signed'], r['signed_ci']):<29}")
        out["mmr"] = {"signs": mmr.signs.sign, "rows": [{"task": list(w), **{k: v for k, v in r.items() if not k.startswith("_")}}
                                                         for w, r in zip(MMR_TASKS, measured, strict=True)]}

    out["seconds"] = time.perf_counter() - start
    Path(args.out).write_text(json.dumps(out, indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else o))
    print(f"\n{out['seconds']:.0f} s; written {args.out}")


if __name__ == "__main__":
    main()
