"""The ``padirec`` command with the pipeline commands: ``run``, ``compile``, ``submit``, ``schedule``,
``close-runs``, ``experiment`` on top of the library's (``padirec.commands.cli``: ``data``, ``backbone``,
``adapters``, ``generate``, ``recommend``, ``promote``). The console script ``padirec`` and ``python -m pipelines`` run this
one; ``python -m padirec`` runs the library's commands alone (no kfp)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from padirec.commands.cli import add_config_arguments, build_parser, load_config_from_args
from padirec.commands.cli import main as library_main
from padirec.errors import PadirecError

# The commands import kfp and the pipeline modules when they run, so the library's commands
# (``padirec data --help``) start without loading kfp.


def cmd_run(args: argparse.Namespace) -> int:
    from padirec.tracking import redact, resolve_tracking_uri
    from pipelines.run_local import find_output, run_local

    cfg = load_config_from_args(args)
    run_folder = run_local(cfg)
    data_manifest = find_output(run_folder, "**/prepare-data/data/manifest.json") or find_output(run_folder, "**/data/manifest.json")
    if data_manifest:
        stats = json.loads(data_manifest.read_text())["stats"]
        print(f"data ({cfg.data.source}, after filtering): {stats['num_users']} users, {stats['num_items']} items, "
              f"{stats['num_interactions']} interactions, {stats['num_categories']} categories")
    if cfg.tracking.uri != "none":
        uri = resolve_tracking_uri(cfg.tracking.uri, Path(cfg.run_dir).resolve())
        print(f"MLflow: experiment {cfg.tracking.experiment!r} at {redact(uri)}")
        if uri.startswith("sqlite:///"):
            print(f"  open the UI with: .venv/bin/mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")
    print(f"run folder: {run_folder}")
    report = find_output(run_folder, "**/report/report.json")
    if report:
        md = report.with_name("report.md")
        print(f"human report: {md}")
        print(report)
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from kfp import compiler

    from pipelines.padirec_pipeline import ClusterOptions, build_pipeline

    if args.image.endswith(":latest") or ":" not in args.image:
        raise PadirecError(f"--image {args.image!r}: use an immutable tag (e.g. padirec:0.1.0-<commit>), never latest")
    if args.gpu_count < 0:
        raise PadirecError(f"--gpu-count {args.gpu_count}: the accelerators per GPU step, 0 or more")
    if bad := [pair for pair in args.gpu_node_selector if "=" not in pair]:
        raise PadirecError(f"--gpu-node-selector {bad[0]!r}: expected LABEL=VALUE")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    given = {"cpu": args.cpu, "memory": args.memory, "memory_limit": args.memory_limit, "run_as_user": args.run_as_user,
             "gpu_tolerations": tuple(args.gpu_toleration) if args.gpu_toleration else None}
    cluster = ClusterOptions(gpu_type=args.gpu_type, gpu_count=args.gpu_count,
                             gpu_node_selector=dict(pair.split("=", 1) for pair in args.gpu_node_selector),
                             **{k: v for k, v in given.items() if v is not None})
    compiler.Compiler().compile(build_pipeline(args.image, cluster), str(out))
    print(out)
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from pipelines.remote import read_token, submit, with_tracking

    cfg = with_tracking(load_config_from_args(args), args.tracking_uri)
    print(submit(cfg, args.host, args.package, args.experiment, args.data_version, args.namespace, read_token(args.token_file)))
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from pipelines.remote import read_token, schedule, validate_cron, with_tracking

    validate_cron(args.cron)
    cfg = with_tracking(load_config_from_args(args), args.tracking_uri)
    print(schedule(cfg, args.host, args.cron, args.package, args.experiment, args.namespace, read_token(args.token_file)))
    return 0


def cmd_close_runs(args: argparse.Namespace) -> int:
    from pipelines.close_runs import close_runs, describe
    from pipelines.remote import read_token

    verdicts = close_runs(args.host, args.experiment, args.tracking_uri, args.namespace, read_token(args.token_file),
                          args.dry_run)
    for verdict in verdicts:
        print(describe(verdict))
    print(f"{sum(v.closed for v in verdicts)} pipeline run(s) closed, {len(verdicts)} RUNNING looked at")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from padirec.commands.cli import DEFAULT_CONFIG, _overrides
    from pipelines.experiment import (
        PRESETS,
        data_overrides,
        default_out,
        parse_backbones,
        plan,
        run_experiment,
    )

    preset = PRESETS.get(args.preset or "", {})
    config = args.config or preset.get("config") or DEFAULT_CONFIG
    overrides = {**_overrides(args.set), **data_overrides(args.data)}
    from padirec.config import load_config

    base = load_config(config, overrides)  # first: the backbones of its plugins can be named
    if args.backbones is not None or preset:
        backbones = parse_backbones(args.backbones, preset.get("backbones", ()))
    else:
        backbones = [base.backbone.model]
    cells = plan(config, overrides, backbones, args.seeds)
    out = Path(args.out) if args.out else default_out(cells)
    print(f"experiment: {len(backbones)} backbone(s) x {args.seeds} seed(s) = {len(cells)} pipeline runs of {config} "
          f"-> {out}", flush=True)
    result = run_experiment(cells, out, label=config)
    for name in result["outputs"]:
        print(out / name)
    print(out / "experiment.json")
    return 0


def add_pipeline_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``run``, ``compile``, ``submit``, ``schedule``, ``close-runs`` and ``experiment`` to the library's
    sub-commands."""
    sp = sub.add_parser("run", help="run the whole pipeline locally (KFP local runner) and print where the report is")
    add_config_arguments(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("compile", help="compile the pipeline to KFP YAML")
    sp.add_argument("--out", default="dist/padirec_pipeline.yaml")
    sp.add_argument("--image", default="padirec:0.1.0", help="the project image every step runs on")
    sp.add_argument("--gpu-type", default="nvidia.com/gpu", help="accelerator resource of the GPU steps")
    sp.add_argument("--gpu-count", type=int, default=1, help="accelerators per GPU step; 0 for a CPU-only cluster")
    # unset: ClusterOptions' defaults (docs/cluster.md); kfp is not imported to build the parser
    sp.add_argument("--cpu", help="CPU request and limit of each step (default 4)")
    sp.add_argument("--memory", help="memory request of each step (default 16G)")
    sp.add_argument("--memory-limit", help="memory limit of each step, at least the request (default: the request)")
    sp.add_argument("--gpu-node-selector", action="append", default=[], metavar="LABEL=VALUE",
                    help="a node label the GPU steps require (repeat for several)")
    sp.add_argument("--gpu-toleration", action="append", metavar="KEY[=VALUE][:EFFECT]",
                    help="a node taint the GPU steps tolerate, replacing the default nvidia.com/gpu:NoSchedule "
                         "(repeat for several)")
    sp.add_argument("--run-as-user", type=int,
                    help="the steps' user id, never root (default 10001: the project image's user)")
    sp.set_defaults(func=cmd_compile)

    for name, fn, text in (("submit", cmd_submit, "create a run on a Kubeflow Pipelines cluster"),
                           ("schedule", cmd_schedule, "create a recurring run (KFP cron: 6 fields, seconds first)")):
        sp = sub.add_parser(name, help=text)
        add_config_arguments(sp)
        sp.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://ml-pipeline-ui.kubeflow")
        sp.add_argument("--package", default="dist/padirec_pipeline.yaml", help="compiled pipeline (make compile)")
        sp.add_argument("--experiment", default="padirec")
        sp.add_argument("--namespace", help="the profile namespace of a multi-user Kubeflow, where the experiment "
                        "and the run go (default: none, for standalone KFP)")
        sp.add_argument("--token-file", help="a file with the bearer token for the KFP API (default: the pod's "
                        "service-account token, /var/run/secrets/kubernetes.io/serviceaccount/token, where it exists)")
        sp.add_argument("--tracking-uri", help="MLflow server the cluster's steps log to "
                        "(default: MLFLOW_TRACKING_URI of the padirec-env ConfigMap)")
        if name == "submit":
            sp.add_argument("--data-version", default="", help="the source data's snapshot (a date, a partition), "
                            "filling {snapshot} in the data locations; default: data.snapshot. The same snapshot "
                            "again reuses KFP's cached steps")
        if name == "schedule":
            sp.add_argument("--cron", required=True, help="e.g. '0 0 3 * * *' = 03:00 daily (seconds first)")
        sp.set_defaults(func=fn)

    sp = sub.add_parser("close-runs", help="close as FAILED the RUNNING pipeline runs in MLflow whose KFP run has "
                        "ended or is gone (their exit handler never ran; docs/cluster.md)")
    sp.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://ml-pipeline.kubeflow:8888")
    sp.add_argument("--namespace", help="the profile namespace of a multi-user Kubeflow (default: none)")
    sp.add_argument("--token-file", help="a file with the bearer token for the KFP API (default: the pod's "
                    "service-account token where it exists)")
    sp.add_argument("--experiment", default="padirec", help="the MLflow experiment of the runs (tracking.experiment)")
    sp.add_argument("--tracking-uri", help="the MLflow server (default: MLFLOW_TRACKING_URI)")
    sp.add_argument("--dry-run", action="store_true", help="say what would be closed, close nothing")
    sp.set_defaults(func=cmd_close_runs)

    sp = sub.add_parser("experiment", help="the pipeline under N seeds (and backbones): tables of mean ± sd; "
                        "'table1' = the paper's tables (docs/experiment.md)")
    sp.add_argument("preset", nargs="?", choices=["table1"], help="table1: the paper's backbones and configs/paper.yaml")
    sp.add_argument("--config", help="YAML config (default: configs/paper.yaml for table1, else configs/ml100k.yaml)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. backbone.epochs=3")
    sp.add_argument("--seeds", type=int, default=3, help="seeds per backbone: the config's seed + 0..N-1 (default 3)")
    sp.add_argument("--backbones", help="comma-separated registered backbones, e.g. sasrec,gru4rec (default: the "
                    "config's; table1: the paper's four)")
    sp.add_argument("--data", help="ml-100k, or a folder with ML-1M (ratings.dat, ...) or Amazon (meta_*.json[.gz], "
                    "reviews) files (default: the config's data)")
    sp.add_argument("--out", help="output folder (default <run_dir>/experiments/<name>-<data>); "
                    "finished cells found there are reused")
    sp.set_defaults(func=cmd_experiment)


def main(argv: list[str] | None = None) -> int:
    """Every ``padirec`` command, the library's and the pipeline's."""
    return library_main(argv, build_parser(add_pipeline_commands))
