#!/usr/bin/env bash
# The main job on the shipped default model (models/debian-moe, trained by moelab on
# text Debian ships; configs/default_model): set up, build, inspect it, run it, remove
# experts, check that transformers loads the pruned checkpoint with the same logits, and
# run the quickstart sweep (criteria x ratios x procedures) with the local executor.
#
# Never pipe a command into something that may stop reading early (`| head`): with
# pipefail the writer's SIGPIPE (exit 141) ends the script, depending on timing.
# MOELAB_QUICKSTART_OUT moves the outputs (default build/quickstart; the CI test uses its
# own folder); everything else runs as a user runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
MOELAB=build/runner/moelab
MODEL=models/debian-moe   # the shipped default: 4 layers x 8 experts, trained on 10 Debian text domains
OUT=${MOELAB_QUICKSTART_OUT:-build/quickstart}
echo; echo "== moelab inspect $MODEL"
$MOELAB inspect "$MODEL"
echo; echo "== moelab forward: next-token predictions"
$MOELAB forward "$MODEL" --text "The quick brown fox" --top 3
echo; echo "== moelab prune: drop experts 1,5 of layer 0 and 2 of layer 1"
$MOELAB prune "$MODEL" --drop 0:1,5 --drop 1:2 --out "$OUT/pruned" --overwrite
$MOELAB inspect "$OUT/pruned" | sed -n '/layer  type/,/^$/p'
echo "== transformers loads the pruned checkpoint; logits compared with moelab's"
python3 scripts/compare_with_transformers.py "$MOELAB" "$OUT/pruned"
echo; echo "== moelab sweep plan: the quickstart grid (criteria x ratios x procedures) as a job graph"
plan=$($MOELAB sweep plan configs/quickstart.yaml)
echo "${plan%%$'\n'*}"   # its first line: the job count
echo; echo "== moelab sweep run: the grid on this machine (2-rank calibration and evaluation)"
$MOELAB sweep run configs/quickstart.yaml --results "$OUT/results"
$MOELAB status "$OUT/results"
echo; echo "== moelab report: tables and plots from the sweep's results"
$MOELAB report "$OUT/results"
sed -n "/### Procedures/,/^Mean over seeds/p" "$OUT/results/report/report.md"
echo "Full report: $OUT/results/report/report.html (tables: report.md, report.tex; plots: plots/)"
