"""Dataset folders: ``index.json`` and its shards, read window by window with every checksum checked."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import h5py
import hdf5plugin  # noqa: F401  (registers HDF5's zstd filter 32015 with h5py)
import numpy as np
import xxhash
import zstandard

WINDOW = 65_536
"""Tokens per window."""
VOCAB = 50_257

_SEEK_TABLE_MAGIC = 0x8F92EAB1
_SEEK_TABLE_FRAME = 0x184D2A5E
_METADATA_FRAME = 0x184D2A50
_CHECKSUM_FLAG = 0x80


class LongCrawlError(Exception):
    """A one-line error naming the file and what is wrong with it."""


@dataclass(frozen=True)
class ShardEntry:
    """One shard as ``index.json`` lists it."""

    file: str
    format: str
    split: str
    windows: int
    bytes: int
    sha256: str


def _check_attributes(path: Path, attrs: dict) -> None:
    """The shard attributes a reader relies on (both formats carry the same ones)."""
    expected = {"format": "longcrawl-shard", "version": 1, "window": WINDOW, "tokenizer": "gpt2"}
    for key, value in expected.items():
        got = attrs.get(key)
        got = got.decode() if isinstance(got, bytes) else got
        if got != value:
            raise LongCrawlError(f"{path}: attribute {key} is {got!r}, expected {value!r}")


class _HDF5Shard:
    """``/tokens [windows, 65536] uint16`` with zstd then Fletcher32; h5py checks Fletcher32 on every read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.file = h5py.File(path, "r")
            tokens = self.file["tokens"]
            documents = self.file["documents"][()]
        except (OSError, KeyError) as e:
            raise LongCrawlError(f"{path}: not a readable HDF5 shard ({e})") from None
        _check_attributes(path, dict(self.file.attrs))
        if tokens.dtype != np.uint16 or tokens.ndim != 2 or tokens.shape[1] != WINDOW:
            raise LongCrawlError(f"{path}: /tokens is {tokens.dtype} {tokens.shape}, expected uint16 [windows, {WINDOW}]")
        if not tokens.fletcher32:
            raise LongCrawlError(f"{path}: /tokens has no Fletcher32 checksum")
        self.tokens = tokens
        self.split = self.file.attrs.get("split")
        self.sources = [(row["document"].decode(), int(row["offset"])) for row in documents]
        # Shards written before rolls existed, or of unrolled windows, have no roll member.
        rolled = documents.dtype.names is not None and "roll" in documents.dtype.names
        self.rolls = [int(r) for r in documents["roll"]] if rolled else [0] * len(documents)

    def read(self, k: int) -> np.ndarray:
        try:
            return self.tokens[k]
        except OSError as e:
            raise LongCrawlError(f"{self.path}: window {k}: corrupt ({e})") from None


class _ZstShard:
    """One zstd frame per window, a metadata frame, then zstd's seekable-format seek table with XXH64 checksums."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "rb")
        size = os.fstat(self.file.fileno()).st_size
        if size < 9:
            raise LongCrawlError(f"{path}: {size} bytes: too short to be a seekable zstd shard")
        frames, descriptor, magic = struct.unpack("<IBI", self._bytes(size - 9, 9))
        if magic != _SEEK_TABLE_MAGIC:
            raise LongCrawlError(f"{path}: no seek table at the end of the file (truncated or not a seekable zstd shard)")
        if not descriptor & _CHECKSUM_FLAG:
            raise LongCrawlError(f"{path}: seek table has no checksums")
        table_at = size - 9 - frames * 12 - 8
        if table_at < 0:
            raise LongCrawlError(f"{path}: seek table claims {frames} frames, more than the file holds")
        table = self._bytes(table_at, 8 + frames * 12)
        if struct.unpack_from("<II", table) != (_SEEK_TABLE_FRAME, frames * 12 + 9):
            raise LongCrawlError(f"{path}: seek table frame header is corrupt")
        self.entries = [struct.unpack_from("<III", table, 8 + 12 * i) for i in range(frames)]
        self.offsets = []
        offset = 0
        for i, (compressed, decompressed, _) in enumerate(self.entries):
            if decompressed != WINDOW * 2:
                raise LongCrawlError(f"{path}: window {i} holds {decompressed} bytes, expected {WINDOW * 2}")
            self.offsets.append(offset)
            offset += compressed
        magic, length = struct.unpack("<II", self._bytes(offset, 8))
        if magic != _METADATA_FRAME:
            raise LongCrawlError(f"{path}: no metadata frame after the last window (byte {offset})")
        if offset + 8 + length != table_at:
            raise LongCrawlError(f"{path}: frame sizes do not add up to the file size (corrupt seek table)")
        try:
            meta = json.loads(self._bytes(offset + 8, length))
        except ValueError as e:
            raise LongCrawlError(f"{path}: metadata frame is not valid JSON ({e})") from None
        _check_attributes(path, meta["attributes"])
        if len(meta["sources"]) != frames:
            raise LongCrawlError(f"{path}: metadata lists {len(meta['sources'])} windows, seek table {frames}")
        self.split = meta["attributes"]["split"]
        self.sources = [(s["document"], int(s["offset"])) for s in meta["sources"]]
        self.rolls = [int(s.get("roll", 0)) for s in meta["sources"]]
        self.decompressor = zstandard.ZstdDecompressor()

    def _bytes(self, offset: int, count: int) -> bytes:
        data = os.pread(self.file.fileno(), count, offset)
        if len(data) != count:
            raise LongCrawlError(f"{self.path}: truncated: needs bytes {offset}..<{offset + count}")
        return data

    def read(self, k: int) -> np.ndarray:
        compressed, _, checksum = self.entries[k]
        try:
            # The frame carries zstd's own content checksum, which libzstd verifies while decompressing.
            raw = self.decompressor.decompress(self._bytes(self.offsets[k], compressed), max_output_size=WINDOW * 2)
        except zstandard.ZstdError as e:
            raise LongCrawlError(f"{self.path}: window {k}: corrupt (zstd: {e})") from None
        if len(raw) != WINDOW * 2:
            raise LongCrawlError(f"{self.path}: window {k}: decompressed to {len(raw)} bytes, expected {WINDOW * 2}")
        if xxhash.xxh64_intdigest(raw) & 0xFFFFFFFF != checksum:
            raise LongCrawlError(f"{self.path}: window {k}: checksum mismatch (XXH64 of the tokens differs from the seek table)")
        return np.frombuffer(raw, dtype="<u2")


_Shard = Union[_HDF5Shard, _ZstShard]


def _open_shard(path: Path, format: str) -> _Shard:
    if not path.exists():
        raise LongCrawlError(f"{path}: shard listed in index.json is missing")
    return _HDF5Shard(path) if format == "hdf5" else _ZstShard(path)


def _digest_fault(entry: ShardEntry, path: Path) -> Optional[str]:
    """The shard's size and SHA-256 against its index entry, in the Swift reader's words; None when they match."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    size = path.stat().st_size
    if size != entry.bytes:
        return f"size {size} bytes, index.json says {entry.bytes} (the file is damaged or replaced)"
    if digest.hexdigest() != entry.sha256:
        return f"SHA-256 {digest.hexdigest()} does not match index.json ({entry.sha256}): the file is damaged"
    return None


class Split:
    """Every window of one split, addressed by global window id (0 ..< count, shards in index order) as in
    the Swift ``WindowCatalog``."""

    _MAX_OPEN = 8

    def __init__(self, dataset: Dataset, name: str) -> None:
        self.dataset = dataset
        self.name = name
        self.shards = [s for s in dataset.shards if s.split == name]
        for s in self.shards:
            path = dataset.path / s.file
            if not path.exists():
                raise LongCrawlError(f"{path}: shard listed in index.json is missing")
            if path.stat().st_size != s.bytes:
                raise LongCrawlError(f"{path}: size {path.stat().st_size} bytes, index.json says {s.bytes}")
        self.first = np.cumsum([0] + [s.windows for s in self.shards])
        self.count = int(self.first[-1])
        if self.count == 0:
            splits = ", ".join(sorted({s.split for s in dataset.shards})) or "none"
            raise LongCrawlError(f"{dataset.path}: split '{name}' has no windows (splits here: {splits})")
        self._open: dict[int, _Shard] = {}
        self._checked: set[int] = set()

    def __len__(self) -> int:
        return self.count

    def locate(self, id: int) -> tuple[int, int]:
        """Shard number and window inside it of a global window id."""
        if not 0 <= id < self.count:
            raise IndexError(f"window id {id} out of 0..<{self.count}")
        shard = int(np.searchsorted(self.first, id, side="right")) - 1
        return shard, id - int(self.first[shard])

    def _shard(self, number: int) -> _Shard:
        shard = self._open.pop(number, None)
        if shard is None:
            entry = self.shards[number]
            path = self.dataset.path / entry.file
            # libhdf5 (under h5py too) can crash or hang on corrupt metadata instead of failing: a shard's size and
            # SHA-256 are checked against the index before its first open, as the Swift WindowCatalog does.
            if number not in self._checked:
                fault = _digest_fault(entry, path)
                if fault:
                    raise LongCrawlError(f"{path}: {fault}")
                self._checked.add(number)
            shard = _open_shard(path, entry.format)
            if len(shard.sources) != entry.windows:
                raise LongCrawlError(f"{shard.path}: holds {len(shard.sources)} windows, index.json says {entry.windows}")
            if len(self._open) == self._MAX_OPEN:
                self._open.pop(next(iter(self._open)))
        self._open[number] = shard  # most recent last
        return shard

    def read(self, id: int) -> np.ndarray:
        """Window ``id``'s 65,536 tokens (uint16), its checksum checked."""
        shard, k = self.locate(id)
        return self._shard(shard).read(k)

    def source(self, id: int) -> tuple[str, int]:
        """The document the window comes from and its first token's offset there."""
        shard, k = self.locate(id)
        return self._shard(shard).sources[k]

    def roll(self, id: int) -> int:
        """The window's roll: it is stored as ``numpy.roll(tokens, roll)``, so column ``roll`` holds its document's
        first token (0 for windows stored in order and for shards written before rolls existed)."""
        shard, k = self.locate(id)
        return self._shard(shard).rolls[k]


#: Versions of ``index.json`` this package reads: 1, and 2 which adds ``text_encoding``.
INDEX_VERSIONS = (1, 2)


def _text_encoding(index: dict) -> Optional[str]:
    """The index's text encoding, the one place that knows what version 1 lacked."""
    if index["version"] >= 2:
        return index.get("text_encoding")
    return None if (index.get("build") or {}).get("options", {}).get("source") == "zarr" else "raw"


class Dataset:
    """A dataset folder: ``index.json`` (format, version, window, completeness, shards) and its shards."""

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = Path(path)
        index_path = self.path / "index.json"
        try:
            index = json.loads(index_path.read_text())
        except OSError as e:
            raise LongCrawlError(f"{index_path}: cannot read dataset index ({e.strerror})") from None
        except ValueError as e:
            raise LongCrawlError(f"{index_path}: not a LongCrawl dataset index ({e})") from None
        expected = {"format": "longcrawl-dataset", "window": WINDOW}
        for key, value in expected.items():
            if index.get(key) != value:
                raise LongCrawlError(f"{index_path}: {key} is {index.get(key)!r}, expected {value!r}")
        if index.get("version") not in INDEX_VERSIONS:
            raise LongCrawlError(f"{index_path}: version is {index.get('version')!r}, this package reads {INDEX_VERSIONS}")
        if not index.get("complete"):
            raise LongCrawlError(f"{index_path}: dataset incomplete (preprocessing did not finish)")
        self.index = index
        #: What the tokens encode: "raw" text or "json" (LongCrawl64's ``json.dumps(text)[1:-1]``); None when an
        #: import could not tell. Version 1 indexes predate it: their builds tokenized raw text.
        self.text_encoding: Optional[str] = _text_encoding(index)
        try:
            self.shards = [ShardEntry(**{k: s[k] for k in ShardEntry.__dataclass_fields__}) for s in index["shards"]]
        except (KeyError, TypeError) as e:
            raise LongCrawlError(f"{index_path}: a shard entry lacks {e}") from None
        root = self.path.resolve()
        for s in self.shards:
            inside = not os.path.isabs(s.file) and ".." not in Path(s.file).parts
            if not inside or root not in (self.path / s.file).resolve().parents:
                raise LongCrawlError(f"{index_path}: shard entry '{s.file}' leaves the dataset folder "
                                     "(an absolute path, '..', or a symlink out)")

    def split(self, name: str = "train") -> Split:
        """The windows of split ``name`` (``train`` or ``heldout``)."""
        return Split(self, name)

    def verify(self) -> list[str]:
        """Every shard's size and SHA-256 against the index, then every window's checksum and vocabulary, as
        ``longcrawl verify`` does; one ``path: fault`` line per fault, empty when all is well."""
        faults = []
        for entry in self.shards:
            path = self.path / entry.file
            if not path.exists():
                faults.append(f"{path}: missing")
                continue
            fault = _digest_fault(entry, path)
            if fault:
                faults.append(f"{path}: {fault}")
                continue  # a damaged file is not parsed further: libhdf5 can crash on it
            try:
                shard = _open_shard(path, entry.format)
            except LongCrawlError as e:
                faults.append(str(e))
                continue
            if len(shard.sources) != entry.windows:
                faults.append(f"{path}: holds {len(shard.sources)} windows, index.json says {entry.windows}")
            if shard.split != entry.split:
                faults.append(f"{path}: split '{shard.split}', index.json says '{entry.split}'")
            for k in range(len(shard.sources)):
                try:
                    tokens = shard.read(k)
                except LongCrawlError as e:
                    faults.append(str(e))
                    continue
                bad = np.flatnonzero(tokens >= VOCAB)
                if len(bad):
                    faults.append(f"{path}: window {k}: token {tokens[bad[0]]} at {bad[0]} is outside the GPT-2 vocabulary")
        return faults
