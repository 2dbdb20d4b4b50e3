"""Whether a registered version is what its tags say it is, before it may take ``champion``.

Tags are writable by anyone who can register a version, so they prove nothing alone. A version
is trusted when:

- its source run is a run of the pipeline's experiment (``tracking.experiment``);
- that run carries the evaluation the tags claim: its ``evaluation/report.json`` gives the
  version's quality figures, and with the run's data checksum the version's evaluation key;
- the model's files hold the system the tags name: the ``system`` artifact of the model has the
  checksum of the tag ``padirec.system_checksum``.

``version_trust`` returns "" for a trusted version, else one line saying which check failed.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

REPORT_ARTIFACT = "evaluation/report.json"  # what the registering run logs (``registration.register_system_folder``)


def version_trust(client, model_name: str, mv, experiment_id: str) -> str:
    """"" when ``mv`` is trusted (module docstring), else why not."""
    from mlflow.exceptions import MlflowException

    where = f"v{mv.version}"
    if not mv.run_id:
        return f"untrusted: {where} names no source run"
    try:
        run = client.get_run(mv.run_id)
    except MlflowException:
        return f"untrusted: {where}'s source run {mv.run_id} does not exist"
    if run.info.experiment_id != experiment_id:
        return f"untrusted: {where}'s source run {mv.run_id} is not a run of the pipeline's experiment"
    problem = _evaluation_problem(client, mv, run)
    if problem:
        return f"untrusted: {where}: {problem}"
    problem = _files_problem(client, model_name, mv)
    return f"untrusted: {where}: {problem}" if problem else ""


def _evaluation_problem(client, mv, run) -> str:
    from padirec.tracking.model_registry import to_float
    from padirec.tracking.quality import evaluation_key, quality

    with tempfile.TemporaryDirectory(prefix="padirec-trust-") as tmp:
        try:
            path = client.download_artifacts(run.info.run_id, REPORT_ARTIFACT, tmp)
            report = json.loads(Path(path).read_text())
            figures = quality(report)
        except Exception:  # noqa: BLE001 - missing, unreadable or malformed: the run does not carry it
            return f"its run carries no readable {REPORT_ARTIFACT}"
    claimed = {k: to_float(mv.tags.get(f"quality.{k}")) for k in figures}
    wrong = [k for k, v in figures.items() if not _same(v, claimed[k])]
    if wrong:
        return "its tags claim " + ", ".join(f"{k} {claimed[k]:.6g}" for k in wrong) + \
            " but its run's evaluation gives " + ", ".join(f"{figures[k]:.6g}" for k in wrong)
    checksum = run.data.tags.get("data_checksum", "")
    if checksum != mv.tags.get("data_checksum") or evaluation_key(report, checksum) != mv.tags.get("evaluation_key"):
        return "its evaluation key or data checksum is not the one its run's evaluation gives"
    return ""


def _files_problem(client, model_name: str, mv) -> str:
    import mlflow.artifacts
    import yaml

    from padirec.tracking.model_registry import CHECKSUM_TAG, system_checksum

    root = client.get_model_version_download_uri(model_name, str(mv.version)).rstrip("/")
    # the client's server, not the process's default store (a runs:/ URI is resolved through it);
    # padirec keeps runs and registry on one server (``tracking.uri``)
    where = {"tracking_uri": client.tracking_uri, "registry_uri": client.tracking_uri}
    with tempfile.TemporaryDirectory(prefix="padirec-trust-") as tmp:
        try:
            mlmodel = yaml.safe_load(Path(mlflow.artifacts.download_artifacts(
                artifact_uri=f"{root}/MLmodel", dst_path=f"{tmp}/m", **where)).read_text())
            relative = mlmodel["flavors"]["python_function"]["artifacts"]["system"]["path"]
            system = mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/{relative}", dst_path=f"{tmp}/s",
                                                         **where)
        except Exception:  # noqa: BLE001 - whatever is missing, the model holds no system
            return "its model holds no padirec system (artifacts.system)"
        if system_checksum(system) != mv.tags.get(CHECKSUM_TAG):
            return f"its model's files do not have the system checksum its tag {CHECKSUM_TAG} names"
    return ""


def _same(a: float, b: Any) -> bool:
    return math.isfinite(a) and math.isfinite(b) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
