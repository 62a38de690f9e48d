import Foundation
@testable import Shards
@testable import Support
import TestSupport
import XCTest
@testable import Preprocess

/// Writes zarr v2 stores with zarr-python and numcodecs (as LongCrawl64's mirror was written) and each store's rows
/// as raw little-endian uint16 beside it (`NAME.zarr.u16`). The first 16 rows draw tokens below 50,257 (blosc stores
/// such chunks as plain copies), later rows below 1,000, 256 or 50,257 in turn (chunks that compress).
private let writeStores = """
import json, sys
import numcodecs, numpy as np, zarr
from numcodecs import Blosc
compressors = {
    "lz4": lambda: Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE),
    "lz4-noshuffle": lambda: Blosc(cname="lz4", clevel=5, shuffle=Blosc.NOSHUFFLE),
    "blosc-zstd-bitshuffle": lambda: Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE),
    "zstd": lambda: numcodecs.Zstd(level=3),
    "none": lambda: None,
}
for seed, spec in enumerate(json.loads(sys.argv[1])):
    rows = spec["rows"]
    rng = np.random.default_rng(seed)
    row = np.arange(rows)
    high = np.where(row < 16, 50257, np.array([1000, 256, 50257])[row % 3])[:, None]
    data = (rng.integers(0, 1 << 30, size=(rows, 65536)) % high).astype("<u2")
    extra = {"dimension_separator": spec["separator"]} if "separator" in spec else {}
    a = zarr.open_array(spec["path"], mode="w", shape=data.shape, chunks=tuple(spec["chunks"]), dtype="<u2", zarr_format=2,
                        compressor=compressors[spec["compressor"]](), fill_value=0, **extra)
    a[:] = data
    a.attrs["encoder"] = "tiktoken-gpt2"
    data.tofile(spec["path"] + ".u16")
    if "separator" not in spec:
        # The mirror's .zarray has no dimension_separator key (zarr-python writes ".").
        meta = json.load(open(spec["path"] + "/.zarray"))
        del meta["dimension_separator"]
        json.dump(meta, open(spec["path"] + "/.zarray", "w"))
"""

final class ZarrImportTests: XCTestCase {
    /// Class-wide stores (copied before a test changes one): `NAME/train.zarr` per layout, and `heldout.zarr`.
    nonisolated(unsafe) static var stores: URL!
    static let layouts = ["lz4", "slash", "lz4-noshuffle", "blosc-zstd-bitshuffle", "zstd", "none"]

    override class func setUp() {
        super.setUp()
        stores = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-zarr-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: stores, withIntermediateDirectories: true)
        func spec(_ path: String, _ compressor: String, rows: Int = 40, chunks: [Int] = [16, 4096], separator: String? = nil) -> [String: Any] {
            var s: [String: Any] = ["path": stores.appendingPathComponent(path).path, "compressor": compressor, "rows": rows, "chunks": chunks]
            s["separator"] = separator
            return s
        }
        let specs = [
            spec("lz4/train.zarr", "lz4"), spec("slash/train.zarr", "lz4", separator: "/"),
            // Chunks that divide neither the rows nor the 65,536 columns.
            spec("lz4-noshuffle/train.zarr", "lz4-noshuffle", chunks: [7, 5000]),
            spec("blosc-zstd-bitshuffle/train.zarr", "blosc-zstd-bitshuffle"), spec("zstd/train.zarr", "zstd"), spec("none/train.zarr", "none"),
            spec("heldout.zarr", "lz4", rows: 20),
        ]
        let json = String(decoding: try! JSONSerialization.data(withJSONObject: specs), as: UTF8.self)
        let r = try! runProcess("/usr/bin/env", ["python3", "-c", writeStores, json])
        precondition(r.status == 0, "zarr-python failed: \(r.err)")
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: stores)
        super.tearDown()
    }

    /// A private copy of store `path` as `DIR/NAME` (default: its own name).
    func copyStore(_ path: String, as name: String? = nil) throws -> URL {
        let source = Self.stores.appendingPathComponent(path)
        let target = try temporaryFolder(self).appendingPathComponent(name ?? source.lastPathComponent)
        try FileManager.default.copyItem(at: source, to: target)
        return target
    }

    /// The rows zarr-python wrote for store `path`.
    func expectedRows(_ path: String) throws -> [[UInt16]] {
        let bytes = try Data(contentsOf: Self.stores.appendingPathComponent(path + ".u16"))
        let tokens = bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
        return stride(from: 0, to: tokens.count, by: windowLength).map { Array(tokens[$0..<($0 + windowLength)]) }
    }

    @discardableResult
    func importZarr(_ inputs: [URL], _ out: URL, mode: OutputMode = .fresh, _ configure: (inout ImportOptions) -> Void = { _ in },
                    afterShard: ((DatasetIndex) throws -> Void)? = nil) throws -> ImportSummary {
        var options = ImportOptions()
        options.shardWindows = 16
        configure(&options)
        let importer = ZarrImporter(inputs: inputs.map(\.path), output: out, options: options)
        importer.afterShard = afterShard
        return try importer.run(mode: mode)
    }

    /// Asserts the dataset holds exactly `rows` of the array `name` (given as array row -> tokens), in order, in `split`.
    func assertWindows(_ out: URL, split: Split, name: String, rows: [(Int, [UInt16])], file: StaticString = #filePath, line: UInt = #line) throws {
        let windows = try readDataset(out).filter { $0.split == split }
        XCTAssertEqual(windows.map(\.source), rows.map { WindowSource(document: "\(name):\($0.0)", offset: 0) }, file: file, line: line)
        for (w, (row, tokens)) in zip(windows, rows) where w.tokens != tokens {
            XCTFail("\(name) row \(row) differs from zarr-python's", file: file, line: line)
        }
        let index = try DatasetIndex.load(from: out)
        XCTAssertEqual(index.shards.flatMap { verifyShard($0, in: out) }, [], file: file, line: line)
    }

    func testImportEqualsZarrPythonRowsForEveryLayoutAndFormat() throws {
        // The mirror's layout must exercise real decoding, not only blosc's plain copies.
        let lz4 = Self.stores.appendingPathComponent("lz4/train.zarr")
        let sizes = try FileManager.default.contentsOfDirectory(atPath: lz4.path).filter { !$0.hasPrefix(".") }
            .map { try FileManager.default.attributesOfItem(atPath: lz4.appendingPathComponent($0).path)[.size] as! Int }
        XCTAssertTrue(sizes.contains { $0 < 16 * 4096 * 2 } && sizes.contains { $0 > 16 * 4096 * 2 })
        for layout in Self.layouts {
            let expected = try expectedRows(layout + "/train.zarr")
            XCTAssertEqual(expected.count, 40)
            for format in ShardFormat.allCases {
                let out = try temporaryFolder(self)
                let index = try importZarr([Self.stores.appendingPathComponent(layout + "/train.zarr")], out) { $0.format = format }.index
                XCTAssertEqual(index.shards.map(\.windows), [16, 16, 8], layout)
                // Random ids: every row holds a newline, control or non-ASCII token, so every row reads as raw text.
                XCTAssertEqual(index.build?.counts, BuildCounts(["rows": 40, "imported": 40, TextEncoding.rowsRawCounter: 40], windows: [.train: 40, .heldout: 0]), layout)
                XCTAssertEqual(index.textEncoding, .raw)
                XCTAssertEqual(index.build?.options["source"], "zarr")
                try assertWindows(out, split: .train, name: "train.zarr", rows: Array(expected.enumerated()))
            }
        }
    }

    func testSplitsComeFromFolderNamesOrSplit() throws {
        let train = Self.stores.appendingPathComponent("lz4/train.zarr"), heldout = Self.stores.appendingPathComponent("heldout.zarr")
        let out = try temporaryFolder(self)
        let index = try importZarr([train, heldout], out) { $0.format = .zst }.index
        XCTAssertEqual(index.build?.counts.windows?[.heldout], 20)
        XCTAssertEqual(index.shards.filter { $0.split == .heldout }.map(\.windows), [16, 4])
        try assertWindows(out, split: .train, name: "train.zarr", rows: Array(try expectedRows("lz4/train.zarr").enumerated()))
        try assertWindows(out, split: .heldout, name: "heldout.zarr", rows: Array(try expectedRows("heldout.zarr").enumerated()))

        let tokens = try copyStore("heldout.zarr", as: "tokens.zarr")
        XCTAssertThrowsError(try importZarr([tokens], try temporaryFolder(self))) { XCTAssertTrue("\($0)".contains("tokens.zarr: cannot tell its split"), "\($0)") }
        XCTAssertThrowsError(try importZarr([tokens, train], try temporaryFolder(self)) { $0.split = .heldout }) {
            XCTAssertTrue("\($0)".contains("single input"), "\($0)")
        }
        XCTAssertThrowsError(try importZarr([train, try copyStore("slash/train.zarr")], try temporaryFolder(self))) {
            XCTAssertTrue("\($0)".contains("both hold split train"), "\($0)")
        }
        let named = try temporaryFolder(self)
        try importZarr([tokens], named) { $0.split = .heldout }
        try assertWindows(named, split: .heldout, name: "tokens.zarr", rows: Array(try expectedRows("heldout.zarr").enumerated()))
    }

    func testMissingChunkIsAnErrorAndSkipMissingSkipsItsRows() throws {
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: longcrawlBinary), "no longcrawl binary at \(longcrawlBinary)")
        let store = try copyStore("lz4/train.zarr")
        try FileManager.default.removeItem(at: store.appendingPathComponent("1.3"))
        let out = try temporaryFolder(self).appendingPathComponent("ds")
        let failed = try runProcess(longcrawlBinary, ["import", store.path, "--out", out.path])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.err.contains("\(store.path)/1.3: chunk file missing (rows 16..<32)"), failed.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "a failed check should not create the dataset")

        let r = try runProcess(longcrawlBinary, ["import", store.path, "--out", out.path, "--skip-missing", "--format", "zst"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("skipped 16 rows, row-chunks 1\n"), r.out)
        let index = try DatasetIndex.load(from: out)
        XCTAssertEqual(index.build?.counts, BuildCounts(["rows": 40, "imported": 24, "skipped_missing_rows": 16, "skipped_missing_row_chunks": 1, TextEncoding.rowsRawCounter: 24],
                                                        windows: [.train: 24, .heldout: 0]))
        XCTAssertEqual(index.build?.options["skip_missing"], "true")
        let expected = try expectedRows("lz4/train.zarr")
        try assertWindows(out, split: .train, name: "train.zarr", rows: (Array(0..<16) + Array(32..<40)).map { ($0, expected[$0]) })
    }

    func testCorruptChunkIsAnErrorNamingIt() throws {
        func assertFails(_ store: URL, _ key: String, _ damage: (inout [UInt8]) -> Void, _ what: String) throws {
            let chunk = store.appendingPathComponent(key)
            let original = try readWholeFile(chunk)
            var bytes = original
            damage(&bytes)
            try Data(bytes).write(to: chunk)
            XCTAssertThrowsError(try importZarr([store], try temporaryFolder(self)), "\(key) \(what)") {
                XCTAssertTrue("\($0)".hasPrefix(chunk.path + ": "), "\(key) \(what): \($0)")
            }
            try Data(original).write(to: chunk)
        }
        // 0.0 is a plain copy inside blosc (random tokens), 2.15 compressed (ragged, half padding).
        let lz4 = try copyStore("lz4/train.zarr")
        for key in ["0.0", "2.15"] {
            try assertFails(lz4, key, { $0.removeLast() }, "truncated")
            for byte in 0..<16 { try assertFails(lz4, key, { $0[byte] ^= 0xFF }, "header byte \(byte) flipped") }
        }
        for layout in ["zstd", "none", "blosc-zstd-bitshuffle"] {
            try assertFails(try copyStore(layout + "/train.zarr"), "1.7", { $0.removeLast() }, "\(layout) truncated")
        }
        try XCTAssertEqual(importZarr([lz4], try temporaryFolder(self)).index.build?.counts["imported"], 40, "the repaired store imports")
    }

    func testUnsupportedMetadataIsRefused() throws {
        let store = try copyStore("lz4/train.zarr")
        let metaURL = store.appendingPathComponent(".zarray")
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: metaURL)) as! [String: Any]
        let cases: [(String, Any, String)] = [
            ("dtype", "<u4", "dtype <u4 is not supported"), ("dtype", ">u2", "dtype >u2 is not supported"),
            ("order", "F", "order F is not supported"), ("filters", [["id": "delta", "dtype": "<u2"]], "filters are not supported"),
            ("compressor", ["id": "gzip", "level": 1], "compressor gzip is not supported"), ("shape", [40, 1000], "1000 tokens wide"),
            ("dimension_separator", "-", "dimension_separator '-'"), ("zarr_format", 3, "zarr_format is 3"),
        ]
        for (key, value, message) in cases {
            var meta = original
            meta[key] = value
            try JSONSerialization.data(withJSONObject: meta).write(to: metaURL)
            XCTAssertThrowsError(try importZarr([store], try temporaryFolder(self))) {
                XCTAssertTrue("\($0)".hasPrefix(metaURL.path + ": ") && "\($0)".contains(message), "\(key): \($0)")
            }
        }
        try JSONSerialization.data(withJSONObject: original).write(to: metaURL)
        try Data(#"{"encoder": "llama-3"}"#.utf8).write(to: store.appendingPathComponent(".zattrs"))
        XCTAssertThrowsError(try importZarr([store], try temporaryFolder(self))) {
            XCTAssertTrue("\($0)".contains("encoder is 'llama-3'") && "\($0)".contains("--force-tokenizer"), "\($0)")
        }
        try importZarr([store], try temporaryFolder(self)) { $0.forceTokenizer = true }
    }

    func testSameInputsGiveSameBytesAndAFullFolderIsRefused() throws {
        let train = Self.stores.appendingPathComponent("slash/train.zarr")
        let a = try temporaryFolder(self), b = try temporaryFolder(self)
        try importZarr([train], a)
        try importZarr([train], b) { $0.workers = 1 }
        try assertSameDataset(a, b)
        XCTAssertThrowsError(try importZarr([train], a)) { XCTAssertTrue("\($0)".contains("already holds this dataset"), "\($0)") }
        XCTAssertThrowsError(try importZarr([train], a, mode: .resume) { $0.level = 5 }) { XCTAssertTrue("\($0)".contains("level was 3, now 5"), "\($0)") }
        XCTAssertTrue(try importZarr([train], a, mode: .resume).alreadyComplete)
        try importZarr([train], a, mode: .force) { $0.format = .zst }
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: a.path)),
                       Set(try DatasetIndex.load(from: a).shards.map(\.file) + [DatasetIndex.fileName, FolderLock.fileName]))
    }

    /// Interrupt after every shard in turn (two inputs, a skipped row-chunk), resume, compare with an uninterrupted run.
    func testResumeAfterInterruptionAtEveryShard() throws {
        struct Interrupted: Error {}
        let train = try copyStore("lz4/train.zarr")
        try FileManager.default.removeItem(at: train.appendingPathComponent("1.0"))
        let inputs = [train, Self.stores.appendingPathComponent("heldout.zarr")]
        let configure = { (o: inout ImportOptions) in o.shardWindows = 5; o.skipMissing = true }
        let reference = try temporaryFolder(self)
        let shards = try importZarr(inputs, reference, configure).index.shards.count
        XCTAssertEqual(shards, 9)
        for stop in 1..<shards {
            let out = try temporaryFolder(self)
            var done = 0
            XCTAssertThrowsError(try importZarr(inputs, out, configure) { _ in
                done += 1
                if done == stop { throw Interrupted() }
            })
            XCTAssertFalse(try DatasetIndex.load(from: out).complete)
            try importZarr(inputs, out, mode: .resume, configure)
            try assertSameDataset(reference, out)
        }
    }

    /// SIGKILL the CLI at several points, resume, compare bytes with an uninterrupted run.
    func testResumeAfterSIGKILL() throws {
        try assertResumesAfterSIGKILL(self, ["import", Self.stores.appendingPathComponent("lz4/train.zarr").path,
                                             Self.stores.appendingPathComponent("heldout.zarr").path, "--format", "zst", "--shard-windows", "2"],
                                      killAfterShards: [1, 8, 21])
    }

    /// `mpirun -np 2 longcrawl import`: ranks take every other row-chunk over both arrays; the same windows, splits
    /// and counts as one process, a missing chunk skipped on whichever rank owns it.
    func testTwoRanksImportTheSameWindowsAsOne() throws {
        let mpirun = "/usr/bin/mpirun"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: mpirun), "Open MPI's mpirun is not installed")
        let train = try copyStore("lz4/train.zarr")
        try FileManager.default.removeItem(at: train.appendingPathComponent("2.5"))
        let heldout = Self.stores.appendingPathComponent("heldout.zarr")
        let dir = try temporaryFolder(self)
        let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
        let args = ["import", train.path, heldout.path, "--skip-missing", "--shard-windows", "5"]
        let a = try runProcess(longcrawlBinary, args + ["--out", one.path])
        XCTAssertEqual(a.status, 0, a.err)
        let b = try runProcess(mpirun, ["--allow-run-as-root", "--oversubscribe", "-np", "2", longcrawlBinary] + args + ["--out", two.path])
        XCTAssertEqual(b.status, 0, b.err)
        XCTAssertTrue(b.out.contains("skipped 8 rows, row-chunks 2\n"), b.out)
        let windows = { (dir: URL) in try readDataset(dir).map { "\($0.split) \($0.source.document) \($0.tokens.hashValue)" }.sorted() }
        let want = try windows(one)
        XCTAssertEqual(want.count, 40 - 8 + 20)
        XCTAssertEqual(try windows(two), want)
        let (i1, i2) = (try DatasetIndex.load(from: one), try DatasetIndex.load(from: two))
        XCTAssertEqual(i2.build?.counts, i1.build?.counts, "counts summed over ranks")
        XCTAssertEqual(i2.build?.options["ranks"], "2")
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: two.path).contains { $0.hasPrefix("rank-") }, "rank folders removed")
        let verify = try runProcess(longcrawlBinary, ["verify", two.path])
        XCTAssertEqual(verify.status, 0, verify.out + verify.err)
    }
}
