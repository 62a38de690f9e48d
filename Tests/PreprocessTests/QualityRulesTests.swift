import Foundation
import TestSupport
import XCTest
@testable import Preprocess

/// The quality rules as a document stage: each Gopher threshold and the word-count bounds, a document just inside
/// and just outside, counted under its own counter, in the recipe's order; the CLI options and their record.
final class QualityRulesTests: XCTestCase {
    /// Distinct five-letter words (no n-gram repeats among them), the `i`-th from `offset`.
    func filler(_ count: Int, from offset: Int = 0) -> [String] {
        (offset..<offset + count).map { i -> String in
            var v = i, letters: [UInt8] = []
            for _ in 0..<5 { letters.append(UInt8(97 + v % 26)); v /= 26 }
            return String(decoding: letters, as: UTF8.self)
        }
    }

    /// `total` five-letter words, ten a line, holding `copies` occurrences of one `n`-gram, each followed by a
    /// distinct word (so no longer n-gram repeats).
    func document(total: Int, gram n: Int = 0, copies: Int = 0) -> Document {
        let gram = filler(n, from: 400_000)
        var words: [String] = [], fill = filler(total).makeIterator()
        for _ in 0..<copies { words += gram; words.append(fill.next()!) }
        while words.count < total { words.append(fill.next()!) }
        return doc(stride(from: 0, to: words.count, by: 10).map { words[$0..<min($0 + 10, words.count)].joined(separator: " ") })
    }

    func doc(_ lines: [String]) -> Document {
        Document(ordinal: 0, id: "d", origin: "d", text: Array(lines.joined(separator: "\n").utf8), part: 0)
    }

    /// The counter the rules of `thresholds` drop `d` under, in their order (nil: kept).
    func drop(_ d: Document, _ t: QualityThresholds = .gopher) -> String? { t.rules.lazy.compactMap { $0.drop(d) }.first }

    func testWordCountBounds() {
        var t = QualityThresholds.gopher
        t.minWords = 100; t.maxWords = 200
        XCTAssertEqual(drop(document(total: 99), t), "word_count")
        XCTAssertNil(drop(document(total: 100), t))
        XCTAssertNil(drop(document(total: 200), t))
        XCTAssertEqual(drop(document(total: 201), t), "word_count")
        XCTAssertEqual(QualityThresholds.longcrawl64.minWords, 16000)
        XCTAssertNil(QualityThresholds.longcrawl64.maxWords)
    }

    func testMeanWordLength() {
        let three = (0..<100).map { i in filler(1, from: i)[0].prefix(3) }.joined(separator: " ")
        XCTAssertNil(drop(doc([three])))
        XCTAssertEqual(drop(doc([three + " ab"])), "mean_word_length")
        let ten = filler(100).map { $0 + $0 }.joined(separator: " ")
        XCTAssertNil(drop(doc([ten])))
        XCTAssertEqual(drop(doc([ten + " abcdefghijk"])), "mean_word_length")
        XCTAssertEqual(drop(doc(["... ### !!!"])), "mean_word_length", "no words: the signal is null")
    }

    func testSymbolRatio() {
        // 90 words and 10 '#' tokens: 10 / 100 raw words.
        XCTAssertNil(drop(doc([filler(90).joined(separator: " ") + String(repeating: " #", count: 10)])))
        XCTAssertEqual(drop(doc([filler(89).joined(separator: " ") + String(repeating: " #", count: 10)])), "symbol_ratio")
    }

    func testBulletLines() {
        let lines = (0..<11).map { filler(9, from: $0 * 9).joined(separator: " ") }
        XCTAssertNil(drop(doc((0..<10).map { ($0 < 9 ? "• " : "") + lines[$0] })))
        XCTAssertEqual(drop(doc((0..<11).map { ($0 < 10 ? "\u{2013} " : "") + lines[$0] })), "bullet_lines")
    }

    func testEllipsisLines() {
        let lines = (0..<13).map { filler(9, from: $0 * 9).joined(separator: " ") }
        XCTAssertNil(drop(doc((0..<10).map { lines[$0] + ($0 < 3 ? "..." : "") })))
        XCTAssertEqual(drop(doc((0..<13).map { lines[$0] + ($0 < 4 ? "\u{2026}" : "") })), "ellipsis_lines")
    }

    func testNoAlphaWords() {
        let digits = (0..<21).map { String(100 + $0) }
        XCTAssertNil(drop(doc([(filler(80) + digits.prefix(20)).joined(separator: " ")])))
        XCTAssertEqual(drop(doc([(filler(79) + digits).joined(separator: " ")])), "no_alpha_words")
    }

    /// With five-letter words, an n-gram occurring k times among W words covers n k / W of the characters.
    func testTopNGrams() {
        for (n, copies, total) in [(2, 10, 100), (3, 6, 100), (4, 4, 100)] {
            XCTAssertNil(drop(document(total: total, gram: n, copies: copies)), "top \(n)-gram at its threshold")
            XCTAssertEqual(drop(document(total: total - 1, gram: n, copies: copies)), "top_\(n)gram")
        }
    }

    func testDupeNGrams() {
        for (n, copies, total) in [(5, 3, 100), (6, 7, 300), (7, 13, 700), (8, 3, 200), (9, 11, 900), (10, 2, 200)] {
            let at = document(total: total, gram: n, copies: copies), over = document(total: total - 1, gram: n, copies: copies)
            XCTAssertNil(drop(at), "dupe \(n)-grams at their threshold")
            XCTAssertEqual(drop(over), "dupe_\(n)grams")
            let grams = NGrams(QualitySignals(utf8: over.text))
            XCTAssertEqual(grams.dupe(n), roundPython(Double(n * copies) / Double(total - 1)))
        }
    }

    /// A document failing several rules counts under the first; counters, the funnel and options in order.
    func testOrderOfRulesAndCounters() throws {
        let rules = QualityThresholds.longcrawl64.rules
        let gopher = ["mean_word_length", "symbol_ratio", "bullet_lines", "ellipsis_lines", "no_alpha_words",
                      "top_2gram", "top_3gram", "top_4gram", "dupe_5grams", "dupe_6grams", "dupe_7grams", "dupe_8grams",
                      "dupe_9grams", "dupe_10grams"]
        XCTAssertEqual(rules.map(\.counters), [["word_count"], gopher])
        XCTAssertEqual(rules.map(\.afterTokenizer), [false, true])
        let stage = DocumentStage(rules: rules, minTextBytes: 1)
        try stage.validate()
        // The word count before the tokenizer, the rules that read the whole text after its drop.
        XCTAssertEqual(stage.funnel, ["records", "dropped_unreadable", "dropped_empty", "dropped_too_short", "dropped_word_count",
                                      "dropped_too_few_tokens"] + gopher.map { "dropped_" + $0 } + ["kept"])
        XCTAssertEqual(stage.record["word_count.min_words"], "16000")
        XCTAssertEqual(stage.record["quality.max_dupe_10grams"], "0.1")
        XCTAssertEqual(stage.record["quality.min_mean_word_length"], "3.0")
        XCTAssertNil(stage.record["word_count.max_words"])
        XCTAssertEqual(stage.record.count, 16)
        XCTAssertEqual(QualityThresholds.gopher.rules.map(\.name), ["quality"])
        var words = QualityThresholds()
        words.maxWords = 5
        XCTAssertEqual(words.rules.map(\.name), ["word_count"])
        XCTAssertTrue(QualityThresholds().rules.isEmpty)
        // Short words, bullets, ellipses and repeats: the mean word length is tested first.
        let bad = doc(Array(repeating: "• ab ab ab ab...", count: 20))
        XCTAssertEqual(drop(bad), "mean_word_length")
        var t = QualityThresholds.gopher
        t.minMeanWordLength = nil
        XCTAssertEqual(drop(bad, t), "symbol_ratio")
        t.maxSymbolRatio = nil
        XCTAssertEqual(drop(bad, t), "bullet_lines")
        t.maxBulletLines = nil
        XCTAssertEqual(drop(bad, t), "ellipsis_lines")
        t.maxEllipsisLines = nil
        XCTAssertEqual(drop(bad, t), "no_alpha_words")
        t.maxNoAlphaWords = nil
        XCTAssertEqual(drop(bad, t), "top_2gram")
        XCTAssertNil(drop(bad, QualityThresholds()))
    }

    /// `preprocess --recipe longcrawl64` with one threshold overridden, through the binary: the book with more
    /// repeated 5-grams (Art of War, 0.053; Gatsby 0.013) dropped under its counter, options in index.json.
    func testRecipeOnTheCommandLine() throws {
        let dir = try temporaryFolder(self), out = dir.appendingPathComponent("out")
        for book in ["art_of_war.txt", "great_gatsby.txt"] {
            try FileManager.default.copyItem(at: packageRoot.appendingPathComponent("data/sample/" + book), to: dir.appendingPathComponent(book))
        }
        // 24,000 two-letter words (72 kB; fails Gopher's mean word length, but has 24,000 tokens: too few, and
        // counted there, since the rules that read the whole text run after the tokenizer's drop); 4,000 words of
        // 20 letters (84 kB; fails the word count, before the tokenizer).
        try String(repeating: "ab ", count: 24_000).write(to: dir.appendingPathComponent("short_words.txt"), atomically: true, encoding: .utf8)
        try String(repeating: "abcdefghijklmnopqrst ", count: 4_000).write(to: dir.appendingPathComponent("few_words.txt"), atomically: true, encoding: .utf8)
        let r = try runProcess(longcrawlBinary, ["preprocess", dir.path, "--out", out.path, "--recipe", "longcrawl64",
                                                 "--max-dupe-5grams", "0.03", "--workers", "1"])
        XCTAssertEqual(r.status, 0, r.err)
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("index.json"))) as! [String: Any]
        let build = index["build"] as! [String: Any]
        let counts = build["counts"] as! [String: Any], options = build["options"] as! [String: String]
        XCTAssertEqual(counts["dropped_dupe_5grams"] as? Int, 1)
        XCTAssertEqual(counts["dropped_too_few_tokens"] as? Int, 1)
        XCTAssertEqual(counts["dropped_word_count"] as? Int, 1)
        XCTAssertEqual(counts["kept"] as? Int, 1)
        XCTAssertEqual(options["quality.max_dupe_5grams"], "0.03")
        XCTAssertEqual(options["word_count.min_words"], "16000")
        XCTAssertEqual(options["quality.max_top_2gram"], "0.2")
        XCTAssertTrue((build["funnel"] as! [String]).contains("dropped_dupe_10grams"))
        let bad = try runProcess(longcrawlBinary, ["preprocess", dir.path, "--out", dir.appendingPathComponent("x").path, "--min-words", "9", "--max-words", "8"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("--min-words 9 is above --max-words 8"), bad.err)
    }

    /// `longcrawl signals` prints the signals of each JSONL record, nulls for an empty text, in input order.
    func testSignalsCommand() throws {
        let dir = try temporaryFolder(self), file = dir.appendingPathComponent("docs.jsonl")
        let texts = ["Hello, world... \u{2022} x\n# again", "", "ΟΔΟΣ café cafe\u{301}"]
        let lines = try texts.enumerated().map { i, t in
            String(decoding: try JSONSerialization.data(withJSONObject: ["raw_content": t, "id": "doc\(i)"]), as: UTF8.self)
        }
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        let r = try runProcess(longcrawlBinary, ["signals", file.path])
        XCTAssertEqual(r.status, 0, r.err)
        let rows = r.out.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(rows.count, 3)
        for (row, text) in zip(rows, texts) {
            for (name, value) in QualitySignals(utf8: Array(text.utf8)).all() {
                if let value { XCTAssertEqual(row[name] as? Double, value, name) } else { XCTAssertTrue(row[name] is NSNull, name) }
            }
        }
        let ids = rows.map { $0["id"] as? String ?? "" }
        XCTAssertTrue(ids[0] == "doc0" && ids[1].hasSuffix("/docs.jsonl:2") && ids[2] == "doc2", "\(ids)")
    }
}
