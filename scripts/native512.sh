#!/usr/bin/env bash
# The native 512 px chain (issue #19 §1 and §7) in one command, for a lent GPU or a long CPU run:
#   1. the f32 autoencoder (train_dcae: crops rendered in worker processes),
#   2. the DiT at 512 px on its latents (16x16 latents, 64 tokens: the token count of 128 px
#      today), its blocks initialised from the shipped 128 px DiT (`--init`), exported,
#   3. the harness on that export at its native size, judged at 128 px.
# Every stage resumes where it stopped: after a cut, run the same command again.
#
#   bash scripts/native512.sh                          # GPU defaults: 5 + 4 minutes of training
#   AE_MIN=60 DIT_MIN=0 bash scripts/native512.sh      # the autoencoder alone, e.g. on a CPU
#
# Settings (environment): RUNS (run folders, default runs/native512), AE_MIN, DIT_MIN (minutes of
# this call per stage; 0 skips a stage), WORKERS (data processes), AE_ARGS, DIT_ARGS, EVAL_ARGS,
# INIT (the DiT to start from), SIZE (the DiT's native size).
set -euo pipefail
RUNS=${RUNS:-runs/native512}
AE_MIN=${AE_MIN:-5}
DIT_MIN=${DIT_MIN:-4}
WORKERS=${WORKERS:-12}
SIZE=${SIZE:-512}
INIT=${INIT:-assets/default}
AE_ARGS=${AE_ARGS:---config f32c32 --batch 64 --crop 256 --max-steps 20000 --ckpt-every 500}
DIT_ARGS=${DIT_ARGS:---bf16 --token-budget 49152 --max-batch 512 --max-steps 5000 --lr 3e-4 --ckpt-every 500}
EVAL_ARGS=${EVAL_ARGS:---n-icons 40}

if [ "$AE_MIN" != 0 ]; then
  echo "== 1. f32 autoencoder ($AE_MIN min) -> $RUNS/ae"
  # shellcheck disable=SC2086
  python -m seedling.model.train_dcae $AE_ARGS --workers "$WORKERS" --minutes "$AE_MIN" --out "$RUNS/ae"
fi
if [ "$DIT_MIN" != 0 ]; then
  if [ ! -f "$RUNS/ae/model/config.json" ]; then
    echo "no autoencoder in $RUNS/ae/model: run stage 1 first (AE_MIN > 0)" >&2
    exit 2
  fi
  echo "== 2. DiT at $SIZE px on its latents ($DIT_MIN min) -> $RUNS/dit"
  # shellcheck disable=SC2086
  python -m seedling.model.train --ae "$RUNS/ae/model" --size "$SIZE" --init "$INIT" --no-curriculum \
    --workers "$WORKERS" $DIT_ARGS --minutes "$DIT_MIN" --out "$RUNS/dit" --export "$RUNS/dit/export"
fi
if [ -f "$RUNS/dit/export/model_index.json" ]; then
  echo "== 3. harness at $SIZE px -> $RUNS/eval"
  # shellcheck disable=SC2086
  python -m seedling.model.eval.run --model "$RUNS/dit/export" --out "$RUNS/eval" $EVAL_ARGS
fi
