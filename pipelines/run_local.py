"""Run the pipeline on this machine through KFP's local SubprocessRunner.

Each run gets its own folder ``<run_dir>/<name>-<UTC time>/`` (KFP's pipeline root: every step's
artifacts); the MLflow store is shared by all runs under ``<run_dir>`` unless a tracking URI is
configured, so the MLflow UI shows every run side by side.
"""

import dataclasses
import datetime as dt
import logging
from pathlib import Path

from kfp import local

from padirec.config import Config, config_to_json
from padirec.tracking import resolve_tracking_uri
from pipelines.padirec_pipeline import DEFAULT_IMAGE, build_pipeline

log = logging.getLogger("padirec")


def run_local(cfg: Config) -> Path:
    """Run the whole pipeline; returns the run folder."""
    run_dir = Path(cfg.run_dir).resolve()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    run_folder = run_dir / f"{cfg.name}-{stamp}"
    run_folder.mkdir(parents=True, exist_ok=False)
    uri = cfg.tracking.uri if cfg.tracking.uri == "none" else resolve_tracking_uri(cfg.tracking.uri, run_dir)
    cfg = dataclasses.replace(cfg, run_dir=str(run_dir),
                              tracking=dataclasses.replace(cfg.tracking, uri=uri))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(run_folder),
               raise_on_error=True)
    (run_folder / "config.json").write_text(config_to_json(cfg))  # first: a failed run still says what it ran
    log.info("running pipeline %s locally; artifacts under %s", cfg.name, run_folder)
    build_pipeline(DEFAULT_IMAGE)(config_json=config_to_json(cfg))
    return run_folder


def find_output(run_folder: Path, pattern: str) -> Path | None:
    """The newest file under ``run_folder`` matching ``pattern`` (e.g. ``**/report/report.json``)."""
    found = sorted(run_folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
