import Foundation
@testable import Shards
@testable import Support
import TestSupport
import XCTest
@testable import Preprocess

/// zarr-python reads an export: `.zarray` field by field LongCrawl64's (shape aside), the array equal to
/// `expected.u16` (our windows in the order `rows.json` records), and the article's loader (a column-major rectangle
/// of rows x context; inputs the targets shifted right by one with 50256 first) runs on it.
private let checkExport = """
import json, sys
import numpy as np, zarr
path, expected = sys.argv[1], np.fromfile(sys.argv[2], dtype="<u2").reshape(-1, 65536)
meta = json.load(open(path + "/.zarray"))
lc64 = {"zarr_format": 2, "dtype": "<u2", "chunks": [2048, 2048], "order": "C", "fill_value": 0, "filters": None,
        "compressor": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}}
assert meta.pop("shape") == [len(expected), 65536], meta
assert meta == lc64, meta
a = zarr.open_array(path, mode="r")
assert a.dtype == np.dtype("<u2") and a.shape == expected.shape, (a.dtype, a.shape)
assert np.array_equal(a[:], expected), "array differs from our windows"
B, T = min(2, len(expected)), 1024
targets = np.asarray(a[0:B, 0:T]).astype(np.int64)
inputs = np.concatenate([np.full((B, 1), 50256), targets[:, :-1]], axis=1)
assert inputs.shape == (B, T) and np.array_equal(targets, expected[:B, :T])
print("ok")
"""

/// zarr arrays of tiktoken's ids of the same book excerpts, as someone else would have made them: `raw.zarr` (the
/// text), `json.zarr` (`json.dumps(text)[1:-1]`) and `ascii.zarr` (the text cut to printable ASCII, no newline).
private let writeForeignRows = """
import json, sys
sys.path.insert(0, sys.argv[2])
from tiktoken_ids import gpt2_encoding
import numpy as np, zarr
from numcodecs import Blosc
enc, out = gpt2_encoding(), sys.argv[1]
texts = [open(f"{sys.argv[3]}/{n}.txt", encoding="utf-8").read()[:420000] for n in ["dracula", "pride_and_prejudice", "walden", "frankenstein"]]
ascii = ["".join(c if " " <= c <= "~" and c != "\\\\" else " " for c in t) for t in texts]
for name, docs in [("raw", texts), ("json", [json.dumps(t)[1:-1] for t in texts]), ("ascii", ascii)]:
    rows = np.array([enc.encode_ordinary(d)[:65536] for d in docs], dtype="<u2")
    a = zarr.open_array(f"{out}/{name}.zarr", mode="w", shape=rows.shape, chunks=(2, 4096), dtype="<u2", zarr_format=2,
                        compressor=Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE), fill_value=0)
    a[:] = rows
"""

final class ZarrExportTests: XCTestCase {
    /// A raw-text dataset of five sample books (7 windows of train with 0.3 held out is not needed: all train).
    private func sampleDataset() throws -> URL {
        let books = try temporaryFolder(self).appendingPathComponent("books")
        try FileManager.default.createDirectory(at: books, withIntermediateDirectories: true)
        for n in ["art_of_war", "dubliners", "great_gatsby", "meditations", "walden"] {
            try FileManager.default.copyItem(at: packageRoot.appendingPathComponent("data/sample/\(n).txt"), to: books.appendingPathComponent("\(n).txt"))
        }
        let out = try temporaryFolder(self).appendingPathComponent("ds")
        _ = try preprocess([books], out) { $0.heldoutFraction = 0; $0.windowsPerDocument = nil; $0.roll = 5 }
        return out
    }

    /// The split's windows in the order `rows.json` gives, as one little-endian uint16 file.
    private func expectedRows(_ out: URL, _ dataset: URL, split: Split = .train) throws -> (URL, [[UInt16]]) {
        let map = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("\(split.rawValue).rows.json"))) as! [String: Any]
        let rows = map["rows"] as! [[Any]]
        var windows: [[UInt16]] = []
        for row in rows {
            let reader = try ShardReader(url: dataset.appendingPathComponent(row[0] as! String))
            var tokens = [UInt16](repeating: 0, count: windowLength)
            try tokens.withUnsafeMutableBufferPointer { try reader.readWindow(row[1] as! Int, into: $0) }
            XCTAssertEqual(reader.sources[row[1] as! Int].document, row[2] as? String)
            XCTAssertEqual(reader.sources[row[1] as! Int].roll, row[3] as? Int)
            windows.append(tokens)
        }
        let file = out.appendingPathComponent("expected.u16")
        try windows.flatMap { $0 }.withUnsafeBytes { try Data($0).write(to: file) }
        return (file, windows)
    }

    /// The export is LC64's layout, read by zarr-python equal to our windows in the recorded, shuffled order, and
    /// `import` of it gives the same windows back with the encoding detected.
    func testExportIsLongCrawl64LayoutAndRoundTrips() throws {
        let dataset = try sampleDataset()
        let out = try temporaryFolder(self).appendingPathComponent("zarr")
        var export = ZarrExport(dataset: dataset, split: .train)
        export.order = .shuffled(seed: 3)
        let rows = try export.run(out: out)
        let (file, windows) = try expectedRows(out, dataset)
        XCTAssertEqual(windows.count, rows)
        XCTAssertGreaterThan(rows, 4)
        XCTAssertNotEqual(export.rowOrder(rows), Array(0..<rows), "rows are shuffled")
        let r = try runProcess("/usr/bin/env", ["python3", "-c", checkExport, out.appendingPathComponent("train.zarr").path, file.path])
        XCTAssertEqual(r.status, 0, r.err)

        let back = try temporaryFolder(self).appendingPathComponent("back")
        let imported = try ZarrImporter(inputs: [out.appendingPathComponent("train.zarr").path], output: back, options: ImportOptions()).run(mode: .fresh)
        XCTAssertEqual(imported.index.textEncoding, .raw)
        XCTAssertEqual(try readDataset(back).map(\.tokens), windows)
        XCTAssertThrowsError(try export.run(out: out)) { XCTAssertTrue("\($0)".contains("exists (pass --force"), "\($0)") }
    }

    /// Killed between stripes, an export leaves no array in place; run again, it keeps the stripes already written
    /// and ends with the same files as an export never stopped.
    func testKilledExportResumesToTheSameArray() throws {
        let dataset = try sampleDataset()
        var export = ZarrExport(dataset: dataset, split: .train)
        export.chunkRows = 2
        let reference = try temporaryFolder(self).appendingPathComponent("ref")
        try export.run(out: reference)
        let out = try temporaryFolder(self).appendingPathComponent("out")
        struct Killed: Error {}
        export.afterStripe = { if $0 == 1 { throw Killed() } }
        XCTAssertThrowsError(try export.run(out: out))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("train.zarr").path))
        var rewritten: [Int] = []
        export.afterStripe = { rewritten.append($0) }
        try export.run(out: out)
        XCTAssertEqual(rewritten.first, 2, "stripes 0 and 1 were kept")
        let names = try FileManager.default.contentsOfDirectory(atPath: reference.appendingPathComponent("train.zarr").path).sorted()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("train.zarr").path).sorted(), names)
        for name in names {
            XCTAssertEqual(try Data(contentsOf: reference.appendingPathComponent("train.zarr/\(name)")),
                           try Data(contentsOf: out.appendingPathComponent("train.zarr/\(name)")), name)
        }
        XCTAssertEqual(try Data(contentsOf: reference.appendingPathComponent("train.rows.json")), try Data(contentsOf: out.appendingPathComponent("train.rows.json")))
    }

    /// A dataset that is incomplete, or locked by a build writing it, is refused by name.
    func testIncompleteOrLockedDatasetIsRefused() throws {
        let dataset = try sampleDataset()
        let out = try temporaryFolder(self).appendingPathComponent("out")
        let lock = try FolderLock(dataset)
        XCTAssertThrowsError(try ZarrExport(dataset: dataset, split: .train).run(out: out)) { XCTAssertTrue("\($0)".contains("in use by"), "\($0)") }
        lock.release()
        var index = try DatasetIndex.load(from: dataset)
        index.complete = false
        try index.write(to: dataset)
        XCTAssertThrowsError(try ZarrExport(dataset: dataset, split: .train).run(out: out)) {
            XCTAssertTrue("\($0)".contains("index.json: dataset incomplete"), "\($0)")
        }
    }

    /// Rows someone else tokenized are classified right: raw text, LongCrawl64's JSON escape of the same text, and
    /// pure ASCII without newlines reported as undecidable rather than guessed.
    func testImportDetectsTheTextEncoding() throws {
        let dir = try temporaryFolder(self)
        let r = try runProcess("/usr/bin/env", ["python3", "-c", writeForeignRows, dir.path, packageRoot.appendingPathComponent("tools").path,
                                                packageRoot.appendingPathComponent("data/sample").path])
        XCTAssertEqual(r.status, 0, r.err)
        let expected: [(String, TextEncoding?, String)] = [("raw", .raw, "4 of 4 rows hold newline"), ("json", .json, "4 hold only printable ASCII with JSON escapes"),
                                                           ("ascii", nil, "0 of 4 rows hold newline, control or non-ASCII tokens (raw text only), 0 hold")]
        for (name, encoding, evidence) in expected {
            var options = ImportOptions()
            options.split = .train
            let index = try ZarrImporter(inputs: [dir.appendingPathComponent("\(name).zarr").path], output: dir.appendingPathComponent("ds-\(name)"),
                                         options: options).run(mode: .fresh).index
            XCTAssertEqual(index.textEncoding, encoding, name)
            XCTAssertTrue(index.textEncodingEvidence?.contains(evidence) == true, "\(name): \(index.textEncodingEvidence ?? "none")")
            XCTAssertEqual(try DatasetIndex.load(from: dir.appendingPathComponent("ds-\(name)")).textEncoding, encoding, name)
        }
        // Given by the user, it is recorded as given.
        var options = ImportOptions()
        options.split = .train
        options.textEncoding = .json
        let given = try ZarrImporter(inputs: [dir.appendingPathComponent("ascii.zarr").path], output: dir.appendingPathComponent("given"), options: options).run(mode: .fresh).index
        XCTAssertEqual(given.textEncoding, .json)
        XCTAssertEqual(given.textEncodingEvidence, "given by --text-encoding")
    }
}
