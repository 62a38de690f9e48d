import Foundation
@testable import Shards
import Support
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
        let scratch = dir.appendingPathComponent("scratch")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        for ranks in [2, 4] {
            let out = dir.appendingPathComponent("ranks-\(ranks)")
            // On 4 ranks, the first passes kept in a folder of their own (--scratch), removed when done.
            let b = try runProcess(mpirun, ["--allow-run-as-root", "--oversubscribe", "-np", String(ranks), longcrawlBinary] + args + ["--out", out.path]
                                   + (ranks == 4 ? ["--scratch", scratch.path] : []), environment: environment)
            XCTAssertEqual(b.status, 0, b.err)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), [])
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

    /// One rank of a 2-rank dedup run killed with SIGKILL in its first pass (its scratch begun; the writing pass
    /// replays it in moments, so a kill there cannot be timed from outside: `testReplayResumesBetweenShards`):
    /// mpirun stops the other within seconds, naming the killed rank, and `--resume` on 2 ranks gives what one
    /// process gives, duplicates.jsonl included.
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
        let scratch = two.appendingPathComponent(".rank-1-of-2.scratch.tmp")
        while run.isRunning && ((try? FileManager.default.attributesOfItem(atPath: scratch.path)[.size] as? Int) ?? 0) == 0 { usleep(1000) }
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

    /// The first pass's scratch gives back every outcome as written, a document's tokens cut to the windows it
    /// gives; a scratch cut short or corrupt is a one-line error naming it, never a wrong replay.
    func testScratchReplaysItsOutcomes() throws {
        let dir = try temporaryFolder(self), url = dir.appendingPathComponent(".rank-0-of-2.scratch.tmp")
        let tokens = (0..<(2 * windowLength + 5)).map { UInt16(truncatingIfNeeded: $0 &* 40_503 >> 3) }
        let pieces = [
            Outcomes(records: [.dropped(DroppedRecord(ordinal: 0, origin: "a.jsonl:1", reason: .unreadable, detail: "not JSON", bytes: nil)),
                               .document(.init(ordinal: 1, id: "d1", part: 3, textBytes: 999_999, tokens: tokens, fingerprint: [1, 2])),
                               .document(.init(ordinal: 2, id: "é/2", part: 3, textBytes: 10, tokens: [1, 2, 3], fingerprint: []))],
                     progressBytes: 12_345),
            Outcomes(records: [.dropped(DroppedRecord(ordinal: 3, origin: "b.txt", reason: DropReason("gopher_x"), detail: "", bytes: 77, fatal: true))],
                     progressBytes: 20_000),
        ]
        func describe(_ o: Outcome) -> String {
            switch o {
            case .dropped(let d): return "\(d.ordinal) \(d.origin) \(d.reason) \(d.detail) \(String(describing: d.bytes)) \(d.fatal)"
            case .document(let d): return "\(d.ordinal) \(d.id) \(d.part) \(d.textBytes) \(d.tokens.count) \(d.tokens.hashValue)"
            }
        }
        let writer = try ScratchWriter(url)
        for piece in pieces { try writer.append(piece, windowsPerDocument: 1) }
        let reader = try ScratchReader(url)
        var expected = pieces.flatMap(\.records).map(describe)
        expected[1] = "1 d1 3 999999 \(windowLength) \(Array(tokens.prefix(windowLength)).hashValue)"
        expected[2] = "2 é/2 3 10 0 \([UInt16]().hashValue)"
        var got: [String] = [], progress: [Int] = []
        while let piece = try reader.next() { got += piece.records.map(describe); progress.append(piece.progressBytes) }
        XCTAssertEqual(got, expected)
        XCTAssertEqual(progress, [12_345, 20_000])
        XCTAssertEqual(reader.records, 4)

        let whole = try Data(contentsOf: url)
        for (bytes, fault) in [(whole.dropLast(3), "truncated frame"), (whole.prefix(whole.count - 2) + Data([0, 0]), "corrupt frame")] {
            try bytes.write(to: url)
            let replay = try ScratchReader(url)
            XCTAssertNoThrow(try replay.next())
            XCTAssertThrowsError(try replay.next()) { XCTAssertEqual("\($0)", "\(url.path): \(fault)") }
        }
    }

    /// The writing pass of a distributed dedup (the plan, then the first pass's scratch replayed) stopped after its
    /// second shard and resumed (a new first pass, the replay from the resume point) gives the single run's bytes.
    func testReplayResumesBetweenShards() throws {
        struct Killed: Error {}
        let corpus = try dedupCorpus(), dir = try temporaryFolder(self)
        let reference = dir.appendingPathComponent("one"), out = dir.appendingPathComponent("replayed")
        _ = try preprocess([corpus], reference) { $0.dedup = DedupSettings(mode: .near); $0.shardWindows = 1 }
        let duplicates = dir.appendingPathComponent("duplicates.jsonl"), scratch = dir.appendingPathComponent(".scratch.tmp")
        var stopped = false
        for mode in [OutputMode.fresh, .resume] {
            var options = PreprocessOptions()
            (options.shardWindows, options.heldoutFraction, options.dedup) = (1, 0.3, DedupSettings(mode: .near))
            let p = Preprocessor(inputs: [corpus.path], output: out, options: options, tokenizer: gpt2)
            p.warn = { _ in }
            p.plannedDuplicates = try DedupPlan(settings: options.dedup!, mine: try p.dedupCandidates(scratch: try ScratchWriter(scratch)),
                                                world: .shared, duplicates: duplicates).drops
            p.replay = scratch
            if mode == .fresh { p.afterShard = { if $0.shards.count == 2 { throw Killed() } } }
            do { _ = try p.run(mode: mode) } catch is Killed { stopped = true }
        }
        XCTAssertTrue(stopped)
        try FileManager.default.moveItem(at: duplicates, to: out.appendingPathComponent("duplicates.jsonl"))
        try FileManager.default.removeItem(at: scratch)
        try assertSameDataset(reference, out)
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
