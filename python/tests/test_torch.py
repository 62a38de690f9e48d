"""Tests of ``longcrawl.torchdata`` and ``longcrawl.model`` (skipped without torch). The dataset tests need
LONGCRAWL_TEST_DATASET: the bundled sample preprocessed with every window (10 train, 2 heldout), as
Tests/StreamingTests/PythonReaderTests.swift sets it. The comparisons with `longcrawl` itself are in
Tests/TrainingTests/TorchTests.swift."""

import json
import math
import os
import tempfile
import unittest
from pathlib import Path

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

DATASET = os.environ.get("LONGCRAWL_TEST_DATASET")
CONFIGS = Path(__file__).resolve().parents[2] / "data" / "configs"


@unittest.skipUnless(torch is not None and DATASET, "needs torch and LONGCRAWL_TEST_DATASET")
class TorchBatchesTests(unittest.TestCase):
    def make(self, **kwargs):
        from longcrawl.torchdata import TorchBatches

        return TorchBatches(DATASET, **{"split": "train", "batch_size": 2, "context": 16384, "seed": 3, **kwargs})

    def numbers(self, batches):
        return [b["batch"] for b in batches]

    def test_len_is_count_or_the_evaluation_pass_and_endless_has_none(self) -> None:
        self.assertEqual(len(self.make(count=5)), 5)
        self.assertEqual(len(self.make(drop_last=False, batch_size=4)), 3 * 4)  # 10 windows: groups 4, 4, 2; 4 slots
        with self.assertRaisesRegex(TypeError, "endless"):
            len(self.make())

    def test_a_second_iteration_continues_with_and_without_workers(self) -> None:
        whole = [b["inputs"] for b in self.make(count=6)]
        for workers in (0, 2):
            data = self.make(count=3)
            loader = data.loader(num_workers=workers)
            first, second = list(loader), list(loader)
            self.assertEqual(self.numbers(first) + self.numbers(second), list(range(6)), workers)
            self.assertTrue(all(torch.equal(a, b["inputs"]) for a, b in zip(whole, first + second)), workers)
            self.assertEqual(data.state_dict()["batch"], 6)

    def test_state_round_trip_mid_epoch_equals_an_uninterrupted_run(self) -> None:
        whole = list(self.make(count=9).loader(num_workers=2))  # 5 groups x 4 slots an epoch
        data = self.make(count=9)
        head = []
        for b in data.loader(num_workers=2):
            head.append(b)
            if len(head) == 4:
                break
        state = json.loads(json.dumps(data.state_dict()))  # as it would be saved
        resumed = self.make(count=5)
        resumed.load_state_dict(state)
        tail = list(resumed.loader(num_workers=2))
        self.assertEqual(self.numbers(head + tail), list(range(9)))
        for a, b in zip(whole, head + tail):
            for key in ("inputs", "targets", "mask", "windows", "offsets"):
                self.assertTrue(torch.equal(a[key], b[key]), (a["batch"], key))
        with self.assertRaisesRegex(ValueError, "context 16384 disagrees with this dataset's 1024"):
            self.make(context=1024).load_state_dict(state)

    def test_drop_last_false_visits_every_window_and_offset_once_over_the_ranks(self) -> None:
        for order in ("longcrawl", "sequential"):
            seen, sizes = [], []
            for rank in range(2):
                data = self.make(batch_size=4, drop_last=False, rank=rank, world=2, order=order)
                batches = list(data)
                self.assertEqual(len(batches), len(data))
                sizes += [len(b["windows"]) for b in batches]
                seen += [(w, o) for b in batches for w, o in zip(b["windows"].tolist(), b["offsets"].tolist())]
            self.assertEqual(sorted(seen), [(w, o) for w in range(10) for o in range(0, 65536, 16384)], order)
            self.assertEqual(sorted(sizes), [1] * 8 + [4] * 8, order)  # 5 windows a rank: groups of 4 and 1
        data = self.make(split="heldout", batch_size=2, context=65536, drop_last=False)
        self.assertEqual([self.numbers(data), self.numbers(data)], [[0], [0]])  # a finished pass starts again

    def test_ignore_index_replaces_the_targets_where_the_mask_is_0(self) -> None:
        plain = next(iter(self.make(context=65536)))
        marked = next(iter(self.make(context=65536, ignore_index=-100)))
        off = plain["mask"] == 0
        self.assertEqual(int(off.sum()), 2)  # each window's last token
        self.assertTrue(torch.equal(marked["targets"][off], torch.full((2,), -100)))
        self.assertTrue(torch.equal(marked["targets"][~off], plain["targets"][~off]))
        targets = marked["targets"].flatten()  # as F.cross_entropy takes them (a vocabulary of 8 here, for memory)
        logits = torch.zeros(len(targets), 8)
        logits[torch.arange(len(targets)), targets % 8] = 1.0
        loss = torch.nn.functional.cross_entropy(logits, torch.where(targets < 0, targets, targets % 8), ignore_index=-100)
        self.assertAlmostEqual(loss.item(), math.log(math.e + 7) - 1, places=5)  # the two ignored count nothing

    def test_every_bad_argument_fails_at_construction_in_one_line(self) -> None:
        from longcrawl import LongCrawlError, PackerCursor

        cursor = PackerCursor(seed=3, batch_size=2, context=16384)
        cases = [({"context": 1024.0}, TypeError, "context must be an int, got 1024.0"),
                 ({"context": 1000}, ValueError, "context 1000 does not divide 65536"),
                 ({"batch_size": 0}, ValueError, "batch_size must be positive"),
                 ({"batch_size": 11}, LongCrawlError, "split 'train' gives 10 windows per rank, fewer than batch size 11"),
                 ({"batch_size": 6, "world": 2}, LongCrawlError, "gives 5 windows per rank, fewer than batch size 6"),
                 ({"rank": 2, "world": 2}, ValueError, "rank 2 is not in 0..<2"),
                 ({"order": "random"}, ValueError, "order 'random' is not one of"),
                 ({"count": 0}, ValueError, "count must be a positive int"),
                 ({"count": 2, "drop_last": False}, ValueError, "count and drop_last=False exclude each other"),
                 ({"ignore_index": -1.5}, TypeError, "ignore_index must be an int"),
                 ({"cursor": cursor, "batch_size": 4}, ValueError, "batch_size=4 disagrees with the cursor's batch_size 2"),
                 ({"cursor": cursor, "context": None, "seed": 4}, ValueError, "seed=4 disagrees with the cursor's seed 3")]
        for kwargs, error, message in cases:
            with self.assertRaises(error, msg=kwargs) as caught:
                self.make(**kwargs)
            self.assertIn(message, str(caught.exception), kwargs)
            self.assertNotIn("\n", str(caught.exception), kwargs)
        self.assertEqual(self.make(cursor=cursor, batch_size=None, context=None, seed=None).cursor, cursor)


@unittest.skipUnless(torch is not None, "needs torch")
class ModelTests(unittest.TestCase):
    def config(self, **changes):
        from longcrawl.model import Config

        config = Config.load(CONFIGS / "tiny.json")
        for k, v in changes.items():
            setattr(config, k, v)
        return config

    def test_chunked_form_equals_the_attention_form(self) -> None:
        from longcrawl.model import Transformer

        tokens = torch.randint(0, 50257, (2, 257), generator=torch.Generator().manual_seed(0))
        for attention in ("sympow", "sympow+gating", "conformal-sympow"):
            torch.manual_seed(1)
            model = Transformer(self.config(attention=attention)).double()
            with torch.no_grad():  # rates of the learned rotary away from 0, so that B_t is not t
                for block in model.blocks:
                    block.attn.w_qkvgr[:, 3 * 64 + 2:].normal_(0, 0.02)
                chunked = model(tokens[:, :-1], tokens[:, 1:], torch.ones(2, 256))[1]
                for block in model.blocks:
                    block.attn.chunk = 256
                whole = model(tokens[:, :-1], tokens[:, 1:], torch.ones(2, 256))[1]
            # float64 throughout: the two sums differ by rounding of order 1e-16 relative to losses of about 11.
            self.assertLess((chunked - whole).abs().max().item(), 1e-11, attention)

    def test_checkpoint_round_trip_and_damage(self) -> None:
        from longcrawl import LongCrawlError, PackerCursor
        from longcrawl.model import Transformer, load_optimizer, load_state, make_optimizer, save_checkpoint, train_step

        torch.manual_seed(0)
        model = Transformer(self.config())
        optimizer = make_optimizer(model)
        tokens = torch.randint(0, 50257, (2, 65))
        train_step(model, optimizer, 0, tokens[:, :-1], tokens[:, 1:], torch.ones(2, 64))
        with tempfile.TemporaryDirectory() as d:
            folder = save_checkpoint(Path(d) / "checkpoints" / "step-000001", model, optimizer, 1, d,
                                     [PackerCursor(1, 4, 256, batch=1)], seed=1)
            self.assertEqual(sorted(os.listdir(Path(d) / "checkpoints")), ["step-000001"])
            loaded = Transformer.from_checkpoint(d)  # a run folder: its newest checkpoint
            for (name, a), b in zip(model.named_parameters(), loaded.parameters()):
                self.assertTrue(torch.equal(a, b), name)
            moments = load_optimizer(folder, loaded)
            p, q = next(iter(optimizer.state.values())), next(iter(moments.state.values()))
            self.assertTrue(torch.equal(p["exp_avg_sq"], q["exp_avg_sq"]))
            self.assertEqual(load_state(folder)["cursors"][0]["batchSize"], 4)
            state = (folder / "state.json").read_text()
            (folder / "state.json").write_text(state.replace('"step": 1', '"step": 2'))
            with self.assertRaisesRegex(LongCrawlError, "checksum mismatch"):
                Transformer.from_checkpoint(folder)
            (folder / "state.json").write_text(state)
            raw = bytearray((folder / "model.safetensors").read_bytes())
            raw[-1] ^= 1
            (folder / "model.safetensors").write_bytes(bytes(raw))
            with self.assertRaisesRegex(LongCrawlError, "model.safetensors: SHA-256 differs"):
                Transformer.from_checkpoint(folder)

    def test_bfloat16_autocast_runs_and_stays_near_float32(self) -> None:
        from longcrawl.model import Transformer

        torch.manual_seed(0)
        model = Transformer(self.config())
        tokens = torch.randint(0, 50257, (2, 257))
        args = (tokens[:, :-1], tokens[:, 1:], torch.ones(2, 256))
        with torch.no_grad():
            exact = model(*args)[0]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model(*args)[0]
        self.assertEqual(low.dtype, torch.float32)
        # bfloat16 keeps 8 bits of mantissa: projections off by ~0.4% relative move a loss of ~10.8 by far less than 0.05.
        self.assertLess(abs(low.item() - exact.item()), 0.05)


if __name__ == "__main__":
    unittest.main()
