#!/usr/bin/env bash
# What to run on a machine with an NVIDIA GPU, in one go (about 10 minutes on an H100):
#   1. the CUDA tests (they skip on machines without a GPU),
#   2. GPU decode+accumulate throughput (goal on an H100: >= 2.2 G ev/s),
#   3. CACD-B2 / B5 FP16 at 1034x617 through the torch-CUDA backend (goals: <= 1.5 / <= 4 ms),
#   4. frame->mask through the graph at 60 Hz (goals: p50 <= 8 ms, p99 <= 15 ms, 0 drops),
#   5. whether `import tensorrt` works, and the backend table.
# Figures only: each step prints its numbers and the goal beside them; nothing is asserted.
# PYTHON must be an interpreter with a CUDA build of torch and the project's requirements;
# results go to $OUT (or output/gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT_DIR=${OUT:-output/gpu_check}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
step() { echo; echo "== $*"; }

step "GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0))'

step "CUDA tests"
"$PY" -m pytest -q --import-mode=importlib -p no:cacheprovider -rs \
    test/events test/pipeline test/geometry test/runtime test/nodes/test_segmentation_inputs.py \
    2>&1 | tee "$OUT_DIR/cuda_tests.txt" | tail -25

step "GPU decode+accumulate (goal >= 2.2 G ev/s on an H100)"
"$PY" scripts/bench_events_gpu.py 2>&1 | tee "$OUT_DIR/events_gpu.txt" | tail -15

step "CACD B2 / B5 FP16 at 1034x617, torch CUDA (goals <= 1.5 ms / <= 4 ms on an H100)"
"$PY" scripts/bench_inference.py --matrix --mit b2,b5 --sizes 1034x617 --repeats 100 \
    --backends pytorch/cuda/fp16 --json "$OUT_DIR/inference_b2_b5.json" 2>&1 | tail -6

step "frame->mask at 60 Hz through the graph (goals p50 <= 8 ms, p99 <= 15 ms, 0 drops)"
"$PY" scripts/bench_replay.py --hz 60 --device cuda --json "$OUT_DIR/replay_60hz.json" 2>&1 | tail -8

step "TensorRT"
"$PY" -c 'import tensorrt; print("tensorrt", tensorrt.__version__)' || echo "import tensorrt failed"
"$PY" -m evseg_ros.cli backends
