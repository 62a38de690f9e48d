"""The epoch order and the batches of LongCrawl's Swift ``BatchPacker`` (Sources/Streaming), reproduced exactly."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from .dataset import WINDOW, LongCrawlError, Split

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
ORDERS = ("longcrawl", "sequential")
"""``longcrawl``: batch j of an epoch is group j % G at slot j // G; ``sequential``: group j // S at slot j % S."""
VALID_CONTEXTS = [1 << k for k in range(17)]


class SplitMix64:
    """SplitMix64 with Lemire's unbiased bounded draw, bit for bit as the Swift ``SplitMix64``."""

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK

    def next(self) -> int:
        self.state = (self.state + _GOLDEN) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def below(self, bound: int) -> int:
        """Uniform in 0 ..< bound: the high word of next() * bound, redrawn while the low word is under
        2^64 mod bound."""
        m = self.next() * bound
        if m & _MASK < bound:
            threshold = ((1 << 64) - bound) % bound
            while m & _MASK < threshold:
                m = self.next() * bound
        return m >> 64


def _mix64(z: int) -> int:
    """SplitMix64's finalizer on one integer."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def roll_shift(seed: int, document: str, window: int) -> int:
    """LongCrawl's roll of window ``window`` (its index in the document) of ``document`` under ``preprocess --roll
    SEED``, in 0 ..< 65,536, as the Swift ``rollShift``: mix(mix(seed ^ fnv1a(id)) + window) >> 48."""
    h = 0xCBF29CE484222325
    for b in document.encode():
        h = ((h ^ b) * 0x100000001B3) & _MASK
    return _mix64((_mix64((seed & _MASK) ^ h) + window) & _MASK) >> 48


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _draws(rng: SplitMix64, bounds: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``[rng.below(b) for b in bounds]`` (bounds below 2^32), vectorized: numpy has no 128-bit product, so
    next() * bound is built from 32-bit halves. Where Lemire's rare slow path applies (low word < bound), that one
    draw is made by ``below`` itself, since it may take more than one value from the generator."""
    out = np.empty(len(bounds), dtype=np.int64)
    low32, s32 = np.uint64(0xFFFFFFFF), np.uint64(32)
    done = 0
    with np.errstate(over="ignore"):
        while done < len(bounds):
            b = bounds[done:done + chunk].astype(np.uint64)
            r = _mix(np.uint64(rng.state) + np.arange(1, len(b) + 1, dtype=np.uint64) * np.uint64(_GOLDEN))
            x = (r & low32) * b
            y = (r >> s32) * b + (x >> s32)
            slow = np.flatnonzero((((y & low32) << s32) | (x & low32)) < b)
            n = int(slow[0]) if len(slow) else len(b)
            out[done:done + n] = y[:n] >> s32
            rng.state = (rng.state + n * _GOLDEN) & _MASK
            done += n
            if n < len(b):
                out[done] = rng.below(int(bounds[done]))
                done += 1
    return out


def epoch_order(count: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """The split's window ids in epoch ``epoch``: Fisher-Yates over 0 ..< count driven by SplitMix64 seeded with
    ``seed ^ (epoch * 0x9E3779B97F4A7C15)``, then every world-th entry from ``rank``, ``count // world`` of them."""
    if count >= 1 << 32:
        raise ValueError(f"{count} windows: the vectorized draw needs fewer than 2^32")
    rng = SplitMix64(seed ^ ((epoch * _GOLDEN) & _MASK))
    ids = list(range(count))
    if count > 1:
        for i, j in zip(range(count - 1, 0, -1), _draws(rng, np.arange(count, 1, -1)).tolist()):
            ids[i], ids[j] = ids[j], ids[i]
    return ids[rank::world][:count // world]


@dataclass(frozen=True)
class PackerCursor:
    """Where a packer is, as the Swift ``PackerCursor`` (same JSON): ``batch`` is the next batch to hand out,
    counted over all epochs."""

    seed: int
    batch_size: int
    context: int
    order: str = "longcrawl"
    rank: int = 0
    world: int = 1
    batch: int = 0

    _KEYS = {"batchSize": "batch_size"}

    @classmethod
    def from_json(cls, text: str) -> PackerCursor:
        fields = json.loads(text)
        return cls(**{cls._KEYS.get(k, k): v for k, v in fields.items()})

    def to_json(self) -> str:
        names = {v: k for k, v in self._KEYS.items()}
        return json.dumps({names.get(k, k): v for k, v in asdict(self).items()}, indent=2, sort_keys=True) + "\n"

    def fault(self) -> Optional[str]:
        """What is wrong with the cursor's own fields, in one line, or None: the one check of a cursor, which the
        packer and ``TorchBatches`` raise as their own errors."""
        if not isinstance(self.context, int) or self.context not in VALID_CONTEXTS:
            return f"context {self.context!r} does not divide {WINDOW}; valid: {', '.join(map(str, VALID_CONTEXTS))}"
        if self.order not in ORDERS:
            return f"order {self.order!r} is not one of {', '.join(ORDERS)}"
        if self.batch_size < 1:
            return f"batch_size must be positive, got {self.batch_size}"
        if not (self.world >= 1 and 0 <= self.rank < self.world):
            return f"rank {self.rank} is not in 0..<{self.world} (world {self.world})"
        if self.batch < 0:
            return f"cursor batch {self.batch} is negative"
        return None

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> PackerCursor:
        try:
            return cls.from_json(Path(path).read_text())
        except (OSError, ValueError, TypeError) as e:
            raise LongCrawlError(f"{path}: not a packer cursor ({e})") from None

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Writes the cursor atomically (hidden temporary file beside it, then a rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, path)


@dataclass
class Batch:
    """``B`` rows of ``T`` tokens: inputs, next-token targets (0 where masked) and a mask that is 0 at a window's
    last token, which has no successor, and with ``mask_seam`` at each row's seam."""

    index: int
    """Batch number over all epochs (the cursor's ``batch`` when it was built)."""
    epoch: int
    inputs: np.ndarray
    """[B, T] int32"""
    targets: np.ndarray
    """[B, T] int32"""
    mask: np.ndarray
    """[B, T] float32"""
    windows: list[int]
    """Each row's window id in the split."""
    offsets: list[int]
    """Each row's first input's token offset in its window."""
    continues: bool
    """Every row continues the same row of the previous batch (sequential order, slot > 0)."""
    seams: list[Optional[int]]
    """Each row's position whose target crosses its rolled window's seam (``seam``), or None."""

    def digest(self) -> str:
        """SHA-256 of inputs and targets (little-endian int32) then mask (little-endian float32), as
        ``longcrawl pack --dump`` prints it."""
        h = hashlib.sha256()
        for a, dtype in ((self.inputs, "<i4"), (self.targets, "<i4"), (self.mask, "<f4")):
            h.update(np.ascontiguousarray(a, dtype=dtype).tobytes())
        return h.hexdigest()


def seam(roll: int, offset: int, context: int) -> Optional[int]:
    """The position, in a row of ``context`` tokens from ``offset`` of a window of roll k, whose input is column
    k - 1 (the document's last kept token) and whose target is column k (its first token): k - 1 - offset, or None
    when k is 0 or that position is outside the row. As the Swift ``BatchRow.seam``."""
    i = roll - 1 - offset
    return i if roll > 0 and 0 <= i < context else None


def cut(windows: np.ndarray, ids: list[int], rolls: list[int], slot: int, context: int, epoch: int, index: int,
        continues: bool, mask_seam: bool = False) -> Batch:
    """The rows of ``windows`` [B, 65536] (of rolls ``rolls``) at ``slot``: inputs tokens[s:s+T], targets
    tokens[s+1:s+T+1]."""
    b, start = len(windows), slot * context
    full = min(context, WINDOW - 1 - start)  # only a window's last position has no target
    targets = np.zeros((b, context), dtype=np.int32)
    targets[:, :full] = windows[:, start + 1:start + 1 + full]
    mask = np.ones((b, context), dtype=np.float32)
    if full < context:
        mask[:, context - 1] = 0
    seams = [seam(k, start, context) for k in rolls]
    if mask_seam:
        for r, s in enumerate(seams):
            if s is not None:
                mask[r, s] = 0
    return Batch(index, epoch, windows[:, start:start + context].astype(np.int32), targets, mask, list(ids),
                 [start] * b, continues, seams)


class BatchPacker:
    """Cuts a split's windows into [B, T] batches, T dividing 65,536, in either order, this rank's share, from
    any cursor: the same batches as the Swift ``BatchPacker`` for the same cursor. Iterating never ends (epoch
    after epoch); ``cursor`` is where the next batch comes from. Decompressed windows are kept within
    ``cache_bytes`` per epoch, since the longcrawl order visits each window once per slot. ``mask_seam`` masks the
    target that crosses each row's seam, as ``train --mask-seam``."""

    def __init__(self, split: Split, batch_size: Optional[int] = None, context: Optional[int] = None,
                 order: str = "longcrawl", seed: int = 0, rank: int = 0, world: int = 1,
                 cursor: Optional[PackerCursor] = None, cache_bytes: int = 1 << 30, mask_seam: bool = False) -> None:
        if cursor is None:
            if batch_size is None or context is None:
                raise ValueError("give batch_size and context, or a cursor")
            cursor = PackerCursor(seed, batch_size, context, order, rank, world)
        c = cursor
        if c.fault():
            raise LongCrawlError(c.fault())
        per = split.count // c.world
        self.groups = per // c.batch_size
        if self.groups < 1:
            raise LongCrawlError(f"split '{split.name}' gives {per} windows per rank, fewer than batch size {c.batch_size}")
        self.split = split
        self.cursor = cursor
        self.mask_seam = mask_seam
        self.slots = WINDOW // c.context
        self._pinned = max(0, cache_bytes // (WINDOW * 2))
        self._epoch = -1
        self._order: list[int] = []
        self._cache: dict[int, np.ndarray] = {}
        self._current: dict[int, np.ndarray] = {}

    @property
    def batches_per_epoch(self) -> int:
        return self.groups * self.slots

    def batch(self, b: int) -> Batch:
        """Batch number ``b`` (over all epochs) of this packer's cursor, without moving the cursor."""
        c = self.cursor
        epoch, j = divmod(b, self.batches_per_epoch)
        group, slot = (j % self.groups, j // self.groups) if c.order == "longcrawl" else divmod(j, self.slots)
        if epoch != self._epoch:
            self._epoch, self._cache = epoch, {}
            self._order = epoch_order(self.split.count, c.seed, epoch, c.rank, c.world)
        ids = self._order[group * c.batch_size:(group + 1) * c.batch_size]
        windows = {}
        for id in ids:
            w = self._current.get(id)
            if w is None:
                w = self._cache.get(id)
            if w is None:
                w = self.split.read(id)
                if len(self._cache) < self._pinned:  # keep the first ones: the visits are cyclic, LRU would keep none
                    self._cache[id] = w
            windows[id] = w
        self._current = windows  # the sequential order reuses one group's windows for S batches in a row
        return cut(np.stack([windows[i] for i in ids]), ids, [self.split.roll(i) for i in ids], slot, c.context, epoch, b,
                   c.order == "sequential" and slot > 0, self.mask_seam)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        batch = self.batch(self.cursor.batch)
        self.cursor = replace(self.cursor, batch=self.cursor.batch + 1)
        return batch
