#!/usr/bin/env bash
# The GPU check of issue 11, as one short script for a lent GPU machine (see
# benchmarks/gpu_check.py): installs the project, trains on CUDA in float64, compresses
# and decompresses across CPU and GPU, prints identity, bounds and throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e . 2>&1 | tail -2 || true
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
python3 benchmarks/gpu_check.py --devices cpu,cuda "$@"
