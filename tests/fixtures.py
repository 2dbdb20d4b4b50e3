"""The tiny things tests are built from, in one place, from the smallest to the largest:

- ``window_data`` / ``window_backbone``: an in-memory ``PreparedData`` of short and long users and
  an untrained backbone on it (milliseconds), for feature and window computations;
- ``random_features``: frozen features with random representations and no backbone, for methods;
- ``category_walk``: users walking between item categories, with features that see the last item;
- ``train_tiny_backbone``: a 16-dim SASRec trained by the library's own backbone stage on the
  session's synthetic data (``synthetic_prepared`` in ``tests/conftest.py``);
- ``build_tiny``: that backbone's features, a small adapter bank and a generator: every input of
  the evaluate stage (``TinySetup``);
- ``tiny_system``: a trained serving system and its pyfunc model (``save_model``);
- ``run_tiny_pipeline``: every component's function once, in pipeline order.

The settings are the smoke config's (``configs/smoke.yaml``), with the few changes each builder
states.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
MAX_LEN = 10  # the trained tiny backbone's window (train_tiny_backbone, build_tiny)
SYSTEM_MAX_LEN = 8  # the serving system's window (tiny_system)
WINDOW_MAX_LEN = 6  # window_data's window: shorter than its long users, longer than its short ones


def smoke_config(overrides: dict[str, Any] | None = None):
    """``configs/smoke.yaml`` with dotted-key ``overrides``, as ``--set`` gives them."""
    from padirec.config import load_config

    return load_config(SMOKE, overrides or {})


# ------------------------------------------------------------------ in memory, untrained

def window_data(num_users: int = 25, num_items: int = 30, seed: int = 0):
    """A ``PreparedData`` whose first users have 0, 1, 2, 5, 6 and 7 train items, then any."""
    from padirec.data.dataset import PreparedData

    rng = np.random.default_rng(seed)
    train, times = [np.array([], np.int64)], [np.array([], np.int64)]
    for u in range(num_users):
        n = [0, 1, 2, 5, 6, 7][u] if u < 6 else int(rng.integers(2, 25))
        train.append(rng.integers(1, num_items + 1, size=n).astype(np.int64))
        times.append(np.cumsum(rng.integers(0, 50, size=n)).astype(np.int64) + 1000)
    held = np.concatenate([[0], rng.integers(1, num_items + 1, size=num_users)]).astype(np.int64)
    last = np.array([t[-1] if len(t) else 1000 for t in times], np.int64)
    return PreparedData(
        num_users=num_users, num_items=num_items, num_categories=2, train_items=train, train_times=times,
        valid_item=held, valid_time=last + 1, test_item=held[::-1].copy(), test_time=last + 2,
        item_categories=rng.random((num_items + 1, 2)) < 0.5, item_titles=[""] * (num_items + 1),
        category_names=["a", "b"], user_group=None, manifest={},
    )


def window_backbone(name: str, data):
    """An untrained backbone ``name`` on ``data`` (``window_data``), in eval mode."""
    from padirec.backbones.config import BackboneConfig
    from padirec.backbones.registry import build_backbone

    torch.manual_seed(0)
    return build_backbone(name, data.num_items, BackboneConfig(model=name, num_layers=1, dropout=0.0),
                          WINDOW_MAX_LEN).eval()


def random_features(num_users: int = 30, num_items: int = 40, dim: int = 8, num_categories: int = 5,
                    prefixes: int = 200, seed: int = 0, groups: bool = False):
    """``Features`` with random representations; every user has a few train items (masked in eval)."""
    from padirec.adapters.features import EvalSplit, Features

    g = torch.Generator().manual_seed(seed)
    cats = (torch.rand(num_items + 1, num_categories, generator=g) < 0.3).float()
    cats[torch.arange(1, num_items + 1), torch.randint(0, num_categories, (num_items,), generator=g)] = 1.0
    cats[0] = 0.0
    users = torch.arange(1, num_users + 1)
    history = torch.randint(1, num_items + 1, (num_users, 4), generator=g)
    seen = torch.unique((users[:, None] * (num_items + 1) + history).flatten())
    user_group = torch.randint(0, 2, (num_users + 1,), generator=g) if groups else None

    def split() -> EvalSplit:
        targets = torch.randint(1, num_items + 1, (num_users,), generator=g)
        rows = torch.arange(num_users).repeat_interleave(4)
        cols = history.flatten()
        keep = cols != targets[rows]
        return EvalSplit(users=users, h=torch.randn(num_users, dim, generator=g), targets=targets,
                         mask_rows=rows[keep], mask_cols=cols[keep],
                         groups=None if user_group is None else user_group[users])

    train_user = torch.randint(1, num_users + 1, (prefixes,), generator=g)
    return Features(
        train_h=torch.randn(prefixes, dim, generator=g), train_user=train_user,
        train_target=history[train_user - 1, torch.randint(0, 4, (prefixes,), generator=g)],
        item_embedding=torch.randn(num_items + 1, dim, generator=g), item_categories=cats,
        user_group=user_group, seen_keys=seen, valid=split(), test=split(),
    )



def category_walk(num_users: int = 40, length: int = 14, seed: int = 0):
    """Items in one category each (4 of 8 items); every user's next item stays in the last item's
    category or switches, by a coin; the "backbone" state is the last item's embedding plus noise.
    So a one-step diversity return says exactly whether an action switched (MODT4R's tests).
    Returns ``(PreparedData, Features)``."""
    from padirec.adapters.features import EvalSplit, Features
    from padirec.data.dataset import PreparedData

    cats, per_cat, dim = 4, 8, 8
    rng = np.random.default_rng(seed)
    n_items = cats * per_cat
    cat_of = np.concatenate([[-1], np.repeat(np.arange(cats), per_cat)])
    item_cats = np.zeros((n_items + 1, cats), dtype=bool)
    item_cats[np.arange(1, n_items + 1), cat_of[1:]] = True
    centers = rng.normal(size=(cats, dim)) * 2
    emb = np.zeros((n_items + 1, dim))
    emb[1:] = centers[cat_of[1:]] + 0.3 * rng.normal(size=(n_items, dim))

    def draw(prev: int) -> int:
        c = cat_of[prev] if rng.random() < 0.5 else rng.choice([k for k in range(cats) if k != cat_of[prev]])
        return int(1 + c * per_cat + rng.integers(per_cat))

    seqs = []
    for _ in range(num_users):
        s = [int(rng.integers(1, n_items + 1))]
        for _ in range(length + 1):
            s.append(draw(s[-1]))
        seqs.append(np.asarray(s))
    train = [np.zeros(0, dtype=np.int64)] + [s[:-2] for s in seqs]
    zeros = np.zeros(num_users + 1, dtype=np.int64)
    data = PreparedData(
        num_users=num_users, num_items=n_items, num_categories=cats, train_items=train,
        train_times=[np.arange(len(s)) for s in train],
        valid_item=np.concatenate([[0], [s[-2] for s in seqs]]), valid_time=zeros,
        test_item=np.concatenate([[0], [s[-1] for s in seqs]]), test_time=zeros,
        item_categories=item_cats, item_titles=[""] * (n_items + 1), category_names=list("abcd"),
        user_group=None, manifest={},
    )
    emb_t = torch.as_tensor(emb, dtype=torch.float32)

    def state(last: np.ndarray) -> torch.Tensor:
        return emb_t[torch.as_tensor(last)] + 0.1 * torch.as_tensor(rng.normal(size=(len(last), dim)), dtype=torch.float32)

    users = np.repeat(data.users, [len(t) - 1 for t in train[1:]])
    last = np.concatenate([t[:-1] for t in train[1:]])
    target = np.concatenate([t[1:] for t in train[1:]])

    def split(name: str) -> EvalSplit:
        hist_last = np.asarray([data.history(name, int(u))[0][-1] for u in data.users])
        rows, cols = data.seen_items(name)
        return EvalSplit(users=torch.as_tensor(data.users), h=state(hist_last),
                         targets=torch.as_tensor((data.valid_item if name == "valid" else data.test_item)[1:]),
                         mask_rows=torch.as_tensor(rows), mask_cols=torch.as_tensor(cols), groups=None)

    seen = np.unique(np.concatenate([u * (n_items + 1) + train[u] for u in data.users]))
    features = Features(
        train_h=state(last), train_user=torch.as_tensor(users), train_target=torch.as_tensor(target),
        item_embedding=emb_t, item_categories=torch.as_tensor(item_cats, dtype=torch.float32), user_group=None,
        seen_keys=torch.as_tensor(seen), valid=split("valid"), test=split("test"),
    )
    return data, features

# ------------------------------------------------------------------ trained on the synthetic data

def train_tiny_backbone(data_dir: Path, out_dir: Path, epochs: int = 8, seed: int = 0):
    """A 16-dim, one-layer SASRec trained into ``out_dir`` (a backbone artifact) by the library's
    backbone stage; returns the model, in eval mode."""
    from padirec.backbones.checkpoint import load_backbone
    from padirec.backbones.config import BackboneConfig
    from padirec.backbones.stage import train_backbone_stage

    cfg = BackboneConfig(model="sasrec", dim=16, num_layers=1, dropout=0.0, lr=5e-3, batch_size=32,
                         epochs=epochs, patience=epochs, eval_batch_size=512)
    train_backbone_stage(data_dir, out_dir, cfg, MAX_LEN, seed, "cpu")
    return load_backbone(out_dir).eval()


def tiny_config():
    """The smoke config for ``build_tiny``: a shorter bank and generator and a grid of 3 tasks."""
    return smoke_config({
        "data.max_len": MAX_LEN,
        "adapters.epochs": 2, "adapters.steps_per_epoch": 4, "adapters.batch_size": 256,
        "adapters.grid_size": 3, "adapters.num_random_tasks": 4, "adapters.num_shards": 1,
        "generator.size": "tiny", "generator.train_steps": 40, "generator.batch_size": 32,
        "generator.warmup_steps": 5, "generator.log_every": 20,
        "methods.mmr.candidates": 20, "methods.deepprl.policy_steps": 20,
    })


def train_small_bank(out: Path, features, cfg, backbone_dir: Path) -> Path:
    """A bank (the grid held out, plus random tasks) trained and written as one shard of the
    ``adapter_bank`` contract of ``docs/internals.md``."""
    from padirec.adapters.bank import write_bank
    from padirec.adapters.train import train_bank
    from padirec.backbones.checkpoint import backbone_sha256
    from padirec.core.layout import adapter_layout
    from padirec.core.tasks import sample_tasks

    ac = cfg.adapters
    weights, held_out = sample_tasks(len(ac.utilities), ac.grid_size, ac.num_random_tasks, ac.hold_out_grid, cfg.seed)
    ckpts = train_bank(features, weights, ac, cfg.seed).checkpoints  # (T, K, P)
    t, k, p = ckpts.shape
    rows = pd.DataFrame({
        "row": np.arange(t * k), "task_id": np.repeat(np.arange(t), k), "checkpoint": np.tile(np.arange(k), t),
        "held_out": np.repeat(held_out, k), "w": [list(weights[i]) for i in np.repeat(np.arange(t), k)],
        "shard": 0,
    })
    write_bank(out, ckpts.reshape(t * k, p), rows, adapter_layout(features.dim, ac.bottleneck), list(ac.utilities),
               backbone_sha256(backbone_dir), config={}, stats={}, held_out={"grid": True},
               shard={"index": 0, "count": 1})
    return out


@dataclass
class TinySetup:
    """Every input of the evaluate stage, as folders and as loaded objects."""

    cfg: Any
    data: Any
    data_dir: Path
    backbone_dir: Path
    features: Any
    bank_dir: Path
    bank: Any
    generator_dir: Path
    generator: Any
    context: Any  # the MethodContext the methods are fitted with


def build_tiny(root: Path, data_dir: Path) -> TinySetup:
    """The tiny backbone, its features, a small bank and a generator, under ``root``."""
    from padirec.adapters.bank import load_bank
    from padirec.adapters.features import compute_features
    from padirec.backbones.checkpoint import load_backbone
    from padirec.data.dataset import load_prepared
    from padirec.diffusion.train import train_generator
    from padirec.methods.registry import MethodContext

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only contend on a busy shared CPU
    try:
        cfg = tiny_config()
        data = load_prepared(data_dir)
        train_tiny_backbone(data_dir, root / "backbone", epochs=4)
        features = compute_features(load_backbone(root / "backbone"), data, MAX_LEN)
        bank = load_bank(train_small_bank(root / "bank", features, cfg, root / "backbone"))
        gen = train_generator(bank.params, bank.weights, bank.layout, cfg.generator, seed=0,
                              held_out_mask=torch.as_tensor(bank.held_out), utilities=bank.utilities)
        gen.save(root / "generator")
    finally:
        torch.set_num_threads(threads)
    context = MethodContext(features=features, data=data, layout=bank.layout, adapters=cfg.adapters, seed=cfg.seed,
                            k=cfg.evaluation.k, max_len=MAX_LEN, bank=bank, generator=gen)
    return TinySetup(cfg=cfg, data=data, data_dir=data_dir, backbone_dir=root / "backbone", features=features,
                     bank_dir=root / "bank", bank=bank, generator_dir=root / "generator", generator=gen,
                     context=context)


def evaluation_inputs(tiny: TinySetup, cfg: Any, root: Path, **more: Any):
    """The evaluate stage's folders for ``cfg``, as the pipeline makes them: the band protocol's
    generator and the ceiling's second Retrain trained by their own stages under ``root`` (each
    writes a ``skipped`` folder when ``cfg`` needs none)."""
    from padirec.evaluation.stage import EvaluationInputs
    from padirec.evaluation.trained_inputs import band_generator_stage, retrain_ceiling_stage

    band, ceiling = Path(root) / "band_generator", Path(root) / "ceiling"
    band_generator_stage(tiny.bank_dir, band, cfg)
    retrain_ceiling_stage(tiny.data_dir, tiny.backbone_dir, None, ceiling, cfg)
    return EvaluationInputs(tiny.data_dir, tiny.backbone_dir, tiny.bank_dir, tiny.generator_dir,
                            band_generator=band, ceiling=ceiling, **more)


def build_tiny_system(prepared: Path, root: Path, inference_steps: int = 5) -> Path:
    """A serving system folder trained by the stages themselves, on a bank of 1 checkpoint per task."""
    from padirec.adapters.stage import build_adapters_stage
    from padirec.backbones.stage import train_backbone_stage
    from padirec.diffusion.stage import train_generator_stage
    from padirec.serving import build_system
    from padirec.tracking import NullTracker

    cfg = smoke_config({"backbone.epochs": 2, "backbone.patience": 1, "adapters.num_random_tasks": 4,
                        "adapters.checkpoints_per_task": 1, "adapters.epochs": 2, "adapters.steps_per_epoch": 2,
                        "adapters.num_shards": 1,
                        "generator.train_steps": 20, "generator.num_inference_steps": inference_steps})
    train_backbone_stage(prepared, root / "backbone", cfg.backbone, SYSTEM_MAX_LEN, 0, "cpu")
    build_adapters_stage(prepared, root / "backbone", root / "bank", cfg.adapters, SYSTEM_MAX_LEN, 0, "cpu",
                         NullTracker())
    train_generator_stage(root / "bank", root / "generator", cfg.generator, 0, "cpu")
    build_system(prepared, root / "backbone", root / "generator", root / "system")
    return root / "system"


_SYSTEMS: dict[str, Path] = {}


def tiny_system(prepared: Path, tmp_path_factory) -> Path:
    """One tiny system per test session (tests only read it): training it takes ~30 s here."""
    key = str(prepared)
    if key not in _SYSTEMS:
        _SYSTEMS[key] = build_tiny_system(prepared, tmp_path_factory.mktemp("system"))
    return _SYSTEMS[key]


def save_model(system: Path, path: Path, signature: bool = True) -> Path:
    """The pyfunc model as ``padirec.tracking.model_registry`` logs it (``save_pyfunc``: signature, input
    example, code and requirements); ``signature=False``: the bare model, without the signature."""
    import mlflow

    from padirec.tracking.model_registry import PYFUNC_CODE, save_pyfunc

    if signature:
        return save_pyfunc(system, path)
    mlflow.pyfunc.save_model(str(path), python_model=str(PYFUNC_CODE), artifacts={"system": str(system)})
    return path


# ------------------------------------------------------------------ the components, end to end

class FinalStatus:
    """What KFP hands the exit handler (``dsl.PipelineTaskFinalStatus``), as the local runner does."""

    state = "SUCCEEDED"


def run_tiny_pipeline(tmp_path_factory, overrides: dict | None = None) -> dict:
    """Every component's ``python_func`` (what KFP runs in the pod) once, in pipeline order, on the
    smoke config with a shorter backbone and generator and a gate that always passes; tracked to a
    SQLite store. ``overrides``: more dotted config keys (e.g. ``{"adapters.utilities": [...]}``).
    Returns the artifacts (``art``), the MLflow runs by name (``runs``) and the config (``cfg``)."""
    import pytest
    from kfp import dsl
    from mlflow import MlflowClient

    import components
    from padirec.config import config_to_json
    from padirec.tracking import KFP_RUN_ID_ENV

    root = tmp_path_factory.mktemp("components")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = smoke_config({
        "tracking.uri": uri, "run_dir": str(root / "runs"), "backbone.epochs": 2, "generator.train_steps": 50,
        "promotion.min_avg_hv": 0.0, "promotion.min_pearson_ra": -1.0, "promotion.min_pearson_rd": -1.0,
        **(overrides or {})})
    cj = config_to_json(cfg)
    comps = {name: comp.python_func for name, comp in components.build("padirec:test").items()}
    art = {name: kind(uri=str(root / name)) for name, kind in (
        ("data", dsl.Dataset), ("backbone", dsl.Model), ("features", dsl.Dataset), ("bank", dsl.Dataset),
        ("generator", dsl.Model), ("band_generator", dsl.Model), ("ceiling", dsl.Model),
        ("report", dsl.Artifact), ("system", dsl.Model))}
    shards = [dsl.Dataset(uri=str(root / f"shard{i}")) for i in range(cfg.adapters.num_shards)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KFP_RUN_ID_ENV, "components-test")
        comps["prepare_data"](config_json=cj, data_version="v1", data=art["data"])
        comps["train_backbone"](config_json=cj, data=art["data"], backbone=art["backbone"])
        comps["compute_features"](config_json=cj, data=art["data"], backbone=art["backbone"], features=art["features"])
        assert comps["plan_shards"](config_json=cj) == list(range(len(shards)))
        for i, shard in enumerate(shards):
            comps["build_adapters"](config_json=cj, shard_index=i, data=art["data"], backbone=art["backbone"],
                                    features=art["features"], bank=shard)
        art["bank_shards"] = shards
        comps["train_generator"](config_json=cj, banks=shards, bank=art["bank"], generator=art["generator"])
        comps["band_generator"](config_json=cj, bank=art["bank"], band_generator=art["band_generator"])
        comps["retrain_ceiling"](config_json=cj, data=art["data"], backbone=art["backbone"], features=art["features"],
                                 ceiling=art["ceiling"])
        inputs = {k: art[k] for k in ("data", "backbone", "features", "bank", "generator", "band_generator", "ceiling")}
        comps["evaluate"](config_json=cj, **inputs, report=art["report"])
        comps["register_and_promote"](config_json=cj, data=art["data"], backbone=art["backbone"],
                                      generator=art["generator"], report=art["report"], system=art["system"])
        comps["finish_run"](config_json=cj, status=FinalStatus())
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    return {"art": art, "runs": {r.info.run_name: r for r in runs}, "cfg": cfg}
