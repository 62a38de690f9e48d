import CLongCrawl

/// GPT-2's pre-tokenizer: how `lc_gpt2_encode` (Sources/CLongCrawl/gpt2.c) splits text exactly as tiktoken's `gpt2`
/// pattern
///
///     '(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s
///
/// does, with `\s` = Unicode White_Space, `\p{L}` and `\p{N}` = the general categories L* and N*, and the
/// contractions case-sensitive. BPE then runs inside each piece.
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
/// Classes: ASCII from a 128-byte table; other characters from `characterClasses`, which follows tiktoken's Unicode
/// version. Letter runs go 16 ASCII bytes a step (SSE compares), the rest a character a step.
enum CharClass: UInt8 {
    case letter, number, space, other
}

/// Unicode White_Space outside ASCII (the property is fixed by the standard).
private func isNonASCIIWhiteSpace(_ v: UInt32) -> Bool {
    v == 0x85 || v == 0xA0 || v == 0x1680 || (v >= 0x2000 && v <= 0x200A) || v == 0x2028 || v == 0x2029 || v == 0x202F || v == 0x205F || v == 0x3000
}

/// The Unicode version of tiktoken's tables (Rust regex 1.13 in tiktoken 0.14). The stdlib's may be newer: a
/// character assigned after it is unassigned to tiktoken, so neither a letter nor a number.
let tiktokenUnicodeVersion = (major: 16, minor: 0)

/// The classes of U+0000 ..< U+40000 (`LC_GPT2_CLASS_END`; no letter, number or White_Space lies above), four to a
/// byte, for the scanner: one load per non-ASCII character instead of two property lookups. Built on first use (tens
/// of milliseconds, once per process).
/// Unchecked: written only by its lazy initializer (run once, thread-safely, as every global's), only read after.
nonisolated(unsafe) let characterClasses: UnsafePointer<UInt8> = {
    let end = Int(LC_GPT2_CLASS_END)
    let table = UnsafeMutablePointer<UInt8>.allocate(capacity: end / 4)
    table.initialize(repeating: 0, count: end / 4)
    for v in 0..<UInt32(end) { table[Int(v >> 2)] |= propertyClass(v).rawValue << (2 * (v & 3)) }
    return UnsafePointer(table)
}()

private func propertyClass(_ v: UInt32) -> CharClass {
    if v < 0x80 {
        switch v {
        case 0x41...0x5A, 0x61...0x7A: return .letter
        case 0x30...0x39: return .number
        case 0x09...0x0D, 0x20: return .space
        default: return .other
        }
    }
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
