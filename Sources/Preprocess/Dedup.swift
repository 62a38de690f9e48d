import Foundation
import Support

/// How `preprocess` removes duplicates among the documents that survive every other stage (docs/ARCHITECTURE.md,
/// "Dedup"): the first document in input order is kept, each later one whose fingerprint collides with a kept
/// one's is dropped as `dropped_duplicate` and listed in `duplicates.jsonl`.
public struct DedupSettings: Sendable, Equatable {
    public enum Mode: String, Sendable { case exact, near }
    public var mode: Mode
    /// Near: words per n-gram (RPv2's normalized words), LSH bands and rows per band; hashes = bands x rows.
    public var ngram = 13, bands = 9, rows = 13

    public init(mode: Mode) { self.mode = mode }

    /// MinHash values: 128 as RPv2 computes, or more when the bands need them; all of them estimate the Jaccard.
    public var hashes: Int { max(128, bands * rows) }

    public func validate() throws {
        guard mode == .exact || (ngram >= 1 && bands >= 1 && rows >= 1 && bands * rows <= 1024) else {
            throw LongCrawlError("--dedup-ngram, --dedup-bands and --dedup-rows must be positive, bands x rows at most 1024")
        }
    }

    /// Recorded in `index.json` as `dedup.<key>`.
    var record: [String: String] {
        mode == .exact ? ["dedup.mode": "exact"]
            : ["dedup.mode": "near", "dedup.ngram": String(ngram), "dedup.bands": String(bands), "dedup.rows": String(rows)]
    }

    /// A document's fingerprint: exact, the first 128 bits of the SHA-256 of its UTF-8 (one band of two words);
    /// near, its MinHash signature.
    func fingerprint(_ analysis: TextAnalysis) -> [UInt64] {
        switch mode {
        case .exact:
            let hex = Array(sha256(Data(analysis.text)).utf8)
            return [0, 16].map { at in hex[at..<at + 16].reduce(UInt64(0)) { $0 << 4 | UInt64(hexValue($1)) } }
        case .near:
            return MinHash(ngram: ngram, hashes: hashes).signature(analysis.signals)
        }
    }

    /// Band b covers fingerprint words `b * rows ..< (b + 1) * rows`.
    var layout: (bands: Int, rows: Int) { mode == .exact ? (1, 2) : (bands, rows) }

    /// Band b's key: its words hashed in a chain seeded with b, so equal words in two bands give two keys.
    func bandKey(_ fingerprint: [UInt64], band b: Int) -> UInt64 {
        let rows = layout.rows
        return fingerprint[(b * rows)..<((b + 1) * rows)].reduce(UInt64(b)) { SplitMix64.mix($0 ^ $1) }
    }

    func bandKeys(_ fingerprint: [UInt64]) -> [UInt64] { (0..<layout.bands).map { bandKey(fingerprint, band: $0) } }
}

private func hexValue(_ c: UInt8) -> UInt8 { c <= 0x39 ? c - 0x30 : c - 0x57 }

/// MinHash over the set of word n-grams of RPv2's normalized words, RPv2's scheme: each n-gram hashed to 32
/// bits, then `hashes` permutations `(a * h + b) mod (2^61 - 1)`, the signature the minimum of each. The n-gram
/// hash chains the words' 64-bit hashes (`QualitySignals.wordHashes`) through the SplitMix64 finalizer and keeps the
/// high 32 bits; a, b are drawn from SplitMix64 seeded with 0x4C43_3634 ("LC64"), a in [1, p), b in [0, p). A
/// document of fewer than n words is one n-gram of all its words; one without words has the all-p signature.
public struct MinHash: Sendable {
    public static let prime: UInt64 = (1 << 61) - 1
    let ngram: Int
    let a: [UInt64], b: [UInt64]

    public init(ngram: Int, hashes: Int) {
        self.ngram = ngram
        var rng = SplitMix64(seed: 0x4C43_3634)
        var a: [UInt64] = [], b: [UInt64] = []
        for _ in 0..<hashes {
            a.append(1 + rng.next(below: Self.prime - 1))
            b.append(rng.next(below: Self.prime))
        }
        self.a = a; self.b = b
    }

    /// The 32-bit hash of each n-gram position, in order (repeats included).
    func shingles(_ signals: QualitySignals) -> [UInt32] {
        let words = signals.words, hashes = signals.wordHashes
        guard !words.isEmpty else { return [] }
        let n = min(ngram, words.count)
        return (0...(words.count - n)).map { i in
            var h: UInt64 = 0
            for j in i..<i + n { h = SplitMix64.mix(h ^ hashes[Int(words[j])]) }
            return UInt32(truncatingIfNeeded: h >> 32)
        }
    }

    /// The signature of a text's normalized words.
    public func signature(_ signals: QualitySignals) -> [UInt64] {
        // The signature of the n-grams' set: a repeated n-gram changes no minimum, so the positions are read as they
        // come (a sort to drop repeats would cost more than the repeats do).
        let grams = shingles(signals)
        let p = Self.prime
        var mins = [UInt64](repeating: p, count: a.count)
        typealias Lanes = SIMD8<UInt64>
        let low32 = Lanes(repeating: 0xFFFF_FFFF), low29 = Lanes(repeating: (1 << 29) - 1), pLanes = Lanes(repeating: p)
        grams.withUnsafeBufferPointer { grams in
            // Eight permutations at a time over all n-grams, in SIMD lanes, with no 128-bit product: a = aHi 2^32 +
            // aLo, so a h = aLo h + (aHi h) 2^32, each product of two 32-bit numbers (one vpmuludq); and with
            // aHi h = c 2^29 + d (d < 2^29), (aHi h) 2^32 = c 2^61 + d 2^32 = c + d 2^32 (mod p, as 2^61 = 1). Every
            // sum stays below 2^63, and the last fold gives (a h + b) mod p exactly, as RPv2's 128-bit arithmetic.
            for k0 in stride(from: 0, to: a.count, by: Lanes.scalarCount) {
                var aLanes = Lanes(), bLanes = Lanes()
                for j in 0..<min(Lanes.scalarCount, a.count - k0) { aLanes[j] = a[k0 + j]; bLanes[j] = b[k0 + j] }
                let aLo = aLanes & low32, aHi = aLanes &>> 32
                var m = pLanes
                for g in grams {
                    let h = Lanes(repeating: UInt64(g))
                    let lo = aLo &* h, hi = aHi &* h
                    var x = (lo & pLanes) &+ (lo &>> 61) &+ ((hi & low29) &<< 32) &+ (hi &>> 29) &+ bLanes
                    x = (x & pLanes) &+ (x &>> 61)
                    x.replace(with: x &- pLanes, where: x .>= pLanes)
                    m = pointwiseMin(m, x)
                }
                for j in 0..<min(Lanes.scalarCount, a.count - k0) { mins[k0 + j] = m[j] }
            }
        }
        return mins
    }

    /// The share of equal positions of two signatures: the estimate of their n-gram sets' Jaccard similarity.
    public static func jaccard(_ x: [UInt64], _ y: [UInt64]) -> Double {
        guard !x.isEmpty, x.count == y.count else { return 0 }
        return Double(zip(x, y).reduce(0) { $0 + ($1.0 == $1.1 ? 1 : 0) }) / Double(x.count)
    }
}

/// The kept documents' fingerprints, in input order, and the LSH index over them: a document is a duplicate when
/// one of its bands equals that band of a kept document (the earliest such document is named). Holds one
/// fingerprint and id per kept document, nothing for dropped ones.
final class Deduplicator {
    let settings: DedupSettings
    private(set) var ids: [String] = []
    private var fingerprints: [[UInt64]] = []
    private var bands: [[UInt64: Int32]]

    init(_ settings: DedupSettings) {
        self.settings = settings
        bands = Array(repeating: [:], count: settings.layout.bands)
    }

    var count: Int { ids.count }

    /// The kept document this one duplicates (its id and the estimated Jaccard similarity), or nil, and then this
    /// one is kept and indexed.
    func check(id: String, fingerprint: [UInt64]) -> (kept: String, jaccard: Double)? {
        let keys = settings.bandKeys(fingerprint)
        let hits = keys.indices.compactMap { bands[$0][keys[$0]] }
        if let first = hits.min() {
            return (ids[Int(first)], MinHash.jaccard(fingerprints[Int(first)], fingerprint))
        }
        add(id: id, fingerprint: fingerprint, keys: keys)
        return nil
    }

    /// Indexes a kept document (also when restoring the state of a resumed run).
    func add(id: String, fingerprint: [UInt64], keys: [UInt64]? = nil) {
        let index = Int32(ids.count)
        for (b, key) in (keys ?? settings.bandKeys(fingerprint)).enumerated() where bands[b][key] == nil { bands[b][key] = index }
        ids.append(id)
        fingerprints.append(fingerprint)
    }
}

/// One line of `duplicates.jsonl`: `{"kept": ID, "dropped": ID, "jaccard": J}` (J the estimate from the
/// signatures, 1 for exact dedup), in the order the dropped documents were read.
func duplicateLine(kept: String, dropped: String, jaccard: Double) -> [UInt8] {
    func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
    return Array("{\"kept\": \(quoted(kept)), \"dropped\": \(quoted(dropped)), \"jaccard\": \(String(format: "%.6f", jaccard))}\n".utf8)
}
