"""Promotion: the quality gate, the aliases ``champion`` and ``challenger`` (``padirec promote``), and
the last pipeline step, which bundles the trained system, registers it and promotes it if it earns it.

The rule (idempotent, and safe when two promotions race): a version's gate result is written to its
tags (``gate``: passed, failed or incomplete; ``promotion``: why); the alias then goes to the best
gate-passing version among those evaluated the same way as the candidate (same evaluation key: data
checksum and task grid). Every promoter computes the same answer, so re-running changes nothing and
racing promoters agree.

- A champion evaluated on other data cannot be compared with the candidate: it keeps the alias
  unless promotion is told ``allow_other_data`` (``padirec promote --allow-other-data``).
- The champion is re-checked against the gate at every promotion; when it fails now (a stricter
  gate, an incomplete version), ``on_failing_champion`` decides: ``keep`` the alias, ``flag`` it
  (keep, and tag the version ``champion_status``), or ``clear`` it. A passing version of the same
  evaluation replaces a failing champion in any case; a cleared alias still remembers what its
  champion was evaluated on (the registered model's tag ``champion.evaluation_key``), so clearing
  lets no version of other data in without ``allow_other_data``.
- An incomplete version (``REQUIRED_TAGS``) or one with an undefined figure never passes.
- ``challenger`` is the newest version newer than the champion that passes today's gate: one that
  passed without beating the champion (or without being comparable with it), the candidate to
  shadow or A/B against it. Recomputed at every promotion from the versions' tags, so it is as
  idempotent as the champion; it is removed when no such version is left (a better version took
  ``champion``), and never points at the champion.

Nothing undefined is registered: when a figure the gate reads (Avg.HV, Pearson r-a, r-d, the
score) is undefined, the gate fails before registration and the reason says why. Synthetic data
never registers under the production model name.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from padirec.adapters.utilities import metric_key
from padirec.config.checks import PRODUCTION_MODEL, check_model_name  # noqa: F401 (re-exported: the served model)
from padirec.evaluation.response_time import speedup
from padirec.runtime.artifacts import read_manifest
from padirec.runtime.finite import finite_metadata
from padirec.serving import build_system
from padirec.tracking import MlflowTracker, Tracker, kfp_run_id
from padirec.tracking.core import dataset_reference
from padirec.tracking.model_registry import REQUIRED_TAGS, PromotionError, register_system, to_float
from padirec.tracking.pipeline import config_params

log = logging.getLogger("padirec")
ALIAS = "champion"
STATUS_TAG = "champion_status"
CHAMPION_POLICIES = ("keep", "flag", "clear")
KEY_TAG = "champion.evaluation_key"  # on the registered model: what its champion was evaluated on
CHALLENGER = "challenger"


@dataclass
class GateThresholds:
    min_avg_hv: float = 0.0
    min_pearson_ra: float = 0.0
    min_pearson_rd: float = 0.0


def gate(cfg: Any) -> GateThresholds:
    """The thresholds of ``cfg.promotion`` (``cfg``: the whole ``padirec.config.Config``)."""
    p = cfg.promotion
    return GateThresholds(p.min_avg_hv, p.min_pearson_ra, p.min_pearson_rd)


def quality(report: dict[str, Any], method: str = "padirec") -> dict[str, float]:
    """The figures a version is judged by, from a ``report.json`` (NaN where undefined: see
    ``undefined_figures``).

    ``score`` is the mean over tasks of NDCG@k x alpha-NDCG@k (the raw hypervolume of each task's
    point w.r.t. the origin): unlike Avg.HV it is not normalised across the methods of one report,
    so two reports on the same data compare.
    """
    k = report.get("k", 10)
    cells = report["methods"][method]
    cells = cells.values() if isinstance(cells, dict) else cells
    accuracy, diversity = metric_key("accuracy", k), metric_key("diversity", k)
    points = [to_float(c.get(accuracy)) * to_float(c.get(diversity)) for c in cells]
    summary = report["summary"][method]
    return {
        "score": sum(points) / len(points) if points else math.nan,
        "avg_hv": to_float(summary.get("avg_hv")),
        "pearson_ra": to_float(summary.get("pearson_ra")),
        "pearson_rd": to_float(summary.get("pearson_rd")),
    }


def undefined_figures(report: dict[str, Any], figures: dict[str, float], method: str = "padirec") -> dict[str, str]:
    """``{figure: why}`` for each figure of ``quality`` that is not a finite number, with the reason
    the report gives (``summary.<method>.undefined``) where it gives one."""
    reasons = (report.get("summary", {}).get(method) or {}).get("undefined") or {}
    return {k: reasons.get(k) or ("no task has a finite NDCG x alpha-NDCG" if k == "score" else "null in the report")
            for k, v in figures.items() if not math.isfinite(v)}


def evaluation_key(report: dict[str, Any], data_checksum: str) -> str:
    import hashlib

    tasks = json.dumps(report.get("tasks"), sort_keys=True)
    return hashlib.sha256(f"{data_checksum}|{tasks}".encode()).hexdigest()[:16]


def promote(uri: str, model_name: str, version: str, gate: GateThresholds, *, allow_other_data: bool = False,
            on_failing_champion: str = "flag") -> dict[str, str]:
    """Apply the gate to ``version`` and move ``champion`` by the rule in the module docstring.

    Returns ``{"decision": "champion" | "rejected" | "kept", "champion": version or "", "reason":
    ..., "champion_status": ..., "challenger": ...}``; ``champion_status`` (only when the champion
    fails the gate now) says what ``on_failing_champion`` did; ``challenger`` (only when there is
    one) the version holding that alias. Errors (no such model or version, a malformed version,
    an unreachable server) are ``PromotionError``/``TrackingError`` with a one-line message.
    """
    if on_failing_champion not in CHAMPION_POLICIES:
        raise PromotionError(f"promotion.on_failing_champion: {on_failing_champion!r} is not one of "
                             f"{', '.join(CHAMPION_POLICIES)}")
    version = _version_number(version)
    client = _client(uri, model_name)
    mv = _get_version(client, uri, model_name, version)
    problem = version_problem(mv.tags, gate)
    verdict = "incomplete" if problem.startswith("incomplete") else "failed" if problem else "passed"
    client.set_model_version_tag(model_name, version, "gate", verdict)
    # The champion first: one that fails today's gate is reported and handled by the policy.
    current = _champion(client, model_name)
    current_mv = _safe_get_version(client, model_name, current)
    status = _police_champion(client, model_name, current_mv, gate, on_failing_champion) if current_mv else ""
    if status and on_failing_champion == "clear":
        current, current_mv = None, None
    key = mv.tags.get("evaluation_key", "")
    # What the champion was evaluated on; a cleared alias leaves it behind, so clearing opens no door.
    champion_key = (current_mv.tags.get("evaluation_key", "") if current_mv
                    else client.get_registered_model(model_name).tags.get(KEY_TAG))
    if problem:
        result = {"decision": "rejected", "champion": current or "", "reason": problem}
    else:
        peers = [v for v in client.search_model_versions(f"name = '{model_name}'")
                 if v.tags.get("gate") == "passed" and v.tags.get("evaluation_key", "") == key
                 and not version_problem(v.tags, gate)]
        peers = peers or [mv]  # a racing promoter may have changed this version's gate tag
        best = max(peers, key=lambda v: (to_float(v.tags.get("quality.score")), int(v.version)))
        best_version = str(best.version)  # MLflow hands versions back as int or str depending on the call
        score = to_float(mv.tags.get("quality.score"))
        holder = f"champion v{current}" if current else "the last champion (alias cleared)"
        if champion_key is not None and champion_key != key and not allow_other_data:
            best_version = current
            reason = (f"passed the gate, but {holder} was evaluated on other data (evaluation key "
                      f"{champion_key or 'none'}, this version {key}): not compared, not promoted; promote with "
                      "--allow-other-data to replace it")
        elif champion_key is not None and champion_key != key:
            reason = f"passed the gate; {holder} was evaluated on other data and --allow-other-data replaces it"
        elif best_version != version:
            reason = f"passed the gate but v{best_version} scores higher ({to_float(best.tags.get('quality.score')):.5f} >= {score:.5f})"
        elif current == version:
            reason = "already champion"
        else:
            reason = f"passed the gate and beats v{current} (score {score:.5f})" if current else "passed the gate; first champion"
        if best_version and best_version != current:
            _set_alias(client, model_name, best_version)
            _set_model_tag(client, model_name, KEY_TAG, key)
            current = best_version
        result = {"decision": "champion" if best_version == version else "kept", "champion": current or "",
                  "reason": reason}
    if not (result["reason"] == "already champion" and mv.tags.get("promotion")):
        client.set_model_version_tag(model_name, version, "promotion", result["reason"])
    challenger = _place_challenger(client, model_name, result["champion"], gate)
    if challenger:
        result["challenger"] = challenger
    if status:
        policed = str(current_mv.version) if current_mv else ""
        replaced = result["champion"] and result["champion"] != policed
        result["champion_status"] = status + (f"; v{result['champion']} holds it now" if replaced else "")
    log.info("promotion of %s v%s: %s", model_name, version, result["reason"])
    return result


def version_problem(tags: dict[str, str], gate: GateThresholds) -> str:
    """Why a version with these tags may not be champion ("" when it may): incomplete (a tag of
    registration missing: it was never finished), a figure undefined, or below the gate."""
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    if missing:
        return f"incomplete version (never promoted): missing the tag(s) {', '.join(missing)}"
    q = {k: to_float(tags.get(f"quality.{k}")) for k in ("avg_hv", "pearson_ra", "pearson_rd")}
    undefined = [k for k, v in q.items() if not math.isfinite(v)]
    failed = [f"{k} {q[k]:.4f} < {t}" for k, t in (("avg_hv", gate.min_avg_hv), ("pearson_ra", gate.min_pearson_ra),
                                                    ("pearson_rd", gate.min_pearson_rd)) if k not in undefined and q[k] < t]
    failed += [f"{k} undefined" for k in undefined]
    if not math.isfinite(to_float(tags.get("quality.score"))):  # the score ranks the peers
        failed.append("score undefined")
    return "quality gate failed: " + "; ".join(failed) if failed else ""


def _police_champion(client, model_name: str, champion, gate: GateThresholds, policy: str) -> str:
    """Re-check the champion against today's gate; when it fails, apply ``policy`` and say what
    happened ("" when it passes)."""
    version = str(champion.version)
    problem = version_problem(champion.tags, gate)
    if not problem:
        if champion.tags.get(STATUS_TAG):
            client.delete_model_version_tag(model_name, version, STATUS_TAG)
        return ""
    if policy == "clear":
        client.delete_registered_model_alias(model_name, ALIAS)
        action = "alias cleared (promotion.on_failing_champion=clear)"
    elif policy == "flag":
        client.set_model_version_tag(model_name, version, STATUS_TAG, f"fails the gate: {problem}"[:5000])
        action = f"alias left on it, the version tagged {STATUS_TAG} (promotion.on_failing_champion=flag)"
    else:
        action = "alias left on it (promotion.on_failing_champion=keep)"
    status = f"champion v{version} fails the gate now ({problem}): {action}"
    log.warning("%s: %s", model_name, status)
    return status


def _version_number(version: Any) -> str:
    text = str(version).strip()
    if not text.isdigit() or int(text) < 1:
        raise PromotionError(f"version {version!r}: a model version is a whole number from 1")
    return str(int(text))


def _client(uri: str, model_name: str):
    """A client on ``uri`` that has ``model_name``; never creates a store (a mistyped SQLite path
    would otherwise leave an empty database behind)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from padirec.tracking.core import check_reachable, redact

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise PromotionError(f"no MLflow store at {uri}: set tracking.uri or MLFLOW_TRACKING_URI")
    check_reachable(uri)
    client = MlflowClient(uri)
    try:
        client.get_registered_model(model_name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise PromotionError(f"registry at {redact(uri)}: {redact(e.message)}") from e
        raise PromotionError(f"no registered model {model_name!r} at {redact(uri)}") from e
    return client


def _get_version(client, uri: str, model_name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model_name, version)
    except MlflowException as e:
        from padirec.tracking.core import redact

        latest = max((int(v.version) for v in client.search_model_versions(f"name = '{model_name}'")), default=0)
        raise PromotionError(f"model {model_name!r} at {redact(uri)} has no version {version} "
                             f"({f'versions 1 to {latest}' if latest else 'no versions yet'})") from e


def _safe_get_version(client, model_name: str, version: str | None):
    from mlflow.exceptions import MlflowException

    if not version:
        return None
    try:
        return client.get_model_version(model_name, version)
    except MlflowException:
        return None


def _write_racing(write, read, value: str) -> None:
    """``write()`` a value that racing promoters may write at once. MLflow's SQL store writes an
    alias or a tag by a select, then an insert: two writers collide on its unique key and the loser
    gets an error (seen in ``test_racing_promotions_end_with_the_better_version``). The loser writes
    again (the row exists now, so the store updates it) only if ``read()`` differs from ``value``."""
    from mlflow.exceptions import MlflowException

    try:
        write()
    except MlflowException:
        if read() != value:
            write()


def _set_alias(client, model_name: str, version: str) -> None:
    """Point ``champion`` at ``version`` (racing promoters: ``_write_racing``)."""
    _write_racing(lambda: client.set_registered_model_alias(model_name, ALIAS, version),
                  lambda: _champion(client, model_name), version)


def _set_model_tag(client, model_name: str, key: str, value: str) -> None:
    """Set a registered model's tag (racing promoters: ``_write_racing``)."""
    _write_racing(lambda: client.set_registered_model_tag(model_name, key, value),
                  lambda: client.get_registered_model(model_name).tags.get(key), value)


def _place_challenger(client, model_name: str, champion: str, gate: GateThresholds) -> str:
    """Point ``challenger`` at the newest gate-passing version newer than ``champion`` (any, when
    there is no champion), or remove it when there is none; returns it ("" when none)."""
    from mlflow.exceptions import MlflowException

    floor = int(champion) if champion else 0
    passing = [int(v.version) for v in client.search_model_versions(f"name = '{model_name}'")
               if int(v.version) > floor and v.tags.get("gate") == "passed" and not version_problem(v.tags, gate)]
    target = str(max(passing)) if passing else ""
    current = _alias(client, model_name, CHALLENGER)
    if target and target != current:
        try:
            client.set_registered_model_alias(model_name, CHALLENGER, target)
        except MlflowException:  # a racing promoter set it first: set it again only if it differs
            if _alias(client, model_name, CHALLENGER) != target:
                client.set_registered_model_alias(model_name, CHALLENGER, target)
    elif not target and current:
        try:
            client.delete_registered_model_alias(model_name, CHALLENGER)
        except MlflowException:  # already removed by a racing promoter
            pass
    return target


def _alias(client, model_name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def _champion(client, model_name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, ALIAS).version)
    except MlflowException:
        return None


def register_and_promote_stage(data_dir: str | Path, backbone_dir: str | Path, generator_dir: str | Path,
                               report_dir: str | Path, system_dir: str | Path, cfg: Any,
                               tracker: Tracker) -> dict[str, Any]:
    """``cfg`` is the whole ``padirec.config.Config``. Without MLflow tracking only the system
    folder is written. Returns what the step records (no NaN: ``finite_metadata``).

    Safe to retry: a second attempt in the same pipeline run (``PADIREC_KFP_RUN_ID``) finds the
    version the first registered, even when the first died before promoting, and promotes it.
    """
    version, q, undefined = register_stage(data_dir, backbone_dir, generator_dir, report_dir, system_dir, cfg, tracker)
    if isinstance(tracker, MlflowTracker):  # the pipeline run's config, figures and data, compared across runs
        report = json.loads((Path(report_dir) / "report.json").read_text())
        parent = tracker.log_to_parent(config_params(cfg), headline(report, backbone_dir))
        if parent:
            MlflowTracker(tracker.uri, parent).log_dataset(Path(data_dir), context="training")
    if version is None:
        if undefined:
            reason = "quality gate failed before registration: " + "; ".join(f"{k} undefined ({v})" for k, v in undefined.items())
            log.warning("not registered: %s", reason)
            tracker.set_tags({"promotion": "rejected", "promotion.reason": reason})
            return finite_metadata({"registered": False, "decision": "rejected", "reason": reason, **q}, undefined)
        return finite_metadata({"registered": False, **q})
    p = cfg.promotion
    result = promote(tracker.uri, cfg.tracking.registered_model, version, gate(cfg),
                     allow_other_data=p.allow_other_data, on_failing_champion=p.on_failing_champion)
    tracker.set_tags({"registered_model": cfg.tracking.registered_model, "model_version": version,
                      "promotion": result["decision"], **({"challenger": result["challenger"]} if result.get("challenger") else {})})
    log.info("registered %s v%s: %s (%s)", cfg.tracking.registered_model, version, result["decision"], result["reason"])
    return finite_metadata({"registered": True, "version": version, **result, **q})


def register_stage(data_dir: str | Path, backbone_dir: str | Path, generator_dir: str | Path,
                   report_dir: str | Path, system_dir: str | Path, cfg: Any,
                   tracker: Tracker) -> tuple[str | None, dict[str, float], dict[str, str]]:
    """The first half of the stage: write the system folder and register it (reusing this pipeline
    run's version if an earlier attempt made it). Returns ``(version or None, quality, {undefined
    figure: why})``; nothing is registered when a figure is undefined."""
    report = json.loads((Path(report_dir) / "report.json").read_text())
    data_manifest = read_manifest(data_dir, kind="prepared_data")
    q = quality(report)
    undefined = undefined_figures(report, q)
    build_system(data_dir, backbone_dir, generator_dir, system_dir, summary=finite_metadata(q))
    if not isinstance(tracker, MlflowTracker):
        log.info("tracking is off: system written to %s, not registered", system_dir)
        return None, q, undefined
    check_model_name(cfg)
    if undefined:
        return None, q, undefined
    checksum = data_manifest.get("data_checksum", "")
    dataset = dataset_reference(data_dir, data_manifest)  # the MLflow dataset the training runs logged as input
    tags = {"data_checksum": checksum, "evaluation_key": evaluation_key(report, checksum),
            "dataset.name": dataset["name"], "dataset.digest": dataset["digest"], "dataset.source": dataset["source"],
            "backbone": cfg.backbone.model, "dataset": cfg.data.source, "config": json.dumps(cfg.to_dict(), sort_keys=True)[:5000],
            **{f"quality.{k}": v for k, v in q.items()}}
    version = register_system(tracker.uri, tracker.run_id, system_dir, cfg.tracking.registered_model, tags,
                              tracker.kfp_run_id or kfp_run_id())
    return version, q, {}


def headline(report: dict[str, Any], backbone_dir: str | Path | None = None, method: str = "padirec") -> dict[str, float]:
    """The figures a pipeline run is compared by (the parent run's metrics): ``method``'s Avg.HV,
    front HV, Pearson r-a and r-d, reward and regret (when the report has them), NDCG@k at both ends
    of the grid (``ndcg_at_10_w_acc_1``: the accuracy-only task; ``..._w_acc_0``: the task with no
    weight on accuracy), the response-time ratio of the reference method over ``method``, the
    quality score, and the backbone's test NDCG@k. Undefined figures are left out."""
    k = report.get("k", 10)
    summary = report.get("summary", {}).get(method) or {}
    out = {name: summary.get(name) for name in ("avg_hv", "front_hv", "pearson_ra", "pearson_rd", "reward", "regret")}
    tasks, cells = report.get("tasks") or [], report.get("methods", {}).get(method) or []
    if tasks and len(cells) == len(tasks):
        utilities = report.get("utilities") or ["accuracy"]
        j = utilities.index("accuracy") if "accuracy" in utilities else 0
        acc = [float(w[j]) for w in tasks]
        for label, t in (("1", acc.index(max(acc))), ("0", acc.index(min(acc)))):
            out[f"ndcg_at_{k}_w_acc_{label}"] = cells[t].get(f"ndcg@{k}")
    out["response_time_ratio"] = speedup(report.get("response_time") or {})
    out["quality_score"] = quality(report, method)["score"] if cells else None
    if backbone_dir is not None and (Path(backbone_dir) / "metrics.json").is_file():
        test = json.loads((Path(backbone_dir) / "metrics.json").read_text()).get("test") or {}
        out[f"backbone_test_ndcg_at_{k}"] = test.get(f"ndcg@{k}")
    return {name: float(v) for name, v in out.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


