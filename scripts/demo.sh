#!/usr/bin/env bash
# The main job on the built-in default: compress the bundled ResNet-20 Fashion-MNIST teacher with MiR,
# using 500 unlabeled training images, and save the result. Extra arguments go to `mimir compress`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p runs
exec .venv/bin/mimir compress --teacher resnet20 --data fashion-mnist --samples 500 --seed 0 \
    --prune channels:0.5 --method mir --iterations 2000 --out runs/resnet20_mir.pt "$@"
