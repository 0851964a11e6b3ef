#!/usr/bin/env bash
# One command for the first machine with a GPU: every released configuration through the
# conformance cases on CUDA in fp32 / fp16 / bf16 (channels-last; tolerances printed in the first
# line and in benchmarks/gpu_check.py), then images/s per family at batch 1 and 8.
#
#   bash benchmarks/gpu_check.sh [extra args for gpu_check.py, e.g. --models spade_ade20k]
#
# Needs ../shared/conformance beside the repository. Exit status 1 if any case failed.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
mkdir -p benchmarks/results
exec python benchmarks/gpu_check.py --device cuda --precisions fp32,fp16,bf16 \
    --out "benchmarks/results/gpu_check_$(date -u +%Y%m%d).json" "$@"
