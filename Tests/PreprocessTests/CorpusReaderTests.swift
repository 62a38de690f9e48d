import Foundation
@testable import Tokenizer
import TestSupport
import XCTest
@testable import Preprocess

final class CorpusReaderTests: XCTestCase {
    func records(_ inputs: [String], idField: String? = "id") throws -> [CorpusRecord] {
        Array(try CorpusReader(inputs: inputs, idField: idField))
    }

    func testFolderOrderIdsAndDrops() throws {
        let dir = try temporaryFolder(self)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try Data("second".utf8).write(to: dir.appendingPathComponent("sub/b.txt"))
        try Data("first é".utf8).write(to: dir.appendingPathComponent("a.txt"))
        try Data().write(to: dir.appendingPathComponent("c.txt"))
        try Data([0x41, 0x42, 0xFF, 0x00, 0x10]).write(to: dir.appendingPathComponent("d.txt"))
        // Kind by content: a text file under any name is a document.
        try Data("notes, read as text".utf8).write(to: dir.appendingPathComponent("notes.md"))
        let r = try records([dir.path])
        XCTAssertEqual(r.count, 5)
        guard case .document(let a) = r[0], case .empty? = dropReason(r[1]), case .unreadable? = dropReason(r[2]),
              case .document(let n) = r[3], case .document(let b) = r[4] else { return XCTFail("unexpected records \(r)") }
        XCTAssertEqual(a.id, "a.txt"); XCTAssertEqual(String(decoding: a.text, as: UTF8.self), "first é")
        XCTAssertEqual(n.id, "notes.md")
        XCTAssertEqual(b.id, "sub/b.txt")
        XCTAssertEqual(r.map(\.ordinal), [0, 1, 2, 3, 4])
        if case .dropped(let d) = r[2] {
            let (origin, detail) = (d.origin, d.detail)
            XCTAssertTrue(origin.hasSuffix("d.txt"))
            XCTAssertTrue(detail.contains("offset 2"), detail)
        }
    }

    func testJSONLRecordsAndBadLines() throws {
        let dir = try temporaryFolder(self)
        let file = dir.appendingPathComponent("docs.jsonl")
        let lines = [
            #"{"id": "x1", "text": "hello"}"#,
            #"{"text": "no id"}"#,
            #"not json at all"#,
            #"{"id": 7, "body": "no text field"}"#,
            "",
            #"{"id": 42, "text": "numeric id\r\nwith CRLF inside"}"#,
        ]
        try Data(lines.joined(separator: "\r\n").utf8).write(to: file)
        let r = try records([file.path])
        XCTAssertEqual(r.count, 6)
        guard case .document(let d0) = r[0], case .document(let d1) = r[1], case .document(let d5) = r[5] else {
            return XCTFail("\(r)")
        }
        XCTAssertEqual(d0.id, "x1"); XCTAssertEqual(d0.text, Array("hello".utf8))
        XCTAssertEqual(d1.id, "docs.jsonl:2")
        XCTAssertEqual(d5.id, "42"); XCTAssertEqual(String(decoding: d5.text, as: UTF8.self), "numeric id\r\nwith CRLF inside")
        XCTAssertEqual(dropReason(r[2]), .unreadable)
        XCTAssertEqual(dropReason(r[3]), .unreadable)
        XCTAssertEqual(dropReason(r[4]), .empty)
        if case .dropped(let d) = r[3] {
            let (origin, detail) = (d.origin, d.detail)
            XCTAssertEqual(origin, file.path + ":4")
            XCTAssertTrue(detail.contains("\"text\""), detail)
        }
        if case .dropped(let d) = r[2] { XCTAssertEqual(d.origin, file.path + ":3") }
    }

    func testZstdJSONLStreamsLikePlainJSONL() throws {
        let dir = try temporaryFolder(self)
        let plain = dir.appendingPathComponent("d.jsonl")
        var text = ""
        for i in 0..<3000 { text += #"{"id": "doc\#(i)", "text": "line \#(i) \#(String(repeating: "abc ", count: i % 50))"}"# + "\n" }
        try Data(text.utf8).write(to: plain)
        let zst = dir.appendingPathComponent("d.jsonl.zst")
        let z = try runProcess("/usr/bin/zstd", ["-q", "-3", plain.path, "-o", zst.path])
        XCTAssertEqual(z.status, 0, z.err)
        let a = try records([plain.path]), b = try records([zst.path])
        XCTAssertEqual(a.count, 3000)
        XCTAssertEqual(a.count, b.count)
        for (x, y) in zip(a, b) {
            guard case .document(let dx) = x, case .document(let dy) = y else { return XCTFail("dropped record") }
            XCTAssertEqual(dx.id, dy.id); XCTAssertEqual(dx.text, dy.text)
        }
        // A truncated stream: the records before the cut, then one unreadable record naming the file.
        let data = try Data(contentsOf: zst)
        let cut = dir.appendingPathComponent("cut.jsonl.zst")
        try data.prefix(data.count / 2).write(to: cut)
        let c = try records([cut.path])
        XCTAssertGreaterThan(c.count, 1)
        guard case .dropped(let d)? = c.last, d.reason == .unreadable else { return XCTFail("no unreadable record at the cut") }
        let (origin, detail) = (d.origin, d.detail)
        XCTAssertTrue(origin.hasPrefix(cut.path), origin)
        XCTAssertTrue(detail.contains("truncated"), detail)
    }

    func testMissingInputAndEmptyFolderNameThePath() throws {
        XCTAssertThrowsError(try CorpusReader(inputs: ["/nonexistent/corpus"])) { XCTAssertTrue("\($0)".contains("/nonexistent/corpus")) }
        let dir = try temporaryFolder(self)
        XCTAssertThrowsError(try CorpusReader(inputs: [dir.path])) { XCTAssertTrue("\($0)".contains("\(dir.path): folder holds no files"), "\($0)") }
    }

    /// Files of every kind under names that say nothing: the kind comes from the bytes.
    func testKindsByContent() throws {
        let dir = try temporaryFolder(self)
        func write(_ name: String, _ bytes: [UInt8]) throws -> String {
            let url = dir.appendingPathComponent(name)
            try Data(bytes).write(to: url)
            return url.path
        }
        func gzipFile(_ text: String, _ name: String) throws -> [UInt8] {
            let plain = dir.appendingPathComponent(name + ".plain")
            try Data(text.utf8).write(to: plain)
            XCTAssertEqual(try runProcess("/bin/gzip", ["-n", "-f", plain.path]).status, 0)
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: plain.path + ".gz")))
            try FileManager.default.removeItem(atPath: plain.path + ".gz")
            return bytes
        }
        // Two concatenated gzip members, as RedPajama's and Dolma's .json.gz: every line of both.
        let members = try gzipFile(#"{"raw_content": "first member", "meta": {"id": "m1"}}"# + "\n", "a")
            + gzipFile(#"{"raw_content": "second member", "meta": {"id": "m2"}}"# + "\n", "b")
        let gz = try write("shard.json.gz", members)
        let r1 = Array(try CorpusReader(inputs: [gz], textField: "raw_content", idField: "meta.id"))
        XCTAssertEqual(r1.compactMap(documentText), ["first member", "second member"])
        XCTAssertEqual(r1.compactMap(documentID), ["m1", "m2"])

        // zstd with a 2 GiB window, past the decoder's default limit (--long=31 from a pipe, so the frame header
        // keeps the window), under a DCLM-style name, the id nested.
        let lines = (0..<200).map { #"{"text": "dclm \#($0)", "metadata": {"WARC-Record-ID": "<urn:uuid:\#($0)>"}}"# }
        let jsonl = try write("dclm.jsonl", Array((lines.joined(separator: "\n") + "\n").utf8))
        let zst = dir.appendingPathComponent("dclm.jsonl.zstd").path
        let z = try runProcess("/usr/bin/zstd", ["-q", "-f", "--long=31", "-o", zst], stdin: URL(fileURLWithPath: jsonl))
        XCTAssertEqual(z.status, 0, z.err)
        try FileManager.default.removeItem(atPath: jsonl)
        // Concatenated frames: the same stream twice.
        let frame = [UInt8](try Data(contentsOf: URL(fileURLWithPath: zst)))
        try Data(frame + frame).write(to: URL(fileURLWithPath: zst))
        let r2 = Array(try CorpusReader(inputs: [zst], idField: "metadata.WARC-Record-ID"))
        XCTAssertEqual(r2.count, 400)
        XCTAssertEqual(r2.compactMap(documentID)[199], "<urn:uuid:199>")
        XCTAssertEqual(r2.compactMap(documentText)[399], "dclm 199")

        // A WET file: a warcinfo record, then three conversion records and a metadata record between them.
        func record(_ type: String, _ id: String, _ body: String) -> String {
            "WARC/1.0\r\nWARC-Type: \(type)\r\nWARC-Record-ID: <urn:uuid:\(id)>\r\nContent-Type: text/plain\r\n" +
                "Content-Length: \(body.utf8.count)\r\n\r\n\(body)\r\n\r\n"
        }
        let wet = record("warcinfo", "info", "software: test\r\n") + record("conversion", "c1", "Page one.\nSecond line.") +
            record("metadata", "m", "fetchTimeMs: 3\r\n") + record("conversion", "c2", "Päge twö") + record("conversion", "c3", "Third\r\n\r\nWARC/1.0 inside text")
        let wetFile = try write("CC-MAIN-0001.warc.wet.gz", try gzipFile(record("warcinfo", "x", "a"), "w1") + gzipFile(wet, "w2"))
        let r3 = Array(try CorpusReader(inputs: [wetFile]))
        XCTAssertEqual(r3.compactMap(documentID), ["<urn:uuid:c1>", "<urn:uuid:c2>", "<urn:uuid:c3>"])
        XCTAssertEqual(r3.compactMap(documentText), ["Page one.\nSecond line.", "Päge twö", "Third\r\n\r\nWARC/1.0 inside text"])

        // No suffix: JSONL and text told apart by content; a binary file is reported, not tokenized.
        let noSuffix = try write("records", Array(#"{"text": "a record", "id": "r"}"#.utf8))
        let book = try write("BOOK", Array("{Curly} opening, then prose.".utf8))
        let binary = try write("weights.bin", [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0xFF, 0xFE])
        let r4 = Array(try CorpusReader(inputs: [noSuffix, book, binary]))
        XCTAssertEqual(r4.compactMap(documentText), ["a record", "{Curly} opening, then prose."])
        guard case .dropped(let d)? = r4.last, d.reason == .unreadable else { return XCTFail("\(r4)") }
        let (origin, detail) = (d.origin, d.detail)
        XCTAssertEqual(origin, binary)
        XCTAssertTrue(detail.contains("none of parquet, WARC, JSONL or UTF-8 text"), detail)

        // A folder is searched for every kind.
        XCTAssertEqual(Array(try CorpusReader(inputs: [dir.path], textField: "raw_content")).count, 2 + 400 + 3 + 1 + 1 + 1)
    }

    /// A 100 MB document on a single line, as a .txt file and as one JSONL record.
    func testHundredMegabyteLine() throws {
        let dir = try temporaryFolder(self)
        var line = [UInt8]()
        line.reserveCapacity(100 << 20)
        let words = Array("the quick brown fox jumps over a lazy dog, ünïcödé 42 ".utf8)
        while line.count < 100 << 20 { line += words }
        try Data(line).write(to: dir.appendingPathComponent("big.txt"))
        var json = Array(#"{"id": "big", "text": ""#.utf8) + line + Array(#""}"#.utf8)
        try Data(json).write(to: dir.appendingPathComponent("big.jsonl"))
        json = []
        let r = try records([dir.appendingPathComponent("big.txt").path, dir.appendingPathComponent("big.jsonl").path])
        XCTAssertEqual(r.count, 2)
        for rec in r {
            guard case .document(let d) = rec else { return XCTFail("dropped: \(rec)") }
            XCTAssertEqual(d.text.count, line.count)
            XCTAssertEqual(d.text.suffix(100), line.suffix(100))
        }
    }

    /// The UTF-8 check against the standard library's decoder on random and edge-case byte strings.
    func testUTF8ValidationMatchesStandardLibrary() {
        var rng = SystemRandomNumberGenerator()
        let edge: [[UInt8]] = [[0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0xF0, 0x9F, 0x98, 0x80],
                               [0xEF, 0xBB, 0xBF], [0x7F], [0xC2, 0xA0], [0xF5, 0x80, 0x80, 0x80], [0xE0, 0x9F, 0xBF]]
        var cases = edge
        for _ in 0..<3000 {
            let n = Int.random(in: 0..<24, using: &rng)
            cases.append((0..<n).map { _ in Bool.random(using: &rng) ? UInt8.random(in: 0x20...0x7E, using: &rng) : UInt8.random(in: 0x80...0xFF, using: &rng) })
        }
        for bytes in cases {
            let valid = String(validating: bytes, as: UTF8.self) != nil
            let bad = bytes.withUnsafeBufferPointer { firstInvalidUTF8($0) }
            XCTAssertEqual(bad == nil, valid, "\(bytes)")
            if let bad {
                XCTAssertNotNil(String(validating: bytes[..<bad], as: UTF8.self), "prefix before \(bad) of \(bytes) should be valid")
            }
        }
    }
}

func documentText(_ r: CorpusRecord) -> String? {
    if case .document(let d) = r { return String(decoding: d.text, as: UTF8.self) }
    return nil
}

func documentID(_ r: CorpusRecord) -> String? {
    if case .document(let d) = r { return d.id }
    return nil
}

func dropReason(_ r: CorpusRecord) -> DropReason? {
    if case .dropped(let d) = r { return d.reason }
    return nil
}
