"""Writes the parquet fixtures of ParquetReaderTests into a folder, with pyarrow.

Every fineweb-*.parquet holds the same FineWeb-shaped table; expected.json holds its rows as the reader
must return them: [[text or null, id or null], ...]. The other files each exercise one case (see below).
Usage: python3 tools/make_parquet.py FOLDER
"""
import json
import os
import random
import sys

import pyarrow as pa
import pyarrow.parquet as pq

out = sys.argv[1]
rng = random.Random(1234)
words = ["the", "crawl", "über", "naïve", "東京", "données", "😀", "long", "context", "parquet", "ñandú", "a"]


def text(i):
    if i % 17 == 5:
        return None
    if i == 40:
        return "x" * 50_000 + "é" * 40_000 + " end"  # > 100 kB, several pages on its own
    if i % 5 == 0:
        return "a repeated document"  # repetitive values for the dictionary
    return " ".join(rng.choice(words) for _ in range(rng.randint(0, 60)))


rows = 300
texts = [text(i) for i in range(rows)]
ids = [None if i % 13 == 7 else f"<urn:uuid:{i:08d}-{rng.getrandbits(32):08x}>" for i in range(rows)]
table = pa.table({
    "text": pa.array(texts, pa.string()),
    "id": pa.array(ids, pa.string()),
    "dump": pa.array(["CC-MAIN-2024-10"] * rows, pa.string()),
    "url": pa.array([f"https://example.com/{i % 7}" for i in range(rows)], pa.string()),
    "date": pa.array(["2024-02-21T08:00:00Z"] * rows, pa.string()),
    "file_path": pa.array(["s3://commoncrawl/x.warc.gz"] * rows, pa.string()),
    "language": pa.array(["en"] * rows, pa.string()),
    "language_score": pa.array([rng.random() for _ in range(rows)], pa.float64()),
    "token_count": pa.array([rng.randint(1, 9999) for _ in range(rows)], pa.int64()),
})

for codec in ["none", "snappy", "zstd", "gzip"]:
    for dictionary in [True, False]:
        for version in ["1.0", "2.0"]:
            name = f"fineweb-{codec}-{'dict' if dictionary else 'plain'}-v{version[0]}.parquet"
            # Small pages, batches and row groups: several row groups, several pages per chunk; a small
            # dictionary limit makes some chunks fall back from dictionary to PLAIN pages part way.
            pq.write_table(table, os.path.join(out, name), compression=codec, use_dictionary=dictionary,
                           data_page_version=version, row_group_size=70, data_page_size=1024, write_batch_size=16,
                           dictionary_pagesize_limit=4096)
with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
    json.dump([[t, i] for t, i in zip(texts, ids)], f, ensure_ascii=False)

# The id as a struct field, read by the dotted path "metadata.id"; and an int64 id.
nested = pa.table({"text": pa.array(texts[:50]),
                   "metadata": pa.array([{"id": i, "n": k} for k, i in enumerate(ids[:50])],
                                        pa.struct([("id", pa.string()), ("n", pa.int64())]))})
pq.write_table(nested, os.path.join(out, "nested.parquet"), row_group_size=20)
# Integer ids (int64 with a null, int32) beside a required (non-nullable) text column: no definition levels.
int_ids = pa.table({"text": pa.array([f"doc {k}" for k in range(50)]),
                    "id": pa.array([None if k == 3 else k * 1_000_000_007 - 5 for k in range(50)], pa.int64()),
                    "id32": pa.array([-k * 40_000_000 for k in range(50)], pa.int32())},
                   schema=pa.schema([pa.field("text", pa.string(), nullable=False), ("id", pa.int64()), ("id32", pa.int32())]))
for version in ["1.0", "2.0"]:
    pq.write_table(int_ids, os.path.join(out, f"int-id-v{version[0]}.parquet"), row_group_size=20, data_page_version=version)
pq.write_table(pa.table({"id": pa.array(ids[:10]), "text": pa.array(list(range(10)), pa.int64())}), os.path.join(out, "int-text.parquet"))
for codec in ["lz4", "brotli"]:
    pq.write_table(pa.table({"text": pa.array(texts[:10])}), os.path.join(out, f"{codec}.parquet"), compression=codec)
# Small enough to cut and corrupt at hundreds of places: dictionary and plain pages, v2, nulls, snappy.
small = table.slice(0, 40).select(["text", "id", "token_count"])
pq.write_table(small, os.path.join(out, "small.parquet"), compression="snappy", row_group_size=15, data_page_size=256,
               write_batch_size=8, data_page_version="2.0", use_dictionary=["id"])
pq.write_table(small, os.path.join(out, "small-v1.parquet"), compression="zstd", row_group_size=15, data_page_size=256,
               write_batch_size=8, use_dictionary=["text"])
