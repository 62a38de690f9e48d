#!/usr/bin/env bash
# The main job on the bundled sample: install what is missing, build, preprocess data/sample, inspect and verify.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
swift build -c release
bin=.build/release/longcrawl
"$bin" preprocess data/sample --out out/sample --force
"$bin" inspect out/sample
"$bin" verify out/sample
