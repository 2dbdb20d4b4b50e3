"""The band protocol: which tasks it evaluates, what it hides from the methods that learn from tasks,
and its section of the report."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from padirec.config.checks import check
from padirec.core.tasks import grid
from padirec.diffusion.stage import training_rows
from padirec.errors import ConfigError
from padirec.evaluation.evidence import BandEvidence, Evidence, assemble_report
from padirec.evaluation.protocols import (
    EmptyBand,
    band_bank,
    band_context,
    band_task_index,
    in_band,
    run_band,
)
from padirec.evaluation.report import ReportError, validate_report
from padirec.evaluation.stage import evaluate_stage
from padirec.evaluation.sweep import run_sweep
from padirec.methods.cmr import draws_outside
from padirec.methods.nn_lookup import bank_tasks
from padirec.methods.registry import METHODS, build_methods
from tests.fixtures import evaluation_inputs


def test_band_tasks_are_the_grid_inside_plus_the_ends():
    tasks = grid(2, 11)
    index = band_task_index(tasks, ["accuracy", "diversity"], (0.3, 0.7))
    assert tasks[index, 0].round(2).tolist() == [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0]
    # w_acc is found by name, not position
    flipped = band_task_index(tasks[:, ::-1], ["diversity", "accuracy"], (0.3, 0.7))
    assert flipped.tolist() == index.tolist()
    three = grid(3, 5)
    picked = three[band_task_index(three, ["accuracy", "diversity", "fairness"], (0.25, 0.5))]
    vertices = np.isclose(picked.max(1), 1)
    assert vertices.sum() == 3 and ((picked[~vertices, 0] >= 0.25) & (picked[~vertices, 0] <= 0.5)).all()
    with pytest.raises(ConfigError, match="accuracy"):
        in_band(tasks, ["diversity", "novelty"], (0.3, 0.7))


def test_band_bank_holds_out_every_row_in_the_band(tiny):
    bank = tiny.bank
    reduced, removed = band_bank(bank, (0.3, 0.7))
    w_acc = bank.weights[:, 0].numpy()
    inside = (w_acc >= 0.3) & (w_acc <= 0.7)
    assert (reduced.held_out == (bank.held_out | inside)).all()
    assert removed == len(np.unique(bank.task_id[inside & ~bank.held_out]))
    assert not reduced.held_out[~inside & ~bank.held_out].any()  # nothing outside the band is lost
    assert bank.held_out.sum() < reduced.held_out.sum() or removed == 0
    with pytest.raises(EmptyBand, match="every bank task"):
        band_context(tiny.context, tiny.cfg.generator, (0.0, 1.0), False, 0)


def test_cmr_draws_skip_the_band():
    gen = torch.Generator().manual_seed(0)
    w = draws_outside(2000, 3, gen, (0.3, 0.7), acc=1)
    assert torch.allclose(w.sum(1), torch.ones(2000)) and (w >= 0).all()
    assert not ((w[:, 1] >= 0.3) & (w[:, 1] <= 0.7)).any()
    assert ((w[:, 0] >= 0.3) & (w[:, 0] <= 0.7)).any()  # only w_acc is constrained
    free = draws_outside(50, 2, torch.Generator().manual_seed(1), None)
    assert ((free[:, 0] >= 0.3) & (free[:, 0] <= 0.7)).any()


@pytest.mark.slow  # trains a second tiny generator and refits the learners (about 10 s)
def test_run_band_reruns_the_learners_and_reuses_the_rest(tiny):
    cfg, ctx, f = copy.deepcopy(tiny.cfg), tiny.context, tiny.features
    names = ["padirec", "retrain", "nn_lookup", "mmr", "cmr"]
    tasks = grid(2, 11)
    sweep = run_sweep(build_methods(names, ctx, cfg.methods), tasks, f, "test", 10, 0.5, per_user=True)
    band, index, info = run_band(sweep, ctx, cfg, (0.3, 0.7))
    assert info["rerun"] == ["padirec", "nn_lookup", "cmr"] and info["reused_from_grid"] == ["retrain", "mmr"]
    assert all(METHODS[m].learns_from_tasks for m in info["rerun"])
    assert list(band.metrics) == names and band.tasks.shape == (7, 2) and info["task_index"] == index.tolist()
    for m in ("retrain", "mmr"):  # the same task, the same result: taken from the grid sweep
        assert band.metrics[m] == [sweep.metrics[m][i] for i in index]
        assert np.array_equal(band.per_user[m][1]["ndcg@10"], sweep.per_user[m][index[1]]["ndcg@10"])
        assert np.array_equal(band.listed[m][1], sweep.listed[m][index[1]])
    # every method's listed items per band task, and the long tail, for the coverage of joined users
    assert all(len(band.listed[m]) == len(index) for m in names) and np.array_equal(band.tail, sweep.tail)
    assert info["generator"]["num_train_rows"] < int((~tiny.bank.held_out).sum()) or info["bank_tasks_removed"] == 0
    # NN lookup serves a bank task's checkpoint mean, and only one it may learn from: neither a task
    # inside the band nor a held-out grid task (the grid's ends are outside the band but held out)
    bank = tiny.bank
    served, weights, task_ids = bank_tasks(bank, "mean", np.arange(len(bank.params)))  # every task, held out or not
    outside = ~in_band(weights, bank.utilities, (0.3, 0.7))
    held = np.array([bank.held_out[bank.task_id == t].all() for t in task_ids])
    assert (~outside).any() and outside.any() and (held & outside).any()
    for t in range(len(index)):
        match = (served - band.adapters["nn_lookup"][t]).abs().amax(1) < 1e-6
        assert match.any(), f"band task {t}: nn_lookup served no bank task's adapter"
        assert outside[match.numpy()].all(), f"band task {t}: nn_lookup served a task inside the band"
        assert not held[match.numpy()].any(), f"band task {t}: nn_lookup served a held-out grid task"


def _without(sweep, gone: str):
    """``sweep`` as if ``gone`` had not been in the roster."""
    def keep(d):
        return {m: v for m, v in d.items() if m != gone}

    return dataclasses.replace(sweep, metrics=keep(sweep.metrics), adapters=keep(sweep.adapters),
                               fit_seconds=keep(sweep.fit_seconds), seconds=keep(sweep.seconds),
                               per_user=keep(sweep.per_user), listed=keep(sweep.listed))


@pytest.mark.slow  # a grid and a band sweep of five methods on the tiny system (about 15 s)
def test_no_report_figure_moves_when_another_method_leaves_the_roster(tiny):
    """The whole report, not only ``summarise``: the grid's and the band's figures and intervals of
    every method stay bit for bit when any other method leaves (the scale is Retrain's alone, and each
    method's bootstrap replicates are a product of their own: with two BLAS threads, one product over
    every method's rows moved other methods' intervals in the last bits)."""
    cfg, ctx, f = copy.deepcopy(tiny.cfg), tiny.context, tiny.features
    cfg.evaluation.bootstrap_resamples, cfg.evaluation.retrain_ceiling = 200, False
    names = ["padirec", "retrain", "nn_lookup", "mmr", "cmr"]
    sweep = run_sweep(build_methods(names, ctx, cfg.methods), grid(2, 11), f, "test", 10, 0.5, per_user=True)
    band, _, info = run_band(sweep, ctx, cfg, (0.3, 0.7))

    def report(gone: str = "") -> dict:
        evidence = Evidence(_without(sweep, gone), band=BandEvidence(_without(band, gone), info))
        return json.loads(json.dumps(assemble_report(evidence, cfg, {}, "sasrec")))

    full = report()
    assert full["summary"]["padirec"]["regret_ci"] is not None  # the bootstrap ran
    for gone in ("padirec", "nn_lookup", "mmr", "cmr"):
        part = report(gone)
        assert part["normalisation"] == full["normalisation"], gone
        for m in (n for n in names if n != gone):
            for name, section in (("grid", lambda r: r["summary"]), ("band", lambda r: r["protocols"]["band"]["summary"])):
                a, b = section(part)[m], section(full)[m]
                moved = sorted(key for key in set(a) | set(b) if json.dumps(a.get(key)) != json.dumps(b.get(key)))
                assert not moved, (gone, m, name, moved)


def test_protocols_config_is_checked(tiny):
    cfg = copy.deepcopy(tiny.cfg)
    cfg.evaluation.protocols = ["band"]
    with pytest.raises(ConfigError, match="evaluation.protocols"):
        check(cfg)
    cfg.evaluation.protocols = ["grid", "band"]
    cfg.evaluation.band_low, cfg.evaluation.band_high = 0.7, 0.3
    with pytest.raises(ConfigError, match="band_low"):
        check(cfg)


@pytest.mark.slow  # the evaluate stage with both protocols (about 15 s)
def test_report_carries_both_protocols(tiny, tmp_path):
    cfg = copy.deepcopy(tiny.cfg)
    cfg.adapters.grid_size = 3
    cfg.evaluation.methods = ["padirec", "retrain", "nn_lookup", "interpolation", "mmr"]
    folders = evaluation_inputs(tiny, cfg, tmp_path)
    report = evaluate_stage(folders, tmp_path / "eval", cfg)
    protocols = report["protocols"]
    assert set(protocols) == {"grid", "band"}
    assert protocols["grid"]["summary"] == report["summary"] and protocols["grid"]["tasks"] == report["tasks"]
    band = protocols["band"]
    assert band["band"] == [0.3, 0.7] and len(band["tasks"]) == 3  # grid_size 3: 0.5 and the two ends
    assert set(band["summary"]) == set(cfg.evaluation.methods)
    assert band["summary"]["retrain"]["regret"] == 0.0
    assert all(len(s["reward_per_task"]) == 3 and len(s["reward_ci"]) == 2 for s in band["summary"].values())
    assert "pearson_ceiling" not in band["summary"]["retrain"]  # the grid's ceiling covers these tasks
    text = (tmp_path / "eval" / "report.md").read_text()
    assert "## Band protocol: w_acc in [0.30, 0.70] unseen" in text
    broken = copy.deepcopy(report)
    broken["protocols"]["band"]["summary"]["padirec"]["reward_per_task"].append(0.0)
    with pytest.raises(ReportError, match=r"protocols\.band\.summary\.padirec\.reward_per_task"):
        validate_report(broken)
    cfg.evaluation.protocols = ["grid"]
    assert set(evaluate_stage(folders, tmp_path / "eval2", cfg)["protocols"]) == {"grid"}
    # a band over the whole simplex leaves nothing to learn from: reported as skipped, not a crash
    cfg.evaluation.protocols, cfg.evaluation.band_low, cfg.evaluation.band_high = ["grid", "band"], 0.0, 1.0
    cfg.evaluation.methods = ["retrain", "nn_lookup"]
    skipped = evaluate_stage(folders, tmp_path / "eval3", cfg)["protocols"]["band"]
    assert "every bank task" in skipped["skipped"] and skipped["summary"] == {}
    assert "Skipped: evaluation.band_low" in (tmp_path / "eval3" / "report.md").read_text()


def test_generator_targets_the_task_mean(tiny):
    bank = tiny.bank
    params, weights, held = training_rows(bank, "checkpoints")
    assert params is bank.params and held.tolist() == bank.held_out.tolist()
    params, weights, held = training_rows(bank, "task_mean")
    ids = np.unique(bank.task_id)
    assert params.shape == (len(ids), bank.params.shape[1]) and weights.shape == (len(ids), bank.weights.shape[1])
    for i, t in enumerate(ids.tolist()):
        rows = np.flatnonzero(bank.task_id == t)
        torch.testing.assert_close(params[i], bank.params[rows].mean(0))
        assert torch.equal(weights[i], bank.weights[rows[0]]) and bool(held[i]) == bool(bank.held_out[rows].any())
    with pytest.raises(ConfigError, match="generator.targets"):
        training_rows(bank, "median")
