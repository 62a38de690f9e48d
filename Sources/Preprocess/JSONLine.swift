import Foundation
import Support

/// A JSON value found at a field path of a JSONL line, as raw byte ranges of the line: nothing is decoded until
/// the caller asks, so a document that the length rule drops is never copied.
enum JSONField: Equatable {
    /// A string's bytes between its quotes (still escaped) and its exact UTF-8 length once unescaped.
    case string(Range<Int>, decodedBytes: Int, escaped: Bool)
    /// A number's literal.
    case number(Range<Int>)
    /// An object, array, `true`, `false` or `null`.
    case other(String)
}

/// A single-pass JSON checker for one JSONL line that notes where the values at a few field paths are, without
/// building objects. Field paths are as `--text-field` takes them: a key, or a dotted path into nested objects; a
/// top-level key spelled with the dots wins over the nested path, and of repeated keys the last wins (as
/// Python's `json`). The whole line is checked against the JSON grammar (RFC 8259): strings (control characters,
/// escapes, surrogate pairs), numbers, literals and nesting up to `maxDepth`.
struct JSONLineScanner {
    /// Nesting deeper than this is refused (the scanner recurses once per level).
    static let maxDepth = 512
    /// Each path split at its dots.
    private let paths: [[String]]
    private let literal: [[UInt8]]
    private let components: [[[UInt8]]]
    /// Keep a lone surrogate escape (`\ud800` alone) as its three-byte WTF-8 form instead of refusing the line, as
    /// Python's `json.loads` keeps it: LongCrawl64's JSON escape of the text writes it back out as the same escape.
    let loneSurrogates: Bool

    init(paths: [String], loneSurrogates: Bool = false) {
        self.loneSurrogates = loneSurrogates
        self.paths = paths.map { $0.split(separator: ".", omittingEmptySubsequences: false).map(String.init) }
        literal = paths.map { Array($0.utf8) }
        components = self.paths.map { $0.map { Array($0.utf8) } }
    }

    /// The value at each path (nil where absent). Throws if the line is not one JSON object (surrounding
    /// whitespace allowed).
    func scan(_ line: UnsafeBufferPointer<UInt8>) throws -> [JSONField?] {
        var parser = Parser(bytes: line, scanner: self)
        parser.skipSpace()
        guard parser.peek() == UInt8(ascii: "{") else {
            // Any other value is still checked, for the right message.
            try parser.value(depth: 0, watching: [])
            parser.skipSpace()
            if parser.i < line.count { throw parser.fail("unexpected data after the value") }
            throw LongCrawlError("not a JSON object")
        }
        let top = (0..<paths.count).map { Watch(path: $0, component: 0) }
        try parser.value(depth: 0, watching: top)
        parser.skipSpace()
        if parser.i < line.count { throw parser.fail("unexpected data after the object") }
        return (0..<paths.count).map { parser.found[$0]?.value }
    }

    /// Whether the line is a JSON object.
    func isObject(_ line: UnsafeBufferPointer<UInt8>) -> Bool { (try? scan(line)) != nil }

    /// A path's progress in the object being scanned: component `component` is the next key to match.
    private struct Watch { var path: Int; var component: Int }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        let scanner: JSONLineScanner
        var i = 0
        /// Per path: the value and whether it came from the literal top-level key (which wins).
        var found: [Int: (value: JSONField, literal: Bool)] = [:]

        init(bytes: UnsafeBufferPointer<UInt8>, scanner: JSONLineScanner) { self.bytes = bytes; self.scanner = scanner }

        func fail(_ what: String) -> LongCrawlError { LongCrawlError("\(what) at byte \(i)") }

        func peek() -> UInt8? { i < bytes.count ? bytes[i] : nil }

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        }

        /// Parses one value at `i`; returns what it was, as a field.
        @discardableResult
        mutating func value(depth: Int, watching: [Watch]) throws -> JSONField {
            guard depth < JSONLineScanner.maxDepth else { throw fail("nesting deeper than \(JSONLineScanner.maxDepth)") }
            skipSpace()
            guard let c = peek() else { throw fail("unexpected end of line") }
            switch c {
            case UInt8(ascii: "{"): try object(depth: depth, watching: watching); return .other("an object")
            case UInt8(ascii: "["): try array(depth: depth); return .other("an array")
            case UInt8(ascii: "\""):
                let (range, decoded, escaped) = try string()
                return .string(range, decodedBytes: decoded, escaped: escaped)
            case UInt8(ascii: "t"): try word("true"); return .other("true")
            case UInt8(ascii: "f"): try word("false"); return .other("false")
            case UInt8(ascii: "n"): try word("null"); return .other("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw fail("unexpected '\(printable(c))'")
            }
        }

        mutating func word(_ w: StaticString) throws {
            let n = w.utf8CodeUnitCount
            guard i + n <= bytes.count, memcmp(bytes.baseAddress! + i, w.utf8Start, n) == 0 else { throw fail("unexpected '\(printable(bytes[i]))'") }
            i += n
        }

        mutating func object(depth: Int, watching: [Watch]) throws {
            i += 1  // {
            skipSpace()
            if peek() == UInt8(ascii: "}") { i += 1; return }
            while true {
                skipSpace()
                guard peek() == UInt8(ascii: "\"") else { throw fail(i < bytes.count ? "expected a key" : "unexpected end of line") }
                let (keyRange, _, escaped) = try string()
                skipSpace()
                guard peek() == UInt8(ascii: ":") else { throw fail(i < bytes.count ? "expected ':'" : "unexpected end of line") }
                i += 1
                // Which watched paths this key advances; keys with escapes are decoded to compare (rare).
                var matched: [Int] = [], literalHit: [Int] = [], deeper: [Watch] = []
                if !watching.isEmpty {
                    let key = escaped ? try unescape(keyRange) : Array(bytes[keyRange])
                    for w in watching {
                        if depth == 0, scanner.literal[w.path] == key { literalHit.append(w.path) }
                        let parts = scanner.components[w.path]
                        guard parts[w.component] == key else { continue }
                        if w.component == parts.count - 1 { matched.append(w.path) } else { deeper.append(Watch(path: w.path, component: w.component + 1)) }
                    }
                }
                let v = try value(depth: depth + 1, watching: deeper)
                for p in literalHit { found[p] = (v, true) }
                for p in matched where found[p]?.literal != true { found[p] = (v, false) }
                skipSpace()
                guard let c = peek() else { throw fail("unexpected end of line") }
                i += 1
                if c == UInt8(ascii: "}") { return }
                guard c == UInt8(ascii: ",") else { i -= 1; throw fail("expected ',' or '}'") }
            }
        }

        mutating func array(depth: Int) throws {
            i += 1  // [
            skipSpace()
            if peek() == UInt8(ascii: "]") { i += 1; return }
            while true {
                try value(depth: depth + 1, watching: [])
                skipSpace()
                guard let c = peek() else { throw fail("unexpected end of line") }
                i += 1
                if c == UInt8(ascii: "]") { return }
                guard c == UInt8(ascii: ",") else { i -= 1; throw fail("expected ',' or ']'") }
            }
        }

        mutating func number() throws -> Range<Int> {
            let start = i
            if peek() == UInt8(ascii: "-") { i += 1 }
            func digits() -> Int { let s = i; while i < bytes.count, bytes[i] &- 0x30 < 10 { i += 1 }; return i - s }
            guard let first = peek(), first &- 0x30 < 10 else { throw fail("a number without digits") }
            if first == UInt8(ascii: "0") { i += 1 } else { _ = digits() }
            if peek() == UInt8(ascii: ".") { i += 1; guard digits() > 0 else { throw fail("a number without digits after '.'") } }
            if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
                i += 1
                if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { throw fail("a number without exponent digits") }
            }
            return start..<i
        }

        /// Scans a string from its opening quote: the range between the quotes, its unescaped UTF-8 length, and
        /// whether it holds escapes. Eight bytes at a time while none is a quote, a backslash or a control byte.
        mutating func string() throws -> (Range<Int>, Int, Bool) {
            i += 1
            let start = i
            var decoded = 0, escaped = false
            let base = bytes.baseAddress!, n = bytes.count
            while true {
                while i + 8 <= n {
                    let v = UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
                    if hasSpecialByte(v) { break }
                    i += 8; decoded += 8
                }
                guard i < n else { throw fail("unterminated string") }
                let c = base[i]
                if c == UInt8(ascii: "\"") { i += 1; return (start..<(i - 1), decoded, escaped) }
                if c < 0x20 { throw fail("control character 0x\(String(c, radix: 16)) in a string") }
                if c != UInt8(ascii: "\\") { i += 1; decoded += 1; continue }
                escaped = true
                guard i + 1 < n else { throw fail("unterminated string") }
                switch base[i + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    i += 2; decoded += 1
                case UInt8(ascii: "u"):
                    let (value, length) = try unicodeEscape(at: i)
                    i += length
                    decoded += value < 0x80 ? 1 : value < 0x800 ? 2 : value < 0x10000 ? 3 : 4
                default: throw fail("invalid escape '\\\(printable(base[i + 1]))'")
                }
            }
        }

        /// The code point of `\uXXXX` (or of a `\uD8xx\uDCxx` pair) at `at`, and the escape's length in bytes.
        /// A lone surrogate is refused (it has no UTF-8 form) unless the scanner keeps them.
        func unicodeEscape(at: Int) throws -> (UInt32, Int) {
            func hex4(_ p: Int) -> UInt32? {
                guard p + 4 <= bytes.count else { return nil }
                var v: UInt32 = 0
                for k in p..<(p + 4) {
                    let c = bytes[k]
                    let d: UInt8
                    switch c {
                    case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - 0x30
                    case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - 0x57
                    case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - 0x37
                    default: return nil
                    }
                    v = v << 4 | UInt32(d)
                }
                return v
            }
            guard let u = hex4(at + 2) else { throw LongCrawlError("invalid \\u escape at byte \(at)") }
            func lone() throws -> (UInt32, Int) {
                guard scanner.loneSurrogates else { throw LongCrawlError("lone surrogate \\u\(String(u, radix: 16)) at byte \(at)") }
                return (u, 6)
            }
            if (0xDC00...0xDFFF).contains(u) { return try lone() }
            guard (0xD800...0xDBFF).contains(u) else { return (u, 6) }
            guard at + 12 <= bytes.count, bytes[at + 6] == UInt8(ascii: "\\"), bytes[at + 7] == UInt8(ascii: "u"),
                  let low = hex4(at + 8), (0xDC00...0xDFFF).contains(low) else { return try lone() }
            return (0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00), 12)
        }

        /// The UTF-8 bytes of an escaped string's inside (already checked by `string()`).
        func unescape(_ range: Range<Int>) throws -> [UInt8] { try JSONLineScanner.unescape(bytes, range) }
    }

    /// The UTF-8 bytes of the string whose (checked) inside is `range` of `bytes`: JSON's escapes decoded exactly
    /// as Python's `json` decodes them.
    static func unescape(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, capacity: Int = 0, loneSurrogates: Bool = false) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(max(capacity, range.count))
        let parser = Parser(bytes: bytes, scanner: JSONLineScanner(paths: [], loneSurrogates: loneSurrogates))
        var i = range.lowerBound
        while i < range.upperBound {
            // Copy the run up to the next backslash in one piece.
            var j = i
            while j < range.upperBound, bytes[j] != UInt8(ascii: "\\") { j += 1 }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[i..<j]))
            i = j
            guard i < range.upperBound else { break }
            let e = bytes[i + 1]
            switch e {
            case UInt8(ascii: "b"): out.append(0x08); i += 2
            case UInt8(ascii: "f"): out.append(0x0C); i += 2
            case UInt8(ascii: "n"): out.append(0x0A); i += 2
            case UInt8(ascii: "r"): out.append(0x0D); i += 2
            case UInt8(ascii: "t"): out.append(0x09); i += 2
            case UInt8(ascii: "u"):
                let (value, length) = try parser.unicodeEscape(at: i)
                // UTF-8, or for a kept lone surrogate the same three-byte pattern (WTF-8).
                if let scalar = Unicode.Scalar(value) { UTF8.encode(scalar) { out.append($0) } } else {
                    out += [0xE0 | UInt8(value >> 12), 0x80 | UInt8(value >> 6 & 0x3F), 0x80 | UInt8(value & 0x3F)]
                }
                i += length
            default: out.append(e); i += 2  // \" \\ \/
            }
        }
        return out
    }
}

/// True when one of the eight bytes of `v` is a quote, a backslash or below 0x20 (the bytes a string scan must
/// look at): the classic has-zero-byte test on `v ^ pattern`, and on `v - 0x20...` for the control bytes.
@inline(__always)
private func hasSpecialByte(_ v: UInt64) -> Bool {
    let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
    func zeroByte(_ x: UInt64) -> UInt64 { (x &- ones) & ~x & highs }
    let quote = zeroByte(v ^ (ones &* 0x22)), backslash = zeroByte(v ^ (ones &* 0x5C))
    let control = (v &- ones &* 0x20) & ~v & highs
    return (quote | backslash | control) != 0
}

private func printable(_ c: UInt8) -> String {
    c >= 0x20 && c < 0x7F ? String(UnicodeScalar(c)) : "\\x" + String(format: "%02x", c)
}
