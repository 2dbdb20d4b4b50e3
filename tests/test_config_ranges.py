"""Every setting is range- and choice-checked when the config loads, before any work starts; a bad
one is a one-line error that names the key. Property-based: every numeric field (each registered
backbone's and method's settings included), every value outside its range, and a value of the
wrong type."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from padirec.config import Config, load_config
from padirec.config.checks import lookup, ranges
from padirec.errors import ConfigError
from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
INTERVALS = ranges(Config())
RANGES = sorted(INTERVALS)


def numeric_fields() -> set[str]:
    """Every int or float setting of the config, the sections by registered name included."""
    out: set[str] = set()

    def walk(settings, prefix: str) -> None:
        hints = typing.get_type_hints(type(settings))
        for f in dataclasses.fields(settings):
            value = getattr(settings, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            elif isinstance(value, dict):
                for name, section in value.items():
                    if dataclasses.is_dataclass(section):
                        walk(section, f"{prefix}{f.name}.{name}.")
            elif hints[f.name] in (int, float):
                out.add(prefix + f.name)

    walk(Config(), "")
    return out


def test_every_number_has_a_range_and_every_range_a_setting():
    assert numeric_fields() == set(RANGES)


@pytest.mark.parametrize("path", [SMOKE, *sorted((ROOT / "configs").glob("*.yaml"))])
def test_shipped_configs_pass(path):
    load_config(path)


def _outside(key: str) -> st.SearchStrategy:
    iv = INTERVALS[key]
    bad = [st.just(math.nan), st.just(math.inf), st.just(-math.inf)]
    if math.isfinite(iv.low):
        bad.append(st.just(iv.low) if iv.low_open else st.floats(max_value=iv.low, exclude_max=True,
                                                                  allow_nan=False, min_value=iv.low - 1e6))
    if math.isfinite(iv.high):
        bad.append(st.just(iv.high) if iv.high_open else st.floats(min_value=iv.high, exclude_min=True,
                                                                    allow_nan=False, max_value=iv.high + 1e6))
    return st.one_of(bad)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_value_outside_its_range_names_the_key(data):
    key = data.draw(st.sampled_from(RANGES))
    value = data.draw(_outside(key))
    field_is_int = isinstance(_default(key), int)
    if field_is_int and math.isfinite(value):
        value = math.floor(value) if value < INTERVALS[key].low else math.ceil(value)
        if value in INTERVALS[key]:  # rounding brought it back inside
            return
    with pytest.raises(ConfigError, match=re.escape(key.rsplit(".", 1)[-1]) + ": "):  # the type or the range
        load_config(SMOKE, {key: value})


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(RANGES), value=st.one_of(st.text(max_size=5), st.booleans(), st.lists(st.integers())))
def test_a_value_of_the_wrong_type_names_the_key(key, value):
    with pytest.raises(ConfigError, match=key.rsplit(".", 1)[-1]):
        load_config(SMOKE, {key: value})


def _default(key: str):
    return lookup(Config(), key)


@pytest.mark.parametrize("override, needle", [
    ({"backbone.num_heads": 3}, "backbone.num_heads: 3 does not divide backbone.dim"),
    ({"adapters.num_shards": 1000}, "adapters.num_shards: 1000 shards for"),
    ({"generator.num_inference_steps": 60}, "generator.num_inference_steps: 60 is more than"),
    ({"generator.beta_start": 0.5, "generator.beta_end": 0.1}, "generator.beta_start: 0.5 is not below"),
    ({"device": "tpu"}, "device: 'tpu' is not"),
    ({"name": "../../x"}, "name: '../../x' must be a plain folder name"),
    ({"name": "a/b"}, "name: 'a/b'"),
    ({"adapters.utilities": ["accuracy"]}, "adapters.utilities"),
])
def test_settings_at_odds_with_each_other(override, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_config(SMOKE, override)


def test_command_line_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    cases = [
        (["run", "--config", str(tmp_path)], "is a folder, not a YAML file"),
        (["run", "--config", str(SMOKE), "--set", f"run_dir={tmp_path / 'file'}"], "is a file, not a folder"),
        (["run", "--config", str(SMOKE), "--set", "backbone.epochs=-1"], "backbone.epochs: -1 is outside"),
        (["compile", "--out", str(tmp_path / "p.yaml"), "--image", "padirec:1-x", "--gpu-count", "-1"],
         "--gpu-count -1"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("padirec: error:") and needle in err[0], (argv, err)


def test_numbers_follow_yaml_1_2(tmp_path):
    from padirec.commands.cli import _overrides

    assert _overrides(["backbone.lr=1e-3", "backbone.epochs=5"]) == {"backbone.lr": 0.001, "backbone.epochs": 5}
    (tmp_path / "c.yaml").write_text("backbone:\n  lr: 3e-4\n")
    assert load_config(tmp_path / "c.yaml").backbone.lr == 3e-4
