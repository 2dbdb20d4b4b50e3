"""A new method is one file: this one. It declares its key, its settings and how it is built,
registers itself, and the config, the evaluation stage and the report take it without any other
change."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch

from padirec.config import config_from_dict
from padirec.errors import ConfigError
from padirec.evaluation.report import validate_report
from padirec.evaluation.stage import evaluate_stage
from padirec.evaluation.sweep import SplitEvaluator
from padirec.methods.base import METHODS, Method, MethodContext, register
from tests.fixtures import evaluation_inputs


@dataclass
class BareConfig:
    scale: float = 1.0  # multiplies the backbone's scores (a positive scale keeps the ranking)


class Bare(Method):
    """The backbone without any adapter, whatever the task: the floor a controllable method beats."""

    key = "bare"
    config_class = BareConfig

    def __init__(self, features, utilities, scale: float) -> None:
        super().__init__(features, utilities)
        self.scale = scale

    @classmethod
    def build(cls, ctx: MethodContext, settings: BareConfig) -> Bare:
        return cls(ctx.features, ctx.utilities, settings.scale)

    def prepare(self, weights) -> torch.Tensor:
        return self.task_weights(weights)

    def scores(self, prepared, split: str) -> torch.Tensor:
        return self.scale * self.features.split(split).h @ self.features.item_embedding.T


@pytest.fixture
def bare():
    """``@register`` on the class in ``padirec/methods/bare.py`` would do this at import; here the
    registration is undone after the test, so the other tests see the usual methods."""
    register(Bare)
    yield Bare
    del METHODS[Bare.key]


def test_a_registered_method_runs_through_config_stage_and_report(tiny, tmp_path, bare):
    raw = copy.deepcopy(tiny.cfg.to_dict())
    raw["methods"]["bare"] = {"scale": 2.0}
    raw["evaluation"]["methods"] = ["bare", "retrain", "padirec"]
    cfg = config_from_dict(raw)
    assert cfg.methods["bare"] == BareConfig(scale=2.0)
    report = evaluate_stage(evaluation_inputs(tiny, cfg, tmp_path), tmp_path / "eval", cfg)
    validate_report(report)
    assert list(report["methods"]) == ["bare", "retrain", "padirec"] and "bare" in report["summary"]
    # the task's own objective beside the paper's: Retrain is the reference, so its regret is 0
    assert report["summary"]["retrain"]["regret"] == 0.0 and report["summary"]["bare"]["reward"] is not None
    assert len(report["summary"]["bare"]["regret_per_task"]) == len(report["tasks"])
    assert report["config"]["methods"]["bare"] == {"scale": 2.0}
    f = tiny.features
    backbone = SplitEvaluator(f, "test")(f.test.h @ f.item_embedding.T)
    assert report["methods"]["bare"][0]["ndcg@10"] == pytest.approx(backbone["ndcg@10"])
    assert "| bare |" in (tmp_path / "eval" / "report.md").read_text()


def test_an_unregistered_method_is_refused_at_load(tiny):
    raw = copy.deepcopy(tiny.cfg.to_dict())
    raw["evaluation"]["methods"] = ["bare"]
    with pytest.raises(ConfigError, match="evaluation.methods: unknown 'bare'"):
        config_from_dict(raw)
    raw = copy.deepcopy(tiny.cfg.to_dict())
    raw["methods"]["bare"] = {}
    with pytest.raises(ConfigError, match="methods: unknown method"):
        config_from_dict(raw)
