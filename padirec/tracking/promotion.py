"""Promotion: the quality gate and the aliases ``champion`` and ``challenger``, applied by ``padirec
promote`` and by the last pipeline step (``padirec.tracking.registration``), which registers the
trained system and promotes it if it earns it.

The rule (idempotent, and safe when two promotions race): a version's gate result is written to its
tags (``gate``: passed, failed, incomplete or untrusted; ``promotion``: why). Then:

- Same evaluation as the champion (same evaluation key: data checksum and task grid): the best
  gate-passing version of that evaluation takes ``champion`` only if its score beats the
  champion's by ``promotion.margin`` (> 0), so a tie (a cache-hit re-run registering a copy) never
  moves it. Every promoter computes the same answer, so re-running changes nothing and racing
  promoters agree.
- Another evaluation (a new data snapshot): the scores do not compare, so the two versions are
  evaluated head to head on this version's data (``padirec.tracking.head_to_head``: its test users,
  through the serving interface, the same tasks and metrics). The version takes ``champion`` only if
  it beats the incumbent by the margin and the lower end of the paired bootstrap interval of the
  score difference is above the margin too. Both evaluations are logged on the version's run. The
  register step always has the data; ``padirec promote`` has it with ``--data``, else such a
  version is kept (not compared). A head-to-head that cannot run (the champion's model does not
  load) keeps the champion, and the reason says why: the step still ends.
- The decision is MLflow's model validation (``mlflow.validate_evaluation_results`` with
  ``MetricThreshold``), on the score (``min_absolute_change``: the margin) and, head to head, on the
  bootstrap's lower bound (``threshold``: the margin).
- A version takes ``champion`` only if it is what its tags say (``padirec.tracking.provenance``):
  its run is in the pipeline's experiment, the run carries the evaluation the tags claim, and the
  model's files have the system checksum of the tags. Else its gate is ``untrusted``.
- The champion is re-checked against the gate at every promotion; when it fails now (a stricter
  gate, an incomplete version), ``on_failing_champion`` decides: ``keep`` the alias, ``flag`` it
  (keep, and tag the version ``champion_status``), or ``clear`` it. A passing version of the same
  evaluation replaces a failing champion in any case; a cleared alias still remembers its last
  champion (the registered model's tags ``champion.evaluation_key``, ``champion.version``), so a
  version of other data still has to beat that one head to head.
- An incomplete version (``REQUIRED_TAGS``) or one with an undefined figure never passes.
- ``challenger`` is the newest version newer than the champion that passes today's gate: one that
  passed without beating the champion and is not a copy of it (the same system files), the
  candidate to shadow or A/B against it. Recomputed at every promotion from the versions' tags, so
  it is as idempotent as the champion; it is removed when no such version is left (a better
  version took ``champion``), and never points at the champion.

Nothing undefined is registered: when a figure the gate reads (Avg.HV, Pearson r-a, r-d, the
score) is undefined, the gate fails before registration and the reason says why. Synthetic data
never registers under the production model name.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from padirec.config.checks import PRODUCTION_MODEL, check_model_name  # noqa: F401 (re-exported: the served model)
from padirec.tracking.head_to_head import falls_short
from padirec.tracking.model_registry import CHECKSUM_TAG, REQUIRED_TAGS, PromotionError, to_float
from padirec.tracking.provenance import version_trust
from padirec.tracking.quality import evaluation_key, quality, undefined_figures  # noqa: F401 (re-exported)

log = logging.getLogger("padirec")
ALIAS = "champion"
STATUS_TAG = "champion_status"
CHAMPION_POLICIES = ("keep", "flag", "clear")
KEY_TAG = "champion.evaluation_key"  # on the registered model: what its champion was evaluated on
VERSION_TAG = "champion.version"  # and which version it was (a cleared alias still has to be beaten)
DEFAULT_MARGIN = 0.001  # ``promotion.margin``'s default
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


def promote(uri: str, model_name: str, version: str, gate: GateThresholds, *, experiment: str,
            margin: float = DEFAULT_MARGIN, on_failing_champion: str = "flag",
            compare: Callable[[str, str], dict[str, Any]] | None = None) -> dict[str, str]:
    """Apply the gate to ``version`` and move ``champion`` by the rule in the module docstring.

    ``experiment``: the pipeline's experiment, where a trusted version's run is. ``compare(version,
    incumbent)``: the head-to-head on this version's data (``head_to_head.head_to_head``); None when
    there is no data at hand. Returns ``{"decision": "champion" | "rejected" | "kept", "champion":
    version or "", "reason": ..., "champion_status": ..., "challenger": ...}``; ``champion_status``
    (only when the champion fails the gate now) says what ``on_failing_champion`` did; ``challenger``
    (only when there is one) the version holding that alias. Errors (no such model or version, a
    malformed version, an unreachable server) are ``PromotionError``/``TrackingError`` with a one-line message.
    """
    if on_failing_champion not in CHAMPION_POLICIES:
        raise PromotionError(f"promotion.on_failing_champion: {on_failing_champion!r} is not one of "
                             f"{', '.join(CHAMPION_POLICIES)}")
    if not (isinstance(margin, int | float) and math.isfinite(margin) and margin > 0):
        raise PromotionError(f"promotion.margin: {margin!r} must be a number above 0 (a tie must never win)")
    version = _version_number(version)
    client = _client(uri, model_name)
    experiment_id = _experiment_id(client, uri, experiment)
    mv = _get_version(client, uri, model_name, version)
    problem = version_problem(mv.tags, gate) or version_trust(client, model_name, mv, experiment_id)
    verdict = ("incomplete" if problem.startswith("incomplete") else "untrusted" if problem.startswith("untrusted")
               else "failed" if problem else "passed")
    client.set_model_version_tag(model_name, version, "gate", verdict)
    # The champion first: one that fails today's gate is reported and handled by the policy.
    current = _champion(client, model_name)
    current_mv = _safe_get_version(client, model_name, current)
    status = _police_champion(client, model_name, current_mv, gate, on_failing_champion) if current_mv else ""
    if status and on_failing_champion == "clear":
        current, current_mv = None, None
    key = mv.tags.get("evaluation_key", "")
    # What the champion was evaluated on; a cleared alias leaves it behind, so clearing opens no door.
    model_tags = client.get_registered_model(model_name).tags
    champion_key = current_mv.tags.get("evaluation_key", "") if current_mv else model_tags.get(KEY_TAG)
    if problem:
        result = {"decision": "rejected", "champion": current or "", "reason": problem}
    elif champion_key is not None and champion_key != key:
        incumbent = current or model_tags.get(VERSION_TAG)
        result = _other_data(client, model_name, mv, current, incumbent, margin, compare)
    else:
        # the champion defends its alias by its score when it is comparable and passes today's gate
        holder = current_mv if current_mv is not None and current_mv.tags.get("evaluation_key", "") == key \
            and not version_problem(current_mv.tags, gate) else None
        result = _same_data(client, model_name, mv, current, holder, key, gate, margin, experiment_id)
    if result["decision"] == "champion" and result["champion"] != current:
        _set_alias(client, model_name, version)
        _set_model_tag(client, model_name, KEY_TAG, key)
        _set_model_tag(client, model_name, VERSION_TAG, version)
    elif result["decision"] == "kept" and result["champion"] and result["champion"] != current:  # a better peer
        _set_alias(client, model_name, result["champion"])
        _set_model_tag(client, model_name, KEY_TAG, key)
        _set_model_tag(client, model_name, VERSION_TAG, result["champion"])
    if not (result["reason"] == "already champion" and mv.tags.get("promotion")):
        client.set_model_version_tag(model_name, version, "promotion", result["reason"][:5000])
    challenger = _place_challenger(client, model_name, result["champion"], gate)
    if challenger:
        result["challenger"] = challenger
    if status:
        policed = str(current_mv.version) if current_mv else ""
        replaced = result["champion"] and result["champion"] != policed
        result["champion_status"] = status + (f"; v{result['champion']} holds it now" if replaced else "")
    log.info("promotion of %s v%s: %s", model_name, version, result["reason"])
    return result


def _same_data(client, model_name: str, mv, current: str | None, holder, key: str, gate: GateThresholds,
               margin: float, experiment_id: str) -> dict[str, str]:
    """The best trusted, gate-passing version of this evaluation; it replaces the champion
    (``holder``, when comparable and passing) only when it beats it by ``margin``: a tie keeps it."""
    version = str(mv.version)
    peers = {str(v.version): v for v in client.search_model_versions(f"name = '{model_name}'")
             if v.tags.get("gate") == "passed" and v.tags.get("evaluation_key", "") == key
             and not version_problem(v.tags, gate)}
    peers[version] = mv  # a racing promoter may have changed this version's gate tag
    if holder is not None:
        peers[str(holder.version)] = holder
    ranked = sorted(peers.values(), key=lambda v: (to_float(v.tags.get("quality.score")), int(v.version)), reverse=True)
    for best in ranked:
        best_version = str(best.version)
        if best_version == current:
            break
        if holder is not None and falls_short(_figures(best), _figures(holder), margin):
            best_version = current  # nothing beats the champion by the margin
            break
        if best_version == version or not version_trust(client, model_name, best, experiment_id):
            break
        client.set_model_version_tag(model_name, best_version, "gate", "untrusted")  # tags that lie: never again
    else:
        best_version = current
    score = to_float(mv.tags.get("quality.score"))
    if current == version:
        return {"decision": "champion", "champion": version, "reason": "already champion"}
    if best_version == version:
        reason = (f"passed the gate and beats v{current} by the margin {margin:g} (score {score:.5f} vs "
                  f"{to_float(holder.tags.get('quality.score')):.5f})" if holder is not None
                  else f"passed the gate and replaces v{current} (evaluated the same way, failing the gate now)"
                  if current else "passed the gate; first champion")
        return {"decision": "champion", "champion": version, "reason": reason}
    if best_version == current:
        reason = (f"passed the gate but does not beat champion v{current} by the margin {margin:g} "
                  f"(score {score:.5f} vs {to_float(holder.tags.get('quality.score')):.5f})" if holder is not None
                  else f"passed the gate; champion v{current} kept")
    else:
        best_score = to_float(peers[best_version].tags.get("quality.score"))
        reason = f"passed the gate but v{best_version} scores higher ({best_score:.5f} >= {score:.5f})"
    return {"decision": "kept", "champion": best_version or "", "reason": reason}


def _other_data(client, model_name: str, mv, current: str | None, incumbent: str | None, margin: float,
                compare) -> dict[str, str]:
    """The version against the incumbent on this version's data (``compare``); without data, kept."""
    version = str(mv.version)
    holder = f"champion v{current}" if current else f"the last champion v{incumbent} (alias cleared)"
    if not incumbent:  # a model whose champion was cleared before the registry remembered its version
        return {"decision": "kept", "champion": "", "reason": "passed the gate, but the last champion (alias "
                "cleared) was evaluated on other data and is unknown: not compared; set the alias by hand"}
    if compare is None:
        return {"decision": "kept", "champion": current or "",
                "reason": f"passed the gate, but {holder} was evaluated on other data: not compared, not promoted "
                          "(the register step compares them head to head; by hand: padirec promote --data DIR)"}
    try:
        result = compare(version, incumbent)
    except Exception as e:  # noqa: BLE001 - an incumbent that cannot be served keeps its alias; the step goes on
        from padirec.tracking.core import redact

        why = redact(" ".join(str(e).split()))[:300] or type(e).__name__
        log.warning("head to head of v%s against v%s failed: %s", version, incumbent, why)
        return {"decision": "kept", "champion": current or "",
                "reason": f"passed the gate, but the head to head against {holder} on this version's data failed "
                          f"({type(e).__name__}: {why}): not promoted"}
    _log_head_to_head(client, model_name, mv, result)
    figures = f"score {result['candidate']['score']:.5f} vs {result['incumbent']['score']:.5f}, gain " \
              f"{result['gain']:.5f}, {round(result['confidence'] * 100)}% interval [{result['gain_lower']:.5f}, " \
              f"{result['gain_upper']:.5f}], {result['users']} users"
    failed = falls_short({"score": result["candidate"]["score"], "gain_lower": result["gain_lower"]},
                   {"score": result["incumbent"]["score"], "gain_lower": 0.0}, margin)
    if failed:
        return {"decision": "kept", "champion": current or "",
                "reason": f"passed the gate but does not beat {holder} head to head on this version's data by the "
                          f"margin {margin:g} ({figures}): {failed}"}
    return {"decision": "champion", "champion": version,
            "reason": f"passed the gate and beats {holder} head to head on this version's data by the margin "
                      f"{margin:g} ({figures})"}


def _figures(mv) -> dict[str, float]:
    return {"score": to_float(mv.tags.get("quality.score"))}


def _log_head_to_head(client, model_name: str, mv, result: dict[str, Any]) -> None:
    """Both evaluations on the version's run (metrics and the full JSON), and a summary tag."""
    import time

    from mlflow.entities import Metric

    now, against = int(time.time() * 1000), result["incumbent_version"]
    values = {"head_to_head.candidate.score": result["candidate"]["score"],
              "head_to_head.incumbent.score": result["incumbent"]["score"],
              "head_to_head.gain": result["gain"], "head_to_head.gain_lower": result["gain_lower"],
              "head_to_head.gain_upper": result["gain_upper"]}
    client.log_batch(mv.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()])
    client.log_dict(mv.run_id, result, f"head_to_head/v{mv.version}_vs_v{against}.json")
    client.set_model_version_tag(model_name, str(mv.version), "head_to_head",
                                 f"v{against}: gain {result['gain']:.5f} [{result['gain_lower']:.5f}, "
                                 f"{result['gain_upper']:.5f}]")


def _experiment_id(client, uri: str, experiment: str) -> str:
    from padirec.tracking.core import redact

    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise PromotionError(f"no experiment {experiment!r} at {redact(uri)}: the pipeline's runs, where a "
                             "version's run must be, log there (tracking.experiment)")
    return found.experiment_id


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
    there is no champion) that is not a copy of it (the same system files: what a re-run that hits
    the cache registers, nothing to shadow), or remove it when there is none; returns it ("" when none)."""
    from mlflow.exceptions import MlflowException

    floor = int(champion) if champion else 0
    versions = client.search_model_versions(f"name = '{model_name}'")
    copy = next((v.tags.get(CHECKSUM_TAG) for v in versions if str(v.version) == champion), None)
    passing = [int(v.version) for v in versions
               if int(v.version) > floor and v.tags.get("gate") == "passed" and not version_problem(v.tags, gate)
               and v.tags.get(CHECKSUM_TAG) != copy]
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
