#!/usr/bin/env bash
# Installs Seedling Studio into the current Python (a virtual environment, if one is active) on a
# fresh machine, with exactly the package versions the tests last passed with (constraints.txt).
#   bash scripts/setup.sh          # the app
#   bash scripts/setup.sh --test   # the app + test tools (pytest, playwright; Debian's tesseract-ocr,
#                                  # chromium, g++ and redis-server when run as root)
#   bash scripts/setup.sh --latest # the newest releases instead of constraints.txt (see check_latest.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
test_tools=0
lock=(-c constraints.txt)
for arg in "$@"; do
  case "$arg" in
    --test) test_tools=1 ;;
    --latest) lock=(--upgrade --upgrade-strategy eager) ;;
    *) echo "setup.sh: unknown option '$arg' (use --test and/or --latest)" >&2; exit 2 ;;
  esac
done
# torch first, pinned: the CPU wheel of 2.13.0 is on the machine; an unpinned torch pulls CUDA.
$PY -m pip install -q torch==2.13.0
if ((test_tools)); then
  $PY -m pip install -q "${lock[@]}" -e ".[test,redis]"
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    missing=()
    command -v tesseract >/dev/null || missing+=(tesseract-ocr)
    command -v chromium >/dev/null || missing+=(chromium chromium-driver)
    command -v g++ >/dev/null || missing+=(g++)  # builds the fused DiT blocks (seedling/kernels/fused.py)
    command -v redis-server >/dev/null || missing+=(redis-server)  # multi-worker queue tests
    if ((${#missing[@]})); then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
  fi
else
  $PY -m pip install -q "${lock[@]}" -e .
fi
# The editable build leaves setuptools' seedling_studio.egg-info in the checkout. The install's
# own metadata is the dist-info in site-packages; this copy, on sys.path whenever Python runs from
# the repository root, reads as a second installed distribution that provides `seedling`.
rm -rf seedling_studio.egg-info  # (the cd above: the repository root)
