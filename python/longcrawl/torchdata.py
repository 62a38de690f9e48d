"""``TorchBatches``: the packer as a ``torch.utils.data.IterableDataset`` (needs torch)."""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from typing import Any, Iterator, Optional, TypedDict, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .dataset import WINDOW, Dataset
from .packer import BatchPacker, PackerCursor, cut, epoch_order


class TorchBatch(TypedDict):
    """One batch as ``TorchBatches`` yields it."""

    inputs: torch.Tensor
    """int64 [B, T]: tokens ``offset .. offset + T`` of each row's window."""
    targets: torch.Tensor
    """int64 [B, T]: the next token of each input; ``ignore_index`` (else 0) where ``mask`` is 0."""
    mask: torch.Tensor
    """float32 [B, T]: 0 at a window's last token (no successor) and, with ``mask_seam``, at each row's seam."""
    windows: torch.Tensor
    """int64 [B]: each row's window id in the split."""
    offsets: torch.Tensor
    """int64 [B]: each row's first input's token offset in its window."""
    epoch: int
    batch: int
    """This batch's number; the cursor after it has ``batch + 1``."""
    continues: bool
    """Every row continues the same row of the previous batch (sequential order, slot > 0)."""


class TorchBatches(IterableDataset):
    """The batches of ``BatchPacker`` as a torch ``IterableDataset``, each a ``TorchBatch`` dict of tensors.

    Training (``drop_last=True``, the default): the packer's batches from the cursor on, without end, or ``count``
    of them per iteration (then ``len()`` is ``count``); exactly the batches of ``longcrawl train``/``pack`` for
    the same cursor. Evaluation (``drop_last=False``): one pass in which every window of this rank's share
    (``ids[rank::world]`` of the epoch-0 order, leftovers included) is seen exactly once at every offset of the
    context, the last group of rows smaller than ``batch_size``; ``len()`` is the pass's batches.

    Each iteration continues where the previous one stopped (the cursor advances as batches are handed out); an
    evaluation pass that is complete starts again. ``state_dict()``/``load_state_dict()`` save and restore that
    position. Use ``loader(num_workers=N)``, a ``DataLoader`` that keeps the position in this object (a plain
    ``DataLoader`` with workers iterates copies, which this object never sees): worker w builds batches start + w,
    start + w + N, ... and the loader hands them out round-robin, so the order is the same for every N."""

    def __init__(self, path: Union[str, os.PathLike], split: str = "train", batch_size: Optional[int] = None,
                 context: Optional[int] = None, order: Optional[str] = None, seed: Optional[int] = None,
                 rank: Optional[int] = None, world: Optional[int] = None, cursor: Optional[PackerCursor] = None,
                 count: Optional[int] = None, drop_last: bool = True, mask_seam: bool = False,
                 ignore_index: Optional[int] = None, cache_bytes: int = 1 << 30) -> None:
        given = {"batch_size": batch_size, "context": context, "order": order, "seed": seed, "rank": rank, "world": world}
        for name, value in given.items():
            if value is not None and name != "order" and (not isinstance(value, int) or isinstance(value, bool)):
                raise TypeError(f"TorchBatches: {name} must be an int, got {value!r}")
        if cursor is None:
            if batch_size is None or context is None:
                raise ValueError("TorchBatches: give batch_size and context, or a cursor")
            cursor = PackerCursor(seed or 0, batch_size, context, order or "longcrawl", rank or 0, world or 1)
        else:
            for name, value in given.items():
                if value is not None and value != getattr(cursor, name):
                    raise ValueError(f"TorchBatches: {name}={value!r} disagrees with the cursor's {name} {getattr(cursor, name)!r}")
        c = cursor
        if c.fault():
            raise ValueError(f"TorchBatches: {c.fault()}")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError(f"TorchBatches: count must be a positive int, got {count!r}")
        if count is not None and not drop_last:
            raise ValueError("TorchBatches: count and drop_last=False exclude each other (an evaluation pass has its own length)")
        if ignore_index is not None and not isinstance(ignore_index, int):
            raise TypeError(f"TorchBatches: ignore_index must be an int, got {ignore_index!r}")
        self.path, self.split, self.count, self.cache_bytes = path, split, count, cache_bytes
        self.drop_last, self.mask_seam, self.ignore_index = drop_last, mask_seam, ignore_index
        self.cursor = cursor
        # A bad dataset, or a batch larger than a rank's windows, fails here rather than inside a worker.
        windows = Dataset(path).split(split)
        if drop_last:
            self._per_pass = BatchPacker(windows, cursor=cursor).batches_per_epoch
        else:
            mine = len(range(c.rank, windows.count, c.world))
            if mine == 0:
                raise ValueError(f"TorchBatches: split '{split}' has {windows.count} windows, none for rank {c.rank} of {c.world}")
            self._per_pass = -(-mine // c.batch_size) * (WINDOW // c.context)

    def __len__(self) -> int:
        if self.count is not None:
            return self.count
        if not self.drop_last:
            return self._per_pass
        raise TypeError("TorchBatches: endless (drop_last=True without count) has no len()")

    def state_dict(self) -> dict[str, Any]:
        """The cursor: the next batch to hand out and what it is counted in (the same fields as ``PackerCursor``)."""
        return asdict(self.cursor)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from ``state`` (from ``state_dict()``), which must be of this dataset's other arguments."""
        for name, value in asdict(self.cursor).items():
            if name != "batch" and state.get(name) != value:
                raise ValueError(f"TorchBatches.load_state_dict: {name} {state.get(name)!r} disagrees with this dataset's {value!r}")
        batch = state.get("batch")
        if not isinstance(batch, int) or batch < 0:
            raise ValueError(f"TorchBatches.load_state_dict: batch must be an int not negative, got {batch!r}")
        self.cursor = replace(self.cursor, batch=batch)

    def cursor_at(self, batch: int) -> PackerCursor:
        """The cursor whose next batch is number ``batch`` (to save with a checkpoint: ``cursor_at(b["batch"] + 1)``)."""
        return replace(self.cursor, batch=batch)

    def loader(self, **kwargs: Any) -> DataLoader:
        """``DataLoader(self, batch_size=None, **kwargs)`` whose iteration moves this object's cursor as it hands
        out batches, workers or not. Not ``persistent_workers``: they would keep the cursor of their first iteration."""
        if kwargs.get("persistent_workers"):
            raise ValueError("TorchBatches.loader: persistent_workers would start each iteration from the first one's cursor")
        return _Loader(self, batch_size=None, **kwargs)

    def _range(self) -> tuple[int, int]:
        start = self.cursor.batch
        if not self.drop_last:
            start %= self._per_pass
            return start, self._per_pass
        return start, None if self.count is None else start + self.count

    def __iter__(self) -> Iterator[TorchBatch]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        split = Dataset(self.path).split(self.split)
        build = (BatchPacker(split, cursor=self.cursor, cache_bytes=self.cache_bytes, mask_seam=self.mask_seam).batch
                 if self.drop_last else _Pass(split, self.cursor, self.mask_seam).batch)
        start, end = self._range()
        b = start + worker
        while end is None or b < end:
            batch = build(b)
            targets = torch.from_numpy(batch.targets.astype(np.int64))
            mask = torch.from_numpy(batch.mask)
            if self.ignore_index is not None:
                targets[mask == 0] = self.ignore_index
            if info is None:
                self.cursor = replace(self.cursor, batch=b + 1)
            yield {"inputs": torch.from_numpy(batch.inputs.astype(np.int64)), "targets": targets, "mask": mask,
                   "windows": torch.tensor(batch.windows, dtype=torch.int64),
                   "offsets": torch.tensor(batch.offsets, dtype=torch.int64),
                   "epoch": batch.epoch, "batch": batch.index, "continues": batch.continues}
            b += workers


class _Pass:
    """The evaluation pass of ``drop_last=False``: this rank's windows ``ids[rank::world]`` of the epoch-0 order in
    groups of ``batch_size`` (the last one smaller), each group at every slot, in the cursor's order (longcrawl:
    batch j is group j % G at slot j // G; sequential: group j // S at slot j % S)."""

    def __init__(self, split: Any, cursor: PackerCursor, mask_seam: bool) -> None:
        self.split, self.cursor, self.mask_seam = split, cursor, mask_seam
        mine = epoch_order(split.count, cursor.seed, 0)[cursor.rank::cursor.world]
        self.groups = [mine[i:i + cursor.batch_size] for i in range(0, len(mine), cursor.batch_size)]
        self.slots = WINDOW // cursor.context

    def batch(self, b: int) -> Any:
        c, g = self.cursor, len(self.groups)
        group, slot = (b % g, b // g) if c.order == "longcrawl" else divmod(b, self.slots)
        ids = self.groups[group]
        windows = np.stack([self.split.read(i) for i in ids])
        return cut(windows, ids, [self.split.roll(i) for i in ids], slot, c.context, 0, b,
                   c.order == "sequential" and slot > 0, self.mask_seam)


class _Loader(DataLoader):
    """A DataLoader over a ``TorchBatches`` that records each batch it hands out in the dataset's cursor."""

    def __iter__(self) -> Iterator[TorchBatch]:
        data = self.dataset
        for batch in super().__iter__():
            data.cursor = replace(data.cursor, batch=batch["batch"] + 1)
            yield batch
