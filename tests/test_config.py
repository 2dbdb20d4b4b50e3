"""Typed configuration: every shipped config loads; bad keys and types are named."""

from pathlib import Path

import pytest

from padirec.config import Config, config_from_json, config_to_json, load_config
from padirec.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / "configs" / name)
    assert isinstance(cfg, Config)


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "c.yaml").write_text("backbone:\n  modle: sasrec\n")
    with pytest.raises(ConfigError, match="unknown key.*'modle'.*BackboneConfig"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize("text,needle", [
    ("seed: abc\n", "seed: expected an integer"),
    ("backbone:\n  lr: fast\n", "backbone: lr: expected a number"),
    ("data:\n  source: netflix\n", "data.source: unknown 'netflix'; valid: ml-100k, ml-1m"),
    ("adapters:\n  utilities: accuracy\n", "adapters: utilities: expected a list"),
    ("- 1\n- 2\n", "top level must be a mapping"),
    ("seed: [\n", "not valid YAML"),
])
def test_wrong_types_are_named(tmp_path, text, needle):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
        load_config(tmp_path / "c.yaml")


BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))  # 9^10 values in 600 bytes


@pytest.mark.parametrize("content,needle", [
    (b"seed: [1\nname: x\n", r"c.yaml: not valid YAML: expected ',' or '\]', but got ':' at line 2, column 5$"),
    (b"seed: !!python/object/apply:os.system ['true']\n", r"c.yaml: not valid YAML: .*python/object/apply:os.system.*never run"),
    (b"seed: 1\nname: x\nseed: 2\n", "c.yaml: not valid YAML: the key 'seed' is given twice at line 3, column 1$"),
    (b"\xde\xad\xbe\xef" * 100, "c.yaml: not a YAML text file"),
    (BOMB.encode(), "c.yaml: its aliases expand to more than 100,000 values"),
], ids=["bad YAML", "python tag", "key twice", "binary", "alias bomb"])
def test_a_config_that_is_not_plain_yaml_is_one_line(tmp_path, content, needle):
    (tmp_path / "c.yaml").write_bytes(content)
    with pytest.raises(ConfigError, match=needle) as e:
        load_config(tmp_path / "c.yaml")
    assert "\n" not in str(e.value)


def test_a_config_that_is_not_a_file_is_named():
    with pytest.raises(ConfigError, match="config /dev/zero is not a regular file"):
        load_config("/dev/zero")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(ROOT / "configs")


@pytest.mark.parametrize("key,needle", [
    ("seed.x", "--set seed.x: seed is a value \\(0\\), not a section"),
    ("backbone.epochs.x.y", "--set backbone.epochs.x.y: backbone.epochs is a value"),
])
def test_a_set_key_nested_into_a_value_is_named(key, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(ROOT / "configs" / "smoke.yaml", {key: 1})


@pytest.mark.parametrize("key,value,needle", [
    ("backbone.model", "bert4rec", "backbone.model: unknown 'bert4rec'; valid: sasrec"),
    ("evaluation.methods", ["padirec", "llm"], "evaluation.methods: unknown 'llm'"),
    ("adapters.utilities", ["accuracy", "serendipity"], "adapters.utilities: unknown 'serendipity'"),
    ("generator.conditioning", "film", "generator.conditioning: unknown 'film'"),
    ("generator.sampler", "euler", "generator.sampler: unknown 'euler'"),
    ("generator.prediction", "v", "generator.prediction: unknown 'v'"),
    ("generator.loss_weighting", "snr", "generator.loss_weighting: unknown 'snr'"),
    ("generator.normalization", "global", "generator.normalization: unknown 'global'"),
    ("adapters.candidates", "all", "adapters.candidates: unknown 'all'"),
    ("methods.modt4r.diversity_reward", "mse", "methods.modt4r.diversity_reward: unknown 'mse'; valid: category, embedding"),
    ("methods.llm.epochs", 1, "methods: unknown method.*'llm'"),
    ("methods.cmr.epoch", 1, "methods.cmr: unknown key.*'epoch'.*CMRConfig"),
    ("generator.timesteps", 50, "unknown key.*'timesteps'.*num_train_timesteps"),
    ("generator.size", "huge", "generator.size: unknown 'huge'"),
    ("data.source", "ml-20m", "data.source: unknown 'ml-20m'; valid: ml-100k"),
    ("device", "tpu", "device: 'tpu' is not"),
    ("promotion.on_failing_champion", "delete", "promotion.on_failing_champion: unknown 'delete'; valid: keep, flag, clear"),
    # retired: a version of other data is compared head to head now (README, "Promotion policy")
    ("promotion.allow_other_data", True, "promotion.allow_other_data was retired: .* head to head"),
    ("promotion.margin", 0, r"promotion.margin: 0.0 is outside \(0, 1\]"),  # a tie must never win
    ("promotion.confidence", 1, r"promotion.confidence: 1.0 is outside \(0, 1\)"),
])
def test_unknown_names_fail_at_load_time(key, value, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(ROOT / "configs" / "smoke.yaml", {key: value})


@pytest.mark.parametrize("key,value,needle", [
    # the last step registers and promotes padirec: a sweep without it would fail there, hours later
    ("evaluation.methods", ["retrain", "mmr"], r"evaluation.methods: \['retrain', 'mmr'\] lacks 'padirec'"),
    # smoke.yaml is synthetic data: never the production model's name
    ("tracking.registered_model", "padirec-recommender", "tracking.registered_model: 'padirec-recommender' is the production"),
    ("tracking.registered_model", "it's", "tracking.registered_model: \"it's\" must be a plain name"),
    ("run_dir", "runs/100%", "run_dir: 'runs/100%' holds one of"),
    ("run_dir", "runs?mode=ro", "run_dir: 'runs\\?mode=ro' holds one of"),
])
def test_cross_field_rules_fail_at_load_time(key, value, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(ROOT / "configs" / "smoke.yaml", {key: value})


def test_overrides_and_json_round_trip():
    cfg = load_config(ROOT / "configs" / "smoke.yaml", {"backbone.epochs": 1, "seed": 7, "methods.cmr.epochs": 2})
    assert cfg.backbone.epochs == 1 and cfg.seed == 7 and cfg.methods["cmr"].epochs == 2
    assert cfg.methods["hypernetwork"].steps == 100  # from smoke.yaml
    assert config_from_json(config_to_json(cfg)) == cfg


def test_every_registered_method_has_its_section_and_runs_by_default():
    """Every method has its section; every one runs by default but those left out of the roster,
    each with the finding that left it out."""
    from padirec.methods.registry import METHODS, left_out

    cfg = Config()
    assert list(cfg.methods) == list(METHODS)
    assert cfg.evaluation.methods == [k for k in METHODS if k not in left_out()]
    assert all(note for note in left_out().values())
    assert all(isinstance(cfg.methods[k], cls.config_class) for k, cls in METHODS.items())


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("no/such.yaml")


@pytest.mark.parametrize("text,needle", [
    ("{not json", "config_json is not valid JSON"),
    ('{"seed": "x"}', "seed: expected an integer"),
    ('{"backbone": {"model": "nope"}}', "backbone.model: unknown 'nope'"),
])
def test_bad_pipeline_parameter(text, needle):
    with pytest.raises(ConfigError, match=needle):
        config_from_json(text)


def test_a_set_value_that_is_not_yaml_is_one_line(tmp_path, capsys):
    from padirec.commands.cli import main

    assert main(["data", "--out", str(tmp_path / "o"), "--config", str(ROOT / "configs" / "smoke.yaml"),
                 "--set", "seed=[1"]) == 2
    assert capsys.readouterr().err == "padirec: error: --set seed: not valid YAML: expected ',' or ']', " \
        "but got '<stream end>' at line 1, column 3\n"


@pytest.mark.parametrize("value,needle", [
    ({"num_users": 0}, r"data.synthetic.num_users: 0 is outside \[1, inf\)"),
    ({"noise": 2}, r"data.synthetic.noise: 2 is outside \[0, 1\]"),
    ({"min_len": 40}, "data.synthetic.min_len: 40 is more than max_len 30"),
    ({"nusers": 3}, "synthetic: unknown key.*'nusers'.*valid keys: max_len"),
    ({"seed": "x"}, "synthetic: seed: expected an integer"),
    (3, "synthetic: expected a mapping"),
])
def test_synthetic_settings_are_checked_at_load(value, needle):
    import inspect
    from dataclasses import fields

    from padirec.data.config import SyntheticSettings
    from padirec.data.synthetic import generate

    assert all("range" in f.metadata for f in fields(SyntheticSettings))  # every setting has a range
    # the settings are generate's keyword arguments, with its defaults
    assert {f.name: f.default for f in fields(SyntheticSettings)} == {
        n: p.default for n, p in inspect.signature(generate).parameters.items()}
    with pytest.raises(ConfigError, match=needle):
        load_config(ROOT / "configs" / "smoke.yaml", {"data.synthetic": value})


def test_choices_are_declared_one_way():
    """A setting's allowed values are ``setting(choices=...)`` metadata, read by the one checker
    (``padirec.config.checks``); a ``Literal`` type would be a second checker in ``from_dict``."""
    from pathlib import Path

    import padirec

    root = Path(padirec.__file__).parent
    found = [f"{p.relative_to(root)}:{i}" for p in sorted(root.rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if "Literal[" in line]
    assert not found, found
