import Foundation
@testable import Shards
@testable import Support
import TestSupport
import XCTest
@testable import Preprocess

/// Parquet through the whole pipeline: a FineWeb-shaped file written by pyarrow, holding books of the development
/// corpus as rows, in row groups of two; the windows' ids must equal tiktoken's on the same texts.
final class ParquetPipelineTests: XCTestCase {
    /// Writes `books.parquet` (snappy, row groups of 2 rows: the books, a short text, a null text, a book with a
    /// null id) and tiktoken's ids of every book as `ids/NAME.txt.ids`.
    func makeParquet() throws -> (file: URL, ids: URL) {
        let books = try bookFolder(self, someBooks)
        let dir = try temporaryFolder(self)
        let file = dir.appendingPathComponent("books.parquet"), ids = dir.appendingPathComponent("ids")
        let script = """
        import sys, pyarrow as pa, pyarrow.parquet as pq
        books, out, names = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
        texts = [open(f"{books}/{n}.txt", encoding="utf-8").read() for n in names]
        ids = [n + ".txt" for n in names]
        ids[-1] = None
        texts += ["too short to keep", None]; ids += ["short", "null-text"]
        n = len(texts)
        table = pa.table({"text": pa.array(texts, pa.string()), "id": pa.array(ids, pa.string()),
                          "url": pa.array([f"https://example.com/{i}" for i in range(n)]),
                          "language_score": pa.array([0.5] * n, pa.float64())})
        pq.write_table(table, out, compression="snappy", row_group_size=2)
        """
        let r = try runProcess("/usr/bin/env", ["python3", "-c", script, books.path, file.path, someBooks.joined(separator: ",")])
        XCTAssertEqual(r.status, 0, r.err)
        let t = try runProcess("/usr/bin/env", ["python3", packageRoot.appendingPathComponent("tools/tiktoken_ids.py").path, ids.path]
                               + someBooks.map { books.appendingPathComponent($0 + ".txt").path })
        XCTAssertEqual(t.status, 0, t.err)
        return (file, ids)
    }

    func testWindowsEqualTiktokenOnTheRows() throws {
        let (file, ids) = try makeParquet()
        XCTAssertEqual(try ParquetReader(url: file, textColumn: "text", idColumn: "id").rowGroupCount, 5)
        for format in ShardFormat.allCases {
            let out = try temporaryFolder(self)
            let summary = try preprocess([file], out) { $0.format = format; $0.windowsPerDocument = nil }
            let counts = summary.index.build!.counts
            XCTAssertEqual(counts["records"], someBooks.count + 2)
            XCTAssertEqual(counts["kept"], someBooks.count)
            XCTAssertEqual(counts["dropped_too_short"], 1)
            XCTAssertEqual(counts["dropped_empty"], 1, "a null text is an empty record")
            let windows = try readDataset(out)
            XCTAssertEqual(Set(windows.map(\.source.document)), Set(someBooks.dropLast().map { $0 + ".txt" } + ["books.parquet:\(someBooks.count - 1)"]))
            for w in windows {
                let name = w.source.document.hasPrefix("books.parquet:") ? someBooks.last! + ".txt" : w.source.document
                let data = try Data(contentsOf: ids.appendingPathComponent(name + ".ids"))
                let expected = data.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
                XCTAssertEqual(w.tokens, Array(expected[w.source.offset..<(w.source.offset + windowLength)]), "\(w.source)")
            }
        }
    }

    /// SIGKILL the CLI mid-way, resume: the same bytes as an uninterrupted run.
    func testResumeAfterSIGKILL() throws {
        let (file, _) = try makeParquet()
        try assertResumesAfterSIGKILL(self, ["preprocess", file.path, "--format", "hdf5", "--shard-windows", "1", "--heldout-fraction", "0.3", "--workers", "1"],
                                      killAfterShards: [1, 3])
    }

    /// `mpirun -np 2`: one parquet file is split by row groups, with the same windows and splits as one process
    /// (by id hash, and with the globally last kept document held back as heldout).
    func testTwoRanksSplitOneFileByRowGroups() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun"), "Open MPI's mpirun is not installed")
        let (file, _) = try makeParquet()
        for fraction in ["0.3", "0.01"] {
            let dir = try temporaryFolder(self)
            let args = ["preprocess", file.path, "--shard-windows", "2", "--heldout-fraction", fraction]
            let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
            XCTAssertEqual(try runProcess(longcrawlBinary, args + ["--out", one.path]).status, 0)
            let b = try runProcess("/usr/bin/mpirun", ["--allow-run-as-root", "--oversubscribe", "-np", "2", longcrawlBinary] + args + ["--out", two.path])
            XCTAssertEqual(b.status, 0, b.err)
            let windows = { (d: URL) in try readDataset(d).map { "\($0.split) \($0.source.document) \($0.tokens.hashValue)" }.sorted() }
            XCTAssertEqual(try windows(two), try windows(one), "fraction \(fraction)")
            XCTAssertEqual(try DatasetIndex.load(from: two).build?.counts, try DatasetIndex.load(from: one).build?.counts)
        }
    }
}
