"""Build the compared methods by key, from the stage inputs. The sweep only sees ``Method``."""

from __future__ import annotations

from padirec.adapters.adapter import Layout
from padirec.adapters.features import Features
from padirec.baselines.bank import BankView
from padirec.baselines.base import Method
from padirec.baselines.cmr import CMR
from padirec.baselines.deepprl import DeepPRL, history_context
from padirec.baselines.hypernetwork import Hypernetwork
from padirec.baselines.mmr import MMR
from padirec.baselines.padirec_method import PaDiRec
from padirec.baselines.retrain import Retrain
from padirec.baselines.soup import Soup
from padirec.config import Config
from padirec.data.dataset import PreparedData
from padirec.diffusion.generator import Generator
from padirec.errors import ConfigError

METHODS = ["padirec", "retrain", "soup", "mmr", "cmr", "hypernetwork", "deepprl"]


def build_methods(
    names: list[str],
    *,
    features: Features,
    data: PreparedData,
    layout: Layout,
    cfg: Config,
    bank: BankView | None = None,
    generator: Generator | None = None,
    retrain_from_bank: bool | None = None,
) -> dict[str, Method]:
    """``{key: Method}`` for ``names`` (in that order), not yet fitted.

    ``bank`` feeds Soup (pure-task adapters), the Hypernetwork (its training rows) and, when
    ``retrain_from_bank`` (default: the config's), Retrain's reuse of already-trained tasks.
    """
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ConfigError(f"evaluation.methods: unknown method(s) {unknown}; valid: {METHODS}")
    if len(set(names)) != len(names):
        raise ConfigError(f"evaluation.methods: repeated method in {names}")
    utilities = list(cfg.adapters.utilities)
    b = cfg.evaluation.baselines
    reuse = b.retrain_from_bank if retrain_from_bank is None else retrain_from_bank
    retrain = Retrain(features, utilities, layout, cfg.adapters, cfg.seed, bank=bank if reuse else None)
    out: dict[str, Method] = {}
    for name in names:
        if name == "padirec":
            if generator is None:
                raise ConfigError("method 'padirec' needs a trained generator (generator_dir)")
            out[name] = PaDiRec(features, utilities, layout, generator, cfg.seed)
        elif name == "retrain":
            out[name] = retrain
        elif name == "soup":
            pure = None if bank is None else bank.vertices()
            # a fresh Retrain (no bank): only reached when the bank lacks a pure task
            out[name] = Soup(features, utilities, layout, pure,
                             Retrain(features, utilities, layout, cfg.adapters, cfg.seed).prepare)
        elif name == "mmr":
            out[name] = MMR(features, utilities, cfg.evaluation.k, b.mmr_candidates)
        elif name == "cmr":
            out[name] = CMR(features, utilities, layout, cfg.adapters, cfg.seed, b.cmr_epochs, b.cmr_tasks_per_batch)
        elif name == "hypernetwork":
            if bank is None:
                raise ConfigError("method 'hypernetwork' needs the adapter bank (bank_dir)")
            rows = bank.training_rows()
            out[name] = Hypernetwork(features, utilities, layout, bank.params[rows], bank.weights[rows],
                                     b.hypernetwork_steps, b.hypernetwork_lr, b.hypernetwork_hidden, cfg.seed)
        elif name == "deepprl":
            ctx = history_context(data, cfg.data.max_len, b.deepprl_context)
            out[name] = DeepPRL(features, utilities, ctx, cfg.adapters, cfg.seed, b.deepprl_epochs,
                                b.deepprl_hidden, b.deepprl_lr, diversity_loss=b.deepprl_diversity_loss)
    return out
