"""Promotion through the quality gate, against a real MLflow server: the gate, beating the
champion, idempotence, and two promotions racing."""

import threading

import pytest
from mlflow import MlflowClient

from padirec.tracking.registry import GateThresholds, promote, quality
from tests.servers import mlflow_server

MODEL = "padirec-recommender"
GATE = GateThresholds(min_avg_hv=0.2, min_pearson_ra=0.5, min_pearson_rd=0.5)


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("registry")) as u:
        yield u


def _version(client, score, avg_hv=0.5, ra=0.9, rd=0.9, key="eval-a"):
    mv = client.create_model_version(MODEL, source="s3://padirec-mlflow/models/test", tags={
        "quality.score": score, "quality.avg_hv": avg_hv, "quality.pearson_ra": ra, "quality.pearson_rd": rd,
        "evaluation_key": key})
    return str(mv.version)


@pytest.fixture
def client(uri):
    c = MlflowClient(uri)
    for rm in c.search_registered_models():
        c.delete_registered_model(rm.name)
    c.create_registered_model(MODEL)
    return c


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
    assert r["decision"] == "kept" and "scores higher" in client.get_model_version(MODEL, v2).tags["promotion"]
    v3 = _version(client, 0.12)
    assert promote(uri, MODEL, v3, GATE)["decision"] == "champion"
    assert client.get_model_version_by_alias(MODEL, "champion").version == v3


def test_champion_on_other_data_is_replaced_with_a_reason(uri, client):
    v1 = _version(client, 0.30, key="old-data")
    promote(uri, MODEL, v1, GATE)
    v2 = _version(client, 0.05, key="new-data")
    r = promote(uri, MODEL, v2, GATE)
    assert r["decision"] == "champion" and "evaluated on other data" in r["reason"]


def test_racing_promotions_end_with_the_better_version(uri, client):
    for _ in range(3):
        worse, better = _version(client, 0.20), _version(client, 0.25)
        barrier = threading.Barrier(2)

        def go(v, barrier=barrier):
            barrier.wait()
            promote(uri, MODEL, v, GATE)

        threads = [threading.Thread(target=go, args=(v,)) for v in (better, worse)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert client.get_model_version_by_alias(MODEL, "champion").version == better
        client.set_model_version_tag(MODEL, better, "gate", "retired")  # next round starts fresh
        client.set_model_version_tag(MODEL, worse, "gate", "retired")


def test_quality_from_a_report():
    report = {"methods": {"padirec": [{"ndcg@10": 0.1, "alpha_ndcg@10": 0.5}, {"ndcg@10": 0.2, "alpha_ndcg@10": 0.4}]},
              "summary": {"padirec": {"avg_hv": 0.6, "pearson_ra": 0.9, "pearson_rd": None}}}
    q = quality(report)
    assert q["score"] == pytest.approx((0.05 + 0.08) / 2) and q["avg_hv"] == 0.6 and q["pearson_rd"] != q["pearson_rd"]
