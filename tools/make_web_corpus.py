#!/usr/bin/env python3
"""A web-shaped corpus from a folder of books: what `longcrawl bench web` and the web-scale tests read.

usage: make_web_corpus.py SRC_DIR OUT_DIR [--mb 128] [--files 8] [--seed 1] [--book-every 3000] [--expect DIR]

Cuts the books' text (in file-name order, again from the start when it runs out) into documents of log-normal
UTF-8 lengths: median 3 KB, one in 300 above 65,536 bytes, and every --book-every-th document a whole book
(3,000: about 0.03% of documents, the share LongCrawl64 kept of RedPajama-v2). Writes them as
OUT_DIR/jsonl/part-NNN.jsonl.gz (RedPajama-v2's field names `raw_content`, `doc_id`; odd files escape every
non-ASCII character as JSON does with ensure_ascii, even files keep UTF-8) and OUT_DIR/parquet/part-NNN.parquet
(FineWeb's `text`, `id`; snappy, row groups of 1,000 rows). With --expect, each document of at least 65,536
bytes is also written as DIR/<doc_id>.txt, for tiktoken.
Prints one JSON line: documents, text bytes, long documents.
"""
import argparse
import gzip
import json
import math
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq

MEDIAN = 3000
# P(length > 65,536) = 1/300 for a log-normal of median 3,000: z(1/300) = 2.713.
SIGMA = math.log(65536 / MEDIAN) / 2.713


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--mb", type=float, default=128)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--book-every", type=int, default=3000)
    ap.add_argument("--expect")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    books = [open(os.path.join(a.src, n), encoding="utf-8", errors="replace").read()
             for n in sorted(os.listdir(a.src)) if n.endswith(".txt")]
    stream = "\n\n".join(books)
    total = int(a.mb * 1e6)
    docs, pos, size, n_book = [], 0, 0, 0
    while size < total:
        k = len(docs)
        if k % a.book_every == a.book_every - 1:
            text = books[n_book % len(books)]
            n_book += 1
        else:
            length = max(1, int(rng.lognormvariate(math.log(MEDIAN), SIGMA)))
            if pos + length > len(stream):
                pos = 0
            text = stream[pos:pos + length]
            pos += length
        docs.append(("doc-%07d" % k, text))
        size += len(text.encode("utf-8"))
    os.makedirs(os.path.join(a.out, "jsonl"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "parquet"), exist_ok=True)
    if a.expect:
        os.makedirs(a.expect, exist_ok=True)
    per = math.ceil(len(docs) / a.files)
    long_docs = 0
    for f in range(a.files):
        chunk = docs[f * per:(f + 1) * per]
        with gzip.open(os.path.join(a.out, "jsonl", "part-%03d.jsonl.gz" % f), "wt", encoding="utf-8", compresslevel=6) as out:
            for doc_id, text in chunk:
                out.write(json.dumps({"doc_id": doc_id, "raw_content": text}, ensure_ascii=f % 2 == 1) + "\n")
        table = pa.table({"id": [d for d, _ in chunk], "text": [t for _, t in chunk]})
        pq.write_table(table, os.path.join(a.out, "parquet", "part-%03d.parquet" % f), compression="snappy", row_group_size=1000)
        for doc_id, text in chunk:
            if len(text.encode("utf-8")) >= 65536:
                long_docs += 1
                if a.expect:
                    with open(os.path.join(a.expect, doc_id + ".txt"), "w", encoding="utf-8") as e:
                        e.write(text)
    print(json.dumps({"documents": len(docs), "text_bytes": size, "long_documents": long_docs}))


if __name__ == "__main__":
    main()
