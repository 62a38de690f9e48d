#!/usr/bin/env python3
"""Prints what h5py (with hdf5plugin's zstd filter) reads from a LongCrawl HDF5 shard, as JSON on stdout:
attributes, the shape and dtype of /tokens, the sum of its ids, the first and last ids of every window, and /documents."""
import json
import sys

import h5py
import hdf5plugin  # noqa: F401  (registers the zstd filter, id 32015)
import numpy as np

with h5py.File(sys.argv[1], "r") as f:
    tokens = f["tokens"][...]
    docs = f["documents"][...]
    attrs = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    out = {
        "attrs": attrs,
        "shape": list(tokens.shape),
        "dtype": str(tokens.dtype),
        "sum": int(tokens.astype(np.int64).sum()),
        "first": [int(w[0]) for w in tokens],
        "last": [int(w[-1]) for w in tokens],
        "documents": [[d[0].decode() if isinstance(d[0], bytes) else d[0], int(d[1])] for d in docs],
        "filters": sorted(str(k) for k in f["tokens"]._filters.keys()),
    }
print(json.dumps(out))
