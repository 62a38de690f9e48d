import Foundation
@testable import Shards
@testable import Support
@testable import Tokenizer
import TestSupport
import XCTest
@testable import Preprocess

let gpt2: GPT2Tokenizer = try! GPT2Tokenizer(directory: packageRoot.appendingPathComponent("data/gpt2"))

/// Copies corpus-dev books into a fresh folder (a skip without the development corpus).
func bookFolder(_ test: XCTestCase, _ names: [String]) throws -> URL {
    let dir = try temporaryFolder(test).appendingPathComponent("corpus")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let corpus = try requireCorpusDev()
    for n in names { try FileManager.default.copyItem(at: corpus.appendingPathComponent(n + ".txt"), to: dir.appendingPathComponent(n + ".txt")) }
    return dir
}

/// Ids hashed at 0.3: frankenstein (0.27) and meditations (0.09) go to heldout, the others to train.
let someBooks = ["beowulf", "great_gatsby", "frankenstein", "art_of_war", "on_liberty", "meditations", "dubliners", "the_prince"]

/// Every window of a dataset as (split, source, tokens), in index order.
func readDataset(_ dir: URL) throws -> [(split: Split, source: WindowSource, tokens: [UInt16])] {
    let index = try DatasetIndex.load(from: dir)
    var out: [(Split, WindowSource, [UInt16])] = []
    for entry in index.shards {
        let reader = try ShardReader(url: dir.appendingPathComponent(entry.file), format: entry.format)
        XCTAssertEqual(reader.windowCount, entry.windows)
        for k in 0..<reader.windowCount {
            var tokens = [UInt16](repeating: 0, count: windowLength)
            try tokens.withUnsafeMutableBufferPointer { try reader.readWindow(k, into: $0) }
            out.append((entry.split, reader.sources[k], tokens))
        }
    }
    return out
}

/// Asserts two dataset folders hold the same files byte for byte and the same index except its timestamp.
func assertSameDataset(_ a: URL, _ b: URL, file: StaticString = #filePath, line: UInt = #line) throws {
    var ia = try DatasetIndex.load(from: a), ib = try DatasetIndex.load(from: b)
    ia.created = ""; ib.created = ""
    XCTAssertTrue(ia.complete && ib.complete, "incomplete dataset", file: file, line: line)
    XCTAssertEqual(ia, ib, "indexes differ", file: file, line: line)
    let names = { (d: URL) in try FileManager.default.contentsOfDirectory(atPath: d.path).sorted() }
    XCTAssertEqual(try names(a), try names(b), "file lists differ", file: file, line: line)
    for entry in ia.shards {
        let da = try Data(contentsOf: a.appendingPathComponent(entry.file)), db = try Data(contentsOf: b.appendingPathComponent(entry.file))
        XCTAssertTrue(da == db, "\(entry.file) differs", file: file, line: line)
    }
    let dupes = "duplicates.jsonl"
    if FileManager.default.fileExists(atPath: a.appendingPathComponent(dupes).path) {
        XCTAssertEqual(try Data(contentsOf: a.appendingPathComponent(dupes)), try Data(contentsOf: b.appendingPathComponent(dupes)), "\(dupes) differs", file: file, line: line)
    }
}

/// Runs the CLI with `args` into a reference folder, then again killed with SIGKILL once the index lists each of
/// `killAfterShards` shards, resumes each with `--resume`: every result must equal the reference byte for byte,
/// and at least one kill must land before the end.
func assertResumesAfterSIGKILL(_ test: XCTestCase, _ args: [String], killAfterShards: [Int], file: StaticString = #filePath, line: UInt = #line) throws {
    XCTAssertTrue(FileManager.default.isExecutableFile(atPath: longcrawlBinary), "no longcrawl binary at \(longcrawlBinary)", file: file, line: line)
    let reference = try temporaryFolder(test).appendingPathComponent("ref")
    let r = try runProcess(longcrawlBinary, args + ["--out", reference.path])
    XCTAssertEqual(r.status, 0, r.err, file: file, line: line)
    var killedMidway = 0
    for killAt in killAfterShards {
        let out = try temporaryFolder(test).appendingPathComponent("ds")
        let p = try launch(longcrawlBinary, args + ["--out", out.path])
        while p.isRunning {
            if let index = try? DatasetIndex.load(from: out), index.shards.count >= killAt { break }
            usleep(1000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        if let index = try? DatasetIndex.load(from: out), !index.complete { killedMidway += 1 }
        // The killed run's lock file stays behind, naming it; the resume takes it over.
        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent(FolderLock.fileName), encoding: .utf8), "\(p.processIdentifier)\n",
                       file: file, line: line)
        let resumed = try runProcess(longcrawlBinary, args + ["--out", out.path, "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.err, file: file, line: line)
        try assertSameDataset(reference, out, file: file, line: line)
    }
    XCTAssertGreaterThan(killedMidway, 0, "no kill landed before the run finished", file: file, line: line)
}

func preprocess(_ inputs: [URL], _ out: URL, _ configure: (inout PreprocessOptions) -> Void = { _ in },
                mode: OutputMode = .fresh, afterShard: ((DatasetIndex) throws -> Void)? = nil) throws -> PreprocessSummary {
    var options = PreprocessOptions()
    options.shardWindows = 2
    options.heldoutFraction = 0.3
    configure(&options)
    let p = Preprocessor(inputs: inputs.map(\.path), output: out, options: options, tokenizer: gpt2)
    p.warn = { _ in }
    p.afterShard = afterShard
    return try p.run(mode: mode)
}

final class PipelineTests: XCTestCase {
    /// Cutting the text before a space that follows printable ASCII never changes the tokens before the cut.
    func testPrefixTokensEqualFullTokens() throws {
        let corpus = try requireCorpusDev()
        for name in ["beowulf", "ulysses", "divine_comedy", "plays"] {
            let text = try readWholeFile(corpus.appendingPathComponent(name + ".txt"))
            let full = text.withUnsafeBufferPointer { gpt2.encode(bytes: $0) }
            // One memo across all calls, as a feed worker carries it from document to document.
            var memo = TokenizerMemo()
            for needed in [1000, windowLength, full.count + 1] {
                for stretch in [997, 1 << 16] {
                    let prefix = encodePrefix(text, needed: needed, tokenizer: gpt2, memo: &memo, stretchBytes: stretch)
                    XCTAssertGreaterThanOrEqual(prefix.count, min(needed, full.count), name)
                    XCTAssertLessThan(prefix.count, needed + stretch, "\(name): at most one stretch past the need")
                    XCTAssertEqual(Array(prefix.prefix(needed)), Array(full.prefix(needed)), "\(name) needed \(needed) stretch \(stretch)")
                }
            }
        }
    }

    /// Documents cut into stretches as the reading threads cut them (`encodePrefix`: before a space that follows
    /// printable ASCII, once a stretch is long enough) give tiktoken's ids of the whole document. Stretches of one
    /// byte cut at every such point: after each printable ASCII byte, before a space that then leads a letter,
    /// digit, symbol, space, newline, contraction, accented letter or emoji; and in the tokenizer's adversarial
    /// fixtures (every whitespace kind, invalid UTF-8) and a book. (`--text-encoding json` stretches:
    /// TextEncodingTests.)
    func testStretchesGiveTiktokensIDs() throws {
        let dir = try temporaryFolder(self)
        var cuts: [UInt8] = []
        for c in UInt8(0x21)..<0x7F { for after in ["a", "1", "!", " ", "\n", "'s", "é", "😀", "\u{3000}"] { cuts += [c, 0x20] + Array(after.utf8) } }
        let fixtures = packageRoot.appendingPathComponent("Tests/TokenizerTests/Fixtures")
        let book = [UInt8](try Data(contentsOf: packageRoot.appendingPathComponent("data/sample").appendingPathComponent(
            try FileManager.default.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("data/sample").path).filter { $0.hasSuffix(".txt") }.sorted()[0])))
        let documents = [cuts, try readWholeFile(fixtures.appendingPathComponent("adversarial.txt")),
                         try readWholeFile(fixtures.appendingPathComponent("invalid-utf8.bin")), Array(book.prefix(200_000))]
        let files = try documents.enumerated().map { k, d -> URL in
            let f = dir.appendingPathComponent("doc\(k).txt")
            try Data(d).write(to: f)
            return f
        }
        let r = try runProcess("/usr/bin/env", ["python3", "tools/tiktoken_ids.py", dir.path] + files.map(\.path), directory: packageRoot)
        XCTAssertEqual(r.status, 0, r.err)
        var memo = TokenizerMemo()
        for (d, f) in zip(documents, files) {
            let want = try Data(contentsOf: dir.appendingPathComponent(f.lastPathComponent + ".ids")).withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
            for stretch in [1, 7, 97, 4096] {
                XCTAssertEqual(encodePrefix(d, needed: .max, tokenizer: gpt2, memo: &memo, stretchBytes: stretch), want, "\(f.lastPathComponent), stretches of \(stretch)")
            }
        }
    }

    /// The split hash is part of the dataset format: pinned values, and about the requested fraction.
    func testHeldoutScoreIsPinnedAndUniform() {
        XCTAssertEqual(heldoutScore(id: "frankenstein.txt"), heldoutScore(id: "frankenstein.txt"))
        let ids = (0..<20000).map { "doc-\($0)" }
        let share = Double(ids.filter { heldoutScore(id: $0) < 0.1 }.count) / Double(ids.count)
        XCTAssertEqual(share, 0.1, accuracy: 0.01)
        XCTAssertNotEqual(heldoutScore(id: "a"), heldoutScore(id: "b"))
        XCTAssertEqual(heldoutScore(id: ""), 0.9576734252420561, accuracy: 1e-15)
        XCTAssertEqual(heldoutScore(id: "frankenstein.txt"), 0.26758468525812296, accuracy: 1e-15)
    }

    /// preprocess -> read back -> tokens equal the document's first tokens and decode to the document's first bytes.
    func testRoundTripBothFormats() throws {
        // Dracula gives three windows, the others one each; frankenstein hashes to heldout.
        let dir = try bookFolder(self, ["beowulf", "frankenstein", "dracula", "great_gatsby"])
        try Data(String(repeating: "A short document. ", count: 500).utf8).write(to: dir.appendingPathComponent("short.txt"))
        try Data().write(to: dir.appendingPathComponent("empty.txt"))
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0xFF]).write(to: dir.appendingPathComponent("image.txt"))
        for format in ShardFormat.allCases {
            for perDoc in [1, nil] as [Int?] {
                let out = try temporaryFolder(self)
                let summary = try preprocess([dir], out) { $0.format = format; $0.windowsPerDocument = perDoc }
                let counts = summary.index.build!.counts
                XCTAssertEqual(counts["records"], 7)
                XCTAssertEqual(counts["kept"], 4)
                XCTAssertEqual(counts["dropped_too_short"], 1)
                XCTAssertEqual(counts["dropped_empty"], 1)
                XCTAssertEqual(counts["dropped_unreadable"], 1)
                let windows = try readDataset(out)
                var seen: [String: Int] = [:]
                for w in windows {
                    let text = try readWholeFile(dir.appendingPathComponent(w.source.document))
                    let full = text.withUnsafeBufferPointer { gpt2.encode(bytes: $0) }
                    XCTAssertEqual(w.tokens, Array(full[w.source.offset..<(w.source.offset + windowLength)]), "\(w.source)")
                    if w.source.offset == 0 {
                        let bytes = gpt2.decode(w.tokens)
                        XCTAssertEqual(Array(text.prefix(bytes.count)), bytes, "decoded window is not the document's start")
                    }
                    XCTAssertEqual(w.split, heldoutScore(id: w.source.document) < 0.3 ? .heldout : .train)
                    seen[w.source.document, default: 0] += 1
                }
                XCTAssertEqual(seen.count, 4)
                if perDoc == 1 { XCTAssertEqual(windows.count, 4) } else {
                    XCTAssertGreaterThan(windows.count, 4)
                    for (doc, n) in seen {
                        let text = try readWholeFile(dir.appendingPathComponent(doc))
                        XCTAssertEqual(n, text.withUnsafeBufferPointer { gpt2.encode(bytes: $0) }.count / windowLength, doc)
                    }
                }
                XCTAssertEqual(verifyAll(out), [])
            }
        }
    }

    func verifyAll(_ dir: URL) -> [String] {
        guard let index = try? DatasetIndex.load(from: dir) else { return ["no index"] }
        return index.shards.flatMap { verifyShard($0, in: dir) }
    }

    func testSameInputsGiveSameBytes() throws {
        let dir = try bookFolder(self, Array(someBooks.prefix(5)))
        for format in ShardFormat.allCases {
            let a = try temporaryFolder(self), b = try temporaryFolder(self)
            _ = try preprocess([dir], a) { $0.format = format; $0.workers = 1 }
            _ = try preprocess([dir], b) { $0.format = format; $0.workers = 2 }
            try assertSameDataset(a, b)
        }
    }

    /// Interrupt after every shard in turn, resume, and compare with an uninterrupted run.
    func testResumeAfterInterruptionAtEveryShard() throws {
        struct Interrupted: Error {}
        let dir = try bookFolder(self, someBooks)
        for format in ShardFormat.allCases {
            let reference = try temporaryFolder(self)
            let shards = try preprocess([dir], reference) { $0.format = format; $0.shardWindows = 1 }.index.shards.count
            XCTAssertGreaterThan(shards, 4)
            for stop in 1..<shards {
                let out = try temporaryFolder(self)
                var done = 0
                XCTAssertThrowsError(try preprocess([dir], out, { $0.format = format; $0.shardWindows = 1 }) { _ in
                    done += 1
                    if done == stop { throw Interrupted() }
                })
                XCTAssertFalse(try DatasetIndex.load(from: out).complete)
                _ = try preprocess([dir], out, { $0.format = format; $0.shardWindows = 1 }, mode: .resume)
                try assertSameDataset(reference, out)
            }
        }
    }

    /// SIGKILL the CLI at several points, resume, compare bytes with an uninterrupted run.
    func testResumeAfterSIGKILL() throws {
        let dir = try bookFolder(self, someBooks + ["cranford", "walden", "dracula", "odyssey"])
        try assertResumesAfterSIGKILL(self, ["preprocess", dir.path, "--format", "zst", "--shard-windows", "1", "--heldout-fraction", "0.3", "--workers", "1"],
                                      killAfterShards: [1, 3, 6])
    }

    /// A file size cap (a full disk, as the writer sees it) fails with one line naming the file; resuming without
    /// the cap completes the same dataset.
    func testFullDiskFailsCleanlyAndResumes() throws {
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: longcrawlBinary), "no longcrawl binary at \(longcrawlBinary)")
        let dir = try bookFolder(self, Array(someBooks.prefix(6)))
        for format in ShardFormat.allCases {
            let args = ["preprocess", dir.path, "--format", format.rawValue, "--shard-windows", "3", "--heldout-fraction", "0.3"]
            let reference = try temporaryFolder(self).appendingPathComponent("ref")
            XCTAssertEqual(try runProcess(longcrawlBinary, args + ["--out", reference.path]).status, 0)
            let out = try temporaryFolder(self).appendingPathComponent("ds")
            // 128 KiB per file: no two-window shard fits. SIGXFSZ ignored, so write(2) fails with EFBIG.
            let capped = "trap '' XFSZ; ulimit -f 128; exec \"$0\" \"$@\""
            let r = try runProcess("/bin/bash", ["-c", capped, longcrawlBinary] + args + ["--out", out.path])
            XCTAssertNotEqual(r.status, 0)
            let errorLines = r.err.split(separator: "\n").filter { !$0.hasPrefix("warning") && !$0.contains("\r") }
            XCTAssertEqual(errorLines.count, 1, r.err)
            XCTAssertTrue(r.err.contains(format.fileName(split: .train, number: 0)) || r.err.contains(format.fileName(split: .heldout, number: 0)), r.err)
            let index = try DatasetIndex.load(from: out)
            XCTAssertFalse(index.complete)
            for name in try FileManager.default.contentsOfDirectory(atPath: out.path) where ![DatasetIndex.fileName, FolderLock.fileName].contains(name) {
                XCTAssertTrue(index.shards.contains { $0.file == name }, "\(name) left behind after the failure")
            }
            let resumed = try runProcess(longcrawlBinary, args + ["--out", out.path, "--resume"])
            XCTAssertEqual(resumed.status, 0, resumed.err)
            try assertSameDataset(reference, out)
        }
    }

    /// The roll is part of the dataset format: pinned values (Python's `roll_shift` gives the same), every column.
    func testRollShiftIsPinnedAndCoversTheWindow() {
        XCTAssertEqual(rollShift(seed: 7, document: "frankenstein.txt", window: 0), 43142)
        XCTAssertEqual(rollShift(seed: 7, document: "frankenstein.txt", window: 1), 37487)
        XCTAssertEqual(rollShift(seed: 0, document: "", window: 0), 35122)
        let rolls = (0..<20000).map { rollShift(seed: 7, document: "doc-\($0)", window: 0) }
        XCTAssertTrue(rolls.allSatisfy { (0..<windowLength).contains($0) })
        XCTAssertEqual(Double(rolls.reduce(0, +)) / Double(rolls.count), Double(windowLength) / 2, accuracy: 600)
        XCTAssertEqual(Double(rolls.filter { $0 < windowLength / 16 }.count) / Double(rolls.count), 1.0 / 16, accuracy: 0.01)
        let other = (0..<20000).map { rollShift(seed: 8, document: "doc-\($0)", window: 0) }
        XCTAssertLessThan(zip(rolls, other).filter { $0 == $1 }.count, 5, "another seed draws other rolls")
    }

    /// With a roll seed each stored window is numpy.roll(the document's window as tiktoken encodes it, k) with k the
    /// recorded roll and `roll_shift`'s (checked in Python); the same seed gives the same bytes, another seed other
    /// rolls of the same windows, and no seed the windows in order with no roll recorded anywhere.
    func testRollStoresNumpyRollOfTiktokensWindows() throws {
        let dir = try bookFolder(self, ["beowulf", "frankenstein", "dracula", "great_gatsby"])
        let check = """
            import sys, numpy as np
            from tiktoken_ids import gpt2_encoding
            from longcrawl import Dataset, roll_shift
            data, books, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
            enc, ds, ids, n, rolled = gpt2_encoding(), Dataset(data), {}, 0, 0
            for name in sorted({s.split for s in ds.shards}):
                split = ds.split(name)
                for i in range(len(split)):
                    doc, offset = split.source(i)
                    k = split.roll(i)
                    assert k == roll_shift(seed, doc, offset // 65536), (doc, offset, k)
                    if doc not in ids:
                        text = open(books + "/" + doc, "rb").read().decode("utf-8", errors="replace")
                        ids[doc] = np.asarray(enc.encode_ordinary(text), dtype=np.uint16)
                    assert np.array_equal(split.read(i), np.roll(ids[doc][offset:offset + 65536], k)), (doc, offset, k)
                    n, rolled = n + 1, rolled + (k != 0)
            print("ok", n, rolled)
            """
        for format in ShardFormat.allCases {
            let out = try temporaryFolder(self)
            let summary = try preprocess([dir], out) { $0.format = format; $0.windowsPerDocument = nil; $0.roll = 7 }
            XCTAssertEqual(summary.index.build?.options["roll"], "7")
            let windows = try readDataset(out)
            XCTAssertEqual(windows.count, 6)
            let r = try runProcess("/usr/bin/env", ["PYTHONPATH=python:tools", "python3", "-c", check, out.path, dir.path, "7"], directory: packageRoot)
            XCTAssertEqual(r.status, 0, r.err)
            XCTAssertEqual(r.out, "ok 6 6\n")

            let again = try temporaryFolder(self)
            _ = try preprocess([dir], again) { $0.format = format; $0.windowsPerDocument = nil; $0.roll = 7; $0.workers = 1 }
            try assertSameDataset(out, again)

            let other = try temporaryFolder(self), plain = try temporaryFolder(self)
            _ = try preprocess([dir], other) { $0.format = format; $0.windowsPerDocument = nil; $0.roll = 8 }
            XCTAssertNil(try preprocess([dir], plain) { $0.format = format; $0.windowsPerDocument = nil }.index.build?.options["roll"])
            func unrolled(_ w: (split: Split, source: WindowSource, tokens: [UInt16])) -> [UInt16] {
                Array(w.tokens[w.source.roll...] + w.tokens[..<w.source.roll])
            }
            let others = try readDataset(other), plains = try readDataset(plain)
            XCTAssertEqual(zip(windows, others).filter { $0.source.roll == $1.source.roll }.count, 0)
            XCTAssertEqual(plains.map(\.source.roll), [Int](repeating: 0, count: 6))
            XCTAssertEqual(windows.map(unrolled), plains.map(\.tokens))
            XCTAssertEqual(others.map(unrolled), plains.map(\.tokens))
            XCTAssertEqual(windows.map { WindowSource(document: $0.source.document, offset: $0.source.offset) }, plains.map(\.source))
        }
    }

    /// Interrupted after a shard or killed, a run with --roll resumes to the same bytes; a resume with another roll
    /// seed (or none) is refused.
    func testResumeWithRollGivesTheSameBytes() throws {
        struct Interrupted: Error {}
        let dir = try bookFolder(self, someBooks)
        for format in ShardFormat.allCases {
            let configure = { (o: inout PreprocessOptions) in o.format = format; o.shardWindows = 1; o.roll = 7 }
            let reference = try temporaryFolder(self)
            _ = try preprocess([dir], reference, configure)
            for stop in [1, 3] {
                let out = try temporaryFolder(self)
                var done = 0
                XCTAssertThrowsError(try preprocess([dir], out, configure) { _ in
                    done += 1
                    if done == stop { throw Interrupted() }
                })
                XCTAssertThrowsError(try preprocess([dir], out, { configure(&$0); $0.roll = 8 }, mode: .resume)) {
                    XCTAssertTrue("\($0)".contains("roll was 7, now 8"), "\($0)")
                }
                XCTAssertThrowsError(try preprocess([dir], out, { configure(&$0); $0.roll = nil }, mode: .resume)) {
                    XCTAssertTrue("\($0)".contains("roll was 7, now unset"), "\($0)")
                }
                _ = try preprocess([dir], out, configure, mode: .resume)
                try assertSameDataset(reference, out)
            }
        }
        try assertResumesAfterSIGKILL(self, ["preprocess", dir.path, "--shard-windows", "1", "--heldout-fraction", "0.3", "--workers", "1", "--roll", "7"],
                                      killAfterShards: [1, 3])
    }

    func testOutputFolderHoldingADatasetIsRefused() throws {
        let dir = try bookFolder(self, Array(someBooks.prefix(2)))
        let out = try temporaryFolder(self)
        _ = try preprocess([dir], out)
        XCTAssertThrowsError(try preprocess([dir], out)) { XCTAssertTrue("\($0)".contains("already holds this dataset"), "\($0)") }
        XCTAssertThrowsError(try preprocess([dir], out, { $0.level = 5 }, mode: .resume)) {
            XCTAssertTrue("\($0)".contains("level was 3, now 5"), "\($0)")
        }
        XCTAssertTrue(try preprocess([dir], out, mode: .resume).alreadyComplete)
        let replaced = try preprocess([dir], out, { $0.level = 5; $0.format = .zst }, mode: .force)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: out.path)),
                       Set(replaced.index.shards.map(\.file) + [DatasetIndex.fileName, FolderLock.fileName]))
        let other = try temporaryFolder(self)
        try Data("x".utf8).write(to: other.appendingPathComponent("notes.txt"))
        XCTAssertThrowsError(try preprocess([dir], other)) { XCTAssertTrue("\($0)".contains("not empty"), "\($0)") }
    }

    func testStrictStopsAtTheFirstUnreadableRecord() throws {
        let dir = try temporaryFolder(self)
        let f = dir.appendingPathComponent("d.jsonl")
        try Data("{\"text\": \"fine\"}\n{broken\n".utf8).write(to: f)
        XCTAssertThrowsError(try preprocess([f], try temporaryFolder(self)) { $0.strict = true }) {
            XCTAssertTrue("\($0)".hasPrefix(f.path + ":2: not JSON"), "\($0)")
        }
    }

    /// A corpus whose documents all hash to train still gets one heldout document: the last kept one.
    func testAtLeastOneHeldoutWindow() throws {
        let dir = try bookFolder(self, Array(someBooks.prefix(3)))
        let out = try temporaryFolder(self)
        let index = try preprocess([dir], out) { $0.heldoutFraction = 1e-12 }.index
        XCTAssertEqual(index.windows(split: .heldout), 1)
        XCTAssertEqual(index.windows(split: .train), 2)
        let heldout = try readDataset(out).filter { $0.split == .heldout }
        XCTAssertEqual(heldout.map(\.source.document), [someBooks.prefix(3).sorted().last! + ".txt"])
        let none = try preprocess([dir], try temporaryFolder(self)) { $0.heldoutFraction = 0 }.index
        XCTAssertEqual(none.windows(split: .heldout), 0)
    }
}
