import Foundation
import TestSupport
import XCTest
@testable import Preprocess

/// The JSONL scanner against Python's `json`: the same text bytes for every escape, the same verdict on bad lines.
final class JSONLineTests: XCTestCase {
    /// Lines written by Python's `json.dumps` (with and without ensure_ascii) and by hand, each with the UTF-8 of
    /// the text Python's `json.loads` reads from it.
    func testTextsDecodeAsPythonDecodesThem() throws {
        let script = #"""
import json, sys
texts = ['plain', 'quote " backslash \\ slash /', 'controls \b\f\n\r\t\x01\x1f end', 'caf\u00e9 \u00e9t\u00e9', '\u2028\u2029\x7f',
         'nul \x00 inside', 'emoji \U0001F600 clef \U0001D11E', '\uffff\ufffd', '']
texts += ['x' * k + '"' + 'y' * (19 - k) + '\\' + 'z' * k for k in range(20)]
lines = [json.dumps({"id": i, "text": t}, ensure_ascii=a) for i, t in enumerate(texts) for a in (True, False)]
lines += [r'{"text": "a\/b \u00E9 \uD83D\uDE00"}', r'{"t\u0065xt": "escaped key"}', '{"text": "first", "text": "last wins"}',
          '{"meta": {"text": "nested"}, "text": "top"}', '  {"text" : "spaces"}  ', '{"a": [1, -2.5e+3, {"b": null}, true, false], "text": "after"}']
print(json.dumps([[l, json.loads(l)["text"].encode("utf-8").hex()] for l in lines]))
"""#
        let r = try runProcess("/usr/bin/env", ["python3", "-c", script])
        XCTAssertEqual(r.status, 0, r.err)
        let cases = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [[String]]
        XCTAssertGreaterThan(cases.count, 50)
        let scanner = JSONLineScanner(paths: ["text"])
        for c in cases {
            let line = Array(c[0].utf8), expected = hexBytes(c[1])
            try line.withUnsafeBufferPointer { buffer in
                let fields = try scanner.scan(buffer)
                guard case .string(let range, let length, let escaped)? = fields[0] else { return XCTFail("no text in \(c[0])") }
                XCTAssertEqual(length, expected.count, c[0])
                let text = escaped ? try JSONLineScanner.unescape(buffer, range) : Array(buffer[range])
                XCTAssertEqual(text, expected, c[0])
            }
        }
    }

    /// Paths: a dotted path into nested objects, a top-level key spelled with the dot wins, absent paths are nil;
    /// numbers come back as their literal.
    func testFieldPaths() throws {
        let line = Array(#"{"meta": {"id": 12, "x": {"y": "deep"}}, "meta.id": "literal", "n": -0.5e2}"#.utf8)
        let fields = try line.withUnsafeBufferPointer { try JSONLineScanner(paths: ["meta.id", "meta.x.y", "meta.z", "n", "meta"]).scan($0) }
        func text(_ f: JSONField?) -> String? {
            guard case .string(let r, _, _)? = f else { return nil }
            return String(decoding: line[r], as: UTF8.self)
        }
        XCTAssertEqual(text(fields[0]), "literal")
        XCTAssertEqual(text(fields[1]), "deep")
        XCTAssertNil(fields[2])
        guard case .number(let n)? = fields[3] else { return XCTFail("\(fields)") }
        XCTAssertEqual(String(decoding: line[n], as: UTF8.self), "-0.5e2")
        XCTAssertEqual(fields[4], .other("an object"))
    }

    /// Lines that are not JSON (each refused by Python's `json.loads` too, but for the lone surrogates, which have
    /// no UTF-8 form) throw, naming the fault.
    func testBadLinesThrow() throws {
        let bad: [(String, String)] = [
            (#"{"text": "cut in the middle"#, "unterminated string"),
            (#"{"text": "a\tb"}"#.replacingOccurrences(of: "\\t", with: "\t"), "control character 0x9"),
            (#"{"text": "\x41"}"#, "invalid escape"),
            (#"{"text": "\u12G4"}"#, "invalid \\u escape"),
            (#"{"text": "\ud800"}"#, "lone surrogate"),
            (#"{"text": "\ud800\u0041"}"#, "lone surrogate"),
            (#"{"text": "\udc00"}"#, "lone surrogate"),
            (#"{"text": "a",}"#, "expected a key"),
            (#"{"text": "a"} x"#, "unexpected data after the object"),
            (#"{"n": 01, "text": "a"}"#, "expected ',' or '}'"),
            (#"{"n": 1., "text": "a"}"#, "without digits after '.'"),
            (#"{"n": -, "text": "a"}"#, "without digits"),
            (#"{"n": tru, "text": "a"}"#, "unexpected 't'"),
            (#"{"text" "a"}"#, "expected ':'"),
            (#"["text", "a"]"#, "not a JSON object"),
            ("{\"a\": " + String(repeating: "[", count: 600) + String(repeating: "]", count: 600) + "}", "nesting deeper than 512"),
        ]
        let scanner = JSONLineScanner(paths: ["text"])
        let check = "import json, sys\nfor l in sys.stdin.read().split('\\n'):\n    try: json.loads(l); print('ok')\n    except Exception: print('bad')"
        let input = try temporaryFolder(self).appendingPathComponent("lines")
        try Data(bad.map(\.0).joined(separator: "\n").utf8).write(to: input)
        let python = try runProcess("/usr/bin/env", ["python3", "-c", check], stdin: input)
        let verdicts = python.out.split(separator: "\n")
        for (k, (line, fault)) in bad.enumerated() {
            XCTAssertThrowsError(try Array(line.utf8).withUnsafeBufferPointer { try scanner.scan($0) }, line) {
                XCTAssertTrue("\($0)".contains(fault), "\(line): \($0)")
            }
            if !fault.contains("surrogate"), !fault.contains("nesting"), !fault.contains("not a JSON object") {
                XCTAssertEqual(verdicts[k], "bad", "python accepts \(line)")
            }
        }
    }

    /// Through the reader: a line cut in the middle of a string is unreadable with its line number; numbers give
    /// their literal as the id.
    func testReaderReportsCutLinesAndNumericIDs() throws {
        let file = try temporaryFolder(self).appendingPathComponent("docs.jsonl")
        try Data((#"{"id": 1e3, "text": "one"}"# + "\n" + #"{"id": 123456789012, "text": "two"}"# + "\n" + #"{"id": "x", "text": "cut"#).utf8).write(to: file)
        let r = Array(try CorpusReader(inputs: [file.path]))
        XCTAssertEqual(r.count, 3)
        guard case .document(let a) = r[0], case .document(let b) = r[1], case .dropped(let c) = r[2] else { return XCTFail("\(r)") }
        XCTAssertEqual(a.id, "1000")
        XCTAssertEqual(b.id, "123456789012")
        XCTAssertEqual(c.reason, .unreadable)
        XCTAssertEqual(c.origin, file.path + ":3")
        XCTAssertTrue(c.detail.contains("unterminated string"), c.detail)
    }
}

private func hexBytes(_ hex: String) -> [UInt8] {
    let chars = Array(hex.utf8)
    return stride(from: 0, to: chars.count, by: 2).map { UInt8(String(decoding: chars[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
}
