"""Unit tests of the Python reader. The cross-language ones live in Tests/StreamingTests/PythonReaderTests.swift,
which also runs these with LONGCRAWL_TEST_DATASET set to a preprocessed dataset folder."""

import os
import tempfile
import unittest

import numpy as np

from longcrawl import WINDOW, BatchPacker, Dataset, LongCrawlError, PackerCursor, SplitMix64, epoch_order, roll_shift
from longcrawl.packer import _draws, cut

DATASET = os.environ.get("LONGCRAWL_TEST_DATASET")


class OrderTests(unittest.TestCase):
    def test_vectorized_draws_match_the_scalar_generator(self) -> None:
        bounds = np.random.default_rng(0).integers(2, 2**32 - 1, 5000)
        rng = SplitMix64(99)
        self.assertEqual(_draws(SplitMix64(99), bounds).tolist(), [rng.below(int(b)) for b in bounds])

    def test_epoch_order_is_a_permutation_shared_out_by_rank(self) -> None:
        self.assertEqual(sorted(epoch_order(1000, 5, 2)), list(range(1000)))
        self.assertNotEqual(epoch_order(1000, 5, 2), epoch_order(1000, 5, 3))
        ranks = [epoch_order(11, 5, 0, r, 3) for r in range(3)]
        self.assertEqual([len(r) for r in ranks], [3, 3, 3])
        self.assertEqual(len(set(sum(ranks, []))), 9)

    def test_cursor_json_round_trips_in_swift_field_names(self) -> None:
        c = PackerCursor(seed=2**64 - 1, batch_size=4, context=256, order="sequential", rank=1, world=2, batch=17)
        self.assertIn('"batchSize": 4', c.to_json())
        self.assertEqual(PackerCursor.from_json(c.to_json()), c)
        with tempfile.TemporaryDirectory() as d:
            c.save(os.path.join(d, "c.json"))
            self.assertEqual(PackerCursor.load(os.path.join(d, "c.json")), c)
            self.assertEqual(os.listdir(d), ["c.json"])


class RollTests(unittest.TestCase):
    def test_roll_shift_is_pinned_as_in_swift(self) -> None:
        self.assertEqual(roll_shift(7, "frankenstein.txt", 0), 43142)
        self.assertEqual(roll_shift(7, "frankenstein.txt", 1), 37487)
        self.assertEqual(roll_shift(0, "", 0), 35122)
        self.assertEqual(roll_shift(2**64 - 1, "böök", 3), roll_shift(-1, "böök", 3))

    def test_seam_is_the_target_of_the_documents_first_token_and_only_it_is_masked(self) -> None:
        doc = (np.arange(WINDOW) * 7 % 50257).astype(np.uint16)
        for k in (0, 1, 8191, 8192, 12345, 65535):
            window = np.roll(doc, k)
            for t in (WINDOW, 8192):
                seams = 0
                for slot in range(WINDOW // t):
                    plain = cut(window[None], [0], [k], slot, t, 0, 0, False)
                    b = cut(window[None], [0], [k], slot, t, 0, 0, False, mask_seam=True)
                    i = k - 1 - slot * t
                    self.assertEqual(b.seams, [i if k > 0 and 0 <= i < t else None], (k, t, slot))
                    expected = plain.mask.copy()
                    if b.seams[0] is not None:
                        s = b.seams[0]
                        seams += 1
                        self.assertEqual((b.targets[0, s], b.inputs[0, s]), (doc[0], doc[-1]))
                        self.assertEqual(plain.mask[0, s], 1)
                        expected[0, s] = 0
                    self.assertTrue(np.array_equal(b.mask, expected), (k, t, slot))
                self.assertEqual(seams, int(k > 0))


@unittest.skipUnless(DATASET, "LONGCRAWL_TEST_DATASET is not set")
class PackerTests(unittest.TestCase):
    def test_targets_shift_inputs_and_only_window_ends_are_masked(self) -> None:
        split = Dataset(DATASET).split("train")
        for order in ("longcrawl", "sequential"):
            packer = BatchPacker(split, batch_size=2, context=32768, order=order, seed=1)
            for b in (packer.batch(i) for i in range(packer.batches_per_epoch)):
                for r, w in enumerate(b.windows):
                    tokens = split.read(w).astype(np.int32)
                    s = b.offsets[r]
                    self.assertTrue(np.array_equal(b.inputs[r], tokens[s:s + 32768]))
                    self.assertTrue(np.array_equal(b.targets[r, :-1], tokens[s + 1:s + 32768]))
                    last = s + 32768 == 65536
                    self.assertEqual(b.mask[r].sum(), 32767 if last else 32768)
                    self.assertEqual(b.targets[r, -1], 0 if last else tokens[s + 32768])
        with self.assertRaisesRegex(LongCrawlError, "context 1000 does not divide 65536; valid: 1, 2, 4"):
            BatchPacker(split, batch_size=2, context=1000)
        with self.assertRaisesRegex(LongCrawlError, "fewer than batch size 99"):
            BatchPacker(split, batch_size=99, context=1024)

    def test_torch_dataset_yields_the_packer_order_with_workers(self) -> None:
        try:
            import torch
            from torch.utils.data import DataLoader
        except ImportError:
            self.skipTest("torch is not installed")
        from longcrawl.torchdata import TorchBatches

        cursor = PackerCursor(seed=3, batch_size=2, context=8192, order="sequential", batch=5)
        packer = BatchPacker(Dataset(DATASET).split("train"), cursor=cursor)
        expected = [next(packer) for _ in range(9)]
        for workers in (0, 2):
            data = TorchBatches(DATASET, cursor=cursor, count=9)
            got = list(DataLoader(data, batch_size=None, num_workers=workers))
            self.assertEqual([g["batch"] for g in got], list(range(5, 14)))
            for g, e in zip(got, expected):
                self.assertEqual(g["inputs"].dtype, torch.int64)
                self.assertTrue(torch.equal(g["inputs"], torch.from_numpy(e.inputs).long()))
                self.assertTrue(torch.equal(g["targets"], torch.from_numpy(e.targets).long()))
                self.assertTrue(torch.equal(g["mask"], torch.from_numpy(e.mask)))
                self.assertEqual((g["windows"].tolist(), g["continues"]), (e.windows, e.continues))
        self.assertEqual(data.cursor_at(14).batch, 14)


if __name__ == "__main__":
    unittest.main()
