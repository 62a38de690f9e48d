#!/usr/bin/env bash
# Writes the seed corpora into Fuzz/Corpus/TARGET/ from files the project writes (preprocess, train, sample) and
# from the reference writers the tests use (zarr-python and numcodecs, h5py and hdf5plugin, Python's safetensors,
# the zstd CLI, pyarrow). Seeds copied from real datasets are named real-*; all of it is about 0.4 MB, and committed.
# Usage: Fuzz/make-corpus.sh [path/to/longcrawl]   (default: .build/debug/longcrawl of the main package)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
longcrawl=${1:-$root/.build/debug/longcrawl}
corpus=$root/Fuzz/Corpus
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$corpus"/{FuzzJSONL,FuzzDatasetIndex,FuzzTrainState,FuzzTransformerConfig,FuzzSafetensors,FuzzSeekableZstd,FuzzHDF5Shard,FuzzEvalWindows,FuzzZarray,FuzzBloscChunk}

# Datasets: one window per shard, so a shard seed is one window (about 100 KB compressed).
"$longcrawl" preprocess "$root/data/sample" --out "$work/h5" --format hdf5 --shard-windows 1 > /dev/null
"$longcrawl" preprocess "$root/data/sample" --out "$work/zst" --format zst --shard-windows 1 > /dev/null
cp "$work/h5/index.json" "$corpus/FuzzDatasetIndex/hdf5-index.json"
cp "$work/zst/index.json" "$corpus/FuzzDatasetIndex/zst-index.json"
cp "$work/h5/heldout-000000.h5" "$corpus/FuzzHDF5Shard/real-heldout-000000.h5"
cp "$work/zst/heldout-000000.tokens.zst" "$corpus/FuzzSeekableZstd/real-heldout-000000.tokens.zst"
"$longcrawl" sample "$work/h5" --split train --count 2 --seed 1 --context 16 --out "$corpus/FuzzEvalWindows/context16.h5" > /dev/null

# A checkpoint of two steps of the tiny model (state.json; the model file is 12 MB, so the safetensors seeds are small ones).
"$longcrawl" train --data "$work/h5" --config "$root/data/configs/tiny.json" --steps 2 --batch 1 --context 64 \
    --save-every 2 --out "$work/run" > /dev/null
cp "$work/run/checkpoints/step-000002/state.json" "$corpus/FuzzTrainState/state.json"
# (FuzzTransformerConfig/flat-*.json, configs in the flat form of earlier versions, are kept as committed.)
cp "$root"/data/configs/*.json "$corpus/FuzzTransformerConfig/"

python3 - "$corpus" <<'PY'
import json, os, subprocess, sys
import h5py, hdf5plugin, numcodecs, numpy as np, zarr
from numcodecs import Blosc
from safetensors.numpy import save_file
corpus = sys.argv[1]
def put(target, name, data):
    with open(os.path.join(corpus, target, name), "wb") as f: f.write(data)

# JSONL and the other kinds the reader sniffs (WARC, text), plain, zstd and gzip.
jsonl = b'{"text": "hello world", "id": "a"}\n\n{"text": "x", "id": 7}\n{"meta": {"t": "nested"}}\n[1]\nnot json\n{"text": ""}\n'
put("FuzzJSONL", "records.jsonl", jsonl)
put("FuzzJSONL", "records.jsonl.zst", subprocess.run(["zstd", "-q", "-c"], input=jsonl, capture_output=True, check=True).stdout)
put("FuzzJSONL", "records.jsonl.gz", subprocess.run(["gzip", "-n", "-c"], input=jsonl, capture_output=True, check=True).stdout)
body = b"some converted text\n"
put("FuzzJSONL", "records.warc", b"WARC/1.0\r\nWARC-Type: warcinfo\r\nContent-Length: 0\r\n\r\n\r\n\r\n"
    + b"WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Record-ID: <urn:x>\r\nContent-Length: %d\r\n\r\n" % len(body) + body + b"\r\n\r\n")
put("FuzzJSONL", "document.txt", "A plain UTF-8 document, ünïcode.\n".encode())

# Seekable zstd shards of all-zero windows (a few hundred bytes each): frames, metadata frame, seek table.
def seekable(windows):
    frames, entries = b"", b""
    raw = bytes(65536 * 2)
    for _ in range(windows):
        f = subprocess.run(["zstd", "-q", "-c", "--check"], input=raw, capture_output=True, check=True).stdout
        frames += f
        # The low 32 bits of XXH64 of the window: the frame's own checksum is the same 32 bits (zstd's content checksum).
        entries += len(f).to_bytes(4, "little") + len(raw).to_bytes(4, "little") + f[-4:]
    meta = json.dumps({"attributes": {"format": "longcrawl-shard", "version": 1, "tokenizer": "gpt2", "vocab_size": 50257,
                                      "window": 65536, "split": "train"},
                       "sources": [{"document": "doc%d" % i, "offset": 0} for i in range(windows)]}, sort_keys=True).encode()
    tail = (0x184D2A50).to_bytes(4, "little") + len(meta).to_bytes(4, "little") + meta
    tail += (0x184D2A5E).to_bytes(4, "little") + (len(entries) + 9).to_bytes(4, "little") + entries
    tail += windows.to_bytes(4, "little") + bytes([0x80]) + (0x8F92EAB1).to_bytes(4, "little")
    return frames + tail
put("FuzzSeekableZstd", "zeros-1.tokens.zst", seekable(1))
put("FuzzSeekableZstd", "zeros-2.tokens.zst", seekable(2))

# HDF5 shards of all-zero windows, written as the project writes them (zstd filter 32015, Fletcher32).
for windows in (1, 2):
    path = os.path.join(corpus, "FuzzHDF5Shard", "zeros-%d.h5" % windows)
    with h5py.File(path, "w",) as f:
        f.create_dataset("tokens", data=np.zeros((windows, 65536), "<u2"), chunks=(1, 65536), maxshape=(None, 65536),
                         fletcher32=True, **hdf5plugin.Zstd(clevel=3))
        dt = np.dtype([("document", h5py.string_dtype("utf-8")), ("offset", "<i8")])
        f.create_dataset("documents", data=np.array([("doc%d" % i, 0) for i in range(windows)], dt))
        for k, v in {"format": "longcrawl-shard", "tokenizer": "gpt2", "split": "train"}.items(): f.attrs[k] = v
        for k, v in {"version": 1, "vocab_size": 50257, "window": 65536}.items(): f.attrs[k] = np.int64(v)

# Safetensors: small F32 tensors with metadata, as Python's safetensors writes them.
save_file({"w": np.arange(6, dtype="<f4").reshape(2, 3), "b": np.zeros(0, "<f4")}, os.path.join(corpus, "FuzzSafetensors", "small.safetensors"),
          metadata={"format": "pt", "step": "2"})
save_file({"scalar": np.array(1.5, "<f4")}, os.path.join(corpus, "FuzzSafetensors", "scalar.safetensors"))

# zarr: .zarray of each compressor and separator; blosc chunks of one 65,536-token row, behind their layout byte
# (the order of FuzzBloscChunk's layouts).
layouts = [(Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE), 1), (Blosc(cname="lz4", clevel=5, shuffle=Blosc.NOSHUFFLE), 2),
           (Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE), 1), (Blosc(cname="blosclz", clevel=5, shuffle=Blosc.SHUFFLE), 1),
           (numcodecs.Zstd(level=3), 1), (None, 1)]
row = (np.arange(65536) % 1000).astype("<u2")[None, :]
for i, (compressor, chunk_rows) in enumerate(layouts):
    path = os.path.join("/tmp", "fuzz-zarr-%d-%d.zarr" % (os.getpid(), i))
    a = zarr.open_array(path, mode="w", shape=(1, 65536), chunks=(chunk_rows, 65536), dtype="<u2", zarr_format=2,
                        compressor=compressor, fill_value=0, **({"dimension_separator": "/"} if i == 2 else {}))
    a[:] = row
    put("FuzzZarray", "layout%d.zarray" % i, open(path + "/.zarray", "rb").read())
    chunk = open(path + ("/0/0" if i == 2 else "/0.0"), "rb").read()
    put("FuzzBloscChunk", "layout%d" % i, bytes([i]) + chunk)
    subprocess.run(["rm", "-rf", path], check=True)
PY
# Parquet: pyarrow's small files of each codec, encoding and page version (FuzzParquet).
python3 "$root/Fuzz/make-parquet-corpus.py"
du -sh "$corpus"/*
