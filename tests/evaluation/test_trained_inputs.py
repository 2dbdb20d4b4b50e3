"""The band generator and the ceiling's second Retrain as stages of their own: the evaluate stage
reads their folders, refuses to run without them when its config needs them, and trains neither."""

from __future__ import annotations

import copy

import pytest

from padirec.errors import ArtifactError
from padirec.evaluation.stage import EvaluationInputs, evaluate_stage
from padirec.evaluation.trained_inputs import (
    SKIPPED,
    band_generator_stage,
    read_band_generator,
    read_ceiling,
    retrain_ceiling_stage,
)
from padirec.runtime.artifacts import read_manifest


def folders(tiny, **more) -> EvaluationInputs:
    return EvaluationInputs(tiny.data_dir, tiny.backbone_dir, tiny.bank_dir, tiny.generator_dir, **more)


@pytest.mark.slow  # a generator, a second Retrain, an evaluation (about 10 s)
def test_the_evaluate_stage_reads_them_and_trains_nothing_itself(tiny, tmp_path):
    cfg = copy.deepcopy(tiny.cfg)
    cfg.evaluation.methods = ["padirec", "retrain", "nn_lookup", "mmr"]
    band = band_generator_stage(tiny.bank_dir, tmp_path / "band_generator", cfg)
    ceiling = retrain_ceiling_stage(tiny.data_dir, tiny.backbone_dir, None, tmp_path / "ceiling", cfg)
    assert band["num_train_rows"] > 0 and ceiling == {"seed": cfg.seed + 1, "tasks": 3}
    assert read_manifest(tmp_path / "band_generator", kind="generator")
    assert read_ceiling(tmp_path / "ceiling").params.shape[0] == 3

    # without their folders the stage refuses, naming both, before any work
    with pytest.raises(ArtifactError, match=r"band_generator and ceiling step"):
        evaluate_stage(folders(tiny), tmp_path / "alone", cfg)
    assert not (tmp_path / "alone").exists()
    given = evaluate_stage(folders(tiny, band_generator=tmp_path / "band_generator", ceiling=tmp_path / "ceiling"),
                           tmp_path / "given", cfg)
    assert "skipped" not in given["protocols"]["band"] and "pearson_ceiling" in given["summary"]["retrain"]
    assert given["protocols"]["band"]["generator"] == pytest.approx(band)  # the step's generator, not a new one
    assert given["summary"]["retrain"]["pearson_ceiling"]["seed"] == cfg.seed + 1


def test_nothing_to_train_is_a_skipped_folder(tiny, tmp_path):
    cfg = copy.deepcopy(tiny.cfg)
    cfg.evaluation.methods = ["retrain", "mmr"]  # no method built from the generator
    cfg.evaluation.retrain_ceiling = False
    assert "skipped" in band_generator_stage(tiny.bank_dir, tmp_path / "band", cfg)
    assert "skipped" in retrain_ceiling_stage(tiny.data_dir, tiny.backbone_dir, None, tmp_path / "ceiling", cfg)
    for name in ("band", "ceiling"):
        assert read_manifest(tmp_path / name)["kind"] == SKIPPED
    assert read_band_generator(tmp_path / "band") is None and read_ceiling(tmp_path / "ceiling") is None
    # a band over the whole simplex leaves nothing to train on: skipped, as evaluate skips the protocol
    cfg.evaluation.methods, cfg.evaluation.band_low, cfg.evaluation.band_high = ["padirec"], 0.0, 1.0
    assert "every bank task" in band_generator_stage(tiny.bank_dir, tmp_path / "empty", cfg)["skipped"]
