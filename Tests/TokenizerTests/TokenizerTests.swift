import CLongCrawl
import Foundation
@testable import Support
import TestSupport
import XCTest
@testable import Tokenizer

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
let tokenizer = try! GPT2Tokenizer(directory: packageRoot.appendingPathComponent("data/gpt2"))
/// The books checked against tiktoken: the development corpus (53 books, 38 MB) when it is there, else
/// data/sample's eight (copies of eight of them), so a fresh clone still checks whole books.
let books = try! FileManager.default.contentsOfDirectory(at: hasCorpusDev ? corpusDev : packageRoot.appendingPathComponent("data/sample"),
                                                         includingPropertiesForKeys: nil)
    .filter { $0.pathExtension == "txt" }.sorted { $0.path < $1.path }

/// tiktoken's ids for each file, computed now by tools/tiktoken_ids.py.
func tiktokenIDs(_ files: [URL]) throws -> [[UInt16]] {
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("tiktoken-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: out) }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", packageRoot.appendingPathComponent("tools/tiktoken_ids.py").path, out.path] + files.map(\.path)
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw LongCrawlError("tools/tiktoken_ids.py failed (is tiktoken installed? run tools/setup.sh)") }
    return try files.map { f in
        let data = try Data(contentsOf: out.appendingPathComponent(f.lastPathComponent + ".ids"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
    }
}

/// tiktoken's ids for each of many short texts (invalid UTF-8 decoded with replacement), in one Python call.
func tiktokenIDs(records: [[UInt8]]) throws -> [[UInt16]] {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tiktoken-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    var input: [UInt8] = []
    for r in records { withUnsafeBytes(of: UInt32(r.count).littleEndian) { input += $0 }; input += r }
    try Data(input).write(to: dir.appendingPathComponent("in"))
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", packageRoot.appendingPathComponent("tools/tiktoken_ids.py").path, "--records",
                   dir.appendingPathComponent("in").path, dir.appendingPathComponent("out").path]
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw LongCrawlError("tools/tiktoken_ids.py failed (is tiktoken installed? run tools/setup.sh)") }
    let words = try Data(contentsOf: dir.appendingPathComponent("out")).withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
    var out: [[UInt16]] = [], i = 0
    while i < words.count {
        let n = Int(words[i]) | Int(words[i + 1]) << 16
        out.append(Array(words[(i + 2)..<(i + 2 + n)]))
        i += 2 + n
    }
    return out
}

/// Each record against tiktoken, one failure per differing record (at most 20, then a count).
func assertMatchTiktoken(_ records: [[UInt8]], _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let want = try tiktokenIDs(records: records)
    XCTAssertEqual(want.count, records.count, file: file, line: line)
    var failures = 0
    for (r, w) in zip(records, want) {
        let got = r.withUnsafeBufferPointer { tokenizer.encode(bytes: $0) }
        if got == w { continue }
        failures += 1
        if failures <= 20 { assertSameIDs(got, w, "\(what) \(String(decoding: r, as: UTF8.self).debugDescription) \(r)", file: file, line: line) }
    }
    XCTAssertEqual(failures, 0, "\(what): \(failures) of \(records.count) differ", file: file, line: line)
}

/// Fails with the first differing position and a little context, not a dump of the whole file.
func assertSameIDs(_ got: [UInt16], _ want: [UInt16], _ name: String, file: StaticString = #filePath, line: UInt = #line) {
    guard got != want else { return }
    let i = (0..<min(got.count, want.count)).first { got[$0] != want[$0] } ?? min(got.count, want.count)
    let context = { (ids: [UInt16]) in Array(ids[max(0, i - 5)..<min(ids.count, i + 5)]) }
    XCTFail("\(name): first difference at token \(i) of \(want.count) (got \(got.count)); got \(context(got)) "
            + "= \(tokenizer.decodeString(context(got)).debugDescription), want \(context(want)) = \(tokenizer.decodeString(context(want)).debugDescription)",
            file: file, line: line)
}

final class TokenizerTests: XCTestCase {
    func testKnownIDs() {
        XCTAssertEqual(tokenizer.encode("Hello world"), [15496, 995])
        XCTAssertEqual(tokenizer.encode(""), [])
        XCTAssertEqual(tokenizer.decodeString([15496, 995]), "Hello world")
        XCTAssertEqual(tokenizer.encode("<|endoftext|>").contains(GPT2.endOfText), false, "special tokens are ordinary text")
    }

    /// Every book (see `books`) and the adversarial fixtures, id for id against tiktoken.
    func testMatchesTiktokenOnCorpusAndAdversarialText() throws {
        XCTAssertEqual(books.count, hasCorpusDev ? 53 : 8, "books missing from \(books.first?.deletingLastPathComponent().path ?? "?")")
        let files = [fixtures.appendingPathComponent("adversarial.txt"), fixtures.appendingPathComponent("invalid-utf8.bin")] + books
        let expected = try tiktokenIDs(files)
        var tokens = 0
        for (f, want) in zip(files, expected) {
            let bytes = [UInt8](try Data(contentsOf: f))
            let got = bytes.withUnsafeBufferPointer { tokenizer.encode(bytes: $0) }
            assertSameIDs(got, want, f.lastPathComponent)
            tokens += got.count
        }
        XCTAssertGreaterThan(tokens, hasCorpusDev ? 10_000_000 : 1_000_000)
    }

    /// The vocabulary compiled into the binary is data/gpt2's: the same tokens, hence the same ids on any text.
    func testBuiltInVocabularyEqualsDataFolder() throws {
        let builtIn = try GPT2Tokenizer.builtIn()
        for id in 0..<GPT2.vocabularySize { XCTAssertEqual(builtIn.decode([UInt16(id)]), tokenizer.decode([UInt16(id)]), "token \(id)") }
        let text = [UInt8](try Data(contentsOf: fixtures.appendingPathComponent("adversarial.txt")))
        XCTAssertEqual(text.withUnsafeBufferPointer { builtIn.encode(bytes: $0) }, text.withUnsafeBufferPointer { tokenizer.encode(bytes: $0) })
    }

    /// Short strings one by one: each corner of the split pattern on its own, where a mistake cannot hide.
    func testMatchesTiktokenOnEachAdversarialLine() throws {
        let text = try String(contentsOf: fixtures.appendingPathComponent("adversarial.txt"), encoding: .utf8)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("adv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var lines = text.components(separatedBy: "\n")
        // Every pair of adjacent character classes, including across whitespace kinds.
        let atoms = ["a", "Z", "é", "中", "1", "٣", "½", "!", "'", "'s", "'S", " ", "  ", "\t", "\n", "\r\n", "\u{a0}", "\u{3000}", "😀", "\u{301}", "\0"]
        for x in atoms { for y in atoms { lines.append(x + y); lines.append(" " + x + " " + y + " ") } }
        let files = try lines.enumerated().map { i, l -> URL in
            let u = dir.appendingPathComponent("line\(i).txt")
            try Data(l.utf8).write(to: u)
            return u
        }
        for (l, want) in zip(lines, try tiktokenIDs(files)) { assertSameIDs(tokenizer.encode(l), want, l.debugDescription) }
    }

    func testDecodeRoundTrips() throws {
        for name in ["adversarial.txt"] {
            let bytes = [UInt8](try Data(contentsOf: fixtures.appendingPathComponent(name)))
            XCTAssertEqual(tokenizer.decode(bytes.withUnsafeBufferPointer { tokenizer.encode(bytes: $0) }), bytes)
        }
        let book = [UInt8](try Data(contentsOf: hasCorpusDev ? corpusDev.appendingPathComponent("ulysses.txt") : books[0]))
        XCTAssertEqual(tokenizer.decode(book.withUnsafeBufferPointer { tokenizer.encode(bytes: $0) }), book)
    }

    /// Text on which a cache bug would show: many distinct pieces that are not tokens, so each is merged and
    /// remembered, some sharing a home slot (8-byte pieces in the piece table, whose every slot they collide in;
    /// pieces of 16-24 bytes in the piece cache, whose tables up to 4,096 slots they collide in), then more distinct
    /// pieces than a small memo holds, all repeated in turn. Encoded with the default memo, one of 5 pieces and one of
    /// none (each fresh, and carried over to a second call), and by tiktoken.
    func testPieceCacheCollisionsAndOverflowMatchTiktoken() throws {
        var rng = SplitMix64(seed: 7)
        func word(_ letters: Int) -> [UInt8] { [0x20] + (0..<letters).map { _ in UInt8(0x61 + rng.next() % 26) } }
        func isPiece(_ w: [UInt8]) -> Bool { tokenizer.encode(String(decoding: w, as: UTF8.self)).count > 1 }
        var colliding: [[UInt8]] = [], seen = Set<[UInt8]>()
        let home = UInt64(PieceTable.capacity - 1)
        while colliding.count < 24 {
            // A space and 7 letters from one random number: millions are tried, so no array per try.
            let r = rng.next()
            var key: UInt64 = 0x20
            for k in 1..<8 { key |= (0x61 + (r >> (9 * k)) % 26) << (8 * k) }
            guard withUnsafeBytes(of: key, { lc_piece_hash($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 8) }) & home == 0x2A5A5 else { continue }
            let w = withUnsafeBytes(of: key) { Array($0) }
            if isPiece(w), seen.insert(w).inserted { colliding.append(w) }
        }
        while colliding.count < 124 {
            let w = word(15 + Int(rng.next() % 9))
            if w.withUnsafeBufferPointer(TokenTable.hash) & 0xFFF == 0x5A5, isPiece(w), seen.insert(w).inserted { colliding.append(w) }
        }
        var distinct: [[UInt8]] = []
        while distinct.count < 3_000 {
            let w = word(distinct.count % 10 == 0 ? 15 + Int(rng.next() % 9) : 3 + Int(rng.next() % 6))
            if isPiece(w), seen.insert(w).inserted { distinct.append(w) }
        }
        var text: [UInt8] = []
        for round in 0..<3 {
            for w in colliding + distinct { text += w }
            for w in (colliding + distinct).reversed() { text += w + (round == 1 ? Array(",".utf8) : []) }
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("cache-\(UUID().uuidString).txt")
        try Data(text).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let want = try tiktokenIDs([file])[0]
        text.withUnsafeBufferPointer { buffer in
            for limit in [65_536, 5, 0] {
                assertSameIDs(tokenizer.encodeValid(buffer, cacheLimit: limit), want, "cache limit \(limit)")
                // A memo carried over from a call on the same text: its pieces are found cached (or, full, it starts over).
                var memo = TokenizerMemo(limit: limit)
                for call in 0..<2 { assertSameIDs(tokenizer.encodeValid(buffer, memo: &memo), want, "cache limit \(limit), memo call \(call)") }
            }
        }
    }

    /// 10,000 random strings mixing characters of every general category (as the stdlib sees them, which includes
    /// characters newer than tiktoken's Unicode tables) with the characters the split pattern turns on: spaces,
    /// apostrophes, contraction letters, digits, ASCII letters and punctuation.
    func testRandomStringsOfEveryCategoryMatchTiktoken() throws {
        var pools: [Unicode.GeneralCategory: [Unicode.Scalar]] = [:]
        for v in 0...0x10FFFF { if let c = Unicode.Scalar(v) { pools[c.properties.generalCategory, default: []].append(c) } }
        let categories = pools.keys.sorted { "\($0)" < "\($1)" }
        XCTAssertEqual(categories.count, 29, "every general category but surrogates, which are not scalars")
        let pivots = Array(" '  \t\n\r\u{a0}\u{3000}sdmtlvreSDMTLVRE019aZ.,-!?\"/".unicodeScalars)
        var rng = SplitMix64(seed: 30)
        var records: [[UInt8]] = []
        for _ in 0..<10_000 {
            var s = String.UnicodeScalarView()
            for _ in 0..<(1 + rng.next(below: 16)) {
                if rng.next() % 2 == 0 {
                    let pool = pools[categories[Int(rng.next(below: UInt64(categories.count)))]]!
                    s.append(pool[Int(rng.next(below: UInt64(pool.count)))])
                } else {
                    s.append(pivots[Int(rng.next(below: UInt64(pivots.count)))])
                }
            }
            records.append(Array(String(s).utf8))
        }
        try assertMatchTiktoken(records, "random string")
    }

    /// Invalid UTF-8 as `encode(bytes:)` gets it: random bytes, and valid text with truncated sequences, overlongs,
    /// surrogates, bytes above U+10FFFF and stray continuation bytes spliced in.
    func testInvalidUTF8MatchesTiktokenAfterReplacement() throws {
        let bad: [[UInt8]] = [[0xC3], [0xE2, 0x82], [0xF0, 0x9F, 0x98], [0xC0, 0x80], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80],
                              [0xF4, 0x90, 0x80, 0x80], [0xF5], [0xFF], [0x80], [0xBF, 0xBF], [0xF8, 0x88, 0x80, 0x80, 0x80]]
        let good: [[UInt8]] = ["a", " ", "'s", "é", "中", "😀", "1", "\n", " x", "!"].map { Array($0.utf8) }
        var rng = SplitMix64(seed: 8)
        var records: [[UInt8]] = []
        for k in 0..<3_000 {
            var r: [UInt8] = []
            for _ in 0..<(1 + rng.next(below: 12)) {
                if k % 3 == 0 { r.append(UInt8(truncatingIfNeeded: rng.next())) }
                else if rng.next() % 3 == 0 { r += bad[Int(rng.next(below: UInt64(bad.count)))] }
                else { r += good[Int(rng.next(below: UInt64(good.count)))] }
            }
            records.append(r)
        }
        try assertMatchTiktoken(records, "invalid UTF-8")
    }

    /// Every White_Space code point (and three look-alikes that are not), alone, in runs, before and after letters,
    /// spaces and the end of text: the `\s+(?!\S)` rule.
    func testEveryWhitespaceCodePointMatchesTiktoken() throws {
        let white: [Unicode.Scalar] = (0x09...0x0D).map { Unicode.Scalar($0)! } + [" ", "\u{85}", "\u{a0}", "\u{1680}"]
            + (0x2000...0x200A).map { Unicode.Scalar($0)! } + ["\u{2028}", "\u{2029}", "\u{202f}", "\u{205f}", "\u{3000}", "\u{180e}", "\u{200b}", "\u{feff}"]
        var records: [[UInt8]] = []
        for w in white.map(String.init) {
            for o in [" ", "\n", "\u{3000}"] {
                for s in [w, w + w, w + w + w, "a" + w + "b", "a" + w + w + "b", w + "x", w + w + "x", " " + w + "x", w + " x",
                          w + o + "x", o + w + "x", w + w + o + o + "1", "a" + w + o, "!" + w + "'s", "a" + w + w] {
                    records.append(Array(s.utf8))
                }
            }
        }
        try assertMatchTiktoken(records, "whitespace")
    }

    /// The seven contractions in every mix of case (GPT-2's are lowercase only), after letters, digits, symbols,
    /// spaces, apostrophes and at the start and end.
    func testContractionsInEveryCaseMatchTiktoken() throws {
        var forms: [String] = []
        for c in ["s", "d", "m", "t", "ll", "ve", "re"] {
            var variants = [""]
            for ch in c { variants = variants.flatMap { [$0 + ch.lowercased(), $0 + ch.uppercased()] } }
            forms += variants
        }
        var records: [[UInt8]] = []
        for f in forms {
            for s in ["'" + f, "it'" + f, "IT'" + f + " x", " '" + f, "''" + f, "'" + f + "'", "1'" + f, "!'" + f, "x '" + f + "s",
                      "'" + f + "x", "'" + f + "1", "  '" + f, "\n'" + f, "é'" + f, "'" + f + " '" + f] {
                records.append(Array(s.utf8))
            }
        }
        try assertMatchTiktoken(records, "contraction")
    }

    /// Runs of digits, letters and punctuation in every order, with and without a space or an apostrophe between.
    func testDigitsLettersAndPunctuationMatchTiktoken() throws {
        let runs = ["7", "2024", "1234567890123", "٣٤", "½", "a", "The", "données", "中文", "!", "...", "?!\"", "--", "$", "'"]
        var records: [[UInt8]] = []
        for x in runs { for y in runs { for sep in ["", " ", "  ", "'", ",", "\n"] { for z in ["", "x", "9", "."] { records.append(Array((x + sep + y + z).utf8)) } } } }
        try assertMatchTiktoken(records, "digits, letters and punctuation")
    }

    func testBadVocabularyFilesAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vocab-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try GPT2Tokenizer(directory: dir)) { XCTAssertTrue("\($0)".contains("encoder.json"), "\($0)") }
        try Data("{not json".utf8).write(to: dir.appendingPathComponent("encoder.json"))
        XCTAssertThrowsError(try GPT2Tokenizer(directory: dir)) { XCTAssertTrue("\($0)".contains("encoder.json: not a JSON"), "\($0)") }
        try FileManager.default.copyItem(at: packageRoot.appendingPathComponent("data/gpt2/encoder.json"), to: dir.appendingPathComponent("e.json"))
        try FileManager.default.removeItem(at: dir.appendingPathComponent("encoder.json"))
        try FileManager.default.moveItem(at: dir.appendingPathComponent("e.json"), to: dir.appendingPathComponent("encoder.json"))
        var merges = try String(contentsOf: packageRoot.appendingPathComponent("data/gpt2/vocab.bpe"), encoding: .utf8).components(separatedBy: "\n")
        merges.swapAt(10, 11)
        try Data(merges.joined(separator: "\n").utf8).write(to: dir.appendingPathComponent("vocab.bpe"))
        XCTAssertThrowsError(try GPT2Tokenizer(directory: dir)) { XCTAssertTrue("\($0)".contains("vocab.bpe: line 11"), "\($0)") }
        merges.swapAt(10, 11)
        try Data(merges.prefix(20_000).joined(separator: "\n").utf8).write(to: dir.appendingPathComponent("vocab.bpe"))
        XCTAssertThrowsError(try GPT2Tokenizer(directory: dir)) { XCTAssertTrue("\($0)".hasSuffix("vocab.bpe: 19999 merges, expected 50000"), "\($0)") }
        var garbled = Data(merges.joined(separator: "\n").utf8)
        garbled[merges.prefix(700).reduce(0) { $0 + $1.utf8.count + 1 }] = 0xFF  // first byte of line 701
        try garbled.write(to: dir.appendingPathComponent("vocab.bpe"))
        XCTAssertThrowsError(try GPT2Tokenizer(directory: dir)) { XCTAssertTrue("\($0)".hasSuffix("vocab.bpe: line 701: not UTF-8"), "\($0)") }
    }
}
