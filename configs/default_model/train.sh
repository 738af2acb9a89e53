#!/usr/bin/env bash
# The recipe of moelab's embedded default model, models/debian-moe (README.md here):
# corpus from Debian packages -> byte-level BPE tokenizer -> `moelab train` on 2 MPI ranks.
# From the repository root, after scripts/setup.sh (it installs the fortune packages) and a build:
#   bash configs/default_model/train.sh            # -> build/debian-moe/model (~43 min on 2 cores)
#   SHIP=1 bash configs/default_model/train.sh     # ... and replace the shipped files (see README.md)
# Work files (corpus, tokenizer, checkpoints, loss curve) go to $WORK (default build/debian-moe);
# an interrupted run continues from its last checkpoint (every 100 steps) when started again.
set -euo pipefail
cd "$(dirname "$0")/../.."
MOELAB=${MOELAB:-build/runner/moelab}
WORK=${WORK:-build/debian-moe}
OUT=${OUT:-$WORK/model}

python3 scripts/make_corpus.py --out "$WORK/corpus" --seed 0 \
    --test-bytes 48000 --cal-bytes 48000 --train-bytes 1000000 --quick-bytes 6000
python3 scripts/make_tokenizer.py --corpus "$WORK/corpus" --vocab-size 4096 --out "$WORK/tokenizer"

time "$MOELAB" --ranks 2 train --model-config configs/default_model/model_config.json \
    --tokenizer "$WORK/tokenizer" --data "$WORK"/corpus/*.train.jsonl \
    --seq-len 256 --batch-size 16 --steps 900 \
    --lr 2e-3 --min-lr 2e-4 --warmup 50 --weight-decay 0.1 --clip 1.0 \
    --seed 0 --init-seed 1 --save-dtype bfloat16 \
    --checkpoint-dir "$WORK/checkpoints" --checkpoint-every 100 --auto-resume \
    --log-file "$WORK/loss.jsonl" --out "$OUT" --overwrite

if [ "${SHIP:-0}" = 1 ]; then
  mkdir -p models/debian-moe
  cp "$OUT"/config.json "$OUT"/model.safetensors "$OUT"/tokenizer.json "$OUT"/tokenizer_config.json models/debian-moe/
  python3 scripts/make_corpus.py --out "$WORK/corpus" --seed 0 \
      --test-bytes 48000 --cal-bytes 48000 --train-bytes 1000000 --quick-bytes 6000 --ship models/debian-moe/corpus
  python3 scripts/make_tasks.py --corpus models/debian-moe/corpus --out configs/tasks --items 40
  python3 scripts/measure_default_model.py --model models/debian-moe --train-corpus "$WORK/corpus" \
      --moelab "$MOELAB" --work "$WORK/measure"
fi
