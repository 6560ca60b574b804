#!/bin/bash
# The GPU check of issue 16, <= 8 minutes on one H100/H200 and nothing downloaded: random-weight Qwen2.5-0.5B and 1.5B
# (configs/arch/) for 3 GRPO steps each (HF engine; colocated vLLM too if it imports), then the toy preset end to end.
#   bash bench/gpu_check.sh               # on a GPU machine, from anywhere in the repository
#   bash bench/gpu_check.sh --dry-run     # CPU, toy sizes: checks that the script itself runs
# Prints tokens/s, the step split, peak GPU memory against memory_estimate, MFU; fails on a non-finite loss or weights
# that did not move. The output ends with one JSON line of all measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
timeout 480 python bench/gpu_check.py "$@"
