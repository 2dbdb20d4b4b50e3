"""The head-to-head on a new snapshot (``padirec.tracking.head_to_head``): the paired bootstrap, the
margin as MLflow's model validation judges it, the figures of served answers, and promotion on a
real MLflow server: a version on other data takes ``champion`` only by beating the incumbent on its
own test users, and a copy of the champion (what a re-run that hits the cache registers) never does.
The last test serves a real trained system from the registry, as a server loads it."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from padirec.config import Config, PromotionConfig, TrackingConfig
from padirec.data.dataset import load_prepared
from padirec.tracking import KFP_RUN_ID_ENV, step_tracker
from padirec.tracking import head_to_head as h2h
from padirec.tracking.promotion import GateThresholds, promote
from padirec.tracking.registration import compare_on, register_and_promote_system
from tests.registry_versions import EXPERIMENT, empty_registry, genuine
from tests.servers import mlflow_server

MODEL = "padirec-test-h2h"
GATE = GateThresholds(0.0, -1.0, -1.0)
TASKS = [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
REPORT = {"k": 10, "alpha": 0.5, "utilities": ["accuracy", "diversity"], "tasks": TASKS,
          "methods": {"padirec": [{"ndcg@10": 0.3, "alpha_ndcg@10": 0.5}] * 3},
          "summary": {"padirec": {"avg_hv": 0.5, "pearson_ra": 0.9, "pearson_rd": 0.9}}}


# ---------------------------------------------------------------- the bootstrap and the margin

def test_the_paired_bootstrap_pairs_users():
    rng = np.random.default_rng(0)
    ndcg, alpha = rng.random((200, 3)), rng.random((200, 3))
    same = h2h.paired_bootstrap({"ndcg": ndcg, "alpha_ndcg": alpha}, {"ndcg": ndcg, "alpha_ndcg": alpha}, 200, 0.9)
    assert same == {"gain": 0.0, "gain_lower": 0.0, "gain_upper": 0.0}  # the same draws for both: a tie is exact
    better = h2h.paired_bootstrap({"ndcg": ndcg + 0.1, "alpha_ndcg": alpha}, {"ndcg": ndcg, "alpha_ndcg": alpha}, 250, 0.9)
    assert 0 < better["gain_lower"] < better["gain"] < better["gain_upper"]  # 250: resampled 100 at a time, and 50
    assert better["gain"] == pytest.approx(h2h.score(ndcg + 0.1, alpha) - h2h.score(ndcg, alpha))


def test_falls_short_is_mlflows_validation_with_the_margin():
    assert h2h.falls_short({"score": 0.31}, {"score": 0.30}, 0.001) == ""
    tie = h2h.falls_short({"score": 0.30}, {"score": 0.30}, 0.001)
    assert "score" in tie and "\n" not in tie  # one line: it becomes the version's promotion tag
    assert h2h.falls_short({"score": 0.3005}, {"score": 0.30}, 0.001)  # better, by less than the margin
    unsure = h2h.falls_short({"score": 0.35, "gain_lower": 0.0005}, {"score": 0.30, "gain_lower": 0.0}, 0.001)
    assert "gain_lower" in unsure and "score" not in unsure.replace("gain_lower", "")


# ---------------------------------------------------------------- served answers, scored

class Served:
    """A stand-in for a loaded pyfunc model: ``rank(history, timestamps) -> source ids``; it refuses
    (as a server's 400) a history holding an item of ``refuse``."""

    def __init__(self, rank, refuse=(), max_len=8):
        self.rank, self.refuse, self.max_len = rank, set(refuse), max_len

    def unwrap_python_model(self):
        return type("Wrapped", (), {"recommender": type("R", (), {"max_len": self.max_len})()})()

    def predict(self, frame, params=None):
        if any(self.refuse & set(h) for h in frame["history"]):
            raise MlflowException.invalid_parameter_value("history has unknown item id(s)")
        return pd.DataFrame({"item_ids": [self.rank(h, t)[:params["k"]]
                                          for h, t in zip(frame["history"], frame["timestamps"], strict=True)]})


@pytest.fixture(scope="module")
def snapshot(synthetic_prepared):
    data = load_prepared(synthetic_prepared)
    ids = pd.read_parquet(synthetic_prepared / "id_map_items.parquet")
    source = dict(zip(ids["item_id"].astype(int), ids["source_id"].astype(str), strict=True))
    # the oracle knows each user's test item from the request (the last 8 items and their times)
    answers = {tuple(int(t) for t in data.history("test", int(u))[1][-8:]): source[int(data.test_item[u])]
               for u in data.users}
    assert len(answers) == data.num_users  # the times tell the users apart (some histories are alike)
    catalogue = [source[i] for i in range(1, data.num_items + 1)]

    def oracle(history, times):
        target = answers[tuple(times)]
        return [target] + [s for s in catalogue if s != target]
    return {"dir": synthetic_prepared, "data": data, "source": source, "oracle": Served(oracle),
            "fixed": Served(lambda history, times: [s for s in catalogue if s not in history])}


def test_served_figures_pair_users_and_count_refusals(snapshot, monkeypatch):
    data, source = snapshot["data"], snapshot["source"]
    perfect = h2h.served_figures(snapshot["oracle"], data, source, TASKS, 10, 0.5, 8)
    assert perfect["ndcg"].shape == (data.num_users, 3) and perfect["failed_users"] == 0
    assert np.all(perfect["ndcg"] == 1.0) and np.all((perfect["alpha_ndcg"] > 0) & (perfect["alpha_ndcg"] <= 1))
    whole = h2h.served_figures(snapshot["fixed"], data, source, TASKS, 10, 0.5, 8)
    monkeypatch.setattr(h2h, "CHUNK", 7)  # users in chunks (memory bounded): the same figures
    chunked = h2h.served_figures(snapshot["fixed"], data, source, TASKS, 10, 0.5, 8)
    assert np.array_equal(whole["ndcg"], chunked["ndcg"]) and np.array_equal(whole["alpha_ndcg"], chunked["alpha_ndcg"])
    # a model that refuses some users scores 0 for them: what the served model would deliver
    refuse = source[int(data.history("test", 1)[0][-1])]
    picky = Served(snapshot["oracle"].rank, refuse=[refuse])
    partial = h2h.served_figures(picky, data, source, TASKS, 10, 0.5, 8)
    refused = [r for r, u in enumerate(data.users) if refuse in {source[int(i)] for i in data.history("test", int(u))[0][-8:]}]
    assert partial["failed_users"] == len(refused) >= 1
    assert np.all(partial["ndcg"][refused] == 0) and np.all(np.delete(partial["ndcg"], refused, 0) == 1.0)


# ---------------------------------------------------------------- promotion on a new snapshot

@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("head-to-head")) as u:
        yield u


@pytest.fixture
def client(uri):
    return empty_registry(uri, MODEL)


def _cfg(uri, samples=300):
    return dataclasses.replace(Config(), tracking=TrackingConfig(uri=uri, experiment=EXPERIMENT, registered_model=MODEL),
                               promotion=PromotionConfig(min_avg_hv=0.0, min_pearson_ra=-1.0, min_pearson_rd=-1.0,
                                                         bootstrap_samples=samples))


@pytest.mark.slow
@pytest.mark.parametrize(("candidate", "incumbent", "decision"), [("oracle", "fixed", "champion"),
                                                                   ("fixed", "oracle", "kept")])
def test_a_new_snapshot_takes_champion_only_by_beating_it_there(uri, client, snapshot, monkeypatch, tmp_path,
                                                                candidate, incumbent, decision):
    old = genuine(client, MODEL, 0.5, key="old-snapshot")  # its score is never read against the new one
    assert promote(uri, MODEL, old, GATE, experiment=EXPERIMENT)["decision"] == "champion"
    new = genuine(client, MODEL, 0.1, key="new-snapshot")
    models = {new: snapshot[candidate], old: snapshot[incumbent]}
    monkeypatch.setattr(h2h, "load_version", lambda uri, name, version, folder: models[version])
    r = promote(uri, MODEL, new, GATE, experiment=EXPERIMENT, compare=compare_on(uri, MODEL, snapshot["dir"], _cfg(uri)))
    assert r["decision"] == decision and r["champion"] == (new if decision == "champion" else old)
    assert "head to head on this version's data by the margin 0.001 (score " in r["reason"]
    assert f"{snapshot['data'].num_users} users" in r["reason"]
    # both evaluations are on the new version's run
    run_id = client.get_model_version(MODEL, new).run_id
    metrics = client.get_run(run_id).data.metrics
    assert (metrics["head_to_head.gain"] > 0.001) == (decision == "champion")
    assert metrics["head_to_head.gain"] == pytest.approx(metrics["head_to_head.candidate.score"]
                                                         - metrics["head_to_head.incumbent.score"])
    logged = client.download_artifacts(run_id, f"head_to_head/v{new}_vs_v{old}.json", str(tmp_path))
    result = json.loads(Path(logged).read_text())
    # on the tasks of the evaluation the new version's run carries (no report given: ``padirec promote --data``)
    assert result["tasks"] == [[0.5, 0.5]] and result["samples"] == 300 and result["candidate"]["failed_users"] == 0
    assert len(result["candidate"]["ndcg@10"]) == 1


@pytest.mark.slow
def test_a_copy_on_the_next_snapshot_never_takes_champion(uri, client, synthetic_prepared, tmp_path_factory,
                                                          tmp_path, monkeypatch):
    """A real trained system registered by the register step, then the same system on the next
    snapshot (the same rows, a new data checksum): served from the registry, both answer alike,
    the gain is 0 and the champion stays."""
    from tests.fixtures import tiny_system

    system = tiny_system(synthetic_prepared, tmp_path_factory)
    snapshot = tmp_path / "snapshot-2"
    shutil.copytree(synthetic_prepared, snapshot)
    manifest = json.loads((snapshot / "manifest.json").read_text())
    (snapshot / "manifest.json").write_text(json.dumps({**manifest, "data_checksum": "next-" + manifest["data_checksum"]}))
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.json").write_text(json.dumps(REPORT))
    cfg, results = _cfg(uri, samples=200), []
    for kfp, data in (("kfp-first", synthetic_prepared), ("kfp-next", snapshot)):
        monkeypatch.setenv(KFP_RUN_ID_ENV, kfp)
        with step_tracker(cfg, "register_and_promote") as tracker:
            results.append(register_and_promote_system(system, data, tmp_path / "report", cfg, tracker))
    first, copy = results
    assert first["decision"] == "champion" and copy["decision"] == "kept" and "challenger" not in copy  # a copy
    assert f"does not beat champion v{first['version']} head to head" in copy["reason"]
    run = client.get_run(client.get_model_version(MODEL, copy["version"]).run_id)
    assert run.data.metrics["head_to_head.gain"] == 0.0 and run.data.metrics["head_to_head.candidate.score"] > 0
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == first["version"]
