import Foundation
@testable import Shards
@testable import Support
import TestSupport
import XCTest
@testable import Preprocess

/// The web-scale path: documents dropped from their length before anything else, JSON read without Foundation,
/// parts read on several threads, document rules as stages with their own counters.
final class WebScaleTests: XCTestCase {
    /// Every reader (gzip JSONL with and without \u escapes, parquet) on a web-shaped corpus: each window equals
    /// tiktoken's ids at its offset, every document of a window's worth of tokens is kept, the rest are counted as
    /// too short or too few tokens, and reading on one thread or three gives the same bytes.
    func testWebCorpusWindowsEqualTiktoken() throws {
        let (web, ids, long) = try makeWebCorpus(self)
        XCTAssertGreaterThanOrEqual(long, 3)
        let keep = ids.filter { $0.value.count >= windowLength }
        // By id hash; if none hashes to heldout, the last kept document (ids count up in input order) is the heldout set.
        let hashed = Set(keep.keys.filter { heldoutScore(id: $0) < 0.3 })
        let heldout = hashed.isEmpty ? [keep.keys.max()!] : hashed
        for (kind, textField, idField) in [("jsonl", "raw_content", "doc_id"), ("parquet", "text", "id")] {
            for format in ShardFormat.allCases {
                let out = try temporaryFolder(self), one = try temporaryFolder(self)
                let configure = { (o: inout PreprocessOptions) in
                    o.format = format; o.textField = textField; o.idField = idField; o.windowsPerDocument = nil
                }
                let summary = try preprocess([web.appendingPathComponent(kind)], out) { configure(&$0); $0.workers = 3 }
                _ = try preprocess([web.appendingPathComponent(kind)], one) { configure(&$0); $0.workers = 1 }
                try assertSameDataset(out, one)
                let c = summary.index.build!.counts
                XCTAssertEqual(c["kept"], keep.count, kind)
                XCTAssertEqual(c["dropped_too_few_tokens"], long - keep.count, kind)
                XCTAssertEqual(c["records"], c["kept"] + c["dropped_too_short"] + c["dropped_too_few_tokens"], kind)
                XCTAssertEqual(c.lengthsRead.reduce(0, +), c["records"], kind)
                XCTAssertEqual(c.lengthsKept.reduce(0, +), c["kept"], kind)
                XCTAssertEqual(summary.index.build?.funnel?.first, "records")
                var windows: [String: Int] = [:]
                for w in try readDataset(out) {
                    guard let expected = keep[w.source.document] else { XCTFail("\(w.source.document) should not give windows"); continue }
                    XCTAssertEqual(w.tokens, Array(expected[w.source.offset..<(w.source.offset + windowLength)]), "\(kind) \(w.source)")
                    XCTAssertEqual(w.split, heldout.contains(w.source.document) ? .heldout : .train, w.source.document)
                    windows[w.source.document, default: 0] += 1
                }
                XCTAssertEqual(windows, keep.mapValues { $0.count / windowLength }, kind)
            }
        }
    }

    /// A text of 65,535 bytes cannot give a window and never reaches the tokenizer, not even when its escaped JSON
    /// is longer than that; one of 65,536 bytes that is 65,536 tokens (`a` and `.` alternate: one token each) is kept.
    func testShortTextsAreDroppedBeforeTokenizing() throws {
        let dir = try temporaryFolder(self)
        let file = dir.appendingPathComponent("docs.jsonl")
        let exact = String(repeating: "a.", count: windowLength / 2)
        let lines = [
            #"{"id": "short", "text": "\#(String(exact.dropLast()))"}"#,
            // 40,000 newlines: 80,000 bytes escaped, 40,000 decoded.
            #"{"id": "escaped", "text": "\#(String(repeating: "\\n", count: 40_000))"}"#,
            #"{"id": "exact", "text": "\#(exact)"}"#,
        ]
        try Data(lines.joined(separator: "\n").utf8).write(to: file)
        final class Seen: @unchecked Sendable { var ids: [String] = []; let lock = NSLock() }
        let seen = Seen()
        var options = PreprocessOptions()
        options.heldoutFraction = 0
        let p = Preprocessor(inputs: [file.path], output: dir.appendingPathComponent("out"), options: options, tokenizer: gpt2)
        p.beforeTokenizing = { d in seen.lock.lock(); seen.ids.append(d.id); seen.lock.unlock() }
        let summary = try p.run(mode: .fresh)
        XCTAssertEqual(seen.ids, ["exact"])
        let c = summary.index.build!.counts
        XCTAssertEqual(c["dropped_too_short"], 2)
        XCTAssertEqual(c["kept"], 1)
        XCTAssertEqual(c.lengthsRead, [Int](repeating: 0, count: 15) + [2, 1], "65,535 and 40,000 bytes in bin 15, 65,536 in bin 16")
        XCTAssertEqual(c.lengthsKept.last, 1)
        let windows = try readDataset(dir.appendingPathComponent("out"))
        XCTAssertEqual(windows.map(\.source.document), ["exact"])
        XCTAssertEqual(windows[0].tokens, Array([UInt16]([64, 13]).repeated(windowLength / 2)))
    }

    /// A rule plugged into the document stage: its counter in index.json and in the funnel's order, its options in
    /// the build record, and a `--resume` with other options refused naming the difference.
    func testADocumentRuleIsAStage() throws {
        struct DropIDs: DocumentRule {
            var containing: String
            var name: String { "test_ids" }
            var options: [String: String] { ["containing": containing] }
            func keeps(_ document: Document) -> Bool { !document.id.contains(containing) }
        }
        let dir = try temporaryFolder(self)
        let book = try Data(contentsOf: packageRoot.appendingPathComponent("data/sample/dracula.txt"))
        for name in ["keep-1.txt", "drop-2.txt", "keep-3.txt"] { try book.write(to: dir.appendingPathComponent(name)) }
        let out = try temporaryFolder(self)
        let summary = try preprocess([dir], out) { $0.rules = [DropIDs(containing: "drop")] }
        let build = summary.index.build!
        XCTAssertEqual(build.counts["dropped_test_ids"], 1)
        XCTAssertEqual(build.counts["kept"], 2)
        XCTAssertEqual(build.options["test_ids.containing"], "drop")
        XCTAssertEqual(build.funnel, ["records", "dropped_unreadable", "dropped_empty", "dropped_too_short", "dropped_test_ids",
                                      "dropped_too_few_tokens", "kept"])
        XCTAssertEqual(Set(try readDataset(out).map(\.source.document)), ["keep-1.txt", "keep-3.txt"])
        XCTAssertThrowsError(try preprocess([dir], out, { $0.rules = [DropIDs(containing: "keep")] }, mode: .resume)) {
            XCTAssertTrue("\($0)".contains("test_ids.containing was drop, now keep"), "\($0)")
        }
        XCTAssertThrowsError(try preprocess([dir], try temporaryFolder(self)) { $0.rules = [DropIDs(containing: "a"), DropIDs(containing: "b")] }) {
            XCTAssertTrue("\($0)".contains("two document stages are named 'test_ids'"), "\($0)")
        }
        // `inspect` prints the funnel in that order, with the rule's drop.
        let r = try runProcess(longcrawlBinary, ["inspect", out.path, "--lines", "0"])
        XCTAssertEqual(r.status, 0, r.err)
        let order = ["records", "dropped_test_ids", "kept"].map { r.out.range(of: "           " + $0)?.lowerBound }
        XCTAssertTrue(order.allSatisfy { $0 != nil } && order[0]! < order[1]! && order[1]! < order[2]!, r.out)
    }

    /// Index files written before the document stage (fixed counter names, no funnel) still load and say the same.
    func testOldIndexCountersLoad() throws {
        let json = #"{"records": 7, "kept": 4, "dropped_too_short": 1, "dropped_empty": 1, "dropped_unreadable": 1, "windows_train": 3, "windows_heldout": 1}"#
        let c = try JSONDecoder().decode(BuildCounts.self, from: Data(json.utf8))
        XCTAssertEqual([c["records"], c["kept"], c["dropped_too_short"], c["dropped_empty"], c["dropped_unreadable"]], [7, 4, 1, 1, 1])
        XCTAssertEqual(c.windows, [.train: 3, .heldout: 1])
        let again = try JSONDecoder().decode(BuildCounts.self, from: try JSONEncoder().encode(c))
        XCTAssertEqual(again, c)
        XCTAssertThrowsError(try JSONDecoder().decode(BuildCounts.self, from: Data(#"{"windows_test": 3}"#.utf8)))
    }
}

/// Writes a web-shaped corpus (tools/make_web_corpus.py, a whole book every 200 documents: 3 gzip JSONL files, half of them with every non-ASCII
/// character escaped, and 3 parquet files) cut from the development corpus, else data/sample, and each long
/// document's text for tiktoken; returns the corpus folder, tiktoken's ids of each long document by id, and how
/// many documents have at least 65,536 bytes.
func makeWebCorpus(_ test: XCTestCase, mb: Double = 4) throws -> (dir: URL, ids: [String: [UInt16]], long: Int) {
    let books = hasCorpusDev ? corpusDev : packageRoot.appendingPathComponent("data/sample")
    let dir = try temporaryFolder(test)
    let expect = dir.appendingPathComponent("expect"), idsDir = dir.appendingPathComponent("ids")
    let r = try runProcess("/usr/bin/env", ["python3", packageRoot.appendingPathComponent("tools/make_web_corpus.py").path, books.path,
                                            dir.appendingPathComponent("web").path, "--mb", String(mb), "--files", "3", "--book-every", "200", "--expect", expect.path])
    XCTAssertEqual(r.status, 0, r.err)
    let summary = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any]
    let names = try FileManager.default.contentsOfDirectory(atPath: expect.path).sorted()
    let t = try runProcess("/usr/bin/env", ["python3", packageRoot.appendingPathComponent("tools/tiktoken_ids.py").path, idsDir.path]
                            + names.map { expect.appendingPathComponent($0).path })
    XCTAssertEqual(t.status, 0, t.err)
    var ids: [String: [UInt16]] = [:]
    for name in names {
        let data = try Data(contentsOf: idsDir.appendingPathComponent(name + ".ids"))
        ids[String(name.dropLast(4))] = data.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
    }
    return (dir.appendingPathComponent("web"), ids, summary["long_documents"] as! Int)
}

extension Array {
    func repeated(_ n: Int) -> [Element] { Array((0..<n).map { _ in self }.joined()) }
}
