"""``report.md``: the human-readable report (tables and plots) rendered from a report dict."""

from __future__ import annotations

from typing import Any

from padirec.methods.registry import METHODS, method_with_role


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


def render_markdown(report: dict[str, Any], plots: list[str], plot_dir: str = "plots") -> str:
    """Markdown text of ``report`` with the figures ``plots`` (file names under ``plot_dir``)."""
    k = report["k"]
    lines = [f"# PaDiRec evaluation report ({report.get('dataset') or 'data'}, {report.get('backbone') or 'backbone'})",
             "", f"Created {report['created_utc']}; schema version {report['schema_version']}; "
             f"metrics at {k} on the test split, full ranking, history masked; alpha = {report['alpha']}.",
             f"Utilities: {', '.join(report['utilities'])}; {len(report['tasks'])} tasks.", ""]
    versions = report.get("versions", {})
    lines += ["Inputs: " + ", ".join(f"{k_}={(v or 'n/a')[:12]}" for k_, v in sorted(versions.items())), ""]

    if report["summary"]:
        lines += ["## Summary", "",
                  "Avg.HV / front HV on objectives normalised over all methods and tasks; Pearson "
                  "against the reference method (Retrain); Spearman of each metric with w_acc (n/a = undefined, e.g. a "
                  "constant series).", ""]
        spear = sorted({m for s in report["summary"].values() for m in s["spearman"]})
        header = ["method", "Avg.HV", "front HV", "Pearson r-a", "Pearson r-d"] + [f"Spearman {m}" for m in spear]
        rows = [[m, s["avg_hv"], s["front_hv"], s["pearson_ra"], s["pearson_rd"]] + [s["spearman"].get(x) for x in spear]
                for m, s in report["summary"].items()]
        lines += _table(header, rows)

    if report["methods"]:
        metrics = sorted({m for rows in report["methods"].values() for r in rows for m in r})
        for metric in metrics:
            lines += [f"## {metric} per task", ""]
            header = ["w"] + list(report["methods"])
            rows = [["(" + ", ".join(f"{x:.2f}" for x in w) + ")"] + [report["methods"][m][t].get(metric) for m in report["methods"]]
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

    if plots:
        lines += ["## Figures", ""] + [f"![{p}]({plot_dir}/{p})" for p in plots] + [""]
    return "\n".join(lines)
