import CLongCrawl
import Foundation
import Support

/// RedPajama-v2's quality signals of one document, computed from its text as RPv2's `quality_signals` code does
/// (docs/GUIDE.md, "Quality rules", has the definitions), with Python's meaning of whitespace, `\w`, `str.lower` and NFD.
///
/// Three views of the text, all over Unicode scalars (Python's code points):
/// - *normalized words*: the 32 ASCII punctuation characters deleted, `str.lower` (full mappings, final sigma),
///   split on `str.isspace` runs, each word NFD; a word's length counts its scalars after NFD;
/// - *raw words*: the tokens of `\w+|[^\w\s]+` (NLTK's WordPunctTokenizer), `\w` being a letter (L*), a scalar with
///   a numeric type, or `_`, exactly Python's `re` on Unicode 14 assigned characters;
/// - *lines*: `[^\n]*\n|[^\n]+$`, empty lines kept.
///
/// `analyze` reads the text once for the word-, symbol- and line-based signals; the n-gram signals come from
/// `NGrams`, built on demand, so a rule that fails a cheap signal never pays for them.
public struct QualitySignals: Sendable {
    /// `rps_doc_word_count`: normalized words.
    var wordCount: Int
    /// `rps_doc_mean_word_length`: scalars of the normalized words / their number; nil without words.
    var meanWordLength: Double?
    /// `rps_doc_symbol_to_word_ratio`: occurrences of `#`, `...` and `…` (non-overlapping, as `str.count`) / raw
    /// words; nil without raw words.
    var symbolToWordRatio: Double?
    /// `rps_doc_frac_lines_end_with_ellipsis`: lines whose right-stripped text ends with `...` or `…`; nil without lines.
    var fracLinesEndWithEllipsis: Double?
    /// `rps_lines_start_with_bulletpoint` as the recipe uses it: the share of lines whose left-stripped text starts
    /// with one of RPv2's ten bullets (RPv2 publishes one 0/1 per line and does not round); nil without lines.
    var fracLinesStartWithBullet: Double?
    /// `rps_doc_frac_no_alph_words`: 1 - raw words holding an ASCII letter / raw words; nil without raw words.
    var fracNoAlphaWords: Double?
    /// The normalized words as ids (equal words, equal ids; ids in order of first occurrence) and each id's length.
    let words: [Int32]
    let wordLengths: [Int32]
    /// Each id's 64-bit hash of its NFD UTF-8: equal words hash equally across documents (for MinHash).
    let wordHashes: [UInt64]
    /// Scalars of all normalized words.
    let totalChars: Int

    /// RPv2's names of the n-gram signals, in the order `topNGram` and `dupeNGrams` take n.
    static let topNames = (2...4).map { "rps_doc_frac_chars_top_\($0)gram" }
    static let dupeNames = (5...10).map { "rps_doc_frac_chars_dupe_\($0)grams" }

    /// Every signal under RPv2's name, in RPv2's order of the recipe: the cheap ones, then the n-gram ones.
    public func all() -> [(name: String, value: Double?)] {
        let grams = NGrams(self)
        return [("rps_doc_word_count", Double(wordCount)), ("rps_doc_mean_word_length", meanWordLength),
                ("rps_doc_symbol_to_word_ratio", symbolToWordRatio),
                ("rps_doc_frac_lines_end_with_ellipsis", fracLinesEndWithEllipsis),
                ("rps_lines_start_with_bulletpoint", fracLinesStartWithBullet), ("rps_doc_frac_no_alph_words", fracNoAlphaWords)]
            + zip(Self.topNames, (2...4).map { grams.top($0) }).map { ($0, $1) }
            + zip(Self.dupeNames, (5...10).map { grams.dupe($0) }).map { ($0, $1) }
    }

    /// Reads `text` (UTF-8; an invalid byte counts as U+FFFD, as Python's `errors="replace"`).
    public init(utf8 text: [UInt8]) {
        self = text.withUnsafeBufferPointer { Self.analyze($0) }
    }

    private init(wordCount: Int, meanWordLength: Double?, symbolToWordRatio: Double?, fracLinesEndWithEllipsis: Double?,
                 fracLinesStartWithBullet: Double?, fracNoAlphaWords: Double?, words: [Int32], wordLengths: [Int32], wordHashes: [UInt64], totalChars: Int) {
        self.wordCount = wordCount; self.meanWordLength = meanWordLength; self.symbolToWordRatio = symbolToWordRatio
        self.fracLinesEndWithEllipsis = fracLinesEndWithEllipsis; self.fracLinesStartWithBullet = fracLinesStartWithBullet
        self.fracNoAlphaWords = fracNoAlphaWords; self.words = words; self.wordLengths = wordLengths; self.wordHashes = wordHashes; self.totalChars = totalChars
    }

    private static func analyze(_ text: UnsafeBufferPointer<UInt8>) -> QualitySignals {
        asciiFlags.withUnsafeBufferPointer { analyze(text, $0) }
    }

    /// `asciiFlags` passed in: a global read per byte would go through its lazy initializer each time.
    private static func analyze(_ text: UnsafeBufferPointer<UInt8>, _ asciiFlags: UnsafeBufferPointer<UInt8>) -> QualitySignals {
        let n = text.count
        var table = WordTable()
        var words: [Int32] = []
        words.reserveCapacity(n / 5)
        var word: [UInt8] = [], wordASCII = true
        // Raw words: the class of the previous scalar (0 space or none, 1 \w, 2 other), and whether the current
        // \w run has counted its ASCII letter yet.
        var rawClass = 0, rawWords = 0, alphaWords = 0, runHasAlpha = false
        var symbols = 0, dots = 0
        var lines = 0, bulletLines = 0, ellipsisLines = 0
        var lineStart = 0, lineHasText = false, lastTextEnd = 0
        // Final sigma: whether the last scalar that is not case-ignorable (ASCII punctuation deleted) is cased.
        var afterCased = false

        func endWord() {
            guard !word.isEmpty else { return }
            words.append(table.intern(word, ascii: wordASCII))
            word.removeAll(keepingCapacity: true)
            wordASCII = true
        }
        func endLine(at end: Int) {
            lines += 1
            if lineHasText, lastTextEnd - lineStart >= 3 {
                let a = text[lastTextEnd - 3], b = text[lastTextEnd - 2], c = text[lastTextEnd - 1]
                if (a == 0x2E && b == 0x2E && c == 0x2E) || (a == 0xE2 && b == 0x80 && c == 0xA6) { ellipsisLines += 1 }
            }
            lineStart = end; lineHasText = false
        }

        var i = 0
        while i < n {
            let start = i
            let b = text[i]
            if b < 0x80 {
                i += 1
                let flags = asciiFlags[Int(b)]
                if b == 0x2E { dots += 1 } else { symbols += dots / 3; dots = 0; if b == 0x23 { symbols += 1 } }
                if flags & isSpace != 0 {
                    rawClass = 0
                    endWord()
                    afterCased = false
                    if b == 0x0A { endLine(at: i) }
                    continue
                }
                if !lineHasText { lineHasText = true }
                lastTextEnd = i
                let cls = flags & isWord != 0 ? 1 : 2
                if cls != rawClass { rawWords += 1; rawClass = cls; runHasAlpha = false }
                if flags & isLetter != 0 {
                    if !runHasAlpha { alphaWords += 1; runHasAlpha = true }
                    afterCased = true
                    word.append(b | 0x20)
                } else if flags & isPunctuation == 0 {
                    afterCased = false
                    word.append(b)
                }
                continue
            }
            symbols += dots / 3; dots = 0
            let scalar = decode(text, &i)
            if isPythonSpace(scalar) {
                rawClass = 0
                endWord()
                afterCased = false
                continue
            }
            if !lineHasText {
                lineHasText = true
                if bullets.contains(scalar.value) { bulletLines += 1 }
            }
            lastTextEnd = i
            if scalar.value == 0x2026 { symbols += 1 }
            let props = scalar.properties
            let cls = isPythonWord(props) ? 1 : 2
            if cls != rawClass { rawWords += 1; rawClass = cls; runHasAlpha = false }
            wordASCII = false
            if scalar.value == 0x3A3 {
                appendUTF8(isFinalSigma(text, after: i, afterCased: afterCased) ? 0x3C2 : 0x3C3, to: &word)
            } else if props.changesWhenLowercased {
                word.append(contentsOf: props.lowercaseMapping.utf8)
            } else if scalar.value == 0xFFFD {
                appendUTF8(0xFFFD, to: &word)
            } else {
                word.append(contentsOf: text[start..<i])
            }
            if !props.isCaseIgnorable { afterCased = props.isCased }
        }
        symbols += dots / 3
        endWord()
        if lineStart < n { endLine(at: n) }

        let chars = words.reduce(0) { $0 + Int(table.lengths[Int($1)]) }
        return QualitySignals(
            wordCount: words.count,
            meanWordLength: words.isEmpty ? nil : roundPython(Double(chars) / Double(words.count)),
            symbolToWordRatio: rawWords == 0 ? nil : roundPython(Double(symbols) / Double(rawWords)),
            fracLinesEndWithEllipsis: lines == 0 ? nil : roundPython(Double(ellipsisLines) / Double(lines)),
            fracLinesStartWithBullet: lines == 0 ? nil : Double(bulletLines) / Double(lines),
            fracNoAlphaWords: rawWords == 0 ? nil : roundPython(1.0 - Double(alphaWords) / Double(rawWords)),
            words: words, wordLengths: table.lengths, wordHashes: table.contentHashes, totalChars: chars)
    }

    /// `rps_doc_word_count` alone, in one pass over the bytes with no word built: the runs of scalars other than
    /// Python's whitespace that hold a scalar other than ASCII punctuation (RPv2 deletes it before splitting, and
    /// neither `str.lower` nor NFD makes or removes whitespace). Non-ASCII scalars are decoded and tested as in
    /// `analyze` (an invalid byte is U+FFFD, not whitespace).
    static func wordCount(utf8 text: UnsafeBufferPointer<UInt8>) -> Int {
        asciiFlags.withUnsafeBufferPointer { flags in
            let n = text.count
            // inWord: 1 inside a run that has counted its word. ASCII without branches (a word ends every few bytes,
            // where a branch would be mispredicted): a space clears it, punctuation keeps it, anything else sets it.
            var words = 0, inWord: UInt = 0, i = 0
            while i < n {
                let b = text[i]
                if b < 0x80 {
                    let notFlags = ~UInt(flags[Int(b)])
                    let keep = notFlags & UInt(isSpace), word = keep & (notFlags >> 3) & 1
                    words &+= Int(bitPattern: word & (inWord ^ 1))
                    inWord = (inWord & keep) | word
                    i += 1
                } else if isPythonSpace(decode(text, &i)) {
                    inWord = 0
                } else {
                    words &+= Int(bitPattern: inWord ^ 1)
                    inWord = 1
                }
            }
            return words
        }
    }

    /// Python's final-sigma rule (`str.lower` of U+03A3): final when a cased scalar comes before it (across
    /// case-ignorable ones) and none after it. ASCII punctuation is skipped: RPv2 deletes it before lowercasing.
    private static func isFinalSigma(_ text: UnsafeBufferPointer<UInt8>, after: Int, afterCased: Bool) -> Bool {
        guard afterCased else { return false }
        var i = after
        while i < text.count {
            if text[i] < 0x80, asciiFlags[Int(text[i])] & isPunctuation != 0 { i += 1; continue }
            let props = decode(text, &i).properties
            if !props.isCaseIgnorable { return !props.isCased }
        }
        return true
    }
}

/// The n-gram signals of one document, computed level by level (n = 2, 3, ...) and kept: an n-gram is the
/// (n-1)-gram at its position plus one word, so each level interns pairs of ids, and only n-grams whose two
/// (n-1)-grams both repeat can repeat; every other position is marked unique (-1) without hashing.
final class NGrams {
    private let signals: QualitySignals
    /// Per level n (index n): the n-gram id at each position (-1: occurs once), and each id's count and first position.
    private var ids: [[Int32]], counts: [[Int32]], firsts: [[Int32]]

    public init(_ signals: QualitySignals) {
        self.signals = signals
        var wordCounts = [Int32](repeating: 0, count: signals.wordLengths.count)
        for w in signals.words { wordCounts[Int(w)] += 1 }
        ids = [[], signals.words]; counts = [[], wordCounts]; firsts = [[], []]
    }

    /// Builds level n from level n - 1.
    private func level(_ n: Int) {
        while ids.count <= n {
            let m = ids.count
            var cur = [Int32](repeating: -1, count: max(signals.words.count - m + 1, 0)), count: [Int32] = [], first: [Int32] = []
            ids[m - 1].withUnsafeBufferPointer { prev in
            counts[m - 1].withUnsafeBufferPointer { prevCounts in
            signals.words.withUnsafeBufferPointer { words in
                // Positions where both (n-1)-grams repeat: the only ones that can, and all the table must hold.
                var candidates: [Int32] = []
                for i in 0..<cur.count {
                    let a = prev[i], b = prev[i + 1]
                    if a >= 0, b >= 0, prevCounts[Int(a)] > 1, prevCounts[Int(b)] > 1 { candidates.append(Int32(i)) }
                }
                let key = { (i: Int32) in UInt64(UInt32(prev[Int(i)])) << 32 | UInt64(UInt32(words[Int(i) + m - 1])) }
                let pairs = PairTable(capacity: candidates.count)
                // A probe of a table larger than the caches misses; the address is known a few positions ahead.
                let ahead = 12
                for (j, i) in candidates.enumerated() {
                    if j + ahead < candidates.count { pairs.prefetch(key(candidates[j + ahead])) }
                    let id = pairs.intern(key(i), next: Int32(count.count))
                    if Int(id) == count.count { count.append(0); first.append(i) }
                    count[Int(id)] += 1
                    cur[Int(i)] = id
                }
            } } }
            ids.append(cur); counts.append(count); firsts.append(first)
        }
    }

    /// `rps_doc_frac_chars_top_{n}gram`: the most frequent n-gram (the first seen among equals, as Python's
    /// `Counter.most_common(1)`): its words' scalars times its count / all words' scalars; 0 when none repeats.
    public func top(_ n: Int) -> Double {
        level(n)
        var best = -1, bestCount: Int32 = 1
        for (id, c) in counts[n].enumerated() where c > bestCount { best = id; bestCount = c }
        guard best >= 0 else { return 0 }
        let start = Int(firsts[n][best])
        let chars = (start..<start + n).reduce(0) { $0 + Int(signals.wordLengths[Int(signals.words[$1])]) }
        return roundPython(Double(chars * Int(bestCount)) / Double(signals.totalChars))
    }

    /// `rps_doc_frac_chars_dupe_{n}grams`: scalars of the words covered by any occurrence of a repeated n-gram /
    /// all words' scalars; 0 with fewer than n words.
    public func dupe(_ n: Int) -> Double {
        level(n)
        let words = signals.words, lengths = signals.wordLengths, count = counts[n]
        var covered = 0, chars = 0
        for (i, id) in ids[n].enumerated() where id >= 0 && count[Int(id)] > 1 {
            for j in max(i, covered)..<(i + n) { chars += Int(lengths[Int(words[j])]) }
            covered = i + n
        }
        return signals.totalChars == 0 ? 0 : roundPython(Double(chars) / Double(signals.totalChars))
    }
}

/// Python's `round(x, 8)`: correctly rounded to 8 decimals (glibc's `%.8f`, as CPython's dtoa), read back.
func roundPython(_ x: Double) -> Double {
    withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
        _ = withVaList([x]) { vsnprintf(buffer.baseAddress, 64, "%.8f", $0) }
        return strtod(buffer.baseAddress!, nil)
    }
}

// MARK: - Python's character classes

private let isSpace: UInt8 = 1, isWord: UInt8 = 2, isLetter: UInt8 = 4, isPunctuation: UInt8 = 8

/// Per ASCII byte: `str.isspace`, `\w`, `[a-zA-Z]`, `string.punctuation`.
private let asciiFlags: [UInt8] = (0..<128).map { b -> UInt8 in
    let c = UInt8(b)
    var f: UInt8 = 0
    if (0x09...0x0D).contains(c) || (0x1C...0x20).contains(c) { f |= isSpace }
    let letter = (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c)
    if letter { f |= isLetter | isWord }
    if (0x30...0x39).contains(c) || c == 0x5F { f |= isWord }
    if (0x21...0x2F).contains(c) || (0x3A...0x40).contains(c) || (0x5B...0x60).contains(c) || (0x7B...0x7E).contains(c) { f |= isPunctuation }
    return f
}

/// `str.isspace` beyond ASCII (Python 3.11, Unicode 14; unchanged since).
private func isPythonSpace(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: true
    default: false
    }
}

/// `re`'s `\w` beyond ASCII: `str.isalnum`, i.e. a letter or a scalar with a numeric type.
private func isPythonWord(_ p: Unicode.Scalar.Properties) -> Bool {
    switch p.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: true
    default: p.numericType != nil
    }
}

/// RPv2's ten bullets: U+2022, U+2023, U+25B6, U+25C0, U+25E6, U+25A0, U+25A1, U+25AA, U+25AB, U+2013.
private let bullets: Set<UInt32> = [0x2022, 0x2023, 0x25B6, 0x25C0, 0x25E6, 0x25A0, 0x25A1, 0x25AA, 0x25AB, 0x2013]

/// The scalar at `i` (non-ASCII lead byte), advancing past it; an invalid sequence is one U+FFFD per byte.
private func decode(_ text: UnsafeBufferPointer<UInt8>, _ i: inout Int) -> Unicode.Scalar {
    let b0 = UInt32(text[i]), n = text.count
    func cont(_ k: Int) -> UInt32? { i + k < n && text[i + k] & 0xC0 == 0x80 ? UInt32(text[i + k] & 0x3F) : nil }
    var value: UInt32?, length = 1
    if b0 < 0x80 { value = b0 }
    else if b0 >= 0xC2, b0 < 0xE0, let c1 = cont(1) { value = (b0 & 0x1F) << 6 | c1; length = 2 }
    else if b0 >= 0xE0, b0 < 0xF0, let c1 = cont(1), let c2 = cont(2) {
        let v = (b0 & 0x0F) << 12 | c1 << 6 | c2
        if v >= 0x800, !(0xD800...0xDFFF).contains(v) { value = v; length = 3 }
    } else if b0 >= 0xF0, b0 < 0xF5, let c1 = cont(1), let c2 = cont(2), let c3 = cont(3) {
        let v = (b0 & 0x07) << 18 | c1 << 12 | c2 << 6 | c3
        if v >= 0x10000, v <= 0x10FFFF { value = v; length = 4 }
    }
    i += length
    return value.flatMap(Unicode.Scalar.init) ?? "\u{FFFD}"
}

/// Appends a 2- or 3-byte scalar (U+03C2, U+03C3, U+FFFD) as UTF-8.
private func appendUTF8(_ value: UInt32, to bytes: inout [UInt8]) {
    if value < 0x800 {
        bytes += [UInt8(0xC0 | value >> 6), UInt8(0x80 | value & 0x3F)]
    } else {
        bytes += [UInt8(0xE0 | value >> 12), UInt8(0x80 | value >> 6 & 0x3F), UInt8(0x80 | value & 0x3F)]
    }
}

// MARK: - Interning

/// Normalized words to dense ids, keyed by their lowercased UTF-8 before NFD: a word with non-ASCII scalars is
/// decomposed once, and its NFD form interned too, so the composed and decomposed spellings share one id.
private struct WordTable {
    /// Open addressing: entry index + 1, 0 empty.
    private var slots = [Int32](repeating: 0, count: 1 << 12)
    private var hashes: [UInt64] = [], starts: [Int], ends: [Int], entryWord: [Int32] = []
    private var arena: [UInt8] = []
    /// Scalars of each word id (after NFD).
    var lengths: [Int32] = []
    /// Each word id's hash of its NFD UTF-8, mixed (`WordTable.hash` alone is weak in its low bits).
    var contentHashes: [UInt64] = []

    init() { starts = []; ends = [] }

    mutating func intern(_ word: [UInt8], ascii: Bool) -> Int32 {
        let h = hash(word)
        if let e = find(word, h) { return entryWord[e] }
        let id: Int32
        if ascii {
            id = Int32(lengths.count)
            lengths.append(Int32(word.count))
            contentHashes.append(SplitMix64.mix(h))
        } else {
            let nfd = Array(String(decoding: word, as: UTF8.self).decomposedStringWithCanonicalMapping.utf8)
            if nfd == word {
                id = Int32(lengths.count)
                lengths.append(Int32(nfd.reduce(0) { $0 + ($1 & 0xC0 != 0x80 ? 1 : 0) }))
                contentHashes.append(SplitMix64.mix(h))
            } else {
                id = intern(nfd, ascii: false)
            }
        }
        insert(word, h, id)
        return id
    }

    private func find(_ word: [UInt8], _ h: UInt64) -> Int? {
        let mask = slots.count - 1
        var s = Int(truncatingIfNeeded: h) & mask
        while slots[s] != 0 {
            let e = Int(slots[s]) - 1
            if hashes[e] == h, ends[e] - starts[e] == word.count, arena.withUnsafeBufferPointer({ a in
                word.withUnsafeBufferPointer { memcmp(a.baseAddress! + starts[e], $0.baseAddress!, $0.count) == 0 }
            }) { return e }
            s = (s + 1) & mask
        }
        return nil
    }

    private mutating func insert(_ word: [UInt8], _ h: UInt64, _ id: Int32) {
        if (hashes.count + 1) * 2 > slots.count { grow() }
        hashes.append(h); starts.append(arena.count); arena.append(contentsOf: word); ends.append(arena.count); entryWord.append(id)
        place(hashes.count - 1)
    }

    private mutating func place(_ e: Int) {
        let mask = slots.count - 1
        var s = Int(truncatingIfNeeded: hashes[e]) & mask
        while slots[s] != 0 { s = (s + 1) & mask }
        slots[s] = Int32(e + 1)
    }

    private mutating func grow() {
        slots = [Int32](repeating: 0, count: slots.count * 2)
        for e in hashes.indices { place(e) }
    }

    private func hash(_ word: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in word { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h ^ (h >> 29)
    }
}

/// Pairs of ids (packed in 64 bits) to dense ids, for one n-gram level; key and id side by side, so a probe
/// touches one cache line.
private final class PairTable {
    private struct Slot { var key: UInt64; var id: Int32 }
    private let slots: UnsafeMutablePointer<Slot>
    private let size: Int, shift: UInt64

    init(capacity: Int) {
        var bits = 4
        while 1 << bits < capacity * 2 { bits += 1 }
        size = 1 << bits; shift = UInt64(64 - bits)
        slots = .allocate(capacity: size)
        slots.initialize(repeating: Slot(key: .max, id: 0), count: size)
    }

    deinit { slots.deallocate() }

    /// The key's first slot: the high bits of a multiplicative hash.
    private func slot(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    func prefetch(_ key: UInt64) { lc_prefetch(slots + slot(key)) }

    /// The key's id, or `next` for a new key.
    func intern(_ key: UInt64, next: Int32) -> Int32 {
        var s = slot(key)
        while slots[s].key != .max {
            if slots[s].key == key { return slots[s].id }
            s = (s + 1) & (size - 1)
        }
        slots[s] = Slot(key: key, id: next)
        return next
    }
}
