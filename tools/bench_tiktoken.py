#!/usr/bin/env python3
"""tiktoken's encode_ordinary throughput on the given files, the baseline for `longcrawl bench tokenizer`.

usage: bench_tiktoken.py THREADS FILE...
Prints one JSON object: bytes, tokens, and the best-of-3 seconds for one thread (encode_ordinary per file) and for
THREADS threads (encode_ordinary_batch over the files).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiktoken_ids import gpt2_encoding  # noqa: E402

threads, files = int(sys.argv[1]), sys.argv[2:]
enc = gpt2_encoding()
texts = [open(f, "rb").read().decode("utf-8", errors="replace") for f in files]
nbytes = sum(len(t.encode("utf-8")) for t in texts)


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
print(json.dumps({"bytes": nbytes, "tokens": tokens, "one_thread_s": one, "threads": threads, "all_threads_s": many}))
