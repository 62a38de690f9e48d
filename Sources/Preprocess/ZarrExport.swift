import CLongCrawl
import Foundation
import Shards
import Support

/// Writes one split of a dataset folder as an array in LongCrawl64's release layout, so that LC64's loaders (the
/// article's, FoX's, seqax's) read it unchanged: zarr v2, `<u2`, shape `[rows, 65536]`, chunks `[2048, 2048]`,
/// blosc lz4 level 5 with byte shuffle, C order, fill value 0, no filters; one window a row, the rows in a seeded
/// shuffled order as LC64's are (or in window order). Beside the array, `SPLIT.rows.json` maps each row to its
/// window: shard file, index in the shard, document id and roll.
///
/// Written one row-chunk stripe (2,048 rows) at a time, so memory is one stripe (256 MiB) however large the split.
/// The array is built under a hidden name and renamed into place only when complete: a killed export leaves no
/// array that looks complete, and a rerun keeps the stripes whose chunk files are all there (each chunk file is
/// written atomically), so it resumes. The dataset folder is locked while it is read (no build may be writing it).
public struct ZarrExport {
    public enum Order: Sendable, Equatable {
        /// Rows as a Fisher-Yates shuffle of the window ids driven by SplitMix64 from the seed.
        case shuffled(seed: UInt64)
        /// Rows in window order (shards in index order).
        case window
    }

    public let dataset: URL
    public let split: Split
    public var order: Order = .shuffled(seed: 0)
    /// blosc's compression threads.
    public var workers = ProcessInfo.processInfo.activeProcessorCount
    public var progress: ProgressReporter?
    /// Rows of a chunk: LongCrawl64's 2,048 (a test sets fewer, for many stripes from few windows).
    var chunkRows = LongCrawl64.chunkRows
    /// Test hook: called after each stripe's chunk files are written (to simulate a kill mid-export).
    var afterStripe: ((Int) throws -> Void)?

    public init(dataset: URL, split: Split) { self.dataset = dataset; self.split = split }

    /// The array's `.zarray`, field by field LC64's.
    func metadata(rows: Int) -> [String: Any] {
        ["zarr_format": 2, "shape": [rows, windowLength], "chunks": [chunkRows, LongCrawl64.chunkColumns], "dtype": "<u2",
         "compressor": ["id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0] as [String: Any],
         "fill_value": 0, "order": "C", "filters": NSNull()]
    }

    /// Writes `OUT/SPLIT.zarr` and `OUT/SPLIT.rows.json`; returns the number of rows. Refuses an existing array
    /// unless `force`.
    @discardableResult
    public func run(out: URL, force: Bool = false) throws -> Int {
        let index = try DatasetIndex.load(from: dataset)
        let indexURL = dataset.appendingPathComponent(DatasetIndex.fileName)
        guard index.complete else { throw FileError(indexURL, "dataset incomplete (preprocessing did not finish); --resume it first") }
        let datasetLock = try FolderLock(dataset)
        defer { datasetLock.release() }
        let outLock = try FolderLock(out)
        defer { outLock.release() }
        let array = out.appendingPathComponent(split.rawValue + ".zarr")
        let rowsFile = out.appendingPathComponent(split.rawValue + ".rows.json")
        if FileManager.default.fileExists(atPath: array.path) {
            guard force else { throw FileError(array, "exists (pass --force to replace it)") }
            try FileManager.default.removeItem(at: array)
        }

        // Every shard opened once with its digest checked (libhdf5 must never see a damaged file), for its sources.
        let shards = index.shards.filter { $0.split == split }
        var windows: [(shard: Int, k: Int, source: WindowSource)] = []
        for (s, entry) in shards.enumerated() {
            let reader = try ShardReader(entry: entry, in: dataset, checkDigest: true)
            windows += reader.sources.enumerated().map { (shard: s, k: $0.offset, source: $0.element) }
        }
        guard !windows.isEmpty else { throw FileError(indexURL, "split \(split.rawValue) has no windows") }
        let rows = rowOrder(windows.count)

        // The partial array: resumable when it was begun with the same rows from the same dataset.
        let partial = out.appendingPathComponent("." + split.rawValue + ".zarr.partial")
        let plan: [String: Any] = ["dataset_created": index.created, "split": split.rawValue, "rows": rows.count, "order": orderName,
                                   "shards": shards.map(\.sha256)]
        let planFile = partial.appendingPathComponent(".longcrawl-export.json")
        let begun = (try? JSONSerialization.jsonObject(with: Data(contentsOf: planFile))) as? NSDictionary
        if begun != plan as NSDictionary {
            try? FileManager.default.removeItem(at: partial)
            try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: true)
            try AtomicFile.write(try JSONSerialization.data(withJSONObject: metadata(rows: rows.count), options: [.sortedKeys, .prettyPrinted]),
                                 to: partial.appendingPathComponent(".zarray"))
            try AtomicFile.write(try JSONSerialization.data(withJSONObject: plan, options: [.sortedKeys]), to: planFile)
        }

        let stripeRows = chunkRows, chunkColumns = LongCrawl64.chunkColumns
        let stripes = (rows.count + stripeRows - 1) / stripeRows
        let columnChunks = windowLength / chunkColumns
        var stripe = [UInt16](repeating: 0, count: min(rows.count, stripeRows) * windowLength)
        var chunk = [UInt16](repeating: 0, count: stripeRows * chunkColumns)
        var compressed = [UInt8](repeating: 0, count: chunk.count * 2 + Int(BLOSC_MAX_OVERHEAD))
        var current: (shard: Int, reader: ShardReader)?
        progress?.begin(totalBytes: 0)
        let started = Date()
        for s in 0..<stripes {
            let keys = (0..<columnChunks).map { "\(s).\($0)" }
            if keys.allSatisfy({ FileManager.default.fileExists(atPath: partial.appendingPathComponent($0).path) }) { continue }
            let first = s * stripeRows, count = min(stripeRows, rows.count - first)
            // Rows read in shard order, each shard opened once a stripe.
            for r in (0..<count).sorted(by: { (windows[rows[first + $0]].shard, windows[rows[first + $0]].k) < (windows[rows[first + $1]].shard, windows[rows[first + $1]].k) }) {
                let w = windows[rows[first + r]]
                if current?.shard != w.shard { current = (w.shard, try ShardReader(entry: shards[w.shard], in: dataset, checkDigest: false)) }
                try stripe.withUnsafeMutableBufferPointer {
                    try current!.reader.readWindow(w.k, into: UnsafeMutableBufferPointer(rebasing: $0[(r * windowLength)..<((r + 1) * windowLength)]))
                }
            }
            for c in 0..<columnChunks {
                // The chunk's rows past the last are the fill value, as zarr stores an edge chunk whole.
                for r in 0..<stripeRows {
                    let dst = r * chunkColumns
                    if r < count {
                        let src = r * windowLength + c * chunkColumns
                        chunk.withUnsafeMutableBufferPointer { d in
                            stripe.withUnsafeBufferPointer { (d.baseAddress! + dst).update(from: $0.baseAddress! + src, count: chunkColumns) }
                        }
                    } else {
                        chunk.withUnsafeMutableBufferPointer { (UnsafeMutableBufferPointer(rebasing: $0[dst..<(dst + chunkColumns)])).update(repeating: 0) }
                    }
                }
                let size = chunk.withUnsafeBytes { src in
                    compressed.withUnsafeMutableBytes { dst in
                        blosc_compress_ctx(5, Int32(BLOSC_SHUFFLE), 2, src.count, src.baseAddress, dst.baseAddress, dst.count, "lz4", 0, Int32(workers))
                    }
                }
                let file = partial.appendingPathComponent(keys[c])
                guard size > 0 else { throw FileError(file, "blosc could not compress the chunk (error \(size))") }
                // Under a temporary name, then renamed (no fsync a chunk: a kill, not a power cut, is what a rerun repairs).
                do { try Data(compressed[0..<Int(size)]).write(to: file, options: .atomic) } catch {
                    throw FileError(file, "write failed (\(error.localizedDescription))")
                }
            }
            try afterStripe?(s)
            reportProgress(done: s + 1, total: stripes, rows: rows.count, started: started)
        }
        progress?.end()

        // The row map first: an array in place always has its map beside it.
        let map: [String: Any] = [
            "split": split.rawValue, "order": orderName, "dataset": dataset.path, "dataset_created": index.created,
            "text_encoding": index.textEncoding?.rawValue ?? NSNull(),
            "columns": ["shard", "index", "document", "roll"],
            "rows": rows.map { let w = windows[$0]; return [shards[w.shard].file, w.k, w.source.document, w.source.roll] as [Any] },
        ]
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: map, options: [.sortedKeys]), to: rowsFile)
        try FileManager.default.removeItem(at: planFile)
        try AtomicFile.commit(partial, to: array)
        return rows.count
    }

    private var orderName: String {
        switch order {
        case .shuffled(let seed): "shuffled, seed \(seed)"
        case .window: "window"
        }
    }

    /// Row r holds window `rowOrder[r]`.
    func rowOrder(_ count: Int) -> [Int] {
        guard case .shuffled(let seed) = order else { return Array(0..<count) }
        var rng = SplitMix64(seed: seed)
        return rng.permutation(count)
    }

    private func reportProgress(done: Int, total: Int, rows: Int, started: Date) {
        guard let progress, progress.due() else { return }
        let rate = Double(done) / max(Date().timeIntervalSince(started), 1e-9)
        progress.show(String(format: "%5.1f%% %d of %d stripes (%d rows), %.2f stripes/s, ETA %@", 100 * Double(done) / Double(total), done, total, rows,
                             rate, rate > 0 ? ProgressReporter.duration(Double(total - done) / rate) : "?"))
    }
}
