"""The outputs of a finished run folder (`make run`), for the benchmarks that re-read one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.run_local import find_output

# where each stage output of evaluate's inputs lies in a run folder
INPUTS = ("prepare-data/data", "train-backbone/backbone", "train-generator/bank", "train-generator/generator")
FEATURES = "compute-features/features"  # run folders made before the features step have none


def find(run: Path, pattern: str) -> Path:
    """The folder of the newest file under ``run`` matching ``pattern``; exits with a one-line
    reason when there is none."""
    found = find_output(run, pattern)
    if found is None:
        raise SystemExit(f"{run}: nothing matches {pattern}")
    return found.parent


def run_inputs(run: Path, cfg: Any):
    """The evaluation stage's inputs (data, backbone, bank, generator) of the run, read as it reads
    them: the run's features artifact where it has one, else the features computed again."""
    from padirec.evaluation.stage import EvaluationInputs, load_inputs

    features = find_output(run, f"**/{FEATURES}/manifest.json")
    folders = [find(run, f"**/{out}/manifest.json") for out in INPUTS]
    return load_inputs(EvaluationInputs(*folders, features=None if features is None else features.parent), cfg)
