#!/usr/bin/env bash
# The GPU check (`make gpu-check`), for a machine with one NVIDIA GPU and no Docker:
#
#   1. a fresh virtual environment ($GPU_VENV, default <work folder>/venv) with the pinned, hash-checked
#      requirements and the CUDA build of torch==2.13.0 (PyPI's Linux wheel is the CUDA build;
#      PIP_INDEX_URL, or TORCH_INDEX_URL for torch alone, points pip elsewhere, e.g. a mirror or
#      https://download.pytorch.org/whl/cu128);
#   2. the whole pipeline on $CONFIG (default configs/ml100k.yaml) with `device: cuda`, then the same
#      config with `device: cpu` in the same environment on the same machine, each in its own run
#      folder under $GPU_CHECK_DIR (default a new temporary folder), no stage cache;
#   3. every stage's wall time, CUDA against CPU, and a check that the results agree: the backbone's
#      validation NDCG@10 within $GPU_CHECK_TOL (default 0.01); PaDiRec's test Pearson r-a / r-d and
#      reward are printed beside each other;
#   4. benchmarks/bench_scale.py: the whole pipeline on ML-1M-format data ($GPU_CHECK_SCALE x ML-1M,
#      default 1) with device cuda, step by step;
#   5. benchmarks/ddp_backbone.py: phase 1 on 2 data-parallel ranks (torchrun; NCCL with a GPU per
#      rank, gloo when the ranks share one) against one process, on the cuda run's data.
#
# Fails with one line on stderr ("gpu-check: ...") when there is no GPU, before installing anything.
#
#   scripts/gpu_check.sh            # or: make gpu-check
#   PIP_INDEX_URL=https://mirror.example/simple CONFIG=configs/smoke.yaml scripts/gpu_check.sh
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

die() {
  echo "gpu-check: $*" >&2
  exit 1
}

# --------------------------------------------------------------------------- 0. is there a GPU?
command -v nvidia-smi >/dev/null 2>&1 \
  || die "no NVIDIA GPU found (nvidia-smi is not installed); this check needs a machine with one NVIDIA GPU and its driver"
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
[ "${GPUS:-0}" -ge 1 ] || die "no NVIDIA GPU found (nvidia-smi lists none or cannot talk to the driver)"
[ "$GPUS" -eq 1 ] || echo "gpu-check: $GPUS GPUs found; the check uses the first (CUDA_VISIBLE_DEVICES to choose)"

PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-configs/ml100k.yaml}
TOL=${GPU_CHECK_TOL:-0.01}
export PIP_INDEX_URL=${PIP_INDEX_URL:-https://pypi.org/simple}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-$PIP_INDEX_URL}
WORK=${GPU_CHECK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/padirec-gpu-check.XXXXXX")}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
GPU_VENV=${GPU_VENV:-$WORK/venv}
[ -f "$CONFIG" ] || die "config $CONFIG not found"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (PYTHON=... to choose the interpreter)"

echo "gpu-check: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
echo "gpu-check: environment $GPU_VENV (fresh), index $PIP_INDEX_URL, torch from $TORCH_INDEX_URL; work folder $WORK"

# --------------------------------------------------------------------------- 1. the environment
case "$(cd "$(dirname "$GPU_VENV")" 2>/dev/null && pwd)/$(basename "$GPU_VENV")" in
  "$ROOT/.venv" | "$ROOT" | / | "$HOME") die "GPU_VENV=$GPU_VENV would replace the project's own files; choose a new folder" ;;
esac
rm -rf "$GPU_VENV"
"$PYTHON" -m venv "$GPU_VENV"
PY="$(cd "$GPU_VENV" && pwd)/bin/python"
export PIP_CONSTRAINT="$ROOT/constraints.txt"  # torch==2.13.0 and nothing else
"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install --quiet --require-hashes -r requirements.lock -r requirements-dev.lock \
  || die "installing requirements.lock into $GPU_VENV failed (index $PIP_INDEX_URL)"
"$PY" -m pip install --quiet --index-url "$TORCH_INDEX_URL" torch==2.13.0 \
  || die "installing torch==2.13.0 from $TORCH_INDEX_URL failed"
"$PY" -m pip install --quiet --no-deps --no-build-isolation -e . || die "installing padirec into $GPU_VENV failed"
"$PY" - <<'EOF' || die "torch in the new environment sees no CUDA device (a CPU-only wheel? set TORCH_INDEX_URL to a CUDA index)"
import sys, torch
print(f"gpu-check: torch {torch.__version__}, CUDA {torch.version.cuda}, device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
sys.exit(0 if torch.cuda.is_available() and torch.version.cuda else 1)
EOF

# --------------------------------------------------------------------------- 2. the pipeline, CUDA then CPU
run_pipeline() {  # $1 = cuda | cpu
  local dev=$1 start end
  echo "gpu-check: pipeline on $dev ($CONFIG), log $WORK/$dev.log"
  start=$(date +%s)
  "$PY" -m pipelines run --config "$CONFIG" --set "device=$dev" --set "run_dir=$WORK/$dev" --set cache=false \
    >"$WORK/$dev.log" 2>&1 || die "the pipeline failed on $dev; see $WORK/$dev.log"
  end=$(date +%s)
  echo "$((end - start))" >"$WORK/$dev.seconds"
}
run_pipeline cuda
run_pipeline cpu

# --------------------------------------------------------------------------- 3. stage times and agreement
"$PY" - "$WORK" "$TOL" <<'EOF' || exit 1
"""Stage times from the step outputs (the local runner runs the steps one after another, so a
step's time is the gap between its executor_output.json and the previous one's; the first from the
run's config.json, written as the run starts), and the figures that must agree."""
import json
import sys
from pathlib import Path

work, tol = Path(sys.argv[1]), float(sys.argv[2])


def run_folder(dev):
    found = sorted((work / dev).glob("*/padirec-*/"))
    if not found:
        sys.exit(f"gpu-check: no run folder under {work / dev}")
    return found[-1]


def stage_times(folder):
    prev, out = (folder.parent / "config.json").stat().st_mtime, {}  # written as the run starts
    for f in sorted(folder.glob("**/executor_output.json"), key=lambda p: p.stat().st_mtime):
        name = f.parent.name
        out[name] = out.get(name, 0.0) + f.stat().st_mtime - prev
        prev = f.stat().st_mtime
    return out


def one(folder, pattern):
    found = sorted(folder.glob(pattern))
    return json.loads(found[-1].read_text()) if found else None


runs = {dev: run_folder(dev) for dev in ("cuda", "cpu")}
times = {dev: stage_times(f) for dev, f in runs.items()}
total = {dev: float((work / f"{dev}.seconds").read_text()) for dev in runs}
print(f"\n{'stage':<24}{'cpu s':>10}{'cuda s':>10}{'cpu/cuda':>10}")
for stage in list(times["cpu"]) + [s for s in times["cuda"] if s not in times["cpu"]]:
    c, g = times["cpu"].get(stage, float("nan")), times["cuda"].get(stage, float("nan"))
    print(f"{stage:<24}{c:>10.1f}{g:>10.1f}{c / g if g > 0 else float('nan'):>10.2f}")
print(f"{'whole run (wall)':<24}{total['cpu']:>10.1f}{total['cuda']:>10.1f}{total['cpu'] / total['cuda']:>10.2f}")

bb = {dev: one(f, "**/train-backbone/backbone/manifest.json") for dev, f in runs.items()}
ndcg = {dev: m["stats"]["valid"]["ndcg@10"] for dev, m in bb.items()}
print(f"\nbackbone valid NDCG@10: cpu {ndcg['cpu']:.4f}, cuda {ndcg['cuda']:.4f} (tolerance {tol})")
reports = {dev: one(f, "**/evaluate/report/report.json") for dev, f in runs.items()}
if all(reports.values()):
    for key in ("pearson_ra", "pearson_rd", "reward"):
        vals = {dev: (r["summary"].get("padirec") or {}).get(key) for dev, r in reports.items()}
        print(f"padirec test {key}: cpu {vals['cpu']}, cuda {vals['cuda']}")
    rt = {dev: (r.get("response_time") or {}).get("padirec", {}).get("median_s") for dev, r in reports.items()}
    print(f"padirec response time (median s): cpu {rt['cpu']}, cuda {rt['cuda']}")
if abs(ndcg["cpu"] - ndcg["cuda"]) > tol:
    sys.exit(f"gpu-check: backbone valid NDCG@10 differs between cpu ({ndcg['cpu']:.4f}) and cuda "
             f"({ndcg['cuda']:.4f}) by more than {tol}")
print("gpu-check: results agree within tolerance")
EOF

# --------------------------------------------------------------------------- 4. the scale benchmark
# The whole pipeline on ML-1M-format data at $GPU_CHECK_SCALE (default 1) with device cuda: every
# step's wall time and peak memory, to set beside the CPU figures of `make bench-scale`.
echo "gpu-check: benchmarks/bench_scale.py --scale ${GPU_CHECK_SCALE:-1} --set device=cuda"
"$PY" benchmarks/bench_scale.py --scale "${GPU_CHECK_SCALE:-1}" --set device=cuda --work "$WORK/scale" \
  || die "bench_scale.py failed on cuda"

# --------------------------------------------------------------------------- 5. the DDP backbone
echo "gpu-check: benchmarks/ddp_backbone.py --processes 2 --device cuda"
CUDA_RUN=$(dirname "$(ls -td "$WORK"/cuda/*/config.json | head -1)")
"$PY" benchmarks/ddp_backbone.py --run "$CUDA_RUN" --processes 2 --device cuda --work "$WORK/ddp" \
  || die "the 2-rank backbone failed on cuda or its validation NDCG@10 differs from one process's"
echo "gpu-check: done; run folders and logs in $WORK"
