#!/usr/bin/env bash
# The main job on the demo model: set up, build, make the demo MoE (a small random
# Mixtral with a tokenizer trained on text Debian ships), inspect it, run it, remove
# experts, check that transformers loads the pruned checkpoint with the same logits, and
# run the quickstart sweep (criteria x ratios x procedures) with the local executor.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
MOELAB=build/runner/moelab
DEMO=build/demo/model
if [ ! -f "$DEMO/config.json" ]; then
  python3 scripts/make_demo_model.py --out "$DEMO"
fi
echo; echo "== moelab inspect $DEMO"
$MOELAB inspect "$DEMO"
echo; echo "== moelab forward: next-token predictions"
$MOELAB forward "$DEMO" --text "The quick brown fox" --top 3
echo; echo "== moelab prune: drop experts 1,5 of layer 0 and 2 of layer 1"
$MOELAB prune "$DEMO" --drop 0:1,5 --drop 1:2 --out build/demo/pruned --overwrite
$MOELAB inspect build/demo/pruned | sed -n '/layer  type/,/^$/p'
echo "== transformers loads the pruned checkpoint; logits compared with moelab's"
python3 scripts/compare_with_transformers.py "$MOELAB" build/demo/pruned
echo; echo "== moelab sweep plan: a small grid (criteria x ratios x procedures) as a job graph"
$MOELAB sweep plan configs/quickstart.yaml
echo; echo "== moelab sweep run: the grid on this machine (2-rank calibration and evaluation)"
$MOELAB sweep run configs/quickstart.yaml --results build/demo/results/quickstart
$MOELAB status build/demo/results/quickstart
echo; echo "== moelab report: tables and plots from the sweep's results"
$MOELAB report build/demo/results/quickstart
sed -n "/### Criteria by drop ratio/,/^Mean over seeds/p" build/demo/results/quickstart/report/report.md
