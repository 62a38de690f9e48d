"""``python -m longcrawl.dump DIR ...``: the batches as JSON lines, the same lines as ``longcrawl pack --dump``, from
the same options (``--dump`` is accepted and always in effect)."""

from __future__ import annotations

import argparse
import json
import sys

from .dataset import Dataset, LongCrawlError
from .packer import ORDERS, BatchPacker, PackerCursor


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m longcrawl.dump", description=__doc__)
    p.add_argument("dataset", help="dataset folder (holding index.json)")
    p.add_argument("--split", default="train")
    p.add_argument("--batch", type=int, default=8, help="rows per batch (B)")
    p.add_argument("--context", type=int, default=1024, help="tokens per row (T, dividing 65536)")
    p.add_argument("--order", choices=ORDERS, default="longcrawl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--world", type=int, default=1)
    p.add_argument("--cursor", help="continue from a saved cursor (JSON); it replaces the options above")
    p.add_argument("--count", type=int, default=1, help="batches to build")
    p.add_argument("--save-cursor", help="write the cursor after the last batch here (JSON)")
    p.add_argument("--mask-seam", action="store_true", help="mask the target that crosses each row's seam")
    p.add_argument("--dump", action="store_true", help="print one JSON line per batch (always: accepted as pack takes it)")
    a = p.parse_args(argv)
    try:
        cursor = PackerCursor.load(a.cursor) if a.cursor else PackerCursor(a.seed, a.batch, a.context, a.order, a.rank, a.world)
        packer = BatchPacker(Dataset(a.dataset).split(a.split), cursor=cursor, mask_seam=a.mask_seam)
        for _ in range(a.count):
            b = next(packer)
            line = {"batch": b.index, "epoch": b.epoch, "continues": b.continues, "windows": b.windows,
                    "offsets": b.offsets, "seams": b.seams, "sha256": b.digest()}
            print(json.dumps(line, sort_keys=True, separators=(",", ":")))
        if a.save_cursor:
            packer.cursor.save(a.save_cursor)
    except LongCrawlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
