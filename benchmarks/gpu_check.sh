#!/usr/bin/env bash
# Overhead and host-sync checks on a CUDA machine (not run on the 2-core CPU machine where
# the other benchmarks were measured). Run from the repository root with the venv active and
# `pip install -e .[bench]` done. Takes a few minutes; writes the "overhead-cuda" and
# "host_syncs" sections of benchmarks/README.md.
set -euo pipefail

python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: this script is for GPU machines")'
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

# Host syncs on the device: the Tensor-method counter plus torch's own sync detector
# (torch.cuda.set_sync_debug_mode), both split by phase. The batch loop must show at most
# one per log_freq steps.
python benchmarks/host_syncs.py --device cuda --epochs 2

# Same again with bf16 autocast: the AMP path must add no per-step sync either.
python - <<'PY'
import sys, tempfile
from pathlib import Path
sys.path.insert(0, ".")
from benchmarks.common import write_synthetic_clips
from benchmarks.host_syncs import count_host_reads
with tempfile.TemporaryDirectory() as tmp:
    data = write_synthetic_clips(Path(tmp) / "data", count=3, seconds=8.0)
    result = count_host_reads(data, Path(tmp) / "runs", [
        "training.max_epochs=2", "training.amp=bf16", "data.window_seconds=0.5",
        "data.window_hop_seconds=0.1", "training.batch_size=4"], device="cuda")
steps, points = result["by_phase"].get("steps", 0), result["log_points"]
cuda = result["cuda_syncs_by_phase"].get("steps", 0)
print(f"bf16: {steps} reads and {cuda} detector syncs in the batch loop, {points} log points")
sys.exit(0 if steps <= points and cuda <= points else 1)
PY

# Framework overhead on the GPU: bare loop, bare loop + metric sums, our Trainer, Lightning.
python benchmarks/overhead.py --device cuda --rounds 5 --epochs 10 --batches 250
