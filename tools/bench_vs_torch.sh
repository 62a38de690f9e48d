#!/usr/bin/env bash
# LongCrawl against PyTorch, same config, context and batch, back to back in one run: tokens/s of full
# training steps (forward, backward, clipping, AdamW; one untimed warm-up step each) and the ratio.
#   tools/bench_vs_torch.sh [DATA]        DATA: a preprocessed dataset (default: data/sample, preprocessed to a temp dir)
#   CASES="4096:4 16384:1" STEPS=3 CONFIG=data/configs/small.json tools/bench_vs_torch.sh out/dev
set -euo pipefail
cd "$(dirname "$0")/.."
B=.build/release/longcrawl
CONFIG=${CONFIG:-data/configs/small.json}
STEPS=${STEPS:-3}
CASES=${CASES:-"4096:4 16384:1"}
DATA=${1:-}
if [ -z "$DATA" ]; then
  DATA=$(mktemp -d)/sample
  trap 'rm -rf "$(dirname "$DATA")"' EXIT
  $B preprocess data/sample --out "$DATA" --windows-per-doc all > /dev/null
fi
echo "| T | B | steps | LongCrawl tokens/s | PyTorch tokens/s | LongCrawl / PyTorch | LongCrawl's MFU ceiling, GFLOP/s (sgemm at the model's GEMM shapes) |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for case in $CASES; do
  T=${case%:*} BATCH=${case#*:}
  ours=$($B bench train --data "$DATA" --config "$CONFIG" --context "$T" --batch "$BATCH" --steps "$STEPS")
  sgemm=$(echo "$ours" | sed -n 's/^sgemm .*best \([0-9.]*\) GFLOP\/s.*/\1/p')
  lc=$(echo "$ours" | tail -1 | awk -F'|' '{gsub(/ /, "", $7); print $7}')
  pt=$(python3 tools/torch_model.py bench --config "$CONFIG" --context "$T" --batch "$BATCH" --steps "$STEPS" |
       python3 -c 'import json, sys; print(round(json.load(sys.stdin)["tokens_per_s"]))')
  echo "| $T | $BATCH | $STEPS | $lc | $pt | $(python3 -c "print(f'{$lc / $pt:.2f}')") | $sgemm |"
done
