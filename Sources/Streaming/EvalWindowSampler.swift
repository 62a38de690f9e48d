import Foundation
import Shards
import Support

/// Picks evaluation windows from a split by seed, without replacement.
public enum EvalWindowSampler {
    /// `count` distinct windows of the catalog's split, chosen by `seed`. With `context` T (< 65,536), each row is
    /// T + 1 consecutive tokens (T inputs and their T targets) at a seeded random offset of its window; without,
    /// each row is the whole window. A row's roll is the row's column of its document's first token when a target of
    /// the row holds it (see `EvalWindowFile.sources`), so that `ModelRow` finds the window's seam in the row. A clear error when the split has fewer than `count` windows.
    public static func sample(_ catalog: WindowCatalog, count: Int, seed: UInt64, context: Int? = nil, dataset: String) throws -> EvalWindowFile {
        guard count >= 1 else { throw LongCrawlError("--count must be positive, got \(count)") }
        guard count <= catalog.count else {
            throw LongCrawlError("split '\(catalog.split.rawValue)' has \(catalog.count) windows, fewer than the \(count) requested")
        }
        if let context {
            guard context >= 1, context < windowLength else { throw LongCrawlError("--context must be in 1..<\(windowLength), got \(context)") }
        }
        var rng = SplitMix64(seed: seed)
        // A partial Fisher-Yates: the first `count` entries are a uniform sample without replacement.
        var ids = Array(0..<catalog.count)
        for i in 0..<count { ids.swapAt(i, i + Int(rng.next(below: UInt64(catalog.count - i)))) }
        let chosen = Array(ids.prefix(count))
        let length = context.map { $0 + 1 } ?? windowLength
        var tokens: [UInt16] = []
        tokens.reserveCapacity(count * length)
        var sources: [WindowSource] = []
        for id in chosen {
            let offset = context == nil ? 0 : Int(rng.next(below: UInt64(windowLength - length + 1)))
            let (row, source) = Self.row(try catalog.read(id), source: try catalog.source(id), offset: offset, context: context)
            tokens += row
            sources.append(source)
        }
        return EvalWindowFile(split: catalog.split, seed: seed, dataset: dataset, length: length, context: context ?? windowLength,
                              tokens: tokens, windows: chosen, sources: sources)
    }

    /// The row of `context` T (nil: the whole window) at `offset` of a window and its source: T + 1 tokens (T inputs
    /// and their T targets), with the roll that gives the row the window's seam (`ModelRow.seam`) at offset 0.
    static func row(_ window: [UInt16], source: WindowSource, offset: Int, context: Int?) -> (tokens: ArraySlice<UInt16>, source: WindowSource) {
        let t = context ?? windowLength, length = context.map { $0 + 1 } ?? windowLength
        let seam = ModelRow.seam(roll: source.roll, offset: offset, context: t)
        return (window[offset..<(offset + length)], WindowSource(document: source.document, offset: source.offset + offset, roll: seam.map { $0 + 1 } ?? 0))
    }
}
