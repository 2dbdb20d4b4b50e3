"""The ``padirec`` command. ``padirec <command> --help`` documents each command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from padirec.errors import PadirecError

log = logging.getLogger("padirec")
DEFAULT_CONFIG = "configs/ml100k.yaml"


def _overrides(pairs: list[str]) -> dict:
    """``--set backbone.epochs=3`` -> ``{"backbone.epochs": 3}`` (values parsed as YAML)."""
    import yaml

    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise PadirecError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def _load(args: argparse.Namespace):
    from padirec.config import load_config

    return load_config(args.config, _overrides(getattr(args, "set", [])))


# ---------------------------------------------------------------- commands

def cmd_run(args: argparse.Namespace) -> int:
    from pipelines.run_local import find_output, run_local

    cfg = _load(args)
    run_folder = run_local(cfg)
    data_manifest = find_output(run_folder, "**/prepare-data/data/manifest.json") or find_output(run_folder, "**/data/manifest.json")
    if data_manifest:
        stats = json.loads(data_manifest.read_text())["stats"]
        print(f"data ({cfg.data.source}, after filtering): {stats['num_users']} users, {stats['num_items']} items, "
              f"{stats['num_interactions']} interactions, {stats['num_categories']} categories")
    _print_tracking(cfg)
    print(f"run folder: {run_folder}")
    report = find_output(run_folder, "**/report/report.json")
    if report:
        md = report.with_name("report.md")
        print(f"human report: {md}")
        print(report)
    return 0


def _print_tracking(cfg) -> None:
    from padirec.tracking import resolve_tracking_uri

    if cfg.tracking.uri == "none":
        return
    uri = resolve_tracking_uri(cfg.tracking.uri, Path(cfg.run_dir).resolve())
    print(f"MLflow: experiment {cfg.tracking.experiment!r} at {uri}")
    if uri.startswith("sqlite:///"):
        print(f"  open the UI with: .venv/bin/mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")


def cmd_compile(args: argparse.Namespace) -> int:
    from kfp import compiler

    from pipelines.padirec_pipeline import ClusterOptions, build_pipeline

    if args.image.endswith(":latest") or ":" not in args.image:
        raise PadirecError(f"--image {args.image!r}: use an immutable tag (e.g. padirec:0.1.0-<commit>), never latest")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cluster = ClusterOptions(gpu_type=args.gpu_type, gpu_count=args.gpu_count)
    compiler.Compiler().compile(build_pipeline(args.image, cluster), str(out))
    print(out)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    import dataclasses

    from padirec.config import Config
    from padirec.data.stage import run_data_stage

    if args.interactions or args.items:
        if not (args.interactions and args.items):
            raise PadirecError("--interactions and --items go together")
        cfg = Config()
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, source="tables", interactions=args.interactions, items=args.items, users=args.users or ""))
    else:
        cfg = _load(args)
    manifest = run_data_stage(cfg.data, args.out)
    print(json.dumps(manifest["stats"], indent=2))
    return 0


def cmd_backbone(args: argparse.Namespace) -> int:
    import dataclasses

    from padirec.backbones.stage import train_backbone_stage

    cfg = _load(args)
    bcfg = dataclasses.replace(cfg.backbone, model=args.model or cfg.backbone.model)
    metrics = train_backbone_stage(args.data, args.out, bcfg, cfg.data.max_len, cfg.seed, cfg.device, None)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    from padirec.adapters.stage import build_adapters_stage

    cfg = _load(args)
    summary = build_adapters_stage(args.data, args.backbone, args.out, cfg.adapters, cfg.data.max_len, cfg.seed,
                                   cfg.device, None, shard_index=args.shard_index,
                                   num_shards=args.num_shards or cfg.adapters.num_shards)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _weights(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError as e:
        raise PadirecError(f"--weights expects comma-separated numbers such as 0.3,0.7, got {text!r}") from e


def cmd_generate(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from padirec.artifacts import atomic_write
    from padirec.diffusion.stage import generate_adapters

    params = generate_adapters(args.generator, _weights(args.weights), seed=args.seed)
    atomic_write(args.out, lambda tmp: save_file({"params": params.detach().cpu().contiguous()}, tmp,
                                                  metadata={"weights": args.weights}))
    print(f"adapter for weights {args.weights}: {tuple(params.shape)} -> {args.out}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from padirec.recommend_cli import recommend_for_user

    print(recommend_for_user(args.data, args.user, _weights(args.weights), system=args.system,
                             model_uri=args.model_uri, k=args.k))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from padirec.tracking import resolve_tracking_uri
    from padirec.tracking.registry import GateThresholds, promote

    cfg = _load(args)
    uri = resolve_tracking_uri(cfg.tracking.uri, Path(cfg.run_dir).resolve())
    p = cfg.promotion
    result = promote(uri, args.model or cfg.tracking.registered_model, str(args.version),
                     GateThresholds(p.min_avg_hv, p.min_pearson_ra, p.min_pearson_rd))
    print(json.dumps(result, indent=2))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from pipelines.remote import submit, with_tracking

    cfg = with_tracking(_load(args), args.tracking_uri)
    print(submit(cfg, args.host, args.package, args.experiment, args.data_version))
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from pipelines.remote import schedule, validate_cron, with_tracking

    validate_cron(args.cron)
    cfg = with_tracking(_load(args), args.tracking_uri)
    print(schedule(cfg, args.host, args.cron, args.package, args.experiment))
    return 0


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="padirec", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default {DEFAULT_CONFIG})")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. backbone.epochs=3")

    sp = sub.add_parser("run", help="run the whole pipeline locally (KFP local runner) and print where the report is")
    with_config(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("compile", help="compile the pipeline to KFP YAML")
    sp.add_argument("--out", default="dist/padirec_pipeline.yaml")
    sp.add_argument("--image", default="padirec:0.1.0", help="the project image every step runs on")
    sp.add_argument("--gpu-type", default="nvidia.com/gpu", help="accelerator resource of the GPU steps")
    sp.add_argument("--gpu-count", type=int, default=1, help="accelerators per GPU step; 0 for a CPU-only cluster")
    sp.set_defaults(func=cmd_compile)

    sp = sub.add_parser("data", help="run the data stage alone: source -> validated leave-one-out split")
    with_config(sp)
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--interactions", help="your interactions table (CSV or Parquet, local or s3://)")
    sp.add_argument("--items", help="your items table (item_id, categories '|'-separated in CSV, title)")
    sp.add_argument("--users", help="optional users table (user_id, gender or group)")
    sp.set_defaults(func=cmd_data)

    sp = sub.add_parser("backbone", help="train one backbone on a prepared folder")
    with_config(sp)
    sp.add_argument("--data", required=True, help="prepared data folder")
    sp.add_argument("--model", help="sasrec | gru4rec | tisasrec | lrurec (default from config)")
    sp.add_argument("--out", required=True)
    sp.set_defaults(func=cmd_backbone)

    sp = sub.add_parser("adapters", help="build (one shard of) the adapter bank")
    with_config(sp)
    sp.add_argument("--data", required=True)
    sp.add_argument("--backbone", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--shard-index", type=int, default=0)
    sp.add_argument("--num-shards", type=int, default=0, help="default from config")
    sp.set_defaults(func=cmd_adapters)

    sp = sub.add_parser("generate", help="generate the adapter for new task weights with a trained generator")
    sp.add_argument("--generator", required=True, help="generator folder")
    sp.add_argument("--weights", required=True, help="task weights, comma-separated, e.g. 0.3,0.7 (accuracy,diversity)")
    sp.add_argument("--out", default="adapter.safetensors")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_generate)

    sp = sub.add_parser("recommend", help="a user's top-k (titles, categories) under task weights")
    sp.add_argument("--data", required=True, help="prepared data folder (the user's history)")
    sp.add_argument("--user", required=True, help="user id as in the source data")
    sp.add_argument("--weights", required=True, help="task weights, e.g. 0.9,0.1")
    src = sp.add_mutually_exclusive_group(required=True)
    src.add_argument("--system", help="a system folder (backbone + generator)")
    src.add_argument("--model-uri", help="an MLflow model, e.g. models:/padirec-recommender@champion")
    sp.add_argument("-k", type=int, default=10)
    sp.set_defaults(func=cmd_recommend)

    sp = sub.add_parser("promote", help="apply the quality gate to a registered version and move 'champion' if it earns it")
    with_config(sp)
    sp.add_argument("--version", required=True)
    sp.add_argument("--model", help="registered model name (default from config)")
    sp.set_defaults(func=cmd_promote)

    for name, fn, text in (("submit", cmd_submit, "create a run on a Kubeflow Pipelines cluster"),
                           ("schedule", cmd_schedule, "create a recurring run (KFP cron: 6 fields, seconds first)")):
        sp = sub.add_parser(name, help=text)
        with_config(sp)
        sp.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://ml-pipeline-ui.kubeflow")
        sp.add_argument("--package", default="dist/padirec_pipeline.yaml", help="compiled pipeline (make compile)")
        sp.add_argument("--experiment", default="padirec")
        sp.add_argument("--tracking-uri", help="MLflow server the cluster's steps log to "
                        "(default: MLFLOW_TRACKING_URI of the padirec-env ConfigMap)")
        if name == "submit":
            sp.add_argument("--data-version", default="", help="the source data's snapshot (a date, a partition); "
                            "default: the submission time, so the data is read afresh")
        if name == "schedule":
            sp.add_argument("--cron", required=True, help="e.g. '0 0 3 * * *' = 03:00 daily (seconds first)")
        sp.set_defaults(func=fn)
    return p


def main(argv: list[str] | None = None) -> int:
    from padirec.progress import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except PadirecError as e:
        print(f"padirec: error: {e}", file=sys.stderr)
        return 2
