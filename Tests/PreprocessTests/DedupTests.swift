import Foundation
@testable import Shards
import TestSupport
import XCTest
@testable import Preprocess

/// Python's exact Jaccard similarity of the sets of word 13-grams of RPv2's normalized words (its own
/// normalization: punctuation deleted, lower, whitespace collapsed, NFD), for each pair of files given.
private let exactJaccard = """
import sys, string, unicodedata, re
def grams(path, n=13):
    t = open(path, encoding="utf-8").read()
    t = t.translate(str.maketrans("", "", string.punctuation)).lower().strip()
    t = unicodedata.normalize("NFD", re.sub(r"\\s+", " ", t))
    w = t.split()
    return {tuple(w[i:i + n]) for i in range(max(len(w) - n + 1, 1))}
for a, b in zip(sys.argv[1::2], sys.argv[2::2]):
    x, y = grams(a), grams(b)
    print(len(x & y) / len(x | y))
"""

/// Writes `lines` of `source` with every `every`-th line (from `offset`) replaced.
private func variant(_ source: String, every: Int, offset: Int = 0) -> String {
    source.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
        .map { $0.offset % every == offset ? "a changed line \($0.offset) with other words in it" : String($0.element) }.joined(separator: "\n")
}

final class DedupTests: XCTestCase {
    /// MinHash's estimate against Python's exact Jaccard of the n-gram sets: within 5 standard deviations of a
    /// mean of 128 Bernoulli(J) matches, sqrt(J(1-J)/128) (at most 0.044), for similarities from 0 to 1.
    /// Each signature value is min over the text's distinct n-grams of (a h + b) mod (2^61 - 1), exactly: checked
    /// against 128-bit division, for every number of permutations a SIMD block can leave over.
    func testSignatureIsExactModuloThePrime() throws {
        let text = try Data(contentsOf: packageRoot.appendingPathComponent("data/sample/art_of_war.txt"))
        let signals = QualitySignals(utf8: [UInt8](text.prefix(40_000)))
        for hashes in [128, 117, 3] {
            let minHash = MinHash(ngram: 5, hashes: hashes)
            let grams = Set(minHash.shingles(signals))
            let expected = zip(minHash.a, minHash.b).map { a, b in
                grams.map { g -> UInt64 in
                    let (hi, lo) = a.multipliedFullWidth(by: UInt64(g))
                    let (sumLo, carry) = lo.addingReportingOverflow(b)
                    return MinHash.prime.dividingFullWidth((hi + (carry ? 1 : 0), sumLo)).remainder
                }.min()!
            }
            XCTAssertEqual(minHash.signature(signals), expected, "\(hashes) permutations")
        }
    }

    func testMinHashEstimatesJaccard() throws {
        let dir = try temporaryFolder(self)
        let base = try String(contentsOf: try requireCorpusDev().appendingPathComponent("walden.txt"), encoding: .utf8)
        let other = try String(contentsOf: corpusDev.appendingPathComponent("dracula.txt"), encoding: .utf8)
        let texts = [base, variant(base, every: 50), variant(base, every: 10), variant(base, every: 4), variant(base, every: 2), other]
        var paths: [String] = []
        for (k, t) in texts.enumerated() {
            let url = dir.appendingPathComponent("\(k).txt")
            try t.write(to: url, atomically: true, encoding: .utf8)
            paths.append(url.path)
        }
        let pairs = (1..<texts.count).flatMap { [paths[0], paths[$0]] }
        let r = try runProcess("/usr/bin/env", ["python3", "-c", exactJaccard] + pairs)
        XCTAssertEqual(r.status, 0, r.err)
        let exact = r.out.split(separator: "\n").compactMap { Double($0) }
        XCTAssertEqual(exact.count, texts.count - 1)
        let minhash = MinHash(ngram: 13, hashes: 128)
        let signature = { (t: String) in minhash.signature(QualitySignals(utf8: Array(t.utf8))) }
        let s0 = signature(base)
        XCTAssertEqual(MinHash.jaccard(s0, signature(base)), 1)
        for (k, j) in exact.enumerated() {
            let estimate = MinHash.jaccard(s0, signature(texts[k + 1]))
            let bound = 5 * (j * (1 - j) / 128).squareRoot() + 1e-9
            XCTAssertLessThanOrEqual(abs(estimate - j), bound, "text \(k + 1): exact \(j), estimate \(estimate)")
        }
        XCTAssertGreaterThan(exact[0], 0.85, "the 2% variant is a near copy")
        XCTAssertLessThan(exact[4], 0.01, "another book shares almost no 13-gram")
    }

    /// A corpus of books with an exact copy (another id), a near copy (2% of lines changed) and unrelated books,
    /// the copies after their originals in input order, one copy of a copy.
    func dedupCorpus() throws -> URL {
        let dir = try temporaryFolder(self).appendingPathComponent("corpus")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let corpus = try requireCorpusDev()
        let book = { (n: String) in try String(contentsOf: corpus.appendingPathComponent(n + ".txt"), encoding: .utf8) }
        let files = [("a", try book("beowulf")), ("b", try book("great_gatsby")), ("c", try book("beowulf")),
                     ("d", variant(try book("great_gatsby"), every: 50, offset: 7)), ("e", try book("frankenstein")),
                     ("f", try book("art_of_war")), ("g", variant(try book("great_gatsby"), every: 50, offset: 7)), ("h", try book("dubliners"))]
        for (name, text) in files { try text.write(to: dir.appendingPathComponent(name + ".txt"), atomically: true, encoding: .utf8) }
        return dir
    }

    func testCopiesDroppedFirstSeenKept() throws {
        let corpus = try dedupCorpus()
        for mode in [DedupSettings.Mode.near, .exact] {
            let out = try temporaryFolder(self).appendingPathComponent("ds")
            _ = try preprocess([corpus], out) { $0.dedup = DedupSettings(mode: mode) }
            let build = try XCTUnwrap(try DatasetIndex.load(from: out).build)
            let lines = try String(contentsOf: out.appendingPathComponent("duplicates.jsonl"), encoding: .utf8).split(separator: "\n")
                .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            let pairs = lines.map { "\($0["kept"]!) \($0["dropped"]!)" }
            let kept = Set(try readDataset(out).map(\.source.document))
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent(".dedup-survivors").path))
            XCTAssertEqual(build.options["dedup.mode"], mode.rawValue)
            XCTAssertEqual(build.funnel?.suffix(3).map { $0 }, ["dropped_too_few_tokens", "dropped_duplicate", "kept"])
            if mode == .near {
                XCTAssertEqual(pairs, ["a.txt c.txt", "b.txt d.txt", "b.txt g.txt"])
                XCTAssertEqual(lines[0]["jaccard"] as? Double, 1)
                XCTAssertGreaterThan(lines[1]["jaccard"] as! Double, 0.8)
                XCTAssertEqual(kept, ["a.txt", "b.txt", "e.txt", "f.txt", "h.txt"])
                XCTAssertEqual(build.options["dedup.ngram"], "13")
                XCTAssertEqual(build.counts["dropped_duplicate"], 3)
                // No kept pair is similar (Python's exact Jaccard of the 13-gram sets).
                let names = kept.sorted()
                let pairs = names.indices.flatMap { i in names[(i + 1)...].flatMap { [corpus.appendingPathComponent(names[i]).path, corpus.appendingPathComponent($0).path] } }
                let r = try runProcess("/usr/bin/env", ["python3", "-c", exactJaccard] + pairs)
                XCTAssertEqual(r.status, 0, r.err)
                XCTAssertTrue(r.out.split(separator: "\n").allSatisfy { Double($0)! < 0.1 }, r.out)
            } else {
                // Exact: only byte-equal texts; d and g are equal to each other.
                XCTAssertEqual(pairs, ["a.txt c.txt", "d.txt g.txt"])
                XCTAssertEqual(kept, ["a.txt", "b.txt", "d.txt", "e.txt", "f.txt", "h.txt"])
            }
        }
    }

    /// The distributed plan, alone in this process (one rank), decides what the single run's `Deduplicator` decides,
    /// line for line, over synthetic candidates with exact, near and chained copies; chains included: a copy whose
    /// only collision is with a dropped copy is kept by both.
    func testPlanReplaysTheSingleRun() throws {
        let settings = DedupBenchmark.settings
        let candidates = (0..<5000).map { DedupPlan.Candidate(part: $0 / 1000, ordinal: $0, id: "doc-\($0)", fingerprint: DedupBenchmark.signature($0)) }
        let single = Deduplicator(settings)
        var lines: [UInt8] = [], drops: [Int: String] = [:], seen = Set<UInt64>(), chained = 0
        for c in candidates {
            let keys = settings.bandKeys(c.fingerprint)
            if let hit = single.check(id: c.id, fingerprint: c.fingerprint) {
                lines += duplicateLine(kept: hit.kept, dropped: c.id, jaccard: hit.jaccard)
                drops[c.ordinal] = hit.kept
            } else if keys.contains(where: seen.contains) {
                chained += 1
            }
            for (b, k) in keys.enumerated() { seen.insert(k ^ UInt64(b) << 60) }
        }
        let written = try temporaryFolder(self).appendingPathComponent("duplicates.jsonl")
        let plan = try DedupPlan(settings: settings, mine: candidates, world: .shared, duplicates: written)
        XCTAssertEqual(try [UInt8](Data(contentsOf: written)), lines)
        XCTAssertEqual(plan.drops.mapValues(\.kept), drops)
        XCTAssertGreaterThan(drops.count, 500)
        XCTAssertGreaterThan(chained, 10, "kept documents that collide only with dropped ones")
    }

    /// `bench dedup` (the plan preprocess runs under mpirun) decides the same on 1, 2 and 4 ranks, and with every
    /// message cut into rounds of 256 bytes.
    func testPlanIsTheSameOnAnyRanks() throws {
        let mpirun = "/usr/bin/mpirun"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: mpirun), "Open MPI's mpirun is not installed")
        let args = ["bench", "dedup", "--candidates", "30000"]
        func digest(_ r: (status: Int32, out: String, err: String)) -> String {
            XCTAssertEqual(r.status, 0, r.err)
            return r.out.split(separator: "\n").first.map(String.init) ?? ""
        }
        let one = digest(try runProcess(longcrawlBinary, args))
        XCTAssertTrue(one.hasPrefix("dedup: 30000 candidates on 1 rank(s): "), one)
        var small = ProcessInfo.processInfo.environment
        small["LONGCRAWL_MESSAGE_BYTES"] = "256"
        for (ranks, environment) in [(2, nil), (4, nil), (2, small)] {
            let mpi = ["--allow-run-as-root", "--oversubscribe", "-np", String(ranks), longcrawlBinary]
            let got = digest(try runProcess(mpirun, mpi + args, environment: environment))
            XCTAssertEqual(got, one.replacingOccurrences(of: "on 1 rank(s)", with: "on \(ranks) rank(s)"), "\(ranks) ranks, \(environment == nil ? "64 MiB" : "256-byte") messages")
        }
    }

    /// The dedup stage's peak memory per rank shrinks with the ranks: over 10^6 candidates each of 4 ranks holds at
    /// most 35% of what one rank holds (a quarter of the signatures and keys, plus what every rank holds: the
    /// collisions, the decisions and the process itself).
    func testMemoryPerRankShrinksWithRanks() throws {
        let mpirun = "/usr/bin/mpirun"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: mpirun), "Open MPI's mpirun is not installed")
        let args = ["bench", "dedup", "--candidates", "1000000"]
        func peaks(_ r: (status: Int32, out: String, err: String)) throws -> [Double] {
            XCTAssertEqual(r.status, 0, r.err)
            let line = try XCTUnwrap(r.out.split(separator: "\n").first { $0.hasPrefix("peak memory per rank: ") })
            return line.dropFirst("peak memory per rank: ".count).split(separator: ",").map { field in
                let parts = field.split(separator: " ")
                let unit = ["B": 1.0, "kB": 1e3, "MB": 1e6, "GB": 1e9][String(parts[1])]!
                return Double(parts[0])! * unit
            }
        }
        let one = try peaks(try runProcess(longcrawlBinary, args))
        let four = try peaks(try runProcess(mpirun, ["--allow-run-as-root", "--oversubscribe", "-np", "4", longcrawlBinary] + args))
        XCTAssertEqual(one.count, 1)
        XCTAssertEqual(four.count, 4)
        XCTAssertGreaterThan(one[0], 1e9, "10^6 signatures of 1 KiB")
        XCTAssertLessThanOrEqual(four.max()!, 0.35 * one[0], "peaks \(four) against \(one[0])")
    }

    /// The planted corpus plus a chain (a near copy of a near copy of Dubliners) under `mpirun -np 2` and `-np 4`
    /// (messages of 4 KiB, so every exchange takes rounds): the same windows, counters and duplicates.jsonl as one process.
    func testRanksDedupGlobally() throws {
        let mpirun = "/usr/bin/mpirun"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: mpirun), "Open MPI's mpirun is not installed")
        let corpus = try dedupCorpus()
        let dubliners = try String(contentsOf: corpusDev.appendingPathComponent("dubliners.txt"), encoding: .utf8)
        let near = variant(dubliners, every: 40, offset: 3)
        try near.write(to: corpus.appendingPathComponent("i.txt"), atomically: true, encoding: .utf8)
        try variant(near, every: 40, offset: 23).write(to: corpus.appendingPathComponent("j.txt"), atomically: true, encoding: .utf8)
        let dir = try temporaryFolder(self)
        let args = ["preprocess", corpus.path, "--dedup", "near", "--gopher", "--shard-windows", "2", "--heldout-fraction", "0.3"]
        let one = dir.appendingPathComponent("one")
        let a = try runProcess(longcrawlBinary, args + ["--out", one.path])
        XCTAssertEqual(a.status, 0, a.err)
        let windows = { (d: URL) in try readDataset(d).map { "\($0.split) \($0.source.document) \($0.tokens.hashValue)" }.sorted() }
        var environment = ProcessInfo.processInfo.environment
        environment["LONGCRAWL_MESSAGE_BYTES"] = "4096"
        for ranks in [2, 4] {
            let out = dir.appendingPathComponent("ranks-\(ranks)")
            let b = try runProcess(mpirun, ["--allow-run-as-root", "--oversubscribe", "-np", String(ranks), longcrawlBinary] + args + ["--out", out.path],
                                   environment: environment)
            XCTAssertEqual(b.status, 0, b.err)
            XCTAssertEqual(try windows(out), try windows(one), "\(ranks) ranks")
            XCTAssertEqual(try DatasetIndex.load(from: out).build?.counts, try DatasetIndex.load(from: one).build?.counts, "\(ranks) ranks")
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("duplicates.jsonl")), try Data(contentsOf: one.appendingPathComponent("duplicates.jsonl")), "\(ranks) ranks")
        }
        // Both copies of Beowulf fail Gopher's no-alpha-words rule (after the tokenizer, before dedup); the two
        // near copies of Gatsby and the near copy of Dubliners are duplicates.
        let counts = try XCTUnwrap(DatasetIndex.load(from: one).build?.counts)
        XCTAssertEqual(counts["dropped_no_alpha_words"], 2)
        XCTAssertGreaterThanOrEqual(counts["dropped_duplicate"], 3)
    }

    /// One rank of a 2-rank dedup run killed with SIGKILL once a rank has written a shard: mpirun stops the other
    /// within seconds, naming the killed rank, and `--resume` on 2 ranks gives what one process gives,
    /// duplicates.jsonl included.
    func testKilledRankStopsTheRunAndResumes() throws {
        let mpirun = "/usr/bin/mpirun"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: mpirun), "Open MPI's mpirun is not installed")
        let corpus = try dedupCorpus()
        let dir = try temporaryFolder(self)
        let args = ["preprocess", corpus.path, "--dedup", "near", "--shard-windows", "1", "--heldout-fraction", "0.3", "--workers", "1"]
        let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
        XCTAssertEqual(try runProcess(longcrawlBinary, args + ["--out", one.path]).status, 0)
        let mpi = ["--allow-run-as-root", "--oversubscribe", "-np", "2", longcrawlBinary] + args + ["--out", two.path]
        let run = Process(), log = dir.appendingPathComponent("mpirun.err")
        run.executableURL = URL(fileURLWithPath: mpirun)
        run.arguments = mpi
        XCTAssertTrue(FileManager.default.createFile(atPath: log.path, contents: nil))
        run.standardError = try FileHandle(forWritingTo: log)
        run.standardOutput = FileHandle.nullDevice
        try run.run()
        func shardsDone() -> Int {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: two.path)) ?? []
            return names.filter { $0.hasPrefix("rank-") }.compactMap { try? DatasetIndex.load(from: two.appendingPathComponent($0)).shards.count }.max() ?? 0
        }
        while run.isRunning && shardsDone() < 1 { usleep(1000) }
        XCTAssertTrue(run.isRunning, "the run ended before a rank could be killed")
        let ranks = try runProcess("/usr/bin/pgrep", ["-P", String(run.processIdentifier)]).out.split(separator: "\n").compactMap { Int32($0) }
        XCTAssertEqual(ranks.count, 2, "mpirun's children")
        let killed = Date()
        kill(try XCTUnwrap(ranks.last), SIGKILL)
        while run.isRunning && Date().timeIntervalSince(killed) < 30 { usleep(10_000) }
        XCTAssertFalse(run.isRunning, "the surviving rank still runs 30 s after the kill")
        if run.isRunning { _ = try runProcess("/usr/bin/pkill", ["-KILL", "-f", two.path]) }
        run.waitUntilExit()
        XCTAssertLessThan(Date().timeIntervalSince(killed), 10)
        XCTAssertNotEqual(run.terminationStatus, 0)
        let said = try String(contentsOf: log, encoding: .utf8)
        XCTAssertTrue(said.contains("signal 9"), said)
        let resumed = try runProcess(mpirun, mpi + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        let windows = { (d: URL) in try readDataset(d).map { "\($0.split) \($0.source.document) \($0.tokens.hashValue)" }.sorted() }
        XCTAssertEqual(try windows(two), try windows(one))
        XCTAssertEqual(try Data(contentsOf: two.appendingPathComponent("duplicates.jsonl")), try Data(contentsOf: one.appendingPathComponent("duplicates.jsonl")))
    }

    /// SIGKILL between shards and `--resume`: the same bytes, duplicates.jsonl included (the survivors log
    /// restores the dedup index at the resume point), with Gopher's rules after the tokenizer's drop.
    func testResumeAfterSIGKILLWithDedup() throws {
        let corpus = try dedupCorpus()
        try assertResumesAfterSIGKILL(self, ["preprocess", corpus.path, "--dedup", "near", "--gopher", "--shard-windows", "1", "--heldout-fraction", "0.3", "--workers", "1"],
                                      killAfterShards: [1, 2, 3])
    }

    /// A resume with other dedup settings is refused, naming the option.
    func testResumeWithOtherDedupRefused() throws {
        let corpus = try dedupCorpus()
        let out = try temporaryFolder(self).appendingPathComponent("ds")
        _ = try preprocess([corpus], out) { $0.dedup = DedupSettings(mode: .near) }
        XCTAssertThrowsError(try preprocess([corpus], out, { $0.dedup = DedupSettings(mode: .exact) }, mode: .resume)) {
            XCTAssertTrue("\($0)".contains("dedup.mode was near, now exact"), "\($0)")
        }
    }
}
