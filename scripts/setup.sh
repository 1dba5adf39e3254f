#!/usr/bin/env bash
# Installs everything Seedling Studio needs on a fresh machine.
#   bash scripts/setup.sh          # the app
#   bash scripts/setup.sh --test   # the app + test tools (tesseract, chromium for the browser test)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# torch first, pinned: the CPU wheel of 2.13.0 is on the machine; an unpinned torch pulls CUDA.
$PY -m pip install -q torch==2.13.0
if [[ "${1:-}" == "--test" ]]; then
  $PY -m pip install -q -e ".[test]"
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    missing=()
    command -v tesseract >/dev/null || missing+=(tesseract-ocr)
    command -v chromium >/dev/null || missing+=(chromium chromium-driver)
    command -v g++ >/dev/null || missing+=(g++)  # builds the fused DiT blocks (kernels/fused.py)
    if ((${#missing[@]})); then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
  fi
else
  $PY -m pip install -q -e .
fi
