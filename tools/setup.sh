#!/usr/bin/env bash
# Installs what LongCrawl needs on Debian: C libraries, the zstd CLI, and the Python tools
# used for interop checks, baselines and plots. Skips what is already there.
set -euo pipefail
need=()
for p in libzstd-dev libhdf5-dev libopenblas-dev libssl-dev libxxhash-dev libopenmpi-dev openmpi-bin zlib1g-dev libsnappy-dev libblosc-dev libcurl4-openssl-dev zstd pkg-config procps; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 - <<'PY' 2>/dev/null || python3 -m pip install -q tiktoken h5py hdf5plugin safetensors numpy matplotlib pyarrow 'zarr>=3.1' numcodecs zstandard xxhash jsonschema
import tiktoken, h5py, hdf5plugin, safetensors, numpy, matplotlib, pyarrow, zarr, numcodecs, zstandard, xxhash, jsonschema
PY
# gigatoken, bench tokenizer's second reference beside tiktoken: optional (a wheel may be missing for this platform),
# so setup goes on without it.
python3 -c "import gigatoken" 2>/dev/null || python3 -m pip install -q gigatoken || echo "gigatoken not installed: bench tokenizer compares with tiktoken only" >&2
# PyTorch (CPU) for the optimizer and model comparisons: the local CPU wheel when the machine has one (PyPI's
# default torch wheel is the CUDA build, gigabytes of it), else PyTorch's CPU index.
python3 -c "import torch" 2>/dev/null || {
  wheel=$(ls /opt/wheels/torch-*+cpu-*.whl 2>/dev/null | head -n 1 || true)
  if [ -n "$wheel" ]; then python3 -m pip install -q "$wheel"
  else python3 -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu; fi
}
