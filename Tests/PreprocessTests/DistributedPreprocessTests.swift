import Foundation
@testable import Shards
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

    /// The document stage on 2 ranks: a web-shaped JSONL corpus gives the same windows, splits, counters and
    /// length histograms as one process.
    func testTwoRanksOnAWebCorpus() throws {
        let (web, _, _) = try makeWebCorpus(self)
        let dir = try temporaryFolder(self)
        let args = ["preprocess", web.appendingPathComponent("jsonl").path, "--text-field", "raw_content", "--id-field", "doc_id",
                    "--windows-per-doc", "all", "--shard-windows", "2", "--heldout-fraction", "0.3"]
        let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
        let a = try runProcess(longcrawlBinary, args + ["--out", one.path])
        XCTAssertEqual(a.status, 0, a.err)
        let b = try runProcess(mpirun, ["--allow-run-as-root", "--oversubscribe", "-np", "2", longcrawlBinary] + args + ["--out", two.path])
        XCTAssertEqual(b.status, 0, b.err)
        XCTAssertEqual(try windowSet(two), try windowSet(one))
        let single = try DatasetIndex.load(from: one).build!, merged = try DatasetIndex.load(from: two).build!
        XCTAssertEqual(merged.counts, single.counts)
        XCTAssertGreaterThan(single.counts["dropped_too_short"], 100)
        XCTAssertEqual(merged.funnel, single.funnel)
    }

    /// SIGKILL a 2-rank run after some shards, resume it with 2 ranks: the same windows as a 1-rank run. A resume
    /// without mpirun is refused (the build records the ranks).
    func testResumeAfterKillWithTwoRanks() throws {
        let books = try bookFolder(self, someBooks + ["cranford", "walden", "dracula", "odyssey"])
        let dir = try temporaryFolder(self)
        let args = ["preprocess", books.path, "--windows-per-doc", "all", "--shard-windows", "1", "--heldout-fraction", "0.3", "--workers", "1"]
        let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
        XCTAssertEqual(try runProcess(longcrawlBinary, args + ["--out", one.path]).status, 0)
        let mpi = ["--allow-run-as-root", "--oversubscribe", "-np", "2", longcrawlBinary]
        let p = try launch(mpirun, mpi + args + ["--out", two.path])
        // Kill once a rank has finished two shards.
        func shardsDone() -> Int {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: two.path)) ?? []
            return names.filter { $0.hasPrefix("rank-") }.compactMap { try? DatasetIndex.load(from: two.appendingPathComponent($0)).shards.count }.max() ?? 0
        }
        while p.isRunning && shardsDone() < 2 { usleep(1000) }
        _ = try runProcess("/usr/bin/pkill", ["-KILL", "-f", two.path])
        p.waitUntilExit()
        XCTAssertFalse((try? DatasetIndex.load(from: two))?.complete ?? false, "the kill should land before the merge")
        let alone = try runProcess(longcrawlBinary, args + ["--out", two.path, "--resume"])
        XCTAssertNotEqual(alone.status, 0)
        XCTAssertTrue(alone.err.contains("ranks was 2, now unset"), alone.err)
        let resumed = try runProcess(mpirun, mpi + args + ["--out", two.path, "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertEqual(try windowSet(two), try windowSet(one))
    }
}
