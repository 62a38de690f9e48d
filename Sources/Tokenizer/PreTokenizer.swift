/// GPT-2's pre-tokenizer, hand-written over UTF-8 bytes. It splits text exactly as tiktoken's `gpt2` pattern
///
///     '(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s
///
/// does, with `\s` = Unicode White_Space, `\p{L}` and `\p{N}` = the general categories L* and N*, and the
/// contractions case-sensitive. BPE then runs inside each piece.
enum CharClass: UInt8 {
    case letter, number, space, other
}

/// Class of an ASCII byte. A switch, not a table: a global table is initialized lazily, and every read of it
/// in this loop would pay for the `swift_once` check.
@inline(__always)
private func asciiClass(_ b: UInt8) -> CharClass {
    switch b {
    case 0x41...0x5A, 0x61...0x7A: return .letter
    case 0x30...0x39: return .number
    case 0x09...0x0D, 0x20: return .space
    default: return .other
    }
}

/// Unicode White_Space outside ASCII (the property is fixed by the standard).
@inline(__always)
private func isNonASCIIWhiteSpace(_ v: UInt32) -> Bool {
    v == 0x85 || v == 0xA0 || v == 0x1680 || (v >= 0x2000 && v <= 0x200A) || v == 0x2028 || v == 0x2029 || v == 0x202F || v == 0x205F || v == 0x3000
}

/// The Unicode version of tiktoken's tables (Rust regex 1.13 in tiktoken 0.14). The stdlib's may be newer: a
/// character assigned after it is unassigned to tiktoken, so neither a letter nor a number.
let tiktokenUnicodeVersion = (major: 16, minor: 0)

/// The classes of U+0000 ..< U+40000 (the planes that hold letters and numbers), four to a byte, from
/// `propertyClass`: one load per non-ASCII character instead of two property lookups. Built on first use (tens of
/// milliseconds, once per process).
private let tableEnd: UInt32 = 0x40000
/// Unchecked: written only by its lazy initializer (run once, thread-safely, as every global's), only read after.
nonisolated(unsafe) private let classTable: UnsafeMutablePointer<UInt8> = {
    let table = UnsafeMutablePointer<UInt8>.allocate(capacity: Int(tableEnd) / 4)
    table.initialize(repeating: 0, count: Int(tableEnd) / 4)
    for v in 0..<tableEnd { table[Int(v >> 2)] |= propertyClass(v).rawValue << (2 * (v & 3)) }
    return table
}()

@inline(__always)
private func classify(_ v: UInt32) -> CharClass {
    if v >= tableEnd { return propertyClass(v) }
    return CharClass(rawValue: classTable[Int(v >> 2)] >> (2 * (v & 3)) & 3)!
}

private func propertyClass(_ v: UInt32) -> CharClass {
    if v < 0x80 { return asciiClass(UInt8(v)) }
    if isNonASCIIWhiteSpace(v) { return .space }
    guard let scalar = Unicode.Scalar(v), let age = scalar.properties.age,
          age.major < tiktokenUnicodeVersion.major || (age.major == tiktokenUnicodeVersion.major && age.minor <= tiktokenUnicodeVersion.minor)
    else { return .other }
    switch scalar.properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
    case .decimalNumber, .letterNumber, .otherNumber: return .number
    default: return .other
    }
}

/// Decodes the scalar at `i` of valid UTF-8 and returns its class and byte length. ASCII is decided inline; the
/// rest (under 2% of bytes in books) in a call, which keeps the scanning loops small enough to stay inlined.
@inline(__always)
private func scalarClass(_ p: UnsafePointer<UInt8>, _ i: Int) -> (CharClass, Int) {
    let b0 = p[i]
    if b0 < 0x80 { return (asciiClass(b0), 1) }
    return nonASCIIClass(p, i)
}

@inline(never)
private func nonASCIIClass(_ p: UnsafePointer<UInt8>, _ i: Int) -> (CharClass, Int) {
    let b0 = p[i]
    if b0 < 0xE0 { return (classify(UInt32(b0 & 0x1F) << 6 | UInt32(p[i + 1] & 0x3F)), 2) }
    if b0 < 0xF0 { return (classify(UInt32(b0 & 0x0F) << 12 | UInt32(p[i + 1] & 0x3F) << 6 | UInt32(p[i + 2] & 0x3F)), 3) }
    return (classify(UInt32(b0 & 0x07) << 18 | UInt32(p[i + 1] & 0x3F) << 12 | UInt32(p[i + 2] & 0x3F) << 6 | UInt32(p[i + 3] & 0x3F)), 4)
}

/// Calls `piece(start, end)` for each pre-token of `text` (valid UTF-8), in order.
///
/// A scanner with one state per alternative of the pattern, chosen at each piece start by the next one or two
/// characters, each piece decided without backtracking (the pattern's quantifiers are possessive, so a run once
/// taken is never given back):
/// - `'` then `s d m t` or `ll ve re` (lowercase): `'(?:[sdmt]|ll|ve|re)`, two or three bytes. Any other `'` is a
///   symbol and starts (or continues) a symbol run, so `!'s` is `!'` `s`.
/// - U+0020 then a letter, number or symbol: ` ?\p{L}++`, ` ?\p{N}++`, ` ?[^\s\p{L}\p{N}]++`: the space and the
///   maximal run of that class. A letter, number or symbol without a space: the same run.
/// - whitespace: `\s++$` when the run reaches the end of text (all of it); else `\s+(?!\S)`, the run minus its
///   last character, which then starts the next piece (as the optional space above when it is U+0020, else alone
///   by `\s`); a run of one character is `\s` itself.
/// Classes: ASCII by comparisons; other characters from a table (`classify`) that follows tiktoken's Unicode version.
func preTokenize(_ text: UnsafeBufferPointer<UInt8>, _ piece: (Int, Int) -> Void) {
    guard let p = text.baseAddress else { return }
    let n = text.count
    var i = 0
    while i < n {
        let b = p[i]
        // 1. Contractions: 's 'd 'm 't 'll 've 're (lowercase only).
        if b == 0x27, i + 1 < n {
            let c = p[i + 1]
            if c == 0x73 || c == 0x64 || c == 0x6D || c == 0x74 { piece(i, i + 2); i += 2; continue }
            if i + 2 < n {
                let d = p[i + 2]
                if (c == 0x6C && d == 0x6C) || (c == 0x76 && d == 0x65) || (c == 0x72 && d == 0x65) { piece(i, i + 3); i += 3; continue }
            }
        }
        // An optional leading space (U+0020 only) joins the letter, number or symbol run after it.
        var start = i
        var (cls, len) = scalarClass(p, i)
        if b == 0x20, i + 1 < n {
            let (next, nextLen) = scalarClass(p, i + 1)
            if next != .space { start = i; i += 1; cls = next; len = nextLen }
        }
        if cls != .space {
            // 2-4. A run of one class: letters, numbers, or anything that is neither (nor whitespace).
            var j = i + len
            while j < n {
                let (c, l) = scalarClass(p, j)
                if c != cls { break }
                j += l
            }
            piece(start, j)
            i = j
            continue
        }
        // 5-7. Whitespace: a run to the end of text is one piece; otherwise the run minus its last character
        // (which then leads the next piece), or a single whitespace character.
        var j = i, last = i
        while j < n {
            let (c, l) = scalarClass(p, j)
            if c != .space { break }
            last = j
            j += l
        }
        if j == n || last == i {
            piece(i, j == n ? n : last + (j - last))
            i = j == n ? n : j
        } else {
            piece(i, last)
            i = last
        }
    }
}
