"""Read LongCrawl dataset folders (index.json plus HDF5 or seekable-zstd shards of 65,536-token windows) and
yield exactly the batches LongCrawl's Swift ``BatchPacker`` yields, resumable from a cursor either side saved.

``longcrawl.torchdata.TorchBatches`` wraps the packer as a ``torch.utils.data.IterableDataset`` (needs torch).
"""

from .dataset import WINDOW, Dataset, LongCrawlError, ShardEntry, Split
from .text import decode
from .packer import Batch, BatchPacker, PackerCursor, SplitMix64, epoch_order, roll_shift

__all__ = ["WINDOW", "Batch", "BatchPacker", "Dataset", "LongCrawlError", "PackerCursor", "ShardEntry", "Split",
           "SplitMix64", "decode", "epoch_order", "roll_shift"]
