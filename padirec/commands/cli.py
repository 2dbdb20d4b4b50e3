"""The library's ``padirec`` commands (``python -m padirec``): data, backbone, adapters, generate,
recommend, promote. ``padirec <command> --help`` documents each command.

The pipeline commands (``run``, ``compile``, ``submit``, ``schedule``) live with the pipeline
(``pipelines/cli.py``), which extends this parser (``build_parser(add_pipeline_commands)``): the
library never imports kfp. Each command imports its stage when it runs, so ``--help`` and the
light commands start without loading torch (the stages) or mlflow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from padirec.core.secrets import redact
from padirec.core.typed_config import yaml_load
from padirec.errors import PadirecError
from padirec.runtime.artifacts import atomic_write
from padirec.runtime.progress import setup_logging

log = logging.getLogger("padirec")
DEFAULT_CONFIG = "configs/ml100k.yaml"


def _overrides(pairs: list[str]) -> dict:
    """``--set backbone.epochs=3`` -> ``{"backbone.epochs": 3}`` (values parsed as YAML)."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise PadirecError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = yaml_load(value, f"--set {key}")
    return out


def load_config_from_args(args: argparse.Namespace):
    """The config of ``--config`` with the ``--set`` overrides."""
    from padirec.config import load_config  # the config reads every stage's registry: torch

    return load_config(args.config, _overrides(getattr(args, "set", [])))


def add_config_arguments(sp: argparse.ArgumentParser) -> None:
    """``--config`` and ``--set``, for every command that reads a config."""
    sp.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default {DEFAULT_CONFIG})")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. backbone.epochs=3")


# ---------------------------------------------------------------- commands

def cmd_data(args: argparse.Namespace) -> int:
    from padirec.config import Config
    from padirec.data.stage import run_data_stage

    if args.interactions or args.items:
        if not (args.interactions and args.items):
            raise PadirecError("--interactions and --items go together")
        cfg = Config()
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, source="tables", interactions=args.interactions, items=args.items, users=args.users or ""))
    else:
        cfg = load_config_from_args(args)
    manifest = run_data_stage(cfg.data.for_snapshot(), args.out, eval_k=cfg.evaluation.k)
    print(json.dumps(manifest["stats"], indent=2))
    return 0


def cmd_mirror_ml100k(args: argparse.Namespace) -> int:
    from padirec.data.movielens100k import mirror_ml100k

    for location in mirror_ml100k(args.dest):
        print(location)
    return 0


def cmd_backbone(args: argparse.Namespace) -> int:
    from padirec.backbones.stage import train_backbone_stage
    from padirec.config import load_config

    # --model is one more override: checked against the registry (plugins included) with the rest
    model = {"backbone.model": args.model} if args.model else {}
    cfg = load_config(args.config, {**_overrides(args.set), **model})
    bcfg = cfg.backbone
    metrics = train_backbone_stage(args.data, args.out, bcfg, cfg.data.max_len, bcfg.seed_for(cfg.seed), cfg.device, None)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    from padirec.adapters.stage import build_adapters_stage

    cfg = load_config_from_args(args)
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


def _seed(text: str) -> int:
    """A seed torch's generator takes: a whole number in [0, 2^63)."""
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if not 0 <= seed < 2**63:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to 2^63 - 1, got {text!r}")
    return seed


def cmd_generate(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from padirec.diffusion.stage import generate_adapters

    if Path(args.out).is_dir():  # checked first: generating takes a while
        raise PadirecError(f"--out {args.out} is a folder; name the adapter file to write, e.g. "
                           f"{Path(args.out) / 'adapter.safetensors'}")
    params = generate_adapters(args.generator, _weights(args.weights), seed=args.seed)
    atomic_write(args.out, lambda tmp: save_file({"params": params.detach().cpu().contiguous()}, tmp,
                                                  metadata={"weights": args.weights}))
    print(f"adapter for weights {args.weights}: {tuple(params.shape)} -> {args.out}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from padirec.commands.recommend import recommend_for_user

    print(recommend_for_user(args.data, args.user, _weights(args.weights), system=args.system,
                             model_uri=args.model_uri, k=args.k))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from padirec.tracking import resolve_tracking_uri
    from padirec.tracking.promotion import gate, promote
    from padirec.tracking.registration import compare_on

    cfg = load_config_from_args(args)
    uri = resolve_tracking_uri(cfg.tracking.uri, Path(cfg.run_dir).resolve())
    p, name = cfg.promotion, args.model or cfg.tracking.registered_model
    if args.data:  # a wrong folder is said now, not found after the registry is read
        from padirec.runtime.artifacts import read_manifest

        read_manifest(args.data, kind="prepared_data")
    result = promote(uri, name, str(args.version), gate(cfg), experiment=cfg.tracking.experiment, margin=p.margin,
                     on_failing_champion=p.on_failing_champion,
                     compare=compare_on(uri, name, args.data, cfg) if args.data else None)
    print(json.dumps(result, indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from padirec.serving.http import serve

    return serve(args.model_uri, args.host, args.port, args.poll_seconds, args.timeout, args.workdir)


# ---------------------------------------------------------------- parser

def build_parser(*extensions: Callable[[argparse._SubParsersAction], None]) -> argparse.ArgumentParser:
    """The parser of the library's commands; each of ``extensions`` adds more sub-commands
    (``pipelines.cli.add_pipeline_commands``)."""
    p = argparse.ArgumentParser(prog="padirec", description="Controllable recommendation by parameter diffusion.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    with_config = add_config_arguments

    sp = sub.add_parser("data", help="run the data stage alone: source -> validated leave-one-out split")
    with_config(sp)
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--interactions", help="your interactions table (CSV or Parquet, local or s3://)")
    sp.add_argument("--items", help="your items table (item_id, categories '|'-separated in CSV, title)")
    sp.add_argument("--users", help="optional users table (user_id, gender or group)")
    sp.set_defaults(func=cmd_data)

    sp = sub.add_parser("mirror-ml100k", help="copy MovieLens-100K's three files into a folder (local or s3://) "
                        "once, for clusters whose pods reach no package index (then data.path: that folder)")
    sp.add_argument("dest", help="e.g. s3://padirec-data/ml-100k/")
    sp.set_defaults(func=cmd_mirror_ml100k)

    sp = sub.add_parser("backbone", help="train one backbone on a prepared folder")
    with_config(sp)
    sp.add_argument("--data", required=True, help="prepared data folder")
    sp.add_argument("--model", help="a registered backbone, a plugin's included (default from config; an "
                    "unknown name is refused with the list)")
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
    sp.add_argument("--weights", required=True, help="task weights, comma-separated, one per adapters.utilities entry in its order, e.g. 0.3,0.7")
    sp.add_argument("--out", default="adapter.safetensors", help="the adapter file to write (safetensors)")
    sp.add_argument("--seed", type=_seed, default=0, help="the sampler's seed, 0 to 2^63 - 1")
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
    sp.add_argument("--data", help="the prepared folder of the version's data (padirec data): a champion evaluated "
                    "on other data is compared with the version head to head on its test users")
    sp.set_defaults(func=cmd_promote)

    sp = sub.add_parser("serve", help="serve a registered model over HTTP, following its alias (docs/serving.md)")
    sp.add_argument("--model-uri", default="models:/padirec-recommender@champion",
                    help="models:/NAME@ALIAS (followed) or models:/NAME/VERSION; the registry is MLFLOW_TRACKING_URI's")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a pod)")
    sp.add_argument("--port", type=int, default=8080)
    sp.add_argument("--poll-seconds", type=float, default=15.0, help="how often the alias is checked")
    sp.add_argument("--timeout", type=float, default=60.0, help="a request's time limit in seconds (then 504)")
    sp.add_argument("--workdir", help="where versions are downloaded (default: a new temp folder)")
    sp.set_defaults(func=cmd_serve)

    for extend in extensions:
        extend(sub)
    return p


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run one command (``parser``: default the library's)."""
    args = (parser or build_parser()).parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except PadirecError as e:
        print(f"padirec: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        message = unreachable(e) or file_problem(e)
        if message is None:
            raise
        print(f"padirec: error: {message}", file=sys.stderr)
        return 2


def unreachable(error: BaseException) -> str | None:
    """One line naming the server and the cause when ``error`` is a failed connection (the KFP
    client, MLflow's, requests and urllib3 all end on a ``ConnectionError``, a timeout or a failed
    name lookup), else ``None``: a traceback of a hundred lines says nothing more."""
    chain = [error]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and nxt not in chain:
        chain.append(nxt)
    cause = next((e for e in reversed(chain) if isinstance(e, ConnectionError | TimeoutError | socket.gaierror)), None)
    if cause is None:
        return None
    server = next((_server(e) for e in chain if _server(e)), "the server")
    return f"cannot reach {redact(server)}: {cause.strerror or cause}"


def file_problem(error: BaseException) -> str | None:
    """One line naming the path and the cause when ``error`` is the file system's (an ``--out``
    that is a file, a read-only run folder), else ``None``."""
    if not isinstance(error, OSError) or not error.filename:
        return None
    paths = " -> ".join(str(f) for f in (error.filename, error.filename2) if f)
    return f"{paths}: {error.strerror or error}"


def _server(error: BaseException) -> str | None:
    """The server a urllib3 error names (its connection pool), if it names one."""
    pool = getattr(error, "pool", None)
    return f"{pool.scheme}://{pool.host}:{pool.port}" if getattr(pool, "host", None) else None
