#!/usr/bin/env python3
"""tiktoken's encode_ordinary throughput on the given files, the baseline for `longcrawl bench tokenizer`.

usage: bench_tiktoken.py THREADS EXCERPT_BYTES FILE...
Cuts each file into excerpts as `longcrawl bench tokenizer` does (at least EXCERPT_BYTES bytes, each cut just before
a space; 0 keeps files whole) and prints one JSON object: bytes, documents, tokens, and the best-of-3 seconds for one
thread (encode_ordinary per excerpt) and for THREADS threads (encode_ordinary_batch over the excerpts).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiktoken_ids import gpt2_encoding  # noqa: E402


def excerpts(data, size):
    if size <= 0:
        return [data]
    out, start = [], 0
    while start < len(data):
        cut = data.find(b" ", start + size)
        cut = len(data) if cut < 0 else cut
        out.append(data[start:cut])
        start = cut
    return out


threads, size, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
enc = gpt2_encoding()
docs = [d for f in files for d in excerpts(open(f, "rb").read(), size)]
texts = [d.decode("utf-8", errors="replace") for d in docs]


def best(fn):
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


tokens = sum(len(enc.encode_ordinary(t)) for t in texts)
one = best(lambda: [enc.encode_ordinary(t) for t in texts])
many = best(lambda: enc.encode_ordinary_batch(texts, num_threads=threads))
print(json.dumps({"bytes": sum(map(len, docs)), "documents": len(docs), "tokens": tokens, "one_thread_s": one,
                  "threads": threads, "all_threads_s": many}))
