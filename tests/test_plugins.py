"""A backbone, a data source or a utility of one's own is one file outside the repository, named in
the config's ``plugins`` (or ``PADIREC_PLUGINS``): it registers itself with its settings, its settings
are range-checked like every other, and the whole smoke pipeline runs with it, no other file touched."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from padirec.adapters.utilities import UTILITIES
from padirec.backbones import BACKBONES, load_backbone
from padirec.config import config_from_json, config_to_json, load_config
from padirec.data.registry import SOURCES
from padirec.errors import ConfigError
from tests.fixtures import ROOT, run_tiny_pipeline

SMOKE = ROOT / "configs" / "smoke.yaml"

TOY = '''
"""A toy backbone: the user is the running mean of their items' embeddings, mixed by one layer."""

from dataclasses import dataclass

from torch import nn

from padirec.backbones.base import Backbone, init_embeddings, register_backbone
from padirec.core.typed_config import setting


@dataclass
class ToyConfig:
    scale: float = setting(1.0, range="(0, inf)")  # multiplies the running mean


@register_backbone
class Toy(Backbone):
    name = "toy"
    config_class = ToyConfig

    def __init__(self, num_items, cfg, max_len):
        super().__init__(num_items, cfg.dim)
        self.cfg, self.max_len = cfg, max_len
        self.scale = cfg.settings_for(self.name).scale
        self.mix = nn.Linear(cfg.dim, cfg.dim)
        init_embeddings(self.item_embedding)

    def encode(self, seqs, times):
        x = self.item_embedding(seqs).cumsum(1)
        count = (seqs != 0).cumsum(1).clamp(min=1).unsqueeze(-1)
        return self.mix(self.scale * x / count)
'''


TOY_SOURCE = '''
"""A toy data source: the synthetic ring walk under settings of its own."""

from dataclasses import dataclass

from padirec.core.typed_config import setting
from padirec.data.base import Source, register_source
from padirec.data.synthetic import generate


@dataclass
class ToySourceSettings:
    num_users: int = setting(80, range="[10, inf)")
    num_items: int = setting(40, range="[10, inf)")


@register_source
class ToySource(Source):
    name = "toy-ring"
    config_class = ToySourceSettings

    @staticmethod
    def load(data, settings):
        return generate(num_users=settings.num_users, num_items=settings.num_items, num_categories=5, seed=1)
'''

TOY_UTILITY = '''
"""A toy utility: a margin between the positive and each negative, measured by HR@k."""

from dataclasses import dataclass

import torch.nn.functional as F

from padirec.core.typed_config import setting
from padirec.core.utilities import Utility, register_utility


@dataclass
class HitSettings:
    margin: float = setting(1.0, range="[0, inf)")


@register_utility
class Hit(Utility):
    name, metric = "hit", "hr@{k}"
    config_class = HitSettings

    def loss(self, b):
        gap = b.scores[..., :1] - b.scores[..., 1:b.num_train]  # (N, B, k)
        return F.softplus(self.settings.margin - gap).mean((-1, -2))
'''


@pytest.fixture
def registries():
    """Every registry a plugin adds to, as it was, once the test ends."""
    saved = [(r, dict(r)) for r in (BACKBONES, SOURCES, UTILITIES)]
    yield
    for r, before in saved:
        r.clear()
        r.update(before)


@pytest.fixture
def toy_plugin(tmp_path, registries):
    """The toy backbone's file."""
    path = tmp_path / "toy_backbone.py"
    path.write_text(textwrap.dedent(TOY))
    return str(path)


@pytest.fixture
def toy_plugins(tmp_path, registries):
    """A toy backbone, a toy source and a toy utility, each its own file in ``tmp_path``."""
    paths = []
    for name, text in (("toy_backbone", TOY), ("toy_source", TOY_SOURCE), ("toy_utility", TOY_UTILITY)):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
        paths.append(str(tmp_path / f"{name}.py"))
    return paths


TOYS = {"backbone.model": "toy", "data.source": "toy-ring", "adapters.utilities": ["accuracy", "diversity", "hit"],
        "adapters.grid_size": 3}


def test_a_plugin_backbone_is_configured_like_a_built_in(toy_plugin):
    cfg = load_config(SMOKE, {"plugins": [toy_plugin], "backbone.model": "toy", "backbone.models.toy.scale": 0.5})
    assert cfg.backbone.settings_for("toy").scale == 0.5
    assert config_from_json(config_to_json(cfg)) == cfg  # what every pipeline step reads
    with pytest.raises(ConfigError, match=r"backbone\.models\.toy\.scale: 0.0 is outside \(0, inf\)"):
        load_config(SMOKE, {"plugins": [toy_plugin], "backbone.models.toy.scale": 0})


def test_an_unknown_backbone_or_plugin_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="backbone.model: unknown 'toy'; valid: sasrec, gru4rec"):
        load_config(SMOKE, {"backbone.model": "toy"})
    with pytest.raises(ConfigError, match="is not a file"):
        load_config(SMOKE, {"plugins": [str(tmp_path / "missing.py")]})
    (tmp_path / "broken.py").write_text("raise RuntimeError('no')\n")
    with pytest.raises(ConfigError, match="failed to import: RuntimeError: no"):
        load_config(SMOKE, {"plugins": [str(tmp_path / "broken.py")]})


def test_a_plugin_source_and_utility_are_configured_like_built_ins(toy_plugins):
    cfg = load_config(SMOKE, {"plugins": toy_plugins, **TOYS, "data.sources.toy-ring.num_users": 50,
                              "adapters.utility_settings.hit.margin": 0.5})
    assert cfg.data.settings_for("toy-ring").num_users == 50
    assert cfg.adapters.utility_settings["hit"].margin == 0.5
    assert config_from_json(config_to_json(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"data\.sources\.toy-ring\.num_users: 5 is outside \[10, inf\)"):
        load_config(SMOKE, {"plugins": toy_plugins, "data.sources.toy-ring.num_users": 5})
    with pytest.raises(ConfigError, match=r"adapters\.utility_settings\.hit\.margin: -1.0 is outside \[0, inf\)"):
        load_config(SMOKE, {"plugins": toy_plugins, "adapters.utility_settings.hit.margin": -1})


def test_an_unknown_source_or_utility_is_a_one_line_error():
    with pytest.raises(ConfigError, match="data.source: unknown 'toy-ring'; valid: ml-100k"):
        load_config(SMOKE, {"data.source": "toy-ring"})
    with pytest.raises(ConfigError, match="adapters.utilities: unknown 'hit'; valid: accuracy"):
        load_config(SMOKE, {"adapters.utilities": ["accuracy", "hit"]})


@pytest.mark.slow  # every component once, as the tiny run, three utilities
def test_the_smoke_pipeline_runs_with_a_plugin_backbone_source_and_utility(toy_plugins, tmp_path_factory):
    run = run_tiny_pipeline(tmp_path_factory, {"plugins": toy_plugins, **TOYS})
    params = run["runs"]["train_backbone"].data.params
    assert params["backbone.model"] == "toy"
    assert type(load_backbone(run["art"]["backbone"].path)).name == "toy"
    report = json.loads((Path(run["art"]["report"].path) / "report.json").read_text())
    assert report["utilities"] == ["accuracy", "diversity", "hit"]
    assert json.loads((Path(run["art"]["data"].path) / "manifest.json").read_text())["config"]["source"] == "toy-ring"
    for name in ("report", "system"):
        assert json.loads((Path(run["art"][name].path) / "manifest.json").read_text())["kind"] == name
