import Foundation
@testable import Shards
@testable import Support
@testable import Tokenizer
import TestSupport
import XCTest
@testable import Preprocess

/// Writes the escape-class documents and what tiktoken makes of them: `mixed` (every escape class: each control
/// character, DEL, quotes, backslashes, U+2028, Latin, Greek, Cyrillic, CJK, emoji, among ASCII words), `cjk`
/// (60,000 UTF-8 bytes, under a window raw, about 97,000 tokens escaped) and `lone` (`mixed` with lone surrogates,
/// which only JSON carries: `json.loads` keeps them, `json.dumps` writes them back). Each is a line of `docs.jsonl`
/// and `docs.jsonl.gz`, and all but `lone` also `NAME.txt` (no NUL: a text file holding one is not text; the escape test
/// has it); `NAME.ids` holds tiktoken's `encode_ordinary(json.dumps(t)[1:-1])[:65536]`, `NAME.raw.ids` the raw
/// text's token count.
private let writeDocuments = """
import gzip, json, random, sys
sys.path.insert(0, sys.argv[2])
from tiktoken_ids import gpt2_encoding
import numpy as np
enc, out = gpt2_encoding(), sys.argv[1]
rng = random.Random(7)
pools = ["".join(map(chr, range(1, 32))) + "\\x7f", '"\\\\/', "\\u2028\\u2029", "éèçàÉ", "αβγδΩ", "абвгЖ", "中文字符漢", "😀🎉👍🏽",
         "the of and to in a is was ", "  Hello, World! 12345 (x) "]
docs = {"mixed": "".join(rng.choice(rng.choice(pools)) for _ in range(60000)),
        "cjk": "".join(rng.choice("中文字符汉语") for _ in range(20000))}
docs["lone"] = "\\ud800" + docs["mixed"][:30000] + "\\udc00\\ud83d" + docs["mixed"][30000:]
lines = []
for name, t in docs.items():
    if name != "lone":
        open(f"{out}/{name}.txt", "w", encoding="utf-8", newline="").write(t)
        open(f"{out}/{name}.raw.ids", "w").write(str(len(enc.encode_ordinary(t))))
    np.array(enc.encode_ordinary(json.dumps(t)[1:-1])[:65536], dtype="<u2").tofile(f"{out}/{name}.ids")
    lines.append(json.dumps({"id": name, "text": t}) + "\\n")
open(f"{out}/docs.jsonl", "w").write("".join(lines))
gzip.open(f"{out}/docs.jsonl.gz", "wt").write("".join(lines))
"""

final class TextEncodingTests: XCTestCase {
    /// Our escape is Python's `json.dumps(s)[1:-1]` byte for byte, `escapedLength` its length, and `unescape` its
    /// inverse, on every class of character and on a lone surrogate (kept in WTF-8, as the JSON reader keeps one).
    func testEscapeEqualsPythonJSONDumps() throws {
        let samples = ["a\u{7f}\u{0}\u{1f}\t\n\r\u{8}\u{c}\"\\/é€😀\u{2028}", "plain ASCII, no escapes", "",
                       String((0..<0x80).map { Character(Unicode.Scalar($0)!) }), "Ωмир中文🎉👍🏽\u{10FFFF}\u{FEFF}"]
        let inputs = samples.map { Array($0.utf8) } + [[0x61, 0xED, 0xA0, 0x80, 0x62]]  // "a\ud800b" in WTF-8
        let script = """
        import json, sys
        for arg in sys.argv[1:]:
            s = bytes.fromhex(arg).decode("utf-8", "surrogatepass")
            print(json.dumps(s)[1:-1])
        """
        let r = try runProcess("/usr/bin/env", ["python3", "-c", script] + inputs.map { $0.map { String(format: "%02x", $0) }.joined() })
        XCTAssertEqual(r.status, 0, r.err)
        let expected = r.out.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (i, input) in inputs.enumerated() {
            var escaped: [UInt8] = []
            input.withUnsafeBufferPointer { JSONText.escape($0, into: &escaped) }
            XCTAssertEqual(String(decoding: escaped, as: UTF8.self), expected[i], "sample \(i)")
            XCTAssertEqual(input.withUnsafeBufferPointer(JSONText.escapedLength), escaped.count, "sample \(i)")
            if i < samples.count { XCTAssertEqual(JSONText.unescape(escaped), input, "sample \(i)") }
        }
        // A lone surrogate unescapes to U+FFFD (UTF-8 cannot hold it); a cut or invalid escape stays as written.
        XCTAssertEqual(String(decoding: JSONText.unescape(Array(#"a\ud800b\u12"#.utf8)), as: UTF8.self), "a\u{FFFD}b\\u12")
        XCTAssertEqual(String(decoding: JSONText.unescape(Array(#"x\q\"#.utf8)), as: UTF8.self), #"x\q\"#)
    }

    /// `--text-encoding json`: the windows are tiktoken's ids of `json.dumps(t)[1:-1]` from text, JSONL and gzip JSONL
    /// inputs; a document under a window raw but over one escaped is kept with json and dropped with raw; the
    /// stretches' ids are the whole escape's at every stretch size; the index records the encoding and a resume with
    /// the other is refused.
    func testJSONEncodingGivesTiktokenIdsOfTheEscapedText() throws {
        let dir = try temporaryFolder(self)
        let r = try runProcess("/usr/bin/env", ["python3", "-c", writeDocuments, dir.path, packageRoot.appendingPathComponent("tools").path])
        XCTAssertEqual(r.status, 0, r.err)
        let names = ["mixed", "cjk", "lone"]
        let expected = try names.map { name -> [UInt16] in
            let data = try Data(contentsOf: dir.appendingPathComponent(name + ".ids"))
            return data.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
        }
        XCTAssertEqual(expected.map(\.count), [windowLength, windowLength, windowLength])
        XCTAssertLessThan(Int(try String(contentsOf: dir.appendingPathComponent("cjk.raw.ids"), encoding: .utf8))!, windowLength)

        for (k, name) in ["mixed", "cjk"].enumerated() {
            let text = try readWholeFile(dir.appendingPathComponent(name + ".txt"))
            var escaped: [UInt8] = []
            text.withUnsafeBufferPointer { JSONText.escape($0, into: &escaped) }
            XCTAssertEqual(text.withUnsafeBufferPointer(JSONText.escapedLength), escaped.count, name)
            var memo = TokenizerMemo()
            for stretch in [97, 1000, 1 << 16] {
                let ids = encodePrefix(text, needed: windowLength, tokenizer: gpt2, memo: &memo, encoding: .json, stretchBytes: stretch)
                XCTAssertEqual(Array(ids.prefix(windowLength)), expected[k], "\(name), stretches of \(stretch) bytes")
            }
        }

        let inputs: [[URL]] = [["mixed.txt", "cjk.txt"].map { dir.appendingPathComponent($0) }, [dir.appendingPathComponent("docs.jsonl")],
                               [dir.appendingPathComponent("docs.jsonl.gz")]]
        for (n, input) in inputs.enumerated() {
            let out = dir.appendingPathComponent("json-\(n)")
            let summary = try preprocess(input, out) { $0.textEncoding = .json; $0.heldoutFraction = 0 }
            XCTAssertEqual(summary.index.textEncoding, .json)
            XCTAssertEqual(summary.index.build?.options["text_encoding"], "json")
            let windows = try readDataset(out)
            XCTAssertEqual(windows.count, n == 0 ? 2 : 3, "\(input.map(\.lastPathComponent))")
            for w in windows {
                let name = names.firstIndex { w.source.document.hasPrefix($0) }!
                XCTAssertEqual(w.tokens, expected[name], "\(w.source.document) from \(input.map(\.lastPathComponent))")
            }
            XCTAssertEqual(try DatasetIndex.load(from: out).textEncoding, .json)
            // decode(encode(escape(t))) is t: the window's text unescaped is the start of the document (an escape
            // cut by the window's end stays as written, so the last few characters are left out of the comparison).
            for w in windows where !w.source.document.hasPrefix("lone") {
                let text = try readWholeFile(dir.appendingPathComponent((w.source.document.hasPrefix("mixed") ? "mixed" : "cjk") + ".txt"))
                let decoded = JSONText.unescape(gpt2.decode(w.tokens))
                XCTAssertEqual(Array(text.prefix(decoded.count - 12)), Array(decoded.dropLast(12)), w.source.document)
            }
            if n == 1 {
                let check = """
                import sys
                from tiktoken_ids import gpt2_encoding
                import longcrawl
                ds = longcrawl.Dataset(sys.argv[1])
                assert ds.text_encoding == "json", ds.text_encoding
                split = ds.split("train")
                for k in range(len(split)):
                    if split.source(k)[0] == "lone":
                        continue
                    text = longcrawl.decode(split.read(k), ds.text_encoding, tokenizer=gpt2_encoding())
                    doc = open(sys.argv[2] + "/" + split.source(k)[0] + ".txt", encoding="utf-8", newline="").read()
                    assert doc.startswith(text[:-12]) and len(text) > 5000, k
                print("ok")
                """
                let p = try runProcess("/usr/bin/env", ["PYTHONPATH=python:tools", "python3", "-c", check, out.path, dir.path], directory: packageRoot)
                XCTAssertEqual(p.status, 0, p.err)
            }
            XCTAssertThrowsError(try preprocess(input, out, { $0.heldoutFraction = 0 }, mode: .resume)) {
                XCTAssertTrue("\($0)".contains("text_encoding was json, now unset"), "\($0)")
            }
            let raw = try preprocess(input, dir.appendingPathComponent("raw-\(n)")) { $0.heldoutFraction = 0 }
            XCTAssertEqual(raw.index.textEncoding, .raw)
            XCTAssertEqual(raw.index.build?.counts["kept"], 1, "the CJK document is under a window raw")
            XCTAssertEqual(raw.index.build?.counts["dropped_unreadable"], n == 0 ? 0 : 1, "raw text cannot hold a lone surrogate")
        }
    }

    /// An index of each earlier version opens: version 1 (no text encoding) reads as raw for a build and as
    /// undecided for an import; one written before the funnel gets the stages it counted.
    func testEarlierIndexVersionsOpen() throws {
        let fixtures = packageRoot.appendingPathComponent("Tests/Fixtures/formats")
        let built = try DatasetIndex.load(from: fixtures.appendingPathComponent("index-v1-preprocess"))
        XCTAssertEqual(built.version, DatasetIndex.currentVersion)
        XCTAssertEqual(built.textEncoding, .raw)
        XCTAssertEqual(built.shards.count, 8)
        XCTAssertEqual(built.build?.funnel, ["records", "dropped_empty", "dropped_unreadable", "dropped_too_short", "kept"], "written before the funnel")
        let imported = try DatasetIndex.load(from: fixtures.appendingPathComponent("index-v1-import"))
        XCTAssertNil(imported.textEncoding)
        XCTAssertEqual(imported.build?.counts["imported"], 40)
        // A newer version than this build knows is refused by name.
        let newer = try temporaryFolder(self)
        var json = try String(contentsOf: fixtures.appendingPathComponent("index-v1-preprocess/index.json"), encoding: .utf8)
        json = json.replacingOccurrences(of: #""version" : 1"#, with: #""version" : 99"#)
        try json.write(to: newer.appendingPathComponent("index.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try DatasetIndex.load(from: newer)) { XCTAssertTrue("\($0)".contains("index version 99, this build reads 1 to"), "\($0)") }
    }
}
