#!/usr/bin/env bash
# The main job on the bundled sample, end to end: install what is missing, build, preprocess data/sample, train the
# tiny conformal-sympow model and a softmax baseline, sample held-out windows, evaluate loss by position out to
# 65,536 tokens, plot, and generate a few lines. About 6 minutes on 2 cores after the first build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
swift build -c release
bin=.build/release/longcrawl
"$bin" preprocess data/sample --out out/sample --windows-per-doc all --force
"$bin" inspect out/sample --lines 2
"$bin" verify out/sample
"$bin" train --data out/sample --config data/configs/tiny.json --out runs/tiny --force
"$bin" train --data out/sample --config data/configs/tiny.json --attention softmax --out runs/tiny-softmax --force
"$bin" sample out/sample --split heldout --count 2 --seed 0 --out out/eval-windows.h5
"$bin" eval --checkpoint runs/tiny --windows out/eval-windows.h5 --out out/eval/tiny
"$bin" eval --checkpoint runs/tiny-softmax --windows out/eval-windows.h5 --out out/eval/tiny-softmax
mkdir -p out/plots
python3 tools/plot.py train runs/tiny runs/tiny-softmax --out out/plots/training.png
python3 tools/plot.py eval out/eval/tiny out/eval/tiny-softmax --out out/plots/loss-by-position.png
"$bin" generate --checkpoint runs/tiny --prompt "It was a dark and stormy night" --tokens 60 --seed 1
cat <<DONE

Done. Where everything went:
  out/sample/                      token shards (HDF5 + zstd) and index.json
  runs/tiny/, runs/tiny-softmax/   config.json, metrics.jsonl, checkpoints/step-*/ (model.safetensors, optimizer.safetensors, state.json)
  out/eval-windows.h5              the sampled held-out windows
  out/eval/*/                      loss by position: result.json, positions.csv, buckets.csv
  out/plots/training.png           training curves
  out/plots/loss-by-position.png   loss by position out to 65,536 (log scale)
DONE
