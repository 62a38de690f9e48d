import Foundation
@testable import Shards
import TestSupport
import XCTest

/// Runs `python3 ARGS` with the package's `python/` folder on the path (the reader as `pip install ./python` gives it).
@discardableResult
func python(_ args: [String], env: [String] = []) throws -> (status: Int32, out: String, err: String) {
    try runProcess("/usr/bin/env", ["PYTHONPATH=" + packageRoot.appendingPathComponent("python").path] + env + ["python3"] + args)
}

final class PythonReaderTests: XCTestCase {
    override func setUpWithError() throws {
        let r = try python(["-c", "import numpy, h5py, hdf5plugin, zstandard, xxhash"])
        try XCTSkipUnless(r.status == 0, "the Python reader's dependencies are missing: \(r.err)")
    }

    /// `longcrawl pack --dump` and `python -m longcrawl.dump` give the same lines: Python's head then Swift resuming
    /// from Python's cursor, and Swift's head then Python resuming from Swift's, both equal Swift straight through.
    func checkSameBatches(order: String, format: ShardFormat) throws {
        // (B, T, seed, rank, world, batches, resume point): a longcrawl epoch here is 5 groups x S slots.
        let cases: [(Int, Int, UInt64, Int, Int, Int, Int)] = [
            (2, 16384, 7, 0, 1, 24, 11),                      // into epoch 1
            (3, 1, 18_446_744_073_709_551_557, 1, 3, 6, 2),  // a seed past Int64, one group of 65,536 slots
            (1, 65536, 5, 1, 2, 12, 7),                      // every window of rank 1, over two epochs
        ]
        let data = try sampleDataset(self, ["--format", format.rawValue, "--shard-windows", "4"]).path
        let folder = try temporaryFolder(self)
        for (b, t, seed, rank, world, count, cut) in cases {
            let options = [data, "--order", order, "--batch", "\(b)", "--context", "\(t)", "--seed", "\(seed)",
                           "--rank", "\(rank)", "--world", "\(world)"]
            let label = "\(format) \(options.dropFirst().joined(separator: " "))"
            func swift(_ args: [String]) throws -> [Substring] {
                let r = try runProcess(longcrawlBinary, ["pack", "--dump"] + args)
                XCTAssertEqual(r.status, 0, "\(label): \(r.err)")
                return r.out.split(separator: "\n")
            }
            func py(_ args: [String]) throws -> [Substring] {
                let r = try python(["-m", "longcrawl.dump", "--dump"] + args)  // pack's options, --dump included
                XCTAssertEqual(r.status, 0, "\(label): \(r.err)")
                return r.out.split(separator: "\n")
            }
            let all = try swift(options + ["--count", "\(count)"])
            XCTAssertEqual(all.count, count, label)
            let fromSwift = folder.appendingPathComponent("swift.json").path, fromPython = folder.appendingPathComponent("python.json").path
            let swiftHead = try swift(options + ["--count", "\(cut)", "--save-cursor", fromSwift])
            XCTAssertEqual(swiftHead + (try py([data, "--cursor", fromSwift, "--count", "\(count - cut)"])), all, "\(label) resumed in Python")
            let pyHead = try py(options + ["--count", "\(cut)", "--save-cursor", fromPython])
            XCTAssertEqual(pyHead + (try swift([data, "--cursor", fromPython, "--count", "\(count - cut)"])), all, "\(label) resumed in Swift")
            XCTAssertTrue(try String(contentsOfFile: fromSwift, encoding: .utf8).contains("\"batch\" : \(cut)"), label)
        }
    }

    func testPythonPacksLongCrawlOrderFromHDF5AsBatchPackerDoes() throws { try checkSameBatches(order: "longcrawl", format: .hdf5) }

    func testPythonPacksLongCrawlOrderFromZstdAsBatchPackerDoes() throws { try checkSameBatches(order: "longcrawl", format: .zst) }

    func testPythonPacksSequentialOrderFromHDF5AsBatchPackerDoes() throws { try checkSameBatches(order: "sequential", format: .hdf5) }

    func testPythonPacksSequentialOrderFromZstdAsBatchPackerDoes() throws { try checkSameBatches(order: "sequential", format: .zst) }

    /// On a dataset preprocessed with --roll, Python's packer gives Swift's seams, and with --mask-seam Swift's masks;
    /// one epoch of T = 8192 shows each rolled window's seam once.
    func testPythonGivesRolledWindowsTheSeamsBatchPackerGives() throws {
        for format in ShardFormat.allCases {
            let dir = try temporaryFolder(self).appendingPathComponent("ds")
            let r = try runProcess(longcrawlBinary, ["preprocess", packageRoot.appendingPathComponent("data/sample").path, "--out", dir.path,
                                                     "--format", format.rawValue, "--windows-per-doc", "all", "--shard-windows", "4", "--roll", "3"])
            XCTAssertEqual(r.status, 0, r.err)
            for extra in [[], ["--mask-seam"]] {
                let args = [dir.path, "--batch", "2", "--context", "8192", "--seed", "9", "--count", "40"] + extra
                let swift = try runProcess(longcrawlBinary, ["pack", "--dump"] + args)
                XCTAssertEqual(swift.status, 0, swift.err)
                let py = try python(["-m", "longcrawl.dump"] + args)
                XCTAssertEqual(py.status, 0, py.err)
                XCTAssertEqual(py.out, swift.out, "\(format) \(extra)")
                let seams = try swift.out.split(separator: "\n").flatMap { line in
                    try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])["seams"] as? [Any] ?? []
                }
                XCTAssertEqual(seams.count, 80)
                XCTAssertEqual(seams.filter { ($0 as? Int) != nil }.count, 10, "\(format): one seam per rolled window")
            }
            // TorchBatches(mask_seam=True) gives the packer's masks, seams masked (when torch is installed).
            let torch = try python(["-c", """
                import sys
                try:
                    import torch
                except ImportError:
                    sys.exit(0)
                from longcrawl import BatchPacker, Dataset
                from longcrawl.torchdata import TorchBatches
                packer = BatchPacker(Dataset(sys.argv[1]).split("train"), batch_size=2, context=8192, seed=9, mask_seam=True)
                batches = list(TorchBatches(sys.argv[1], batch_size=2, context=8192, seed=9, count=40, mask_seam=True))
                assert all(torch.equal(b["mask"], torch.from_numpy(next(packer).mask)) for b in batches)
                assert sum(int((b["mask"] == 0).sum()) for b in batches) == 10 + 10  # each seam, each window's end
                """, dir.path])
            XCTAssertEqual(torch.status, 0, torch.err)
        }
    }

    /// The Python reader's own tests (the torch part is skipped without torch), on a real dataset.
    func testPythonUnitTests() throws {
        let data = try sampleDataset(self, ["--format", ShardFormat.zst.rawValue, "--shard-windows", "4"])
        let r = try python(["-m", "unittest", "discover", "-s", packageRoot.appendingPathComponent("python/tests").path],
                           env: ["LONGCRAWL_TEST_DATASET=" + data.path])
        XCTAssertEqual(r.status, 0, r.err)
    }

    /// A flipped byte in a window of either format is caught (Fletcher32; zstd's frame checksum or the seek table's
    /// XXH64) and named with the file and window, and a size or SHA-256 off the index is reported, as by Swift.
    func testPythonCatchesCorruptShardsAndNamesThem() throws {
        for format in ShardFormat.allCases {
            let dir = try sampleDataset(self, ["--format", format.rawValue, "--shard-windows", "4"])
            let ok = try python(["-m", "longcrawl.verify", dir.path])
            XCTAssertEqual(ok.status, 0, ok.out + ok.err)
            XCTAssertTrue(ok.out.contains("ok: 4 shards, 12 windows verified"), ok.out)
            let shard = try DatasetIndex.load(from: dir).shards.first { $0.split == .train }!
            let url = dir.appendingPathComponent(shard.file)
            var bytes = try Data(contentsOf: url)
            bytes[bytes.count / 2] ^= 0x5A
            try bytes.write(to: url)
            let bad = try python(["-m", "longcrawl.verify", dir.path])
            XCTAssertEqual(bad.status, 1, bad.out)
            // As Swift's: a damaged file is named by its SHA-256 and never parsed (libhdf5 can crash on it).
            let swift = try runProcess(longcrawlBinary, ["verify", dir.path])
            XCTAssertEqual(swift.status, 1)
            let line = try XCTUnwrap(swift.out.split(separator: "\n").first { $0.hasPrefix(url.path) }, swift.out)
            XCTAssertTrue(line.contains(": SHA-256 ") && line.hasSuffix(": the file is damaged"), String(line))
            XCTAssertTrue(bad.out.contains(line), bad.out)
            XCTAssertFalse(bad.out.contains("\(url.path): window "), bad.out)
            // Packing opens the shard through the same check, before h5py or zstandard parse it.
            let dump = try python(["-m", "longcrawl.dump", dir.path, "--batch", "1", "--context", "65536", "--count", "10"])
            XCTAssertEqual(dump.status, 1, dump.out)
            XCTAssertTrue(dump.err.contains(line), dump.err)

            try bytes.prefix(bytes.count - 1).write(to: url)
            let short = try python(["-m", "longcrawl.dump", dir.path])
            XCTAssertEqual(short.status, 1)
            XCTAssertTrue(short.err.contains("\(url.path): size \(bytes.count - 1) bytes, index.json says \(bytes.count)"), short.err)
        }
    }

    /// nanoGPT reads `np.memmap(path, dtype=np.uint16, mode="r")`: every window in index order, each followed by 50256.
    func testNanoGPTExportReadsBackAsNanoGPTReadsIt() throws {
        let data = try sampleDataset(self, ["--format", ShardFormat.hdf5.rawValue, "--shard-windows", "4"])
        let out = try temporaryFolder(self).appendingPathComponent("train.bin")
        let args = ["export", data.path, "--split", "train", "--format", "nanogpt", "--out", out.path]
        let r = try runProcess(longcrawlBinary, args)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("10 windows of train, 655370 tokens"), r.out)
        let check = try python(["-c", """
            import h5py, hdf5plugin, json, numpy as np, sys
            m = np.memmap(sys.argv[1], dtype=np.uint16, mode="r")
            index = json.load(open(sys.argv[2] + "/index.json"))
            windows = [h5py.File(sys.argv[2] + "/" + s["file"], "r")["tokens"][()] for s in index["shards"] if s["split"] == "train"]
            expected = np.concatenate([np.append(w, 50256) for w in np.concatenate(windows)]).astype(np.uint16)
            assert m.shape == expected.shape and np.array_equal(m, expected), (m.shape, expected.shape)
            print("ok", len(m))
            """, out.path, data.path])
        XCTAssertEqual(check.status, 0, check.err)
        XCTAssertEqual(check.out, "ok 655370\n")

        let again = try runProcess(longcrawlBinary, args)
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.err.contains("\(out.path): exists (pass --force"), again.err)
        XCTAssertEqual(try runProcess(longcrawlBinary, args + ["--force"]).status, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.deletingLastPathComponent().path), ["train.bin"])
    }

    /// llm.c reads a 256 x int32 header (magic 20240520, version 1, token count), then uint16 tokens; heldout is `val`,
    /// each window is preceded by 50256, shards hold exactly --shard-tokens but the last.
    func testLLMCExportReadsBackAsLLMCReadsIt() throws {
        let data = try sampleDataset(self, ["--format", ShardFormat.hdf5.rawValue, "--shard-windows", "4"])
        let out = try temporaryFolder(self).appendingPathComponent("llmc")
        let read = """
            import glob, h5py, hdf5plugin, json, numpy as np, sys
            shards = sorted(glob.glob(sys.argv[1] + "/longcrawl_val_*.bin"))
            tokens = []
            for path in shards:
                with open(path, "rb") as f:
                    header = np.frombuffer(f.read(256 * 4), dtype=np.int32)
                    assert header[0] == 20240520 and header[1] == 1, header[:3]
                    t = np.frombuffer(f.read(), dtype=np.uint16)
                    assert len(t) == header[2], (path, len(t), header[2])
                    tokens.append(t)
            index = json.load(open(sys.argv[2] + "/index.json"))
            windows = [h5py.File(sys.argv[2] + "/" + s["file"], "r")["tokens"][()] for s in index["shards"] if s["split"] == "heldout"]
            expected = np.concatenate([np.insert(w, 0, 50256) for w in np.concatenate(windows)]).astype(np.uint16)
            assert np.array_equal(np.concatenate(tokens), expected)
            print(" ".join(str(len(t)) for t in tokens))
            """
        let args = ["export", data.path, "--split", "heldout", "--format", "llmc", "--out", out.path]
        XCTAssertEqual(try runProcess(longcrawlBinary, args + ["--shard-tokens", "50000"]).status, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted(),
                       ["longcrawl_val_000000.bin", "longcrawl_val_000001.bin", "longcrawl_val_000002.bin"])
        let small = try python(["-c", read, out.path, data.path])
        XCTAssertEqual(small.status, 0, small.err)
        XCTAssertEqual(small.out, "50000 50000 31074\n")

        // A longer shard size replaces the export: the shards it no longer has are removed, or llm.c would read them.
        let refused = try runProcess(longcrawlBinary, args)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.err.contains("longcrawl_val_000000.bin: exists (pass --force"), refused.err)
        XCTAssertEqual(try runProcess(longcrawlBinary, args + ["--force"]).status, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path), ["longcrawl_val_000000.bin"])
        XCTAssertEqual(try python(["-c", read, out.path, data.path]).out, "131074\n")
    }
}
