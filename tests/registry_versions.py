"""Model versions for the registry tests, made as registration makes them but in a fraction of a
second: a run in the pipeline's experiment carrying the evaluation its tags claim
(``evaluation/report.json``, the data checksum), and a model folder (an ``MLmodel`` naming its
``system`` artifact) whose files have the checksum of the tags. Promotion trusts such a version
(``padirec.tracking.provenance``); ``claim`` and ``experiment`` make one it must refuse.
``head_to_head`` stands in for the comparison on a new snapshot (the real one needs served models:
tests/tracking/test_head_to_head.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow import MlflowClient

from padirec.tracking.model_registry import CHECKSUM_TAG, system_checksum
from padirec.tracking.provenance import REPORT_ARTIFACT
from padirec.tracking.quality import evaluation_key

EXPERIMENT = "padirec-registry-test"
MLMODEL = "flavors:\n  python_function:\n    artifacts:\n      system:\n        path: artifacts/system\n"


def empty_registry(uri: str, model: str) -> MlflowClient:
    """A client of ``uri`` whose registry holds only ``model``, with no version yet (a test's start)."""
    client = MlflowClient(uri)
    for rm in client.search_registered_models():
        client.delete_registered_model(rm.name)
    client.create_registered_model(model)
    return client


def report(score: float, avg_hv: float = 0.5, ra: float = 0.9, rd: float = 0.9) -> dict:
    """A report whose quality figures are these (score = NDCG x alpha-NDCG on one task)."""
    return {"k": 10, "tasks": [[0.5, 0.5]], "methods": {"padirec": [{"ndcg@10": score, "alpha_ndcg@10": 1.0}]},
            "summary": {"padirec": {"avg_hv": avg_hv, "pearson_ra": ra, "pearson_rd": rd}}}


def key_of(label: str) -> str:
    """The evaluation key of the data labelled ``label`` (``genuine(key=label)``)."""
    return evaluation_key(report(0.0), f"data-{label}")


def genuine(client, model: str, score: float = 0.1, avg_hv: float = 0.5, ra: float = 0.9, rd: float = 0.9,
            key: str = "eval-a", experiment: str = EXPERIMENT, content: str | None = None, kfp: str = "kfp-test",
            claim: dict | None = None) -> str:
    """Register a version; returns its number. ``claim``: tags that replace what the run supports
    (a forged score), ``experiment``: another one to make a stray run, ``content``: the model's
    files (by default the run's own: each version another system; the same ``content``: a copy)."""
    exp = client.get_experiment_by_name(experiment)
    run = client.create_run(exp.experiment_id if exp else client.create_experiment(experiment)).info.run_id
    content = run if content is None else content
    evaluation, checksum = report(score, avg_hv, ra, rd), f"data-{key}"
    client.log_dict(run, evaluation, REPORT_ARTIFACT)
    client.set_tag(run, "data_checksum", checksum)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "recommender"
        (folder / "artifacts" / "system").mkdir(parents=True)
        (folder / "artifacts" / "system" / "weights.bin").write_text(content)
        (folder / "MLmodel").write_text(MLMODEL)
        client.log_artifacts(run, str(folder), "recommender")
        files = system_checksum(folder / "artifacts" / "system")
    tags = {"quality.score": score, "quality.avg_hv": avg_hv, "quality.pearson_ra": ra, "quality.pearson_rd": rd,
            "evaluation_key": evaluation_key(evaluation, checksum), "data_checksum": checksum, CHECKSUM_TAG: files,
            "kfp.run_id": kfp, **(claim or {})}
    return str(client.create_model_version(model, source=f"runs:/{run}/recommender", run_id=run, tags=tags).version)


def head_to_head(gain, lower, upper=None, candidate=0.3):
    """A ``compare`` that reports this result, as ``head_to_head.head_to_head`` does."""
    calls = []

    def compare(version, incumbent):
        calls.append((version, incumbent))
        return {"candidate_version": version, "incumbent_version": incumbent, "users": 100, "confidence": 0.9,
                "candidate": {"score": candidate}, "incumbent": {"score": candidate - gain},
                "gain": gain, "gain_lower": lower, "gain_upper": gain + 0.01 if upper is None else upper}
    compare.calls = calls
    return compare
