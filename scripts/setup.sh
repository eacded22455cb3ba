#!/usr/bin/env bash
# Idempotent set-up: .venv with mimir and its dependencies, and the Fashion-MNIST files.
# Called by demo.sh and test.sh; safe to run again (it reinstalls only when pyproject.toml changed).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "error: mimir needs Python >= 3.10; set PYTHON=/path/to/python3.10+" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.mimir-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing mimir and its dependencies into .venv (first time: a few minutes, ~3 GB)" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[dev]"
    touch "$stamp"
fi

# Fashion-MNIST: Debian's package when apt is usable; otherwise mimir falls back to torchvision's
# downloader at run time (and says what to install if that fails too).
if ! .venv/bin/python -c "from mimir.data.fashion_mnist import locate; locate('train', False); locate('test', False)" 2>/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "setup: installing Debian's dataset-fashion-mnist" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "setup: Fashion-MNIST not installed; mimir will try torchvision's downloader" >&2
    fi
fi
