#!/usr/bin/env python3
"""A web-shaped corpus from a folder of books: what `longcrawl bench web` and the web-scale tests read.

usage: make_web_corpus.py SRC_DIR OUT_DIR [--mb 128] [--files 8] [--seed 1] [--book-every 3000] [--expect DIR]
                          [--distinct] [--plant 0.05]

Cuts the books' text (in file-name order, again from the start when it runs out) into documents of log-normal
UTF-8 lengths: median 3 KB, one in 300 above 65,536 bytes, and every --book-every-th document a whole book
(3,000: about 0.03% of documents, the share LongCrawl64 kept of RedPajama-v2). Writes them as
OUT_DIR/jsonl/part-NNN.jsonl.gz (RedPajama-v2's field names `raw_content`, `doc_id`; odd files escape every
non-ASCII character as JSON does with ensure_ascii, even files keep UTF-8) and OUT_DIR/parquet/part-NNN.parquet
(FineWeb's `text`, `id`; snappy, row groups of 1,000 rows). With --expect, each document of at least 65,536
bytes is also written as DIR/<doc_id>.txt, for tiktoken.
With --distinct, each pass through the books after the first maps every word to another of about the same frequency
(a fixed shuffle within bands of 64 frequency ranks, one per pass), so a corpus larger than its books still holds
distinct documents with the books' word statistics (`bench scale`). With --plant P, each document of at least 65,536
bytes is followed, with probability P each, by an exact copy and by a near copy (every 50th line changed), under ids
of their own: what dedup must find.
Prints one JSON line: documents, text bytes, long documents.
"""
import argparse
import collections
import gzip
import json
import math
import os
import random
import re

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
    ap.add_argument("--distinct", action="store_true")
    ap.add_argument("--plant", type=float, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    books = [open(os.path.join(a.src, n), encoding="utf-8", errors="replace").read()
             for n in sorted(os.listdir(a.src)) if n.endswith(".txt")]
    stream = "\n\n".join(books)
    words = re.compile(r"[A-Za-z]+")
    ranked = [w for w, _ in collections.Counter(words.findall(stream)).most_common()] if a.distinct else []
    passes = {}

    def pass_text(text, p):
        """`text` as the books read on pass `p`: itself on the first, its words mapped on the others."""
        if p == 0 or not a.distinct:
            return text
        if p not in passes:
            shuffle, mapping = random.Random(p), {}
            for band in range(0, len(ranked), 64):
                group = ranked[band:band + 64]
                mapping.update(zip(group, shuffle.sample(group, len(group))))
            passes[p] = mapping
        mapping = passes[p]
        return words.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)

    total = int(a.mb * 1e6)
    docs, pos, size, n_book, n_pass = [], 0, 0, 0, 0

    def add(text):
        nonlocal size
        docs.append(("doc-%07d" % len(docs), text))
        size += len(text.encode("utf-8"))

    while size < total:
        k = len(docs)
        if k % a.book_every == a.book_every - 1:
            text = pass_text(books[n_book % len(books)], n_book // len(books))
            n_book += 1
        else:
            length = max(1, int(rng.lognormvariate(math.log(MEDIAN), SIGMA)))
            if pos + length > len(stream):
                pos, n_pass = 0, n_pass + 1
            text = pass_text(stream[pos:pos + length], n_pass)
            pos += length
        add(text)
        if a.plant and len(text.encode("utf-8")) >= 65536:
            if rng.random() < a.plant:
                add(text)
            if rng.random() < a.plant:
                lines = text.split("\n")
                add("\n".join("a changed line %d" % i if i % 50 == 7 else l for i, l in enumerate(lines)))
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
