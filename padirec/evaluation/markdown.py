"""``report.md``: the human-readable report (tables and plots) rendered from a report dict."""

from __future__ import annotations

from typing import Any

from padirec.evaluation.summary import edge_measurable
from padirec.methods.registry import METHODS, left_out, method_with_role


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _task(w: list[float]) -> str:
    return "(" + ", ".join(f"{x:.2f}" for x in w) + ")"


def _ci(value: Any, interval: Any) -> str:
    """``value [lo, hi]``; the bare value when there is no interval (an older report)."""
    if not isinstance(interval, list | tuple) or len(interval) != 2:
        return _fmt(value)
    return f"{_fmt(value)} [{_fmt(interval[0])}, {_fmt(interval[1])}]"


def _se(value: Any, se: Any) -> str:
    return _fmt(value) if se is None else f"{_fmt(value)} ± {_fmt(se)}"


def _per_task(values: Any, t: int) -> Any:
    return values[t] if isinstance(values, list) and t < len(values) else None


def _uncertainty_lines(report: dict[str, Any], ref: str) -> list[str]:
    """The Retrain ceiling and the per-task differences to the reference with their intervals."""
    summary, tasks = report["summary"], report["tasks"]
    meta = report.get("uncertainty") or {}
    level = f"{100 * meta['confidence']:g}%" if isinstance(meta.get("confidence"), float | int) else "95%"
    lines: list[str] = []
    ceiling = (summary.get(ref) or {}).get("pearson_ceiling")
    if ceiling:
        lines += ["## The Retrain ceiling", "",
                  f"{ref} trained again with seed {ceiling.get('seed')} (the report's: seed "
                  f"{ceiling.get('reference_seed', 'n/a')}) against itself: Pearson r-a "
                  f"**{_fmt(ceiling.get('pearson_ra'))}**, r-d **{_fmt(ceiling.get('pearson_rd'))}**, regret "
                  f"{_fmt(ceiling.get('regret'))}. No method can be expected to follow {ref}'s curve more closely "
                  f"than {ref} follows itself: a Pearson at or above the ceiling, or a regret within the second "
                  f"{ref}'s, is within seed noise.", ""]
    shown = [m for m, s in summary.items() if m != ref and s.get("vs_reference")]
    if ceiling and ceiling.get("vs_reference"):
        shown.append(f"{ref} (seed {ceiling.get('seed')})")
    if not shown or not tasks:
        return lines
    diffs = {m: summary[m]["vs_reference"] for m in shown if m in summary}
    if ceiling and ceiling.get("vs_reference"):
        diffs[shown[-1]] = ceiling["vs_reference"]
    metrics = list(dict.fromkeys(key for d in diffs.values() for key in d))
    lines += [f"## Differences to {ref} ({level} paired bootstrap interval over users)", "",
              f"Each cell: the method's value minus {ref}'s, `mean [lo, hi]`, users resampled with replacement "
              f"({meta.get('resamples', 'n/a')} draws, seed {meta.get('seed', 'n/a')}, {meta.get('users', 'n/a')} "
              "users), the same draws for every method (paired). An interval that holds 0 is within noise.", ""]
    for key in metrics:
        lines += [f"### {key} - {ref}", ""]
        rows = []
        for t, w in enumerate(tasks):
            row: list[Any] = [_task(w)]
            for m in shown:
                d = diffs[m].get(key) or {}
                lo, hi = _per_task(d.get("lo"), t), _per_task(d.get("hi"), t)
                row.append(_ci(_per_task(d.get("mean"), t), [lo, hi]))
            rows.append(row)
        means = [(diffs[m].get(key) or {}).get("task_mean") for m in shown]
        rows.append(["mean over tasks"] + [_ci(tm[0], tm[1:]) if isinstance(tm, list) and len(tm) == 3 else "n/a"
                                           for tm in means])
        lines += _table(["w"] + shown, rows)
    return lines


def _edge_lines(report: dict[str, Any]) -> list[str]:
    """Controllability along each edge of the simplex (p >= 3): each objective's Spearman with its own
    weight, and whether its range along the edge exceeds twice its largest standard error there."""
    summary = report["summary"]
    edges = list(dict.fromkeys(e for s in summary.values() for e in s.get("edge_spearman") or {}))
    if not edges:
        return []
    cols = [(e, key) for e in edges for key in dict.fromkeys(
        key for s in summary.values() for key in (s.get("edge_spearman") or {}).get(e, {}))]
    lines = ["## Controllability along the simplex's edges", "",
             "Along each edge (the tasks where the third weight is 0), each objective's Spearman with its own "
             "weight, signed so that +1 is perfect control (a lower-is-better metric's rho is negated). The goal "
             "for PaDiRec and Retrain is 0.9 or better wherever the objective is measurable beyond its standard "
             "error: `*` marks an objective whose range along the edge is below twice its largest standard error "
             "over users there (not measurable).", ""]
    rows = []
    for m, s in summary.items():
        es = s.get("edge_spearman") or {}
        seen = edge_measurable(report["methods"].get(m) or [], s.get("se") or {}, report["tasks"], report["utilities"],
                               report["k"]) if m in report["methods"] else {}
        rows.append([m] + [_edge_cell(es.get(e, {}).get(key), seen.get(e, {}).get(key)) for e, key in cols])
    return lines + _table(["method"] + [f"{e}: {key}" for e, key in cols], rows)


def _edge_cell(rho: Any, measurable: Any) -> str:
    return _fmt(rho) + ("*" if measurable is False else "")


def _band_lines(report: dict[str, Any], ref: str) -> list[str]:
    """The band protocol's summary: its tasks truly unseen by every method that learns from tasks."""
    band = (report.get("protocols") or {}).get("band")
    if not band:
        return []
    low, high = (band.get("band") or [None, None])[:2]
    if band.get("skipped"):
        return [f"## Band protocol: w_acc in [{_fmt(low, 2)}, {_fmt(high, 2)}] unseen", "",
                f"Skipped: {band['skipped']}", ""]
    gen = band.get("generator") or {}
    lines = [f"## Band protocol: w_acc in [{_fmt(low, 2)}, {_fmt(high, 2)}] unseen", "",
             f"{band['description']}. {band.get('bank_tasks_removed', 'n/a')} bank tasks removed "
             f"({band.get('bank_rows_left', 'n/a')} bank rows left); rerun without them: "
             f"{', '.join(band.get('rerun') or []) or 'none'}"
             + (f" (the band's generator trained in {_fmt(gen.get('train_seconds'), 1)} s)" if gen else "")
             + f"; the others' rows are the grid's. Tasks: {', '.join(_task(w) for w in band['tasks'])}. Reward "
             "is on the grid's scale.", ""]
    rows = [[m, _ci(s.get("reward"), s.get("reward_ci")), _ci(s.get("regret"), s.get("regret_ci")),
             s.get("pearson_ra"), s.get("pearson_rd"), s.get("avg_hv")] for m, s in band["summary"].items()]
    lines += _table(["method", "reward", f"regret vs {ref}", "Pearson r-a", "Pearson r-d", "Avg.HV (paper)"], rows)
    lines += _following_lines(band["summary"], ref, report)
    return lines


def _following_lines(summary: dict[str, Any], ref: str, report: dict[str, Any]) -> list[str]:
    """How closely each method follows the reference: tracking error per objective and, per task,
    Pareto dominance against the reference's point (counts; significant = a share of bootstrap
    draws at least the report's confidence)."""
    shown = [m for m, s in summary.items() if s.get("dominance") and m != ref]
    if not shown:
        return []
    level = (report.get("uncertainty") or {}).get("confidence", 0.95)
    keys = list(dict.fromkeys(key for m in shown for key in summary[m].get("tracking_error") or {}))

    def significant(s: dict[str, Any], name: str) -> int:
        return sum(1 for x in (s.get("dominance_share") or {}).get(name) or [] if x is not None and x >= level)

    rows = []
    for m in shown:
        s = summary[m]
        counts = s["dominance"]["counts"]
        rows.append([m] + [_ci((s["tracking_error"].get(key) or {}).get("mean"),
                               (s.get("tracking_error_ci") or {}).get(key)) for key in keys]
                    + [f"{counts['dominates']} ({significant(s, 'dominates')})",
                       f"{counts['dominated']} ({significant(s, 'dominated')})", counts["incomparable"] + counts["equal"]])
    lines = [f"Following {ref}: tracking error = mean over tasks of |method - {ref}| per metric; per task, "
             f"whether the method's point dominates or is dominated by {ref}'s at the same w (in brackets: "
             f"tasks where that holds in at least {level:.0%} of the bootstrap draws).", ""]
    return lines + _table(["method"] + [f"tracking error {k}" for k in keys]
                          + [f"dominates {ref}", f"dominated by {ref}", "incomparable or equal"], rows)


def _left_out_lines(summary: dict[str, Any]) -> list[str]:
    """The finding of each registered method left out of the roster (one row per method, not two)."""
    notes = {key: note for key, note in left_out().items() if key not in summary}
    return [f"Not a row: `{key}`: {note}" for key, note in notes.items()] + ([""] if notes else [])


def reference_serves(config: dict[str, Any] | None, ref: str = "retrain") -> str | None:
    """What the reference serves for a task (``methods.<ref>.checkpoints``), in words, from a report's
    config; None when the config does not say."""
    cfg = config or {}
    how = ((cfg.get("methods") or {}).get(ref) or {}).get("checkpoints")
    if how is None:
        return None
    if how == "mean":
        last = (cfg.get("adapters") or {}).get("checkpoints_per_task")
        return f"the mean of its last {last} epochs' adapters (`methods.{ref}.checkpoints: mean`)"
    return f"its last epoch's adapter (`methods.{ref}.checkpoints: {how}`)"


def _scale_text(report: dict[str, Any]) -> str:
    norm = report.get("normalisation")
    if not norm:
        return "min-max over every method and task of this report (a report from before the fixed scale)"
    ends = ", ".join(f"{key} {_fmt(e.get('worst'))} -> 0, {_fmt(e.get('best'))} -> 1"
                     for key, e in norm["objectives"].items())
    return f"{norm['source']}: {ends}"


def render_markdown(report: dict[str, Any], plots: list[str], plot_dir: str = "plots") -> str:
    """Markdown text of ``report`` with the figures ``plots`` (file names under ``plot_dir``)."""
    k = report["k"]
    lines = [f"# PaDiRec evaluation report ({report.get('dataset') or 'data'}, {report.get('backbone') or 'backbone'})",
             "", f"Created {report['created_utc']}; schema version {report['schema_version']}; "
             f"metrics at {k} on the {report.get('split', 'test')} split, full ranking, history masked; "
             f"alpha = {report['alpha']}.",
             f"Utilities: {', '.join(report['utilities'])}; {len(report['tasks'])} tasks.", ""]
    versions = report.get("versions", {})
    lines += ["Inputs: " + ", ".join(f"{k_}={(v or 'n/a')[:12]}" for k_, v in sorted(versions.items())), ""]

    summary = report["summary"]
    if summary:
        ref = method_with_role("reference", summary) or "the reference"
        served = reference_serves(report.get("config"), ref)
        ranged = list(dict.fromkeys(m for s in summary.values() for m in s.get("range") or {}))  # utilities' order
        lines += ["## Summary: each task's own objective", "",
                  "Reward = mean over tasks of sum_j w_j z_j, each objective z_j on a scale fixed before any "
                  f"method is compared: {_scale_text(report)} (1 = best; the normalisation of Avg.HV, so no "
                  "method's figures depend on the others in the report). "
                  f"Regret = {ref}'s reward minus the method's, per task, averaged (lower is better; "
                  "negative = better than the reference)." + (f" {ref} serves {served}." if served else "")
                  + " Pearson against the reference. Range = max - min "
                  "of the method's raw metric over the tasks (how far its weights move it). n/a = undefined."
                  + (" `value [lo, hi]`: the interval of a paired bootstrap over users (users resampled, "
                     "per-task means, reward and regret recomputed on every draw)."
                     if any(s.get("reward_ci") for s in summary.values()) else ""), ""]
        fair = any("pearson_rf" in s for s in summary.values())  # the fairness utility's curve
        header = (["method", "reward", "regret", "Pearson r-a", "Pearson r-d"] + (["Pearson r-f"] if fair else [])
                  + [f"range {m}" for m in ranged])
        rows = [[m, _ci(s.get("reward"), s.get("reward_ci")), _ci(s.get("regret"), s.get("regret_ci")),
                 s["pearson_ra"], s["pearson_rd"]] + ([s.get("pearson_rf")] if fair else [])
                + [(s.get("range") or {}).get(x) for x in ranged] for m, s in summary.items()]
        lines += _table(header, rows)
        lines += _left_out_lines(summary)
        lines += _following_lines(summary, ref, report)
        lines += _band_lines(report, ref)
        lines += _uncertainty_lines(report, ref)

        lines += ["## The paper's metrics", "",
                  "Avg.HV (the paper's metric: mean over tasks of the product of the normalised objectives; it "
                  "rewards middle-of-the-road points and punishes doing exactly what an extreme task asks) and "
                  "the hypervolume of each method's whole front, on the same normalisation; Spearman of each "
                  "metric with w_acc (controllability).", ""]
        spear = sorted({m for s in summary.values() for m in s["spearman"]})
        header = ["method", "Avg.HV (paper)", "front HV"] + [f"Spearman {m}" for m in spear]
        rows = [[m, s["avg_hv"], s["front_hv"]] + [s["spearman"].get(x) for x in spear] for m, s in summary.items()]
        lines += _table(header, rows)

        lines += _edge_lines(report)
        for name, title in (("reward_per_task", "Reward per task"), ("regret_per_task", f"Regret vs {ref} per task")):
            shown = [m for m, s in summary.items() if s.get(name) is not None and len(s[name]) == len(report["tasks"])]
            if shown and report["tasks"]:
                lines += [f"## {title}", ""]
                rows = [[_task(w)] + [summary[m][name][t] for m in shown] for t, w in enumerate(report["tasks"])]
                lines += _table(["w"] + shown, rows)

    if report["methods"]:
        metrics = sorted({m for rows in report["methods"].values() for r in rows for m in r})
        for metric in metrics:
            se = {m: ((summary.get(m) or {}).get("se") or {}).get(metric) for m in report["methods"]}
            lines += [f"## {metric} per task", ""]
            if any(v is not None for v in se.values()):
                lines += ["`value ± standard error over users`.", ""]
            header = ["w"] + list(report["methods"])
            rows = [[_task(w)] + [_se(report["methods"][m][t].get(metric), _per_task(se[m], t))
                                  for m in report["methods"]]
                    for t, w in enumerate(report["tasks"])]
            lines += _table(header, rows)

    rt = report.get("response_time") or {}
    if rt:
        lines += ["## Response time", "",
                  "Seconds from new task weights to a model ready to serve them (new tasks, one process).", ""]
        rows = [[m, r["median_s"], r["p25_s"], r["p75_s"], r["repeats"], r.get("fit_s"), r.get("serve_s")]
                for m, r in rt.items()]
        lines += _table(["method", "median s", "p25 s", "p75 s", "repeats", "one-off fit s", "serve s"], rows)
        slow, fast = method_with_role("reference", rt), method_with_role("proposed", rt)
        if slow and fast and rt[fast]["median_s"] > 0:
            name = {key: METHODS[key].__name__ for key in (slow, fast)}
            lines += [f"**{name[slow]} / {name[fast]}: {rt[slow]['median_s'] / rt[fast]['median_s']:.1f}x**", ""]

    analyses = report.get("analyses") or {}
    rob = analyses.get("robustness") or {}
    if rob:
        lines += ["## Robustness (same Gaussian noise on every method's adapters)", ""]
        cols = sorted({c for r in rob.values() for c in r})
        lines += _table(["method"] + cols, [[m] + [r.get(c) for c in cols] for m, r in rob.items()])
    case = analyses.get("case_study")
    if case:
        lines += [f"## Case study: user {case['user']} ({case['method']})", "",
                  f"Held-out item: {case['target']['title'] or case['target']['item']} "
                  f"({', '.join(case['target']['categories'])})", ""]
        for w_acc, items in case["lists"].items():
            lines += [f"w_acc = {w_acc}:", ""]
            lines += _table(["rank", "item", "title", "categories"],
                            [[i + 1, it["item"], it["title"], ", ".join(it["categories"])] for i, it in enumerate(items)])

    choices = report.get("choices") or {}
    if choices:
        lines += ["## Choices and the split each was made on", "",
                  "Settings chosen by measurement; \"none\" = set a priori, never tuned. A choice made on the "
                  "test split makes the test figures above optimistic for it.", ""]
        lines += _table(["setting", "value", "chosen on", "how"],
                        [[key, str(c.get("value")), c.get("split"), c.get("how", "")] for key, c in choices.items()])

    if plots:
        lines += ["## Figures", ""] + [f"![{p}]({plot_dir}/{p})" for p in plots] + [""]
    return "\n".join(lines)
