"""A backbone of one's own is one file outside the repository, named in the config's ``plugins``:
it registers itself with its settings, its settings are range-checked like every other, and the
whole smoke pipeline runs with it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from padirec.backbones import BACKBONES, load_backbone
from padirec.config import config_from_json, config_to_json, load_config
from padirec.errors import ConfigError
from tests.tiny_pipeline import ROOT, run_tiny_pipeline

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


@pytest.fixture
def toy_plugin(tmp_path):
    """The toy backbone's file; the registry is as before once the test ends."""
    path = tmp_path / "toy_backbone.py"
    path.write_text(textwrap.dedent(TOY))
    before = dict(BACKBONES)
    yield str(path)
    BACKBONES.clear()
    BACKBONES.update(before)


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


@pytest.mark.slow  # every component once, as the tiny run (about 45 s)
def test_the_smoke_pipeline_runs_with_a_plugin_backbone(toy_plugin, tmp_path_factory):
    run = run_tiny_pipeline(tmp_path_factory, {"plugins": [toy_plugin], "backbone.model": "toy"})
    assert run["runs"]["train_backbone"].data.params["backbone.model"] == "toy"
    assert type(load_backbone(run["art"]["backbone"].path)).name == "toy"
    for name in ("report", "system"):  # evaluated, registered and promoted like any backbone
        assert json.loads((Path(run["art"][name].path) / "manifest.json").read_text())["kind"] == name
