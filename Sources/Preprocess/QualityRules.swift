import Foundation
import Support

/// Thresholds on RedPajama-v2's quality signals: the word-count bounds and Gopher's quality rules (Rae et al. 2021,
/// appendix A, on RPv2's signals; docs/GUIDE.md, "Quality rules"). A nil threshold is a rule not applied.
public struct QualityThresholds: Sendable, Equatable {
    /// `rps_doc_word_count` bounds.
    public var minWords: Int?, maxWords: Int?
    /// `rps_doc_mean_word_length` bounds.
    public var minMeanWordLength: Double?, maxMeanWordLength: Double?
    /// Maxima of `rps_doc_symbol_to_word_ratio`, of the share of lines starting with a bullet
    /// (`rps_lines_start_with_bulletpoint`), `rps_doc_frac_lines_end_with_ellipsis`, `rps_doc_frac_no_alph_words`.
    public var maxSymbolRatio: Double?, maxBulletLines: Double?, maxEllipsisLines: Double?, maxNoAlphaWords: Double?
    /// Maxima of `rps_doc_frac_chars_top_{n}gram` by n (2, 3, 4) and of `rps_doc_frac_chars_dupe_{n}grams` (5 ... 10).
    public var maxTopNGram: [Int: Double] = [:], maxDupeNGrams: [Int: Double] = [:]

    public init() {}

    /// Gopher's quality rules without its word-count bounds (50 ... 100,000 would drop most documents of a window).
    public static let gopher: QualityThresholds = {
        var t = QualityThresholds()
        t.minMeanWordLength = 3; t.maxMeanWordLength = 10
        t.maxSymbolRatio = 0.1; t.maxBulletLines = 0.9; t.maxEllipsisLines = 0.3; t.maxNoAlphaWords = 0.2
        t.maxTopNGram = [2: 0.20, 3: 0.18, 4: 0.16]
        t.maxDupeNGrams = [5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10]
        return t
    }()

    /// Our reading of LongCrawl64's recipe (docs/LONGCRAWL64.md): at least 16,000 words, then Gopher's quality rules.
    public static let longcrawl64: QualityThresholds = {
        var t = gopher
        t.minWords = 16000
        return t
    }()

    /// Checks that every threshold is a finite number >= 0 and each minimum at most its maximum.
    public func validate() throws {
        let all = [minMeanWordLength, maxMeanWordLength, maxSymbolRatio, maxBulletLines, maxEllipsisLines, maxNoAlphaWords]
            .compactMap { $0 } + Array(maxTopNGram.values) + Array(maxDupeNGrams.values) + [minWords, maxWords].compactMap { $0.map(Double.init) }
        guard all.allSatisfy({ $0.isFinite && $0 >= 0 }) else { throw LongCrawlError("quality thresholds must be numbers >= 0") }
        if let lo = minWords, let hi = maxWords, lo > hi { throw LongCrawlError("--min-words \(lo) is above --max-words \(hi)") }
        if let lo = minMeanWordLength, let hi = maxMeanWordLength, lo > hi {
            throw LongCrawlError("--min-mean-word-length \(lo) is above --max-mean-word-length \(hi)")
        }
        guard Set(maxTopNGram.keys).isSubset(of: 2...4), Set(maxDupeNGrams.keys).isSubset(of: 5...10) else {
            throw LongCrawlError("top n-gram rules take n in 2...4, duplicate n-gram rules n in 5...10")
        }
    }
}

extension QualityThresholds {
    /// The document rules these thresholds ask for: the word-count bounds (a fast pass, before the tokenizer),
    /// then Gopher's rules (after the tokenizer's drop); none for a rule without thresholds.
    public var rules: [DocumentRule] {
        var gopher = self
        gopher.minWords = nil; gopher.maxWords = nil
        return (minWords == nil && maxWords == nil ? [] : [WordCountRule(min: minWords, max: maxWords)])
            + (gopher == QualityThresholds() ? [] : [QualityRules(gopher)])
    }
}

/// `rps_doc_word_count` bounds, counted in one pass over the bytes with no word built
/// (`QualitySignals.wordCount`, equal to RPv2's count), before the tokenizer: most long web pages fail it cheaply.
public struct WordCountRule: DocumentRule {
    public var min: Int?, max: Int?

    public init(min: Int?, max: Int?) { self.min = min; self.max = max }

    public var name: String { "word_count" }

    public var options: [String: String] {
        [("min_words", min), ("max_words", max)].reduce(into: [:]) { out, o in if let v = o.1 { out[o.0] = String(v) } }
    }

    public func keeps(_ document: Document) -> Bool {
        let words = document.text.withUnsafeBufferPointer { QualitySignals.wordCount(utf8: $0) }
        return words >= (min ?? 0) && words <= (max ?? .max)
    }
}

/// Gopher's quality rules as one document rule: each threshold tested in the recipe's order, a drop counted under
/// the first failed test's own counter. It reads the whole text, so it runs after the tokenizer's drop (which
/// reads at most a window's worth a window): only documents long enough in tokens pay for it. A test reads what
/// it needs, computed once: RPv2's word-, symbol- and line-based signals (one pass, shared with near dedup through
/// the `TextAnalysis`), then the n-gram signals, so a document that fails a cheap test never pays for the rest.
/// A signal RPv2 leaves null (no words, no lines) fails its test. The word-count bounds are `WordCountRule`'s.
public struct QualityRules: DocumentRule {
    public let thresholds: QualityThresholds
    /// The tests in order, built once (`drop` runs for every document).
    private let tests: [Test]

    public init(_ thresholds: QualityThresholds) {
        self.thresholds = thresholds
        tests = Self.tests(thresholds)
    }

    public var name: String { "quality" }

    public var afterTokenizer: Bool { true }

    /// One document as the tests read it, each view computed on first use.
    private final class Views {
        let analysis: TextAnalysis
        init(_ analysis: TextAnalysis) { self.analysis = analysis }
        var signals: QualitySignals { analysis.signals }
        lazy var grams = NGrams(analysis.signals)
    }

    /// A test: its counter, option name and threshold, and the check of a document against it.
    private typealias Test = (counter: String, option: String, threshold: String, test: @Sendable (Views) -> Bool)

    /// The tests of `t` in order.
    private static func tests(_ t: QualityThresholds) -> [Test] {
        var out: [Test] = []
        func add(_ counter: String, _ option: String, _ limit: Double?, _ keep: @escaping @Sendable (Double, Views) -> Bool) {
            if let limit { out.append((counter, option, String(limit), { keep(limit, $0) })) }
        }
        add("mean_word_length", "min_mean_word_length", t.minMeanWordLength) { lo, v in v.signals.meanWordLength.map { $0 >= lo } ?? false }
        add("mean_word_length", "max_mean_word_length", t.maxMeanWordLength) { hi, v in v.signals.meanWordLength.map { $0 <= hi } ?? false }
        add("symbol_ratio", "max_symbol_ratio", t.maxSymbolRatio) { hi, v in v.signals.symbolToWordRatio.map { $0 <= hi } ?? false }
        add("bullet_lines", "max_bullet_lines", t.maxBulletLines) { hi, v in v.signals.fracLinesStartWithBullet.map { $0 <= hi } ?? false }
        add("ellipsis_lines", "max_ellipsis_lines", t.maxEllipsisLines) { hi, v in v.signals.fracLinesEndWithEllipsis.map { $0 <= hi } ?? false }
        add("no_alpha_words", "max_no_alpha_words", t.maxNoAlphaWords) { hi, v in v.signals.fracNoAlphaWords.map { $0 <= hi } ?? false }
        for n in 2...4 { add("top_\(n)gram", "max_top_\(n)gram", t.maxTopNGram[n]) { hi, v in v.grams.top(n) <= hi } }
        for n in 5...10 { add("dupe_\(n)grams", "max_dupe_\(n)grams", t.maxDupeNGrams[n]) { hi, v in v.grams.dupe(n) <= hi } }
        return out
    }

    public var options: [String: String] {
        Dictionary(uniqueKeysWithValues: tests.map { ($0.option, $0.threshold) })
    }

    public var counters: [String] {
        tests.map(\.counter).reduce(into: []) { if $0.last != $1 { $0.append($1) } }
    }

    public func drop(_ document: Document, analysis: TextAnalysis) -> String? {
        let views = Views(analysis)
        return tests.first { !$0.test(views) }?.counter
    }

    public func drop(_ document: Document) -> String? { drop(document, analysis: TextAnalysis(document.text)) }

    public func keeps(_ document: Document) -> Bool { drop(document) == nil }
}
