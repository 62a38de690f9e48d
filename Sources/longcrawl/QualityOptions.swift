import ArgumentParser
import Preprocess

/// `preprocess`'s quality rules: RedPajama-v2's signals computed from the text, Gopher's thresholds on them, the
/// word-count bounds; `--recipe longcrawl64` for all of them as LongCrawl64 read them.
struct QualityOptions: ParsableArguments {
    @Option(help: "A documented recipe: longcrawl64 (>= 16,000 RPv2 words, then the Gopher rules; README, Preprocess).")
    var recipe: String?

    @Flag(help: "Apply Gopher's quality rules on RedPajama-v2's signals (mean word length, symbols, bullets, ellipses, non-alphabetic words, repeated n-grams).")
    var gopher = false

    @Option(help: "Drop documents of fewer RPv2 words (normalized words; longcrawl64: 16000).")
    var minWords: Int?
    @Option(help: "Drop documents of more RPv2 words (none by default).")
    var maxWords: Int?
    @Option(help: "Gopher rule: least mean word length (3).")
    var minMeanWordLength: Double?
    @Option(help: "Gopher rule: largest mean word length (10).")
    var maxMeanWordLength: Double?
    @Option(help: "Gopher rule: largest ratio of '#', '...' and '…' to words (0.1).")
    var maxSymbolRatio: Double?
    @Option(help: "Gopher rule: largest share of lines starting with a bullet (0.9).")
    var maxBulletLines: Double?
    @Option(help: "Gopher rule: largest share of lines ending with an ellipsis (0.3).")
    var maxEllipsisLines: Double?
    @Option(help: "Gopher rule: largest share of words without an ASCII letter (0.2).")
    var maxNoAlphaWords: Double?
    @Option(name: .customLong("max-top-2gram"), help: "Gopher rule: largest share of characters in the most frequent word 2-gram (0.20).")
    var maxTop2: Double?
    @Option(name: .customLong("max-top-3gram"), help: "Gopher rule: the same for 3-grams (0.18).")
    var maxTop3: Double?
    @Option(name: .customLong("max-top-4gram"), help: "Gopher rule: the same for 4-grams (0.16).")
    var maxTop4: Double?
    @Option(name: .customLong("max-dupe-5grams"), help: "Gopher rule: largest share of characters in repeated word 5-grams (0.15).")
    var maxDupe5: Double?
    @Option(name: .customLong("max-dupe-6grams"), help: "Gopher rule: the same for 6-grams (0.14).")
    var maxDupe6: Double?
    @Option(name: .customLong("max-dupe-7grams"), help: "Gopher rule: the same for 7-grams (0.13).")
    var maxDupe7: Double?
    @Option(name: .customLong("max-dupe-8grams"), help: "Gopher rule: the same for 8-grams (0.12).")
    var maxDupe8: Double?
    @Option(name: .customLong("max-dupe-9grams"), help: "Gopher rule: the same for 9-grams (0.11).")
    var maxDupe9: Double?
    @Option(name: .customLong("max-dupe-10grams"), help: "Gopher rule: the same for 10-grams (0.10).")
    var maxDupe10: Double?

    @Option(help: "Dedup among the documents that pass every other stage: exact (SHA-256 of the text), near (MinHash LSH over RPv2's normalized words) or none (longcrawl64: near, else none). First in input order kept; duplicates.jsonl lists the others.")
    var dedup: String?
    @Option(help: "Near dedup: words per n-gram (13).")
    var dedupNgram: Int = 13
    @Option(help: "Near dedup: LSH bands (9; with 13 rows, RPv2's setting for similarity 0.8).")
    var dedupBands: Int = 9
    @Option(help: "Near dedup: MinHash values per band (13).")
    var dedupRows: Int = 13

    func validate() throws {
        guard dedup == nil || ["exact", "near", "none"].contains(dedup!) else { throw ValidationError("--dedup must be exact, near or none, got '\(dedup!)'") }
        try dedupSettings?.validate()
        guard recipe == nil || recipe == "longcrawl64" else { throw ValidationError("--recipe must be longcrawl64, got '\(recipe!)'") }
        try thresholds.validate()
    }

    /// The recipe's or Gopher's thresholds, each option given replacing (or adding) its own.
    var thresholds: QualityThresholds {
        var t = recipe != nil ? QualityThresholds.longcrawl64 : gopher ? .gopher : QualityThresholds()
        if let v = minWords { t.minWords = v }
        if let v = maxWords { t.maxWords = v }
        if let v = minMeanWordLength { t.minMeanWordLength = v }
        if let v = maxMeanWordLength { t.maxMeanWordLength = v }
        if let v = maxSymbolRatio { t.maxSymbolRatio = v }
        if let v = maxBulletLines { t.maxBulletLines = v }
        if let v = maxEllipsisLines { t.maxEllipsisLines = v }
        if let v = maxNoAlphaWords { t.maxNoAlphaWords = v }
        for (n, v) in [(2, maxTop2), (3, maxTop3), (4, maxTop4)] { if let v { t.maxTopNGram[n] = v } }
        for (n, v) in [(5, maxDupe5), (6, maxDupe6), (7, maxDupe7), (8, maxDupe8), (9, maxDupe9), (10, maxDupe10)] { if let v { t.maxDupeNGrams[n] = v } }
        return t
    }

    /// The dedup asked for: --dedup, else near for the recipe, else none.
    var dedupSettings: DedupSettings? {
        guard let mode = DedupSettings.Mode(rawValue: dedup ?? (recipe != nil ? "near" : "none")) else { return nil }
        var d = DedupSettings(mode: mode)
        d.ngram = dedupNgram; d.bands = dedupBands; d.rows = dedupRows
        return d
    }

    /// The document rules these options ask for: the word-count bounds, Gopher's rules, or none.
    var rules: [DocumentRule] { thresholds.rules }
}
