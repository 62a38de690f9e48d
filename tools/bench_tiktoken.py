#!/usr/bin/env python3
"""tiktoken's and gigatoken's throughput on the documents of one `longcrawl bench tokenizer` set, and tiktoken's ids.

usage: bench_tiktoken.py THREADS DOCS IDS_OUT
DOCS holds the documents, each a little-endian uint32 byte count then its bytes (decoded as UTF-8 with
errors="replace"). Writes tiktoken's ids of each document to IDS_OUT in tiktoken_ids.py's --records format, and
prints one JSON object: for tiktoken and (when installed; else null) gigatoken, the best-of-3 seconds on one
thread (encode_ordinary / encode per document) and on THREADS threads (encode_ordinary_batch / encode_batch);
for gigatoken also how many documents' ids differ from tiktoken's.
"""
import json
import os
import sys
import tempfile
import time
import base64

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiktoken_ids import gpt2_encoding  # noqa: E402


def best(fn):
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def gigatoken_encoder(enc):
    """gigatoken loads .tiktoken rank files: write ours (the same data/gpt2 vocabulary), GPT-2's split, no special
    tokens (so <|endoftext|> is ordinary text, as in encode_ordinary)."""
    try:
        import gigatoken
    except ImportError:
        return None
    path = os.path.join(tempfile.mkdtemp(), "gpt2.tiktoken")
    with open(path, "w") as f:
        for token, rank in sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(token).decode()} {rank}\n")
    return gigatoken.Tokenizer.from_tiktoken(path, pretokenizer="gpt2")


def main():
    threads, docs_path, ids_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    data, texts, i = open(docs_path, "rb").read(), [], 0
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "little")
        texts.append(data[i + 4:i + 4 + n].decode("utf-8", errors="replace"))
        i += 4 + n
    enc = gpt2_encoding()
    want = [enc.encode_ordinary(t) for t in texts]
    out = []
    for ids in want:
        out += [len(ids) & 0xFFFF, len(ids) >> 16] + ids
    np.asarray(out, dtype="<u2").tofile(ids_path)
    result = {"tiktoken": {"one_thread_s": best(lambda: [enc.encode_ordinary(t) for t in texts]),
                           "all_threads_s": best(lambda: enc.encode_ordinary_batch(texts, num_threads=threads))},
              "gigatoken": None}
    giga = gigatoken_encoder(enc)
    if giga is not None:
        differing = sum(1 for t, w in zip(texts, want) if giga.encode(t).tolist() != w)
        result["gigatoken"] = {"one_thread_s": best(lambda: [giga.encode(t) for t in texts]),
                               "all_threads_s": best(lambda: giga.encode_batch(texts, parallel=True)),
                               "documents_differing": differing}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
