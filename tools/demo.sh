#!/usr/bin/env bash
# The main job on the bundled sample, end to end: install what is missing, build, preprocess data/sample, train the
# tiny conformal-sympow model and a softmax baseline with `longcrawl experiment` (held-out loss during training, loss by
# position out to 65,536 tokens with standard errors, report and figure), and generate a few lines. About 6 minutes on
# 2 cores after the first build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
swift build -c release
bin=.build/release/longcrawl
"$bin" preprocess data/sample --out out/sample --windows-per-doc all --heldout-fraction 0.3 --force
"$bin" inspect out/sample --lines 2
"$bin" verify out/sample
# Every held-out window (5 of the sample's 12), whole for the evaluation out to 65,536, and 257-token rows for the
# held-out loss during training.
"$bin" sample out/sample --split heldout --count 5 --seed 0 --out out/eval-windows.h5
"$bin" sample out/sample --split heldout --count 5 --seed 1 --context 256 --out out/heldout-256.h5
rm -rf runs/demo
"$bin" experiment --data out/sample --config data/configs/tiny.json --context 256 --tokens 307200 \
  --variants conformal-sympow,softmax --eval-windows out/eval-windows.h5 --heldout-windows out/heldout-256.h5 \
  --heldout-every 50 --out runs/demo
mkdir -p out/plots
PYTHONPATH=python python3 -m longcrawl.plot train runs/demo/conformal-sympow runs/demo/softmax --out out/plots/training.png
"$bin" generate --checkpoint runs/demo/conformal-sympow --prompt "It was a dark and stormy night" --tokens 60 --seed 1
cat <<DONE

Done. Where everything went:
  out/sample/                      token shards (HDF5 + zstd) and index.json
  out/eval-windows.h5              the held-out windows (whole), out/heldout-256.h5 (rows of 257 tokens)
  runs/demo/VARIANT/               config.json, metrics.jsonl, eval.jsonl, checkpoints/{step-*,best}/
  runs/demo/eval/VARIANT/          loss by position with standard errors: result.json, positions.csv, buckets.csv
  runs/demo/report.md              the comparison table (best-context loss, ranges, extrapolation gap, each ± SE)
  runs/demo/loss-by-position.png   loss by position out to 65,536 (log scale, ±1 SE bands)
  out/plots/training.png           training curves with the held-out points
DONE
