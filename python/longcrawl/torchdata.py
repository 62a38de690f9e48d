"""``TorchBatches``: the packer as a ``torch.utils.data.IterableDataset`` (needs torch)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Iterator, Optional, Union

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .dataset import Dataset
from .packer import BatchPacker, PackerCursor


class TorchBatches(IterableDataset):
    """The batches of ``BatchPacker`` from ``cursor`` on (``count`` of them, or without end), each a dict of
    tensors: ``inputs``, ``targets`` (int64 [B, T]), ``mask`` (float32 [B, T]), ``windows``, ``offsets`` (int64 [B]),
    and ``epoch``, ``batch`` (its number; resume from ``cursor_at(batch + 1)``), ``continues``.

    Use ``DataLoader(ds, batch_size=None, num_workers=N)``: worker w builds batches start + w, start + w + N, ...
    and the loader hands them out round-robin, so the order is the packer's whatever N is. Each worker opens the
    dataset itself (HDF5 handles do not survive a fork)."""

    def __init__(self, path: Union[str, os.PathLike], split: str = "train", batch_size: Optional[int] = None,
                 context: Optional[int] = None, order: str = "longcrawl", seed: int = 0, rank: int = 0,
                 world: int = 1, cursor: Optional[PackerCursor] = None, count: Optional[int] = None,
                 cache_bytes: int = 1 << 30) -> None:
        self.path, self.split, self.count, self.cache_bytes = path, split, count, cache_bytes
        if cursor is None:
            if batch_size is None or context is None:
                raise ValueError("give batch_size and context, or a cursor")
            cursor = PackerCursor(seed, batch_size, context, order, rank, world)
        self.cursor = cursor
        # Fail here, in the main process, on a bad dataset or option rather than inside a worker.
        BatchPacker(Dataset(path).split(split), cursor=cursor)

    def cursor_at(self, batch: int) -> PackerCursor:
        """The cursor whose next batch is number ``batch``."""
        return replace(self.cursor, batch=batch)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        packer = BatchPacker(Dataset(self.path).split(self.split), cursor=self.cursor, cache_bytes=self.cache_bytes)
        end = None if self.count is None else self.cursor.batch + self.count
        b = self.cursor.batch + worker
        while end is None or b < end:
            batch = packer.batch(b)
            yield {"inputs": torch.from_numpy(batch.inputs.astype(np.int64)),
                   "targets": torch.from_numpy(batch.targets.astype(np.int64)),
                   "mask": torch.from_numpy(batch.mask),
                   "windows": torch.tensor(batch.windows, dtype=torch.int64),
                   "offsets": torch.tensor(batch.offsets, dtype=torch.int64),
                   "epoch": batch.epoch, "batch": batch.index, "continues": batch.continues}
            b += workers
