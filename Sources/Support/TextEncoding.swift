/// How a dataset's text became the bytes its tokens encode: recorded in `index.json` and in checkpoints, so that
/// everything that turns tokens into text or text into tokens for a model (inspect, generate, the Python package)
/// follows the data.
public enum TextEncoding: String, Codable, Sendable, CaseIterable {
    /// The text's UTF-8 as it is.
    case raw
    /// The text as Python's `json.dumps(text)[1:-1]` writes it with its defaults: LongCrawl64's tokenization, as its
    /// users' code documents it (FoX, `src/forgetting_transformer/tokenizer.py`, `JSONGPT2Tokenizer`: "Unfortunately
    /// this is what LongCrawl64 did"). Every byte is printable ASCII: a newline is the two characters `\n`, `é` is
    /// `\u00e9`, `😀` is the surrogate pair `\ud83d\ude00`.
    case json

    /// The most bytes one byte of text becomes: a control character's `\u001f` is 6.
    public var maxExpansion: Int { self == .raw ? 1 : 6 }

    /// The bytes a model reads for `text` (UTF-8): `text` itself, or its JSON escape.
    public func encode(_ text: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        switch self {
        case .raw: out.append(contentsOf: text)
        case .json: JSONText.escape(text, into: &out)
        }
    }

    /// The text a model's bytes stand for: the bytes themselves, or their JSON escapes decoded (best effort: an
    /// escape that is invalid or cut at the end stays as written).
    public func decode(_ bytes: [UInt8]) -> [UInt8] {
        switch self {
        case .raw: return bytes
        case .json: return JSONText.unescape(bytes)
        }
    }
}

/// Python's `json.dumps` string escaping (`ensure_ascii=True`) and its inverse, over UTF-8 bytes.
public enum JSONText {
    /// Appends what `json.dumps(s)[1:-1]` gives for the string whose UTF-8 is `text`: `\"`, `\\`, `\n`, `\r`,
    /// `\t`, `\b`, `\f`; every other code point below U+0020, U+007F and every non-ASCII code point as `\u` and four
    /// lowercase hex digits, one above U+FFFF as its UTF-16 surrogate pair; `/` as it is. A surrogate encoded on its
    /// own (WTF-8, `ED A0 80`..`ED BF BF`: how the JSON reader keeps a lone `\udXXX` escape of its input, which
    /// Python's `json.loads` also keeps) comes out as that escape; any other invalid byte as `\ufffd`.
    static func escape(_ text: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        let n = text.count
        var i = 0
        while i < n {
            // The common case: a run of bytes that stand for themselves, copied in one piece.
            var j = i
            while j + 8 <= n, isPlain(UnsafeRawPointer(text.baseAddress! + j).loadUnaligned(as: UInt64.self)) { j += 8 }
            while j < n, plain[Int(text[j])] { j += 1 }
            if j > i { out.append(contentsOf: UnsafeBufferPointer(rebasing: text[i..<j])); i = j; if i == n { break } }
            let b = text[i]
            switch b {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, 0x6E]
            case 0x0D: out += [0x5C, 0x72]
            case 0x09: out += [0x5C, 0x74]
            case 0x08: out += [0x5C, 0x62]
            case 0x0C: out += [0x5C, 0x66]
            case ..<0x80: appendEscape(UInt32(b), to: &out)
            default:
                let (scalar, length) = decodeScalar(text, at: i)
                i += length
                if scalar >= 0x10000 {
                    let v = scalar - 0x10000
                    appendEscape(0xD800 + (v >> 10), to: &out)
                    appendEscape(0xDC00 + (v & 0x3FF), to: &out)
                } else {
                    appendEscape(scalar, to: &out)
                }
                continue
            }
            i += 1
        }
    }

    /// The length of `escape(text)`, from one table lookup a byte: a lead byte counts its whole escape (6 bytes,
    /// 12 for a surrogate pair), a continuation byte nothing. Exact for the valid UTF-8 (and WTF-8 surrogates) that
    /// readers produce.
    public static func escapedLength(_ text: UnsafeBufferPointer<UInt8>) -> Int {
        guard let base = text.baseAddress else { return 0 }
        var n = 0, i = 0
        // Eight bytes at a time while all stand for themselves (most of any text), one lookup a byte otherwise.
        while i + 8 <= text.count {
            let v = UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
            if isPlain(v) { n += 8 } else { for k in i..<(i + 8) { n += Int(escapedBytes[Int(base[k])]) } }
            i += 8
        }
        while i < text.count { n += Int(escapedBytes[Int(base[i])]); i += 1 }
        return n
    }

    /// True when none of the eight bytes of `v` is escaped: none above 0x7E, below 0x20, a quote or a backslash (the
    /// has-zero-byte test on `v ^ pattern`, and on `v - 0x20...` for the control bytes; exact as an any-test).
    @inline(__always)
    private static func isPlain(_ v: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        func zeroByte(_ x: UInt64) -> UInt64 { (x &- ones) & ~x & highs }
        let special = zeroByte(v ^ (ones &* 0x22)) | zeroByte(v ^ (ones &* 0x5C)) | zeroByte(v ^ (ones &* 0x7F))
        let control = (v &- ones &* 0x20) & ~v & highs
        return (v & highs) | special | control == 0
    }

    /// `escapedLength`'s table: what each byte adds.
    private static let escapedBytes: [UInt8] = (0..<256).map { (b: Int) -> UInt8 in
        switch b {
        case 0x22, 0x5C, 0x0A, 0x0D, 0x09, 0x08, 0x0C: 2
        case ..<0x20, 0x7F: 6
        case ..<0x80: 1
        case ..<0xC0: 0
        case ..<0xF0: 6
        default: 12
        }
    }

    /// The UTF-8 of what `json.loads('"' + s + '"')` gives for `s`, best effort: the short escapes and `\uXXXX`
    /// (a surrogate pair joined; a lone surrogate as U+FFFD, which UTF-8 cannot hold), and anything else, an escape
    /// that is invalid or cut at the end of `s` included, as written (a model's output may stop anywhere).
    public static func unescape(_ s: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var i = 0
        func hex4(_ p: Int) -> UInt32? {
            guard p + 4 <= s.count else { return nil }
            var v: UInt32 = 0
            for c in s[p..<(p + 4)] {
                guard let d = hexDigit(c) else { return nil }
                v = v << 4 | d
            }
            return v
        }
        while i < s.count {
            guard s[i] == 0x5C, i + 1 < s.count else { out.append(s[i]); i += 1; continue }
            let short: UInt8? = switch s[i + 1] {
            case 0x22, 0x5C, 0x2F: s[i + 1]
            case 0x6E: 0x0A
            case 0x72: 0x0D
            case 0x74: 0x09
            case 0x62: 0x08
            case 0x66: 0x0C
            default: nil
            }
            if let short { out.append(short); i += 2; continue }
            guard s[i + 1] == 0x75, let u = hex4(i + 2) else { out.append(s[i]); i += 1; continue }
            var scalar = u, length = 6
            if (0xD800...0xDBFF).contains(u), i + 12 <= s.count, s[i + 6] == 0x5C, s[i + 7] == 0x75,
               let low = hex4(i + 8), (0xDC00...0xDFFF).contains(low) {
                scalar = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)
                length = 12
            }
            appendUTF8(Unicode.Scalar(scalar) ?? "\u{FFFD}", to: &out)
            i += length
        }
        return out
    }

    /// Bytes that `json.dumps` writes as they are: printable ASCII but `"` and `\`.
    private static let plain: [Bool] = (0..<256).map { $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }
    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    private static func appendEscape(_ unit: UInt32, to out: inout [UInt8]) {
        out += [0x5C, 0x75, hex[Int(unit >> 12 & 0xF)], hex[Int(unit >> 8 & 0xF)], hex[Int(unit >> 4 & 0xF)], hex[Int(unit & 0xF)]]
    }

    private static func hexDigit(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: UInt32(c - 0x30)
        case 0x61...0x66: UInt32(c - 0x57)
        case 0x41...0x46: UInt32(c - 0x37)
        default: nil
        }
    }

    /// The code point of the sequence whose lead byte (at least 0x80) is at `i`, and its length; surrogates
    /// (WTF-8) decode like any three-byte sequence; an invalid byte is U+FFFD, one byte long.
    private static func decodeScalar(_ t: UnsafeBufferPointer<UInt8>, at i: Int) -> (UInt32, Int) {
        let b = t[i]
        let length = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 ? 2 : 0
        guard length > 0, b < 0xF5, i + length <= t.count else { return (0xFFFD, 1) }
        var v = UInt32(b) & (0x7F >> length)
        for k in 1..<length {
            let c = t[i + k]
            guard c & 0xC0 == 0x80 else { return (0xFFFD, 1) }
            v = v << 6 | UInt32(c & 0x3F)
        }
        let least: UInt32 = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000
        guard v >= least, v <= 0x10FFFF else { return (0xFFFD, 1) }
        return (v, length)
    }

    private static func appendUTF8(_ scalar: Unicode.Scalar, to out: inout [UInt8]) {
        out.append(contentsOf: UTF8.encode(scalar)!)
    }
}

extension TextEncoding {
    /// Counters of token rows that an import classifies (`EncodingDetector` in Preprocess), in `index.json`.
    public static let rowsRawCounter = "rows_raw_text", rowsEscapedCounter = "rows_json_escapes"

    /// The encoding that `rows` rows of tokens show, and the evidence in one line: `raw` rows hold a token with a
    /// newline, another control character or a byte above 0x7E, which JSON-escaped text never has; `escaped` rows
    /// hold none of those and at least one JSON escape (`\n`, `\"`, `\u00e9`, ...). Raw when most rows are raw;
    /// json when no row is raw and most have escapes; otherwise undecidable (nil), never a guess: pure ASCII text
    /// without newlines looks the same either way.
    public static func detect(rows: Int, raw: Int, escaped: Int) -> (TextEncoding?, String) {
        let decision: TextEncoding? = raw > 0 ? (2 * raw > rows ? .raw : nil) : (rows > 0 && 2 * escaped > rows ? .json : nil)
        let evidence = "\(raw) of \(rows) rows hold newline, control or non-ASCII tokens (raw text only), " +
            "\(escaped) hold only printable ASCII with JSON escapes (json only)"
        return (decision, evidence)
    }
}
