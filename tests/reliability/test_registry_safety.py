"""Nothing takes ``champion`` by accident, against a real MLflow server: smoke and test configurations
register under their own name; a champion that fails the gate follows the configured policy; an
incomplete version is never promoted and never made; a version that is not what its tags say
(``padirec.tracking.provenance``) is never promoted; promotion errors are one line with exit 2."""

import dataclasses
import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from padirec.commands.cli import main
from padirec.config import Config, TrackingConfig, load_config
from padirec.data.config import DataConfig
from padirec.errors import ConfigError
from padirec.tracking.model_registry import (
    CHECKSUM_TAG,
    REQUIRED_TAGS,
    PromotionError,
    register_system,
)
from padirec.tracking.promotion import PRODUCTION_MODEL, GateThresholds, check_model_name
from padirec.tracking.promotion import promote as _promote
from tests.registry_versions import EXPERIMENT, empty_registry, genuine, head_to_head
from tests.servers import mlflow_server

ROOT = Path(__file__).resolve().parents[2]
MODEL = "padirec-test-safety"
GATE = GateThresholds(min_avg_hv=0.2, min_pearson_ra=0.5, min_pearson_rd=0.5)
STRICT = GateThresholds(min_avg_hv=0.2, min_pearson_ra=0.8, min_pearson_rd=0.5)

# starts servers or processes, or trains a stage: over the fast suite's budget (make test runs it)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("registry-safety")) as u:
        yield u


@pytest.fixture
def client(uri):
    return empty_registry(uri, MODEL)


def _tags(score=0.1, ra=0.9, key="eval-a"):
    return {"quality.score": score, "quality.avg_hv": 0.5, "quality.pearson_ra": ra, "quality.pearson_rd": 0.9,
            "evaluation_key": key, "data_checksum": f"data-{key}", CHECKSUM_TAG: "c" * 64, "kfp.run_id": "kfp-t"}


def _version(client, tags):
    """A version with just these tags: no run behind it (what only an incomplete version may be)."""
    return str(client.create_model_version(MODEL, source="s3://padirec-mlflow/models/t", tags=tags).version)


def _genuine(client, score=0.1, ra=0.9, key="eval-a", **kwargs):
    """A complete version with the run and files its tags claim (``tests/registry_versions.py``)."""
    return genuine(client, MODEL, score, ra=ra, key=key, **kwargs)


def promote(uri, model, version, gate, **kwargs):
    return _promote(uri, model, version, gate, experiment=EXPERIMENT, **kwargs)


def _champion(client):
    aliases = client.get_registered_model(MODEL).aliases
    return aliases.get("champion")


# ---------------------------------------------------------------- model names

def test_smoke_and_test_configurations_register_under_their_own_name():
    smoke = load_config(ROOT / "configs" / "smoke.yaml")
    assert smoke.data.source == "synthetic" and smoke.tracking.registered_model != PRODUCTION_MODEL
    for path in (ROOT / "configs").glob("*.yaml"):
        cfg = load_config(path)
        if cfg.data.source == "synthetic":
            assert cfg.tracking.registered_model != PRODUCTION_MODEL, path
    # whatever a test builds, synthetic data is refused the production name before anything is logged
    synthetic = dataclasses.replace(Config(), data=DataConfig(source="synthetic"), tracking=TrackingConfig())
    with pytest.raises(ConfigError, match="tracking.registered_model: 'padirec-recommender' is the production"):
        check_model_name(synthetic)
    check_model_name(dataclasses.replace(synthetic, tracking=TrackingConfig(registered_model=MODEL)))
    check_model_name(Config())  # MovieLens under the production name is what production does


# ---------------------------------------------------------------- a champion that fails the gate

@pytest.mark.parametrize("policy", ["keep", "flag", "clear"])
def test_a_champion_failing_the_gate_follows_the_policy(uri, client, policy):
    v1 = _genuine(client, 0.10, ra=0.6)
    assert promote(uri, MODEL, v1, GATE)["decision"] == "champion"
    # the gate is raised: re-checking the champion reports it and applies the policy
    r = promote(uri, MODEL, v1, STRICT, on_failing_champion=policy)
    assert r["decision"] == "rejected" and "pearson_ra 0.6000 < 0.8" in r["reason"]
    assert f"champion v{v1} fails the gate now" in r["champion_status"] and policy in r["champion_status"]
    tags = client.get_model_version(MODEL, v1).tags
    assert tags["gate"] == "failed"
    assert _champion(client) == (None if policy == "clear" else v1) and r["champion"] == (_champion(client) or "")
    assert ("champion_status" in tags) == (policy == "flag")
    # promoting another version re-checks the champion too; a passing peer replaces a failing champion
    v2 = _genuine(client, 0.05, ra=0.9)
    r2 = promote(uri, MODEL, v2, STRICT, on_failing_champion=policy)
    assert r2["decision"] == "champion" and _champion(client) == v2
    if policy == "clear":  # v1 lost the alias already
        assert "champion_status" not in r2
    else:
        assert r2["champion_status"].endswith(f"; v{v2} holds it now")
    assert promote(uri, MODEL, v2, STRICT, on_failing_champion=policy) == {
        "decision": "champion", "champion": v2, "reason": "already champion"}


def test_flag_is_removed_when_the_champion_passes_again(uri, client):
    v1 = _genuine(client, 0.10, ra=0.6)
    promote(uri, MODEL, v1, GATE)
    promote(uri, MODEL, v1, STRICT, on_failing_champion="flag")
    assert "champion_status" in client.get_model_version(MODEL, v1).tags
    assert promote(uri, MODEL, v1, GATE)["reason"] == "already champion"
    assert "champion_status" not in client.get_model_version(MODEL, v1).tags


def test_unknown_policy_is_refused(uri, client):
    with pytest.raises(PromotionError, match="on_failing_champion: 'drop' is not one of keep, flag, clear"):
        promote(uri, MODEL, "1", GATE, on_failing_champion="drop")
    for margin in (0, -0.01, float("nan")):  # a tie must never win
        with pytest.raises(PromotionError, match="promotion.margin: .* must be a number above 0"):
            promote(uri, MODEL, "1", GATE, margin=margin)


# ---------------------------------------------------------------- incomplete versions

def test_an_incomplete_version_is_marked_and_never_promoted(uri, client):
    # what SIGKILL between "Created version" and the tags used to leave: a READY version without tags
    bare = _version(client, {})
    r = promote(uri, MODEL, bare, GateThresholds(-1, -2, -2))  # even through an open gate
    assert r["decision"] == "rejected" and r["reason"].startswith("incomplete version (never promoted): missing")
    assert "nan" not in r["reason"] and _champion(client) is None
    assert client.get_model_version(MODEL, bare).tags["gate"] == "incomplete"
    one_missing = _version(client, {k: v for k, v in _tags().items() if k != "evaluation_key"})
    assert "evaluation_key" in promote(uri, MODEL, one_missing, GATE)["reason"] and _champion(client) is None
    nan = _version(client, {**_tags(), "quality.pearson_rd": "nan"})
    assert promote(uri, MODEL, nan, GATE)["reason"] == "quality gate failed: pearson_rd undefined"
    # a complete version becomes champion; an incomplete one put there by hand is policed
    good = _genuine(client)
    assert promote(uri, MODEL, good, GATE)["decision"] == "champion"
    client.set_registered_model_alias(MODEL, "champion", bare)
    r = promote(uri, MODEL, good, GATE, on_failing_champion="keep")
    assert r["decision"] == "kept" and "other data" in r["reason"]  # an unknown evaluation is not comparable
    assert r["champion_status"].startswith(f"champion v{bare} fails the gate now (incomplete version")
    # cleared, the alias goes back to the best complete version of the evaluation it last had
    r = promote(uri, MODEL, good, GATE, on_failing_champion="clear")
    assert r["decision"] == "champion" and _champion(client) == good
    assert "alias cleared" in r["champion_status"] and r["champion_status"].endswith(f"v{good} holds it now")


def test_clearing_a_failing_champion_lets_no_other_data_in_unbeaten(uri, client):
    v1 = _genuine(client, 0.10, ra=0.6, key="old-data")
    promote(uri, MODEL, v1, GATE)
    other = _genuine(client, 0.05, ra=0.9, key="new-data")
    r = promote(uri, MODEL, other, STRICT, on_failing_champion="clear")
    assert "alias cleared" in r["champion_status"] and _champion(client) is None
    assert r["decision"] == "kept" and f"the last champion v{v1} (alias cleared) was evaluated on other data" in r["reason"]
    assert promote(uri, MODEL, other, STRICT, on_failing_champion="clear")["decision"] == "kept"  # idempotent
    # the cleared champion is still the one to beat, head to head on the new data
    tie = head_to_head(gain=0.0, lower=-0.01)
    assert promote(uri, MODEL, other, STRICT, compare=tie)["decision"] == "kept" and tie.calls == [(other, v1)]
    assert _champion(client) is None
    assert promote(uri, MODEL, other, STRICT, compare=head_to_head(gain=0.05, lower=0.02))["decision"] == "champion"
    assert _champion(client) == other


# ---------------------------------------------------------------- versions that are not what their tags say

@pytest.mark.parametrize(("forged", "why"), [
    ({"claim": {"quality.score": 0.9}}, "its tags claim score 0.9 but its run's evaluation gives 0.1"),
    ({"experiment": "elsewhere"}, "is not a run of the pipeline's experiment"),
    ({"claim": {"evaluation_key": "0" * 16}}, "its evaluation key or data checksum is not the one"),
    ({"claim": {CHECKSUM_TAG: "d" * 64}}, "its model's files do not have the system checksum"),
])
def test_a_version_whose_tags_lie_is_never_champion(uri, client, forged, why):
    honest = _genuine(client, 0.1)
    assert promote(uri, MODEL, honest, GATE)["decision"] == "champion"
    liar = _genuine(client, 0.1, **forged)
    r = promote(uri, MODEL, liar, GATE)
    assert r["decision"] == "rejected" and r["reason"].startswith(f"untrusted: v{liar}") and why in r["reason"]
    assert client.get_model_version(MODEL, liar).tags["gate"] == "untrusted" and _champion(client) == honest
    assert "challenger" not in r  # an untrusted version is not the one to shadow either


def test_registration_never_makes_an_incomplete_version(uri, client, tmp_path):
    run = MlflowClient(uri)
    exp = run.get_experiment_by_name("safety") or run.get_experiment(run.create_experiment("safety"))
    run_id = run.create_run(exp.experiment_id).info.run_id
    system = tmp_path / "system"
    system.mkdir()
    (system / "w.bin").write_text("x")
    given = {k: v for k, v in _tags().items() if k not in ("kfp.run_id", CHECKSUM_TAG)}
    for broken in ({k: v for k, v in given.items() if k != "data_checksum"}, {**given, "quality.avg_hv": float("nan")}):
        with pytest.raises(PromotionError, match="cannot register 'padirec-test-safety': missing or undefined"):
            register_system(uri, run_id, system, MODEL, broken, "kfp-x")
    assert client.search_model_versions(f"name = '{MODEL}'") == []
    v = register_system(uri, run_id, system, MODEL, given, "kfp-x")
    assert set(REQUIRED_TAGS) <= set(client.get_model_version(MODEL, v).tags)


# ---------------------------------------------------------------- errors are one line

@pytest.mark.parametrize(("args", "message"), [
    (["--version", "999"], f"padirec: error: model '{MODEL}' at URI has no version 999 (versions 1 to 1)"),
    (["--version", "abc"], "padirec: error: version 'abc': a model version is a whole number from 1"),
    (["--version", "0"], "padirec: error: version '0': a model version is a whole number from 1"),
    (["--version", "1", "--model", "no-such-model"], "padirec: error: no registered model 'no-such-model' at URI"),
])
def test_promotion_errors_are_one_line_with_exit_2(uri, client, capsys, args, message):
    _genuine(client)
    capsys.readouterr()  # MLflow's own log line of the version created above
    code = main(["promote", "--config", str(ROOT / "configs" / "smoke.yaml"), "--set", f"tracking.uri={uri}",
                 "--set", f"tracking.experiment={EXPERIMENT}", "--model", MODEL, *args])
    err = capsys.readouterr().err
    assert code == 2 and err.replace(uri, "URI") == message + "\n"


def test_promote_without_a_store_says_so_and_creates_none(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code = main(["promote", "--config", str(ROOT / "configs" / "smoke.yaml"), "--set", f"run_dir={tmp_path}",
                 "--version", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("padirec: error: no MLflow store at sqlite:///") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_promote_compares_other_data_only_with_data(uri, client, capsys, tmp_path, synthetic_prepared):
    """``--allow-other-data`` is gone: a version of other data is compared head to head on the
    folder ``--data`` names, or kept. (The real head-to-head: tests/tracking/test_head_to_head.py.)"""
    v1 = _genuine(client, 0.3, key="old")
    promote(uri, MODEL, v1, GATE)
    v2 = _genuine(client, 0.1, key="new")
    capsys.readouterr()
    argv = ["promote", "--config", str(ROOT / "configs" / "smoke.yaml"), "--set", f"tracking.uri={uri}",
            "--set", f"tracking.experiment={EXPERIMENT}", "--model", MODEL, "--version", v2]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] == "kept" and "padirec promote --data DIR" in out["reason"]
    with pytest.raises(SystemExit) as e:
        main([*argv, "--allow-other-data"])
    assert e.value.code == 2 and "unrecognized arguments: --allow-other-data" in capsys.readouterr().err
    assert main([*argv, "--set", "promotion.allow_other_data=true"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "promotion.allow_other_data was retired" in err
    assert main([*argv, "--data", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no manifest" in err
    # these versions hold no servable model: the head-to-head fails, and the champion stays
    assert main([*argv, "--data", str(synthetic_prepared)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] == "kept" and "head to head against champion" in out["reason"] and "failed" in out["reason"]
    assert _champion(client) == v1
