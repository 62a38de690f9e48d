import Foundation
import Shards
import TestSupport
import XCTest
@testable import Preprocess

/// `mpirun -np 2 longcrawl preprocess`: each rank takes every other input file, rank 0 merges the index.
final class DistributedPreprocessTests: XCTestCase {
    let mpirun = "/usr/bin/mpirun"

    override func setUpWithError() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: mpirun), "Open MPI's mpirun is not installed")
    }

    /// Every window with its split and source, as a sorted list: the dataset up to shard boundaries.
    func windowSet(_ dir: URL) throws -> [String] {
        try readDataset(dir).map { "\($0.split) \($0.source.document)@\($0.source.offset) \($0.tokens.hashValue)" }.sorted()
    }

    /// Same windows and splits with 2 ranks as with 1: by id hash (fraction 0.3), and when no document hashes to
    /// heldout (fraction 0.01), so the last kept document of the whole input must become the heldout set.
    func testTwoRanksGiveTheSameWindowsAsOne() throws {
        let books = try bookFolder(self, someBooks)
        for fraction in ["0.3", "0.01"] {
            let dir = try temporaryFolder(self)
            let args = ["preprocess", books.path, "--windows-per-doc", "all", "--shard-windows", "3", "--heldout-fraction", fraction]
            let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
            let a = try runProcess(longcrawlBinary, args + ["--out", one.path])
            XCTAssertEqual(a.status, 0, a.err)
            let b = try runProcess(mpirun, ["--allow-run-as-root", "--oversubscribe", "-np", "2", longcrawlBinary] + args + ["--out", two.path])
            XCTAssertEqual(b.status, 0, b.err)
            let want = try windowSet(one), got = try windowSet(two)
            XCTAssertEqual(got, want, "fraction \(fraction)")
            XCTAssertGreaterThan(want.filter { $0.hasPrefix("heldout") }.count, 0)
            let index = try DatasetIndex.load(from: two)
            XCTAssertTrue(index.complete)
            XCTAssertEqual(index.build?.options["ranks"], "2")
            XCTAssertEqual(index.build?.counts, try DatasetIndex.load(from: one).build?.counts, "counts summed over ranks")
            XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: two.path).contains { $0.hasPrefix("rank-") }, "rank folders removed")
            let verify = try runProcess(longcrawlBinary, ["verify", two.path])
            XCTAssertEqual(verify.status, 0, verify.out + verify.err)
        }
    }
}
