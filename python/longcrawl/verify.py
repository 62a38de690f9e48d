"""``python -m longcrawl.verify DIR``: every shard's size, SHA-256 and window checksums, as ``longcrawl verify``."""

from __future__ import annotations

import sys

from .dataset import Dataset, LongCrawlError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m longcrawl.verify DIR", file=sys.stderr)
        return 2
    try:
        dataset = Dataset(args[0])
        faults = dataset.verify()
    except LongCrawlError as e:
        faults = [str(e)]
    for fault in faults:
        print(fault)
    if faults:
        print(f"{len(faults)} problem(s) in {args[0]}")
        return 1
    print(f"ok: {len(dataset.shards)} shards, {sum(s.windows for s in dataset.shards)} windows verified in {args[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
