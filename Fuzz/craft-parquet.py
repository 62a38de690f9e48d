"""Writes crafted parquet files (a Thrift compact encoder of the few structs needed) for FuzzParquet's regression
inputs: one optional BYTE_ARRAY column "text", one row group, one chunk of the pages given.
Usage: python3 Fuzz/craft-parquet.py FOLDER   (writes the cases below; the valid-* files read in pyarrow)"""
import os
import struct
import sys
import zlib


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def zigzag(n):
    return varint((n << 1) ^ (n >> 63))


def struct_(fields):
    """fields: [(id, type, encoded value)] in id order; types: 5 i32, 6 i64, 8 binary, 9 list, 12 struct."""
    out, last = b"", 0
    for fid, ftype, value in fields:
        out += bytes([((fid - last) << 4) | ftype]) + value
        last = fid
    return out + b"\x00"


def i(n):
    return zigzag(n)


def string(s):
    b = s.encode()
    return varint(len(b)) + b


def list_(elem_type, items):
    return bytes([(len(items) << 4) | elem_type]) + b"".join(items)


def page_header(kind, uncompressed, compressed, num_values, encoding=0):
    sub = struct_([(1, 5, i(num_values)), (2, 5, i(encoding)), (3, 5, i(3)), (4, 5, i(3))])
    return struct_([(1, 5, i(kind)), (2, 5, i(uncompressed)), (3, 5, i(compressed)), (5, 12, sub)])


def parquet(pages, rows, codec):
    """pages: bytes of page headers and bodies, in order."""
    body = b"PAR1" + pages
    meta = struct_([(1, 5, i(6)), (2, 9, list_(5, [i(0)])), (3, 9, list_(8, [string("text")])), (4, 5, i(codec)),
                    (5, 6, i(rows)), (6, 6, i(len(pages))), (7, 6, i(len(pages))), (9, 6, i(4))])
    chunk = struct_([(2, 6, i(4)), (3, 12, meta)])
    group = struct_([(1, 9, list_(12, [chunk])), (2, 6, i(len(pages))), (3, 6, i(rows))])
    schema = [struct_([(4, 8, string("schema")), (5, 5, i(1))]), struct_([(1, 5, i(6)), (3, 5, i(1)), (4, 8, string("text"))])]
    footer = struct_([(1, 5, i(1)), (2, 9, list_(12, schema)), (3, 6, i(rows)), (4, 9, list_(12, [group]))])
    return body + footer + struct.pack("<I", len(footer)) + b"PAR1"


def levels(present):
    """Definition levels (bit width 1) of `present` rows, all 1, as an RLE run with its u32 length prefix."""
    run = varint(present << 1) + b"\x01"
    return struct.pack("<I", len(run)) + run


def plain(values):
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


out = sys.argv[1]
os.makedirs(out, exist_ok=True)
values = [b"hello", b"parquet world"]
data = levels(2) + plain(values)
cases = {
    "valid.parquet": parquet(page_header(0, len(data), len(data), 2) + data, 2, 0),
    "valid-gzip.parquet": parquet(page_header(0, len(data), len(zlib.compress(data)), 2) + zlib.compress(data), 2, 2),
}
# A snappy page whose header and snappy preamble both declare 1 GiB: 1 GiB was allocated before snappy failed.
snappy_huge = varint(1 << 30) + b"\x00\x00"
cases["snappy-declares-1gib.parquet"] = parquet(page_header(0, 1 << 30, len(snappy_huge), 2) + snappy_huge, 2, 1)
# A zstd frame that does not say its size, in a page that declares 1 GiB: 1 GiB was allocated before zstd failed.
zstd_unknown = bytes.fromhex("28b52ffd") + b"\x00\x00" + b"\x01\x00\x00"  # magic, descriptor without size, window, last raw block of 0 bytes
cases["zstd-unknown-size-1gib.parquet"] = parquet(page_header(0, 1 << 30, len(zstd_unknown), 2) + zstd_unknown, 2, 6)
# A zstd frame whose header declares 1 GiB (single segment, 8-byte size), in a page that declares the same.
zstd_declared = bytes.fromhex("28b52ffd") + b"\xe0" + struct.pack("<Q", 1 << 30) + b"\x01\x00\x00"
cases["zstd-declares-1gib.parquet"] = parquet(page_header(0, 1 << 30, len(zstd_declared), 2) + zstd_declared, 2, 6)
# 64 pages of 2^24 nulls each (one RLE run of level 0: 9 bytes a page): 2^30 rows of 2 kB, each a ParquetRow.
nulls = struct.pack("<I", 5) + varint((1 << 24) << 1) + b"\x00"
cases["null-runs-2p30-rows.parquet"] = parquet((page_header(0, len(nulls), len(nulls), 1 << 24) + nulls) * 64, 1 << 30, 0)
for name, b in cases.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(b)
