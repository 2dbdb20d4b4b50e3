"""Promotion through the quality gate, against a real MLflow server: the gate, beating the
champion by the margin (a tie never does), idempotence, two promotions racing, a champion evaluated
on other data (compared head to head: ``tests/tracking/test_head_to_head.py`` runs the real one);
and registration under KFP retries (one version per pipeline run, even when an attempt died between
registering and promoting). Registry safety (policies, incomplete versions, versions that are not
what their tags say, errors): tests/reliability/."""

import dataclasses
import json
import threading

import pytest
from mlflow import MlflowClient

from padirec.config import Config, TrackingConfig
from padirec.runtime.artifacts import write_manifest
from padirec.tracking import KFP_RUN_ID_ENV, step_tracker
from padirec.tracking.model_registry import CHECKSUM_TAG, register_system
from padirec.tracking.promotion import KEY_TAG, GateThresholds
from padirec.tracking.promotion import promote as _promote
from padirec.tracking.quality import quality
from padirec.tracking.registration import register_and_promote_stage, register_stage
from tests.registry_versions import EXPERIMENT, empty_registry, genuine, head_to_head, key_of
from tests.servers import mlflow_server

MODEL = "padirec-test"
GATE = GateThresholds(min_avg_hv=0.2, min_pearson_ra=0.5, min_pearson_rd=0.5)

# starts servers or processes, or trains a stage: over the fast suite's budget (make test runs it)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("registry")) as u:
        yield u


def complete_tags(score=0.1, avg_hv=0.5, ra=0.9, rd=0.9, key="eval-a"):
    """Every tag registration writes (``REQUIRED_TAGS``)."""
    return {"quality.score": score, "quality.avg_hv": avg_hv, "quality.pearson_ra": ra, "quality.pearson_rd": rd,
            "evaluation_key": key, "data_checksum": f"data-{key}", CHECKSUM_TAG: "c" * 64, "kfp.run_id": "kfp-test"}


def _version(client, score, avg_hv=0.5, ra=0.9, rd=0.9, key="eval-a", model=MODEL):
    return genuine(client, model, score, avg_hv, ra, rd, key=key)


def promote(uri, model, version, gate, **kwargs):  # the registry tests' experiment (tests/registry_versions.py)
    return _promote(uri, model, version, gate, experiment=EXPERIMENT, **kwargs)


@pytest.fixture
def client(uri):
    return empty_registry(uri, MODEL)


def test_gate_rejects_with_a_reason(uri, client):
    v = _version(client, 0.1, ra=0.2)
    result = promote(uri, MODEL, v, GATE)
    assert result["decision"] == "rejected" and "pearson_ra 0.2000 < 0.5" in result["reason"]
    assert client.get_model_version(MODEL, v).tags["gate"] == "failed"
    assert not client.get_registered_model(MODEL).aliases


def test_first_champion_then_idempotent(uri, client):
    v = _version(client, 0.10)
    first = promote(uri, MODEL, int(v), GATE)  # an int version, as the registry sometimes hands back
    assert first["decision"] == "champion" and first["reason"] == "passed the gate; first champion"
    again = promote(uri, MODEL, v, GATE)
    assert again == {"decision": "champion", "champion": v, "reason": "already champion"}
    assert client.get_model_version_by_alias(MODEL, "champion").version == v


def test_better_takes_over_worse_does_not(uri, client):
    v1 = _version(client, 0.10)
    promote(uri, MODEL, v1, GATE)
    v2 = _version(client, 0.08)
    r = promote(uri, MODEL, v2, GATE)
    assert r["decision"] == "kept" and "does not beat champion" in client.get_model_version(MODEL, v2).tags["promotion"]
    v3 = _version(client, 0.12)
    r3 = promote(uri, MODEL, v3, GATE)
    assert r3["decision"] == "champion" and r3["reason"].startswith(f"passed the gate and beats v{v1} by the margin")
    assert client.get_model_version_by_alias(MODEL, "champion").version == v3


def test_a_tie_never_moves_the_champion(uri, client):
    """A re-run that hits the cache registers a copy of the champion: same data, same score. It
    used to take ``champion`` (ties went to the newer version); now only a gain above the margin does."""
    v1 = genuine(client, MODEL, 0.10, content="the champion's system")
    promote(uri, MODEL, v1, GATE)
    copy = genuine(client, MODEL, 0.10, content="the champion's system")
    r = promote(uri, MODEL, copy, GATE)
    assert r["decision"] == "kept" and r["champion"] == v1 and "does not beat champion" in r["reason"]
    assert "challenger" not in r  # a copy is nothing to shadow the champion with
    assert promote(uri, MODEL, copy, GATE) == r  # idempotent
    within = _version(client, 0.1009)  # better, but by less than the margin (0.001)
    assert promote(uri, MODEL, within, GATE)["champion"] == v1
    assert promote(uri, MODEL, _version(client, 0.1009), GATE, margin=0.0005)["decision"] == "champion"
    assert _aliases(client)["champion"] != v1


def _aliases(client):
    return {a: str(client.get_model_version_by_alias(MODEL, a).version) for a in client.get_registered_model(MODEL).aliases}


def test_challenger_is_the_newest_version_that_passes_without_beating_the_champion(uri, client):
    v1 = _version(client, 0.10)
    assert "challenger" not in promote(uri, MODEL, v1, GATE)  # no version besides the champion
    v2 = _version(client, 0.08)
    r2 = promote(uri, MODEL, v2, GATE)
    assert r2["decision"] == "kept" and r2["challenger"] == v2
    assert _aliases(client) == {"champion": v1, "challenger": v2}
    v3 = _version(client, 0.09, ra=0.2)  # fails the gate: never the challenger
    assert promote(uri, MODEL, v3, GATE)["challenger"] == v2
    v4 = _version(client, 0.09)
    assert promote(uri, MODEL, v4, GATE)["challenger"] == v4  # the newest passing version
    assert promote(uri, MODEL, v2, GATE)["challenger"] == v4  # re-promoting an older one changes nothing
    assert _aliases(client) == {"champion": v1, "challenger": v4}
    v5 = _version(client, 0.12)
    r5 = promote(uri, MODEL, v5, GATE)
    assert r5["decision"] == "champion" and "challenger" not in r5  # nothing newer than the new champion
    assert _aliases(client) == {"champion": v5}


def test_a_version_on_other_data_without_its_data_is_the_challenger(uri, client):
    v1 = _version(client, 0.30, key="old-data")
    promote(uri, MODEL, v1, GATE)
    v2 = _version(client, 0.50, key="new-data")  # better, but not comparable and no data to compare on
    r = promote(uri, MODEL, v2, GATE)
    assert r["decision"] == "kept" and "not compared" in r["reason"] and "padirec promote --data" in r["reason"]
    assert r["challenger"] == v2 and _aliases(client) == {"champion": v1, "challenger": v2}


def test_champion_on_other_data_moves_only_when_beaten_head_to_head(uri, client):
    v1 = _version(client, 0.30, key="old-data")
    promote(uri, MODEL, v1, GATE)
    v2 = _version(client, 0.05, key="new-data")  # the scores of two snapshots do not compare: never read
    tie = head_to_head(gain=0.0, lower=-0.004, upper=0.004)
    r = promote(uri, MODEL, v2, GATE, compare=tie)
    assert tie.calls == [(v2, v1)] and r["decision"] == "kept" and r["champion"] == v1
    assert f"does not beat champion v{v1} head to head" in r["reason"]
    assert "gain_lower" in r["reason"] and "score" in r["reason"]  # MLflow's validation says which failed
    # both evaluations on the version's run: the figures, the whole result, a summary tag
    run = client.get_run(client.get_model_version(MODEL, v2).run_id)
    assert run.data.metrics["head_to_head.candidate.score"] == 0.3 and run.data.metrics["head_to_head.gain"] == 0.0
    assert run.data.metrics["head_to_head.incumbent.score"] == 0.3
    assert f"head_to_head/v{v2}_vs_v{v1}.json" in [a.path for a in client.list_artifacts(run.info.run_id, "head_to_head")]
    assert client.get_model_version(MODEL, v2).tags["head_to_head"].startswith(f"v{v1}: gain 0.00000")
    # better on average, but the bootstrap's lower bound is under the margin: not sure enough
    assert promote(uri, MODEL, v2, GATE, compare=head_to_head(gain=0.02, lower=0.0005))["decision"] == "kept"
    won = promote(uri, MODEL, v2, GATE, compare=head_to_head(gain=0.02, lower=0.005))
    assert won["decision"] == "champion" and "beats champion" in won["reason"] and _aliases(client)["champion"] == v2
    tags = client.get_registered_model(MODEL).tags
    assert tags[KEY_TAG] == key_of("new-data") and tags["champion.version"] == v2
    never = head_to_head(gain=0.0, lower=0.0)
    assert promote(uri, MODEL, v2, GATE, compare=never)["reason"] == "already champion" and never.calls == []


def test_a_head_to_head_that_fails_keeps_the_champion(uri, client):
    v1 = _version(client, 0.30, key="old-data")
    promote(uri, MODEL, v1, GATE)
    v2 = _version(client, 0.05, key="new-data")

    def broken(version, incumbent):
        raise OSError("incumbent's model cannot be loaded")
    r = promote(uri, MODEL, v2, GATE, compare=broken)
    assert r["decision"] == "kept" and r["champion"] == v1
    assert "head to head" in r["reason"] and "OSError: incumbent's model cannot be loaded" in r["reason"]


def test_racing_promotions_end_with_the_better_version(uri, client):
    errors = []
    for i in range(3):  # each round beats the last round's champion by more than the margin
        worse, better = _version(client, 0.20 + 0.1 * i), _version(client, 0.25 + 0.1 * i)
        barrier = threading.Barrier(2)

        def go(v, barrier=barrier):
            barrier.wait()
            try:
                promote(uri, MODEL, v, GATE)
            except Exception as e:  # noqa: BLE001 - a racing promoter must not fail: reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=go, args=(v,)) for v in (better, worse)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert client.get_model_version_by_alias(MODEL, "champion").version == better
        client.set_model_version_tag(MODEL, better, "gate", "retired")  # next round starts fresh
        client.set_model_version_tag(MODEL, worse, "gate", "retired")
    assert errors == []


def test_the_loser_of_a_tag_write_race_does_not_fail(uri, client, monkeypatch):
    """The collision the race test can hit, made certain: the other promoter's write of the
    registered model's tag lands first and this one's insert is refused, as MLflow's store does."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    real = MlflowClient.set_registered_model_tag
    refused = []

    def racing(self, name, key, value):
        if key == KEY_TAG and not refused:
            real(self, name, key, value)  # the racing promoter's write
            refused.append(key)
            raise MlflowException("UNIQUE constraint failed: registered_model_tags.key")
        return real(self, name, key, value)

    monkeypatch.setattr(MlflowClient, "set_registered_model_tag", racing)
    v = _version(client, 0.30, key="raced")
    assert promote(uri, MODEL, v, GATE)["champion"] == v
    assert refused == [KEY_TAG] and client.get_registered_model(MODEL).tags[KEY_TAG] == key_of("raced")


def test_quality_from_a_report():
    report = {"methods": {"padirec": [{"ndcg@10": 0.1, "alpha_ndcg@10": 0.5}, {"ndcg@10": 0.2, "alpha_ndcg@10": 0.4}]},
              "summary": {"padirec": {"avg_hv": 0.6, "pearson_ra": 0.9, "pearson_rd": None}}}
    q = quality(report)
    assert q["score"] == pytest.approx((0.05 + 0.08) / 2) and q["avg_hv"] == 0.6 and q["pearson_rd"] != q["pearson_rd"]
    report["methods"]["padirec"][0]["ndcg@10"] = None  # a null figure in the report is undefined, not a crash
    assert quality(report)["score"] != quality(report)["score"]


# ---------------------------------------------------------------- registration under retries

def _run(uri, experiment="registration"):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    return c.create_run(exp.experiment_id if exp else c.create_experiment(experiment)).info.run_id


def _system(path, content="v1"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "weights.bin").write_text(content)
    return path


def _versions(client):
    return sorted(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))


def test_register_system_reuses_the_version_of_the_same_pipeline_run(uri, client, tmp_path):
    client.delete_registered_model(MODEL)  # the first registration creates the registered model
    run_id = _run(uri)
    system = _system(tmp_path / "system")
    tags = {k: v for k, v in complete_tags().items() if k not in ("kfp.run_id", CHECKSUM_TAG)}
    v = register_system(uri, run_id, system, MODEL, tags, "kfp-a")
    assert register_system(uri, _run(uri), system, MODEL, tags, "kfp-a") == v  # the retry
    assert _versions(client) == [int(v)]
    mv = client.get_model_version(MODEL, v)
    assert mv.tags["kfp.run_id"] == "kfp-a" and mv.tags["quality.score"] == "0.1" and mv.run_id == run_id
    assert len(mv.tags[CHECKSUM_TAG]) == 64
    assert client.get_run(run_id).info.status == "RUNNING"  # the step's run is the step's to end
    # another pipeline run, or other files in the same one, is another model
    assert register_system(uri, _run(uri), system, MODEL, tags, "kfp-b") != v
    assert register_system(uri, _run(uri), _system(tmp_path / "system", "v2"), MODEL, tags, "kfp-a") != v
    assert len(_versions(client)) == 3


@pytest.fixture
def stage_inputs(tmp_path, synthetic_prepared):
    """What the stage reads: prepared data, a backbone and a generator folder, a report."""
    folders = {}
    for kind in ("backbone", "generator"):
        folders[kind] = tmp_path / kind
        (folders[kind] / "weights.bin").parent.mkdir()
        (folders[kind] / "weights.bin").write_bytes(kind.encode())
        write_manifest(folders[kind], kind, ["weights.bin"], config={})
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.json").write_text(json.dumps({
        "tasks": [[0.5, 0.5]], "methods": {"padirec": [{"ndcg@10": 0.3, "alpha_ndcg@10": 0.4}]},
        "summary": {"padirec": {"avg_hv": 0.6, "pearson_ra": 0.9, "pearson_rd": 0.8}}}))
    return dict(data_dir=synthetic_prepared, backbone_dir=folders["backbone"],
                generator_dir=folders["generator"], report_dir=report)


def test_retried_register_and_promote_makes_one_version_promoted_once(uri, client, tmp_path, stage_inputs,
                                                                    monkeypatch):
    monkeypatch.setenv(KFP_RUN_ID_ENV, "kfp-retried")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    cfg = dataclasses.replace(Config(), tracking=TrackingConfig(uri=uri, experiment="registration",
                                                                registered_model=MODEL))

    # attempt 1 registers, then its pod dies before promoting
    with pytest.raises(RuntimeError), step_tracker(cfg, "register_and_promote") as t:
        first, _, _ = register_stage(**stage_inputs, system_dir=tmp_path / "system-1", cfg=cfg, tracker=t)
        raise RuntimeError("pod evicted between registration and promotion")
    assert not client.get_registered_model(MODEL).aliases

    # attempt 2 (a new pod, a new output folder) finds that version and promotes it
    with step_tracker(cfg, "register_and_promote") as t:
        second = register_and_promote_stage(**stage_inputs, system_dir=tmp_path / "system-2", cfg=cfg, tracker=t)
    assert second["version"] == first and second["decision"] == "champion"
    assert second["reason"] == "passed the gate; first champion"

    # attempt 3 (it died after promoting, before KFP saw it succeed) changes nothing
    with step_tracker(cfg, "register_and_promote") as t:
        third = register_and_promote_stage(**stage_inputs, system_dir=tmp_path / "system-3", cfg=cfg, tracker=t)
    assert third["version"] == first and third["reason"] == "already champion"

    assert _versions(client) == [int(first)]
    assert client.get_model_version_by_alias(MODEL, "champion").version == first
    assert client.get_model_version(MODEL, first).tags["kfp.run_id"] == "kfp-retried"
    runs = client.search_runs([client.get_experiment_by_name("registration").experiment_id],
                              filter_string="tags.`kfp.run_id` = 'kfp-retried' and tags.`padirec.step` = 'register_and_promote'")
    assert sorted((r.data.tags["padirec.attempt"], r.info.status) for r in runs) == [
        ("1", "FAILED"), ("2", "FINISHED"), ("3", "FINISHED")]
