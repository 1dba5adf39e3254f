#!/usr/bin/env bash
# Drift check (not part of CI): resolve the newest releases of every dependency in a new virtual
# environment, print what moved against constraints.txt, and run the fast tests on them.
#   bash scripts/check_latest.sh               # report only
#   bash scripts/check_latest.sh --write-lock  # and, if the tests pass, make that set the new lock
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(mktemp -d "${TMPDIR:-/tmp}/seedling-latest-venv.XXXXXX")
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV"
# shellcheck disable=SC1091
source "$VENV/bin/activate"
bash scripts/setup.sh --test --latest
python scripts/lock.py --diff constraints.txt
python -m pytest -x -q
if [[ "${1:-}" == "--write-lock" ]]; then
  python scripts/lock.py --write constraints.txt
  echo "constraints.txt now holds the set the tests just passed with"
fi
