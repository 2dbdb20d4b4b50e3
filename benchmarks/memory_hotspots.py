"""Peak memory and time of evaluate's and the bank's (users x items) hot spots, the code of a
commit against this checkout's, in one process on a finished run's inputs (e.g. a 5x bench-scale run).

    .venv/bin/python benchmarks/memory_hotspots.py --run RUN [--before 81b6927] [--adapters 20] [--tasks 2]

For each hot spot the peak resident memory above its start (``VmHWM``, reset before each) and the
wall time, this checkout's code first, then ``--before``'s (read with ``git show``):

- the bank's valid evaluation (``padirec.adapters.evaluate.evaluate_adapters``), ``--adapters`` of the
  run's bank; checks that both give the same metrics;
- DeepPRL's response time (``padirec.evaluation.response_time.time_method``: a warm-up and
  ``--tasks`` new tasks, each ranking both held-out splits);
- MODT4R's scores of one task (an untrained MoTrans: the same sizes), against the formula of
  81b6927 (``log_softmax(Y)`` of the split kept, then ``Y * lambda + (1 - lambda) log_softmax(A)``).

Reads the run; writes nothing. Linux only (``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from run_folder import run_inputs  # benchmarks/run_folder.py

ROOT = Path(__file__).resolve().parents[1]


def mem() -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` of this process, MB."""
    f = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(f["VmRSS"].split()[0]) // 1024, int(f["VmHWM"].split()[0]) // 1024


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def module_at(commit: str, path: str, name: str, folder: Path):
    """The file ``path`` as it was at ``commit``, imported as module ``name``."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], check=True, capture_output=True,
                          text=True).stdout
    file = folder / f"{name}.py"
    file.write_text(text)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measured(label: str, run) -> object:
    base = mem()[0]
    reset_peak()
    start = time.perf_counter()
    out = run()
    peak = mem()[1]
    print(f"{label}: {time.perf_counter() - start:.1f} s, peak {peak} MB ({peak - base:+d} MB)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run folder (read only)")
    ap.add_argument("--before", default="81b6927", help="the commit whose code is measured second")
    ap.add_argument("--adapters", type=int, default=20)
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from padirec.adapters import evaluate
    from padirec.config import config_from_json
    from padirec.evaluation import response_time
    from padirec.methods.modt4r import MODT
    from padirec.methods.registry import build_methods

    torch.set_num_threads(args.threads)
    run = Path(args.run)
    cfg = config_from_json((run / "config.json").read_text())
    ctx = run_inputs(run, cfg).context
    f = ctx.features
    print(f"{f.valid.h.shape[0]} users, {f.item_embedding.shape[0]} items; after the inputs RSS {mem()[0]} MB; "
          f"before = {args.before}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        old_evaluate = module_at(args.before, "padirec/adapters/evaluate.py", "before_evaluate", Path(tmp))
        old_response_time = module_at(args.before, "padirec/evaluation/response_time.py", "before_response_time",
                                      Path(tmp))

    params = ctx.bank.params[:args.adapters]
    valid = {name: measured(f"bank valid evaluation, {name}, {len(params)} adapters",
                            lambda mod=mod: mod.evaluate_adapters(f, params, ctx.layout, "valid", alpha=cfg.adapters.alpha))
             for name, mod in (("now", evaluate), ("before", old_evaluate))}
    print("same metrics:", all(np.array_equal(valid["now"][m], valid["before"][m]) for m in valid["now"]))

    deepprl = build_methods(["deepprl"], ctx, cfg.methods)["deepprl"]
    start = time.perf_counter()
    deepprl.fit()
    print(f"deepprl fit {time.perf_counter() - start:.1f} s, RSS {mem()[0]} MB", flush=True)
    tasks = np.array([[0.3, 0.7], [0.6, 0.4], [0.45, 0.55]])[:args.tasks]
    for name, mod in (("now", response_time), ("before", old_response_time)):
        out = measured(f"deepprl response time, {name}",
                       lambda mod=mod, m=deepprl: mod.time_method(m, tasks, warmup=np.array([0.5, 0.5])))
        print(f"  median task {out['median_s']:.1f} s", flush=True)
    del deepprl

    modt4r = build_methods(["modt4r"], ctx, cfg.methods)["modt4r"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        c = modt4r.cfg
        modt4r.model = MODT(f.item_embedding, c.context, c.layers, c.heads, c.dropout).eval().requires_grad_(False)
    prepared = modt4r.prepare_split([0.4, 0.6], "test")
    lam = prepared["lam"]

    @torch.no_grad()
    def before() -> torch.Tensor:
        y = F.log_softmax(modt4r.model.user_logits(f.test.h), dim=1)  # was kept for the whole evaluation
        out = y * lam + (1.0 - lam) * F.log_softmax(modt4r.model.action_logits(prepared["test"]), dim=1)
        out[:, 0] = -torch.inf
        return out

    now = measured("modt4r scores of one task, now", lambda: modt4r.scores(prepared, "test"))
    print("same scores:", torch.equal(now, measured("modt4r scores of one task, before", before)))


if __name__ == "__main__":
    sys.exit(main())
