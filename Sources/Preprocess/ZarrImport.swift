import Foundation
import Shards
import Support

/// Every choice that changes the bytes of an imported dataset. Recorded in `index.json`; `--resume` refuses a mismatch.
public struct ImportOptions: Sendable {
    public var format: ShardFormat = .hdf5
    /// zstd level for either format.
    public var level = 3
    /// Windows per shard file (the last shard of a split may hold fewer).
    public var shardWindows = 64
    /// The split of the only input, for a folder not named after one (`train.zarr`, `heldout.zarr`).
    public var split: Split?
    /// Import the rows whose chunks are all present instead of failing on a missing chunk file.
    public var skipMissing = false
    /// Accept a `.zattrs` encoder other than GPT-2's; does not change the output.
    public var forceTokenizer = false
    /// The encoding of the rows' text, as the user knows it; nil to detect it (`EncodingDetector`).
    public var textEncoding: TextEncoding?
    /// Chunk-decoding threads; does not change the output.
    public var workers = ProcessInfo.processInfo.activeProcessorCount

    public init() {}

    /// Checks ranges; errors say which option is wrong.
    public func validate() throws {
        guard (1...22).contains(level) else { throw LongCrawlError("--level must be 1...22, got \(level)") }
        guard shardWindows >= 1 else { throw LongCrawlError("--shard-windows must be positive, got \(shardWindows)") }
        guard workers >= 1 else { throw LongCrawlError("workers must be positive, got \(workers)") }
    }

    func record(splits: [Split]) -> [String: String] {
        var r = ["source": "zarr", "format": format.rawValue, "level": String(level), "shard_windows": String(shardWindows),
         "splits": splits.map(\.rawValue).joined(separator: ","), "skip_missing": String(skipMissing), "tokenizer": "gpt2"]
        if let textEncoding { r["text_encoding"] = textEncoding.rawValue }
        return r
    }
}

/// What a finished (or already complete) import reports.
public struct ImportSummary: Sendable {
    public var index: DatasetIndex
    /// True when `--resume` found the dataset already complete and did nothing.
    public var alreadyComplete = false
    public var seconds: Double = 0
    /// Per input (as given), the row-chunks skipped for a missing chunk file (`--skip-missing`), in order.
    public var skipped: [(input: String, rowChunks: [Int], rows: Int)] = []

    public init(index: DatasetIndex, alreadyComplete: Bool = false, seconds: Double = 0, skipped: [(input: String, rowChunks: [Int], rows: Int)] = []) {
        self.index = index; self.alreadyComplete = alreadyComplete; self.seconds = seconds; self.skipped = skipped
    }
}

/// Converts zarr v2 token arrays (LongCrawl64's `train.zarr`, `heldout.zarr`) into a dataset folder: each row is
/// one window (document `ARRAY:ROW`, offset 0) of the split the array is named after. Reads one row-chunk stripe at
/// a time, so memory is one stripe however large the array.
///
/// Resume: rows are numbered over all inputs in order; after each finished shard the index records the row after
/// the last one written (every split's open shard is empty then, as inputs go to different splits and each input's
/// last shard is finished before the next input starts), so a resumed run writes the same bytes.
public final class ZarrImporter {
    let inputs: [String]
    let output: URL
    let options: ImportOptions
    public var progress: ProgressReporter?
    /// Test hook: called after each shard is committed to the index (to simulate a kill between shards).
    var afterShard: ((DatasetIndex) throws -> Void)?

    /// The row-chunks this run imports: those at positions `rank`, `rank + world`, ... over all inputs (ranks of a
    /// distributed run, so one big array still uses every rank).
    let share: (rank: Int, world: Int)

    public init(inputs: [String], output: URL, options: ImportOptions, share: (rank: Int, world: Int) = (0, 1)) {
        self.inputs = inputs; self.output = output; self.options = options; self.share = share
    }

    /// The import's counters in the order a row meets them.
    static let funnel = ["rows", "skipped_missing_rows", "imported"]

    /// Classifies each imported row's text encoding (unless the user gave it).
    private lazy var detector: EncodingDetector? = try? options.textEncoding == nil ? EncodingDetector(tokenizer: .builtIn()) : nil

    private var dataset: DatasetWriter!
    private var state = ResumePoint()
    private var clock = Date()

    /// Checks every input's metadata and chunk files, then imports to completion; throws on the first fault.
    public func run(mode: OutputMode) throws -> ImportSummary {
        try options.validate()
        // A folder that exists is claimed before the checks (a second writer is refused at once); one that does not is
        // created only after them, so a refused import leaves nothing behind.
        var lock = FileManager.default.fileExists(atPath: output.path) ? try FolderLock(output) : nil
        defer { lock?.release() }
        clock = Date()
        let arrays = try inputs.map { try ZarrArray(path: $0) }
        let splits = try splitNames(arrays)
        let build = BuildRecord(inputs: inputs, options: options.record(splits: splits), funnel: Self.funnel)
        var skipped: [(input: String, rowChunks: [Int], rows: Int)] = []
        for array in arrays {
            try checkEncoder(array)
            let missing = try missingRowChunks(array)
            skipped.append((array.path, missing, missing.reduce(0) { $0 + array.rowRange(ofRowChunk: $1).count }))
        }
        if lock == nil { lock = try FolderLock(output) }
        dataset = try DatasetWriter(output: output, mode: mode, build: build, format: options.format, level: options.level,
                                    shardWindows: options.shardWindows)
        dataset.afterShard = afterShard
        if dataset.index.complete { return ImportSummary(index: dataset.index, alreadyComplete: true, skipped: skipped) }
        defer { dataset.abandon() }
        state = dataset.resume
        let totalRows = arrays.reduce(0) { $0 + $1.rows }
        let startRow = state.record
        progress?.begin(totalBytes: 0)

        var first = 0  // global number of the array's row 0
        var rowChunk = 0  // global number of the array's row-chunk 0
        for (i, array) in arrays.enumerated() {
            defer { first += array.rows; rowChunk += array.rowChunks }
            guard state.record < first + array.rows else { continue }
            let missing = Set(skipped[i].rowChunks)
            var stripe = [UInt16](repeating: 0, count: array.stripeTokens)
            for r in 0..<array.rowChunks {
                let rows = array.rowRange(ofRowChunk: r)
                guard first + rows.upperBound > state.record else { continue }
                guard (rowChunk + r) % share.world == share.rank else { state.record = first + rows.upperBound; continue }
                if missing.contains(r) {
                    state.counts["skipped_missing_row_chunks"] += 1
                    state.counts["skipped_missing_rows"] += rows.count
                    state.counts["rows"] += rows.count
                    state.record = first + rows.upperBound
                    continue
                }
                try stripe.withUnsafeMutableBufferPointer { try array.readStripe(r, into: $0, workers: options.workers) }
                for row in max(rows.lowerBound, state.record - first)..<rows.upperBound {
                    try write(stripe, row: row - rows.lowerBound, id: "\(array.name):\(row)", split: splits[i])
                    reportProgress(done: state.record - startRow, total: totalRows - startRow)
                }
            }
            if try dataset.finishShard(splits[i]) { try dataset.commit(resume: state) }
        }
        progress?.end()
        try dataset.finish(counts: state.counts)
        return ImportSummary(index: dataset.index, seconds: Date().timeIntervalSince(clock), skipped: skipped)
    }

    /// What the index of a distributed import records: this run's build options and the world size.
    public func distributedBuild(ranks: Int) throws -> BuildRecord {
        let splits = try splitNames(try inputs.map { try ZarrArray(path: $0) })
        return BuildRecord(inputs: inputs, options: options.record(splits: splits).merging(["ranks": String(ranks)]) { $1 }, funnel: Self.funnel)
    }

    /// The split of each input: from `--split`, else from the folder's name without `.zarr`. Two inputs of one split
    /// would give clashing document ids (both `train.zarr:0`), so each split comes from one input.
    private func splitNames(_ arrays: [ZarrArray]) throws -> [Split] {
        if options.split != nil, arrays.count != 1 { throw LongCrawlError("--split names the split of a single input; got \(arrays.count) inputs") }
        var seen: [Split: String] = [:]
        return try arrays.map { array in
            let name = array.name.hasSuffix(".zarr") ? String(array.name.dropLast(5)) : array.name
            guard let split = options.split ?? Split(rawValue: name) else {
                throw LongCrawlError("\(array.path): cannot tell its split from the name (\(Split.allCases.map { $0.rawValue + ".zarr" }.joined(separator: " or "))); pass --split")
            }
            if let other = seen.updateValue(array.path, forKey: split) { throw LongCrawlError("\(other) and \(array.path) both hold split \(split.rawValue)") }
            return split
        }
    }

    private func checkEncoder(_ array: ZarrArray) throws {
        guard let encoder = array.encoder, !["tiktoken-gpt2", "gpt2"].contains(encoder), !options.forceTokenizer else { return }
        throw FileError(path: array.path + "/.zattrs", "encoder is '\(encoder)', not GPT-2; pass --force-tokenizer if its tokens are GPT-2's")
    }

    /// Row-chunks with a missing chunk file: an error naming the first one, or with `--skip-missing` the list to skip.
    private func missingRowChunks(_ array: ZarrArray) throws -> [Int] {
        var skip: [Int] = []
        for r in 0..<array.rowChunks {
            let missing = array.missingChunks(ofRowChunk: r)
            guard let key = missing.first else { continue }
            guard options.skipMissing else {
                let more = missing.count > 1 ? "; \(missing.count - 1) more in this row-chunk" : ""
                throw FileError(path: array.path + "/" + key, "chunk file missing (rows \(array.rowRange(ofRowChunk: r))\(more)); --skip-missing imports the rows whose chunks are all present")
            }
            skip.append(r)
        }
        return skip
    }

    /// Appends stripe row `i` as one window of `split`; after a full shard, records the next row as the resume point.
    private func write(_ stripe: [UInt16], row i: Int, id: String, split: Split) throws {
        let full = try stripe.withUnsafeBufferPointer {
            let row = UnsafeBufferPointer(rebasing: $0[(i * windowLength)..<((i + 1) * windowLength)])
            switch detector?.classify(row) {
            case .raw: state.counts[TextEncoding.rowsRawCounter] += 1
            case .escaped: state.counts[TextEncoding.rowsEscapedCounter] += 1
            case .neither, nil: break
            }
            return try dataset.append(row, source: WindowSource(document: id, offset: 0), to: split)
        }
        state.record += 1
        state.produced[split, default: 0] += 1
        state.counts["rows"] += 1
        state.counts["imported"] += 1
        if full { try dataset.commit(resume: state) }
    }

    /// Rows/s and ETA over this run's rows (a resumed run counts from its restart row).
    private func reportProgress(done: Int, total: Int) {
        guard let progress, progress.due() else { return }
        let elapsed = max(Date().timeIntervalSince(clock), 1e-9)
        let rate = Double(done) / elapsed
        let eta = rate > 0 ? ProgressReporter.duration(Double(total - done) / rate) : "?"
        progress.show(String(format: "%5.1f%% %d of %d rows, %.0f rows/s, %.2fM tokens/s, ETA %@",
                             100 * Double(done) / Double(max(total, 1)), done, total, rate, rate * Double(windowLength) / 1e6, eta))
    }
}
