"""Writes FuzzParquet's seeds into Fuzz/Corpus/FuzzParquet/ with pyarrow: small files (a few kB) of each codec
(none, snappy, gzip, zstd), dictionary and PLAIN pages, data pages v1 and v2, nulls, several row groups and pages,
a nested struct id ("metadata.id"), integer ids and a required text column. Usage: python3 Fuzz/make-parquet-corpus.py"""
import os

import pyarrow as pa
import pyarrow.parquet as pq

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Corpus", "FuzzParquet")
os.makedirs(out, exist_ok=True)
words = ["the", "crawl", "über", "東京", "😀", "long", "context", "a"]
texts = [None if i % 7 == 3 else "a repeated document" if i % 4 == 0 else " ".join(words[(i + k) % 8] for k in range(i % 9))
         for i in range(24)]
texts[5] = "x" * 300 + " long value"
ids = [None if i % 5 == 2 else f"id-{i:03d}" for i in range(24)]
table = pa.table({"text": pa.array(texts, pa.string()), "id": pa.array(ids, pa.string())})


def write(name, t, **kw):
    pq.write_table(t, os.path.join(out, name), row_group_size=kw.pop("row_group_size", 8), data_page_size=128,
                   write_batch_size=4, write_statistics=False, **kw)


for codec in ["none", "snappy", "gzip", "zstd"]:
    for dictionary in [True, False]:
        for version in ["1.0", "2.0"]:
            write(f"{codec}-{'dict' if dictionary else 'plain'}-v{version[0]}.parquet", table, compression=codec,
                  use_dictionary=dictionary, data_page_version=version)
nested = pa.table({"text": pa.array(texts[:12]),
                   "metadata": pa.array([{"id": i, "n": k} for k, i in enumerate(ids[:12])],
                                        pa.struct([("id", pa.string()), ("n", pa.int64())]))})
write("nested.parquet", nested, compression="snappy")
int_ids = pa.table({"text": pa.array([f"doc {k}" for k in range(12)]),
                    "id": pa.array([None if k == 3 else k * 1_000_000_007 - 5 for k in range(12)], pa.int64())},
                   schema=pa.schema([pa.field("text", pa.string(), nullable=False), ("id", pa.int64())]))
write("int-id-v1.parquet", int_ids, compression="zstd")
write("int-id-v2.parquet", int_ids, compression="none", data_page_version="2.0", row_group_size=5)
