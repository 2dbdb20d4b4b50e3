"""The model registry: the trained system as a pyfunc model version, and its promotion.

Promotion rule (idempotent, and safe when two promotions race): a version's gate result is
written to its tags; the alias ``champion`` then goes to the best gate-passing version among
those evaluated the same way (same data checksum and task grid) as the candidate. Every promoter
computes the same answer, so re-running changes nothing and racing promoters agree. When the
current champion was evaluated on other data the two cannot be compared: the candidate takes the
alias if it passes the gate, and the reason says so.

Registration is idempotent per pipeline run: a KFP retry of the registering step reuses the
version that its earlier attempt created (``register_system``), then promotes it by the rule above.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("padirec")
ALIAS = "champion"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
CHECKSUM_TAG = "padirec.system_checksum"


@dataclass
class GateThresholds:
    min_avg_hv: float = 0.0
    min_pearson_ra: float = 0.0
    min_pearson_rd: float = 0.0


def quality(report: dict[str, Any], method: str = "padirec") -> dict[str, float]:
    """The figures a version is judged by, from a ``report.json``.

    ``score`` is the mean over tasks of NDCG@10 x alpha-NDCG@10 (the raw hypervolume of each task's
    point w.r.t. the origin): unlike Avg.HV it is not normalised across the methods of one report,
    so two reports on the same data compare.
    """
    cells = report["methods"][method]
    cells = cells.values() if isinstance(cells, dict) else cells
    points = [(c["ndcg@10"], c["alpha_ndcg@10"]) for c in cells]
    summary = report["summary"][method]
    return {
        "score": sum(a * d for a, d in points) / max(len(points), 1),
        "avg_hv": _num(summary.get("avg_hv")),
        "pearson_ra": _num(summary.get("pearson_ra")),
        "pearson_rd": _num(summary.get("pearson_rd")),
    }


def evaluation_key(report: dict[str, Any], data_checksum: str) -> str:
    import hashlib

    tasks = json.dumps(report.get("tasks"), sort_keys=True)
    return hashlib.sha256(f"{data_checksum}|{tasks}".encode()).hexdigest()[:16]


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def register_system(uri: str, run_id: str, system_dir: str | Path, model_name: str,
                    tags: dict[str, Any], kfp_run_id: str) -> str:
    """Log the system folder as a pyfunc model in ``run_id`` and register it; returns the version.

    Safe under KFP retries: a version made by this pipeline run (tag ``kfp.run_id``) from the
    same files (tag ``padirec.system_checksum``) is reused, so a retried step makes no second
    version. The version is created with all its tags in one call, so no version exists without
    the tags that find it again. (Two attempts running at once could still both create one; KFP
    runs the attempts of a task one after the other.)
    """
    import mlflow
    from mlflow import MlflowClient

    from padirec import __version__
    from padirec.tracking import redact

    client = MlflowClient(uri)
    _ensure_registered_model(client, model_name)
    checksum = system_checksum(system_dir)
    existing = find_version(client, model_name, kfp_run_id, checksum)
    if existing is not None:
        log.info("%s v%s was registered by an earlier attempt of pipeline run %s: reusing it",
                 model_name, existing, kfp_run_id)
        return existing
    # Model.log with run_id, not pyfunc.log_model inside ``with mlflow.start_run(run_id)``: leaving
    # that block would end the step's run. Model.log reads the global tracking URI.
    import mlflow.pyfunc
    from mlflow.models import Model

    mlflow.set_tracking_uri(uri)
    info = Model.log(
        artifact_path=None, name="recommender", flavor=mlflow.pyfunc, run_id=run_id, python_model=str(PYFUNC_CODE),
        artifacts={"system": str(system_dir)}, pip_requirements=[f"padirec=={__version__}", "torch==2.13.0"],
    )
    all_tags = {**{k: redact(v) for k, v in tags.items()}, "kfp.run_id": kfp_run_id, CHECKSUM_TAG: checksum}
    mv = client.create_model_version(model_name, source=info.model_uri, run_id=run_id, tags=all_tags,
                                     model_id=info.model_id)
    return str(mv.version)


def system_checksum(system_dir: str | Path) -> str:
    """sha256 over every file of the folder (relative name and content): the same files give the
    same checksum wherever and whenever they were written."""
    import hashlib

    from padirec.artifacts import sha256_file

    root = Path(system_dir)
    lines = [f"{p.relative_to(root).as_posix()}:{sha256_file(p)}" for p in sorted(root.rglob("*")) if p.is_file()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def find_version(client, model_name: str, kfp_run_id: str, checksum: str) -> str | None:
    """The version that pipeline run ``kfp_run_id`` registered from files with ``checksum``, if any."""
    found = [v for v in client.search_model_versions(f"name = '{model_name}' and tags.`kfp.run_id` = '{kfp_run_id}'")
             if v.tags.get(CHECKSUM_TAG) == checksum]
    return str(min(int(v.version) for v in found)) if found else None


def _ensure_registered_model(client, model_name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model_name)
    except MlflowException as e:  # exists already, or another registration created it just now
        if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def promote(uri: str, model_name: str, version: str, gate: GateThresholds) -> dict[str, str]:
    """Apply the gate to ``version`` and move ``champion`` by the rule above. Returns
    ``{"decision": "champion" | "rejected" | "kept", "champion": version, "reason": ...}``."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(uri)
    version = str(version)
    mv = client.get_model_version(model_name, version)
    q = {k: _num(mv.tags.get(f"quality.{k}")) for k in ("score", "avg_hv", "pearson_ra", "pearson_rd")}
    failed = [f"{k} {q[k]:.4f} < {t}" for k, t in (("avg_hv", gate.min_avg_hv), ("pearson_ra", gate.min_pearson_ra),
                                                    ("pearson_rd", gate.min_pearson_rd)) if not q[k] >= t]
    client.set_model_version_tag(model_name, version, "gate", "failed" if failed else "passed")
    if failed:
        reason = "quality gate failed: " + "; ".join(failed)
        client.set_model_version_tag(model_name, version, "promotion", reason)
        return {"decision": "rejected", "champion": _champion(client, model_name) or "", "reason": reason}

    key = mv.tags.get("evaluation_key", "")
    peers = [v for v in client.search_model_versions(f"name = '{model_name}'")
             if v.tags.get("gate") == "passed" and v.tags.get("evaluation_key", "") == key]
    best = max(peers, key=lambda v: (_num(v.tags.get("quality.score")), int(v.version)))
    best_version = str(best.version)  # MLflow hands versions back as int or str depending on the call
    current = _champion(client, model_name)
    current_key = None
    if current:
        try:
            current_key = client.get_model_version(model_name, current).tags.get("evaluation_key", "")
        except MlflowException:
            current_key = None
    if current and current_key == key and current == best_version == version:
        return {"decision": "champion", "champion": version, "reason": "already champion"}
    if current_key not in (None, key):
        reason = f"passed the gate; champion v{current} was evaluated on other data, so v{best_version} replaces it"
    elif best_version == version:
        reason = f"passed the gate and beats v{current} (score {q['score']:.5f})" if current else "passed the gate; first champion"
    else:
        reason = f"passed the gate but v{best_version} scores higher ({_num(best.tags.get('quality.score')):.5f} >= {q['score']:.5f})"
    if current != best_version:
        client.set_registered_model_alias(model_name, ALIAS, best_version)
    client.set_model_version_tag(model_name, version, "promotion", reason)
    log.info("promotion of %s v%s: %s", model_name, version, reason)
    return {"decision": "champion" if best_version == version else "kept", "champion": best_version, "reason": reason}


def _champion(client, model_name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, ALIAS).version)
    except MlflowException:
        return None


def save_pyfunc(system_dir: str | Path, path: str | Path) -> Path:
    """The same pyfunc model as ``register_system``, saved to a local folder (no registry):
    ``mlflow models serve -m PATH`` serves it."""
    import mlflow

    from padirec import __version__

    mlflow.pyfunc.save_model(str(path), python_model=str(PYFUNC_CODE), artifacts={"system": str(system_dir)},
                             pip_requirements=[f"padirec=={__version__}", "torch==2.13.0"])
    return Path(path)
