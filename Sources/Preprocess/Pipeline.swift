import Foundation
import Shards
import Support
import Tokenizer

/// Every choice that changes the bytes of a dataset. Recorded in `index.json`; `--resume` refuses a mismatch.
public struct PreprocessOptions: Sendable {
    public var format: ShardFormat = .hdf5
    /// zstd level for either format.
    public var level = 3
    /// Share of documents (by id hash) that go to `heldout`.
    public var heldoutFraction = 0.01
    /// Windows taken from each kept document: 1 as LongCrawl64 does, nil for all of them.
    public var windowsPerDocument: Int? = 1
    /// Windows per shard file (the last shard of a split may hold fewer).
    public var shardWindows = 64
    public var textField = "text"
    public var idField = "id"
    /// Tokenizer threads; does not change the output.
    public var workers = ProcessInfo.processInfo.activeProcessorCount
    /// Abort on the first unreadable record instead of dropping it with a warning; does not change the output.
    public var strict = false
    /// Seed of LongCrawl64's roll: each window stored as `numpy.roll(window, rollShift(...))`; nil stores windows in order.
    public var roll: UInt64?

    public init() {}

    /// Checks ranges; errors say which option is wrong.
    public func validate() throws {
        func bad(_ message: String) -> Error { PreprocessError(message) }
        guard (1...22).contains(level) else { throw bad("--level must be 1...22, got \(level)") }
        guard heldoutFraction >= 0, heldoutFraction < 1 else { throw bad("--heldout-fraction must be in [0, 1), got \(heldoutFraction)") }
        if let w = windowsPerDocument, w < 1 { throw bad("--windows-per-doc must be a positive number or 'all', got \(w)") }
        guard shardWindows >= 1 else { throw bad("--shard-windows must be positive, got \(shardWindows)") }
        guard workers >= 1 else { throw bad("--workers must be positive, got \(workers)") }
    }

    /// `roll` only when set, so the index of a dataset built without it (and its `--resume`) stays as it was.
    var record: [String: String] {
        var r = ["format": format.rawValue, "level": String(level), "heldout_fraction": String(heldoutFraction),
                 "windows_per_doc": windowsPerDocument.map(String.init) ?? "all", "shard_windows": String(shardWindows),
                 "text_field": textField, "id_field": idField, "tokenizer": "gpt2"]
        if let roll { r["roll"] = String(roll) }
        return r
    }
}

/// A one-line error about the preprocessing run itself (options, output folder).
public struct PreprocessError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// What to do when the output folder already holds a dataset.
public enum OutputMode: Sendable {
    /// Refuse a folder that already holds files.
    case fresh
    /// Continue from `index.json` (same inputs and options), or start if the folder is empty.
    case resume
    /// Delete the dataset that is there (index and shards) and start over.
    case force
}

extension BuildCounts {
    /// Counts a record dropped for `reason`.
    mutating func drop(_ reason: DropReason) {
        switch reason {
        case .empty: droppedEmpty += 1
        case .unreadable: droppedUnreadable += 1
        case .tooShort: droppedTooShort += 1
        }
    }
}

/// Heldout or train by the document id alone, so a document keeps its split when the corpus grows:
/// FNV-1a over the id's UTF-8, then the splitmix64 finalizer for uniform bits, as a number in [0, 1).
public func heldoutScore(id: String) -> Double {
    Double(SplitMix64.mix(fnv1a(id.utf8)) >> 11) / Double(1 << 53)
}

/// Tokens of `text` up to at least `needed` tokens (all of them when `needed` is nil or the text is short).
/// Cuts the text only before an ASCII space that follows a printable ASCII character: no GPT-2 pre-token
/// spans such a point and none looks past it, so the prefix's tokens are exactly the full text's first tokens.
func encodePrefix(_ text: [UInt8], needed: Int?, tokenizer: GPT2Tokenizer) -> [UInt16] {
    text.withUnsafeBufferPointer { all -> [UInt16] in
        guard let needed else { return tokenizer.encode(bytes: all) }
        var guess = needed * 6
        while guess < all.count {
            var cut = guess
            while cut < all.count, !(all[cut] == 0x20 && all[cut - 1] > 0x20 && all[cut - 1] < 0x7F) { cut += 1 }
            if cut >= all.count { break }
            let tokens = tokenizer.encode(bytes: UnsafeBufferPointer(rebasing: all[0..<cut]))
            if tokens.count >= needed { return tokens }
            guess *= 2
        }
        return tokenizer.encode(bytes: all)
    }
}

/// What a finished (or already complete) run reports.
public struct PreprocessSummary: Sendable {
    public var index: DatasetIndex
    /// True when `--resume` found the dataset already complete and did nothing.
    public var alreadyComplete = false
    public var seconds: Double = 0
    public var inputBytes = 0
}

/// The preprocessing pipeline: read records in order, tokenize batches on `workers` threads, keep documents
/// of at least 65,536 tokens, cut windows, assign splits by id hash, and write shards plus `index.json`.
///
/// Resume: after each finished shard the index records the run state just before the earliest document that
/// still has windows outside finished shards (in an open shard, held back, or being written). A resumed run
/// restarts there and skips, per split, the windows already in finished shards; so the output is
/// byte-identical to an uninterrupted run.
public final class Preprocessor {
    let inputs: [String]
    let output: URL
    let options: PreprocessOptions
    let tokenizer: GPT2Tokenizer
    /// Warnings (dropped records) and progress; the CLI points them at stderr.
    public var warn: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    public var progress: ProgressReporter?
    /// Test hook: called after each shard is committed to the index (to simulate a kill between shards).
    var afterShard: ((DatasetIndex) throws -> Void)?
    /// The input files this run reads: all of them, or a rank's share.
    let share: (rank: Int, world: Int)
    /// Whether the held-back document becomes the heldout set, given this run's heldout windows, kept documents
    /// and the input file of the held-back document (nil: none, or the run was already complete). A distributed
    /// run answers over all ranks; every rank calls it exactly once.
    var heldoutDecision: ((_ heldout: Int, _ kept: Int, _ pendingFile: Int?) -> Bool)?

    public init(inputs: [String], output: URL, options: PreprocessOptions, tokenizer: GPT2Tokenizer, share: (rank: Int, world: Int) = (0, 1)) {
        self.inputs = inputs; self.output = output; self.options = options; self.tokenizer = tokenizer; self.share = share
    }

    // Run state (what a ResumePoint snapshots, plus the writers).
    var index = DatasetIndex(build: nil)
    private var produced: [Split: Int] = [:]
    private var counts = BuildCounts()
    private var skip: [Split: Int] = [:]
    private var writers: [Split: ShardWriter] = [:]
    private var warnings = 0
    /// The last kept train document, held back while no document has hashed to heldout (see `finishSplits`).
    private var pending: (doc: Emitted, start: ResumePoint)?
    /// Per split, the state before the first document with a window in the open shard.
    private var openStart: [Split: ResumePoint] = [:]

    struct Emitted {
        var id: String
        var windows: [ArraySlice<UInt16>]
        /// Input file index (for the distributed heldout rule).
        var file: Int
    }

    /// Runs to completion; throws on the first fatal error (unwritable output, `--strict` violation).
    public func run(mode: OutputMode) throws -> PreprocessSummary {
        try options.validate()
        let lock = try FolderLock(output)
        defer { lock.release() }
        let started = Date()
        let build = BuildRecord(inputs: inputs, options: options.record)
        let reader = try CorpusReader(inputs: inputs, textField: options.textField, idField: options.idField, share: share)
        var start = try prepareOutput(mode: mode, build: build)
        if index.complete {
            _ = heldoutDecision?(index.windows(split: .heldout), index.build?.counts.kept ?? 0, nil)
            return PreprocessSummary(index: index, alreadyComplete: true)
        }
        defer { for w in writers.values { w.abandon() } }

        produced = start.produced
        counts = start.counts
        for s in Split.allCases { skip[s] = index.windows(split: s) - start.produced[s, default: 0] }
        progress?.begin(totalBytes: reader.totalBytes)

        // Skip records before the restart point without tokenizing them.
        var record = reader.next()
        while let r = record, r.ordinal < start.document { record = reader.next() }
        let batchDocuments = max(16, options.workers * 4)
        while record != nil {
            var batch: [CorpusRecord] = []
            var batchBytes = 0
            while let r = record, batch.count < batchDocuments, batchBytes < 64 << 20 {
                batch.append(r)
                if case .document(let d) = r { batchBytes += d.text.count }
                record = reader.next()
            }
            let tokens = tokenize(batch)
            for (r, t) in zip(batch, tokens) {
                start = ResumePoint(document: r.ordinal, produced: produced, counts: counts)
                try emit(r, tokens: t, start: start)
            }
            progress?.update(bytes: reader.progressBytes, documents: counts.records, kept: counts.kept,
                             tokens: produced.values.reduce(0, +) * windowLength)
        }
        try finishSplits(endState: ResumePoint(document: counts.records, produced: produced, counts: counts))
        progress?.end()
        return PreprocessSummary(index: index, seconds: Date().timeIntervalSince(started), inputBytes: reader.totalBytes)
    }

    /// Creates, checks or clears the output folder; returns where to start.
    func prepareOutput(mode: OutputMode, build: BuildRecord) throws -> ResumePoint {
        index = try prepareDatasetFolder(output, mode: mode, build: build)
        return index.build?.resume ?? ResumePoint()
    }

    /// Tokens for each document of a batch (empty for dropped records), computed on `workers` threads.
    private func tokenize(_ batch: [CorpusRecord]) -> [[UInt16]] {
        let needed = options.windowsPerDocument.map { $0 * windowLength }
        var results = [[UInt16]](repeating: [], count: batch.count)
        results.withUnsafeMutableBufferPointer { out in
            let slots = SendablePointer(out.baseAddress!)
            let work = { (i: Int) in
                if case .document(let d) = batch[i] { slots.pointer[i] = encodePrefix(d.text, needed: needed, tokenizer: self.tokenizer) }
            }
            if options.workers == 1 { for i in batch.indices { work(i) } }
            else { DispatchQueue.concurrentPerform(iterations: batch.count, execute: work) }
        }
        return results
    }

    /// Accounts for one record and sends its windows to its split.
    private func emit(_ record: CorpusRecord, tokens: [UInt16], start: ResumePoint) throws {
        counts.records += 1
        let doc: Document
        switch record {
        case .dropped(_, let origin, let reason, let detail):
            counts.drop(reason)
            if options.strict, reason == .unreadable { throw PreprocessError("\(origin): \(detail)") }
            warnings += 1
            if warnings <= 20 { warn("warning: \(origin): \(detail); dropped") }
            if warnings == 20 { warn("warning: further dropped-record warnings suppressed; index.json counts them all") }
            return
        case .document(let d): doc = d
        }
        let available = tokens.count / windowLength
        guard available >= 1 else { counts.drop(.tooShort); return }
        counts.kept += 1
        let n = min(available, options.windowsPerDocument ?? available)
        let windows = (0..<n).map { tokens[($0 * windowLength)..<(($0 + 1) * windowLength)] }
        let split: Split = heldoutScore(id: doc.id) < options.heldoutFraction ? .heldout : .train
        produced[split, default: 0] += n
        let emitted = Emitted(id: doc.id, windows: windows, file: doc.file)
        guard split == .train else { try write(emitted, to: .heldout, start: start); return }
        // Hold back the latest train document until a heldout one exists: it may have to become the heldout set.
        if let p = pending { pending = nil; try write(p.doc, to: .train, start: p.start) }
        if options.heldoutFraction > 0, produced[.heldout, default: 0] == 0 { pending = (emitted, start) } else { try write(emitted, to: .train, start: start) }
    }

    private func write(_ doc: Emitted, to split: Split, start: ResumePoint) throws {
        for (k, window) in doc.windows.enumerated() {
            if skip[split, default: 0] > 0 { skip[split]! -= 1; continue }
            let writer = try writers[split] ?? openWriter(split, start: start)
            let roll = options.roll.map { rollShift(seed: $0, document: doc.id, window: k) } ?? 0
            // numpy.roll: the window's last `roll` tokens first, then the rest.
            let stored = roll == 0 ? window : window.suffix(roll) + window.dropLast(roll)
            try stored.withUnsafeBufferPointer { try writer.append($0, source: WindowSource(document: doc.id, offset: k * windowLength, roll: roll)) }
            if writer.windowCount == options.shardWindows {
                try finishShard(split)
                let waiting = [start, pending?.start].compactMap { $0 } + Array(openStart.values)
                index.build?.resume = waiting.min { $0.document < $1.document }!
                try commitIndex()
            }
        }
    }

    private func openWriter(_ split: Split, start: ResumePoint) throws -> ShardWriter {
        let number = index.shards.filter { $0.split == split }.count
        let writer = try ShardWriter(directory: output, file: options.format.fileName(split: split, number: number),
                                     format: options.format, split: split, level: options.level)
        writers[split] = writer
        openStart[split] = start
        return writer
    }

    private func finishShard(_ split: Split) throws {
        guard let writer = writers.removeValue(forKey: split) else { return }
        openStart[split] = nil
        index.shards.append(try writer.finish())
    }

    private func commitIndex() throws {
        index.sortShards()
        try index.write(to: output)
        try afterShard?(index)
    }

    /// Ends the run: the held-back train document becomes the heldout set if the fraction is positive, no
    /// document hashed to heldout, and at least two were kept (so a small corpus still gets a heldout window); then the last partial shards
    /// and the complete index are written.
    private func finishSplits(endState: ResumePoint) throws {
        let heldout = produced[.heldout, default: 0], kept = counts.kept
        let toHeldout = heldoutDecision?(heldout, kept, pending?.doc.file)
            ?? (options.heldoutFraction > 0 && heldout == 0 && kept >= 2)
        if let p = pending {
            pending = nil
            try write(p.doc, to: toHeldout ? .heldout : .train, start: p.start)
        }
        for s in Split.allCases { try finishShard(s) }
        index.finish(counts: endState.counts)
        try commitIndex()
    }
}

/// Creates, checks or clears a dataset folder for a build (preprocess or import) and returns its index: the
/// existing one to continue with `.resume`, else a fresh one already written. Refuses a folder holding another
/// dataset (or anything else) unless `.force`, and a resume with other inputs or options; removes the hidden
/// temporary files a killed run leaves behind.
func prepareDatasetFolder(_ output: URL, mode: OutputMode, build: BuildRecord) throws -> DatasetIndex {
    let fm = FileManager.default
    try fm.createDirectory(at: output, withIntermediateDirectories: true)
    // Temporary files are never part of a dataset: a killed run leaves them behind.
    for name in (try? fm.contentsOfDirectory(atPath: output.path)) ?? [] where name.hasPrefix(".") && name.hasSuffix(".tmp") {
        try? fm.removeItem(at: output.appendingPathComponent(name))
    }
    let visible = ((try? fm.contentsOfDirectory(atPath: output.path)) ?? []).filter { !$0.hasPrefix(".") }
    let indexURL = output.appendingPathComponent(DatasetIndex.fileName)
    let hasIndex = fm.fileExists(atPath: indexURL.path)

    if mode == .force {
        // Only what a dataset consists of (and a distributed run's rank folders): other files are left alone.
        var doomed = Set(visible.filter { $0 == DatasetIndex.fileName || $0.hasSuffix(".h5") || $0.hasSuffix(".tokens.zst") || Preprocessor.isRankFolder($0) })
        if hasIndex, let old = try? DatasetIndex.load(from: output) { doomed.formUnion(old.shards.map(\.file)) }
        for name in doomed where fm.fileExists(atPath: output.appendingPathComponent(name).path) {
            try fm.removeItem(at: output.appendingPathComponent(name))
        }
    } else if hasIndex {
        let old = try DatasetIndex.load(from: output)
        let same = old.build?.inputs == build.inputs && old.build?.options == build.options
        guard mode == .resume else {
            throw PreprocessError("\(output.path): already holds \(same ? "this" : "a different") dataset (index.json); pass --resume to continue it or --force to replace it")
        }
        guard same, old.build != nil else {
            throw PreprocessError("\(output.path): holds a different dataset (\(describeMismatch(old.build, build))); --resume needs the same inputs and options, or pass --force to replace it")
        }
        return old
    } else if !visible.isEmpty {
        throw PreprocessError("\(output.path): folder is not empty and holds no dataset index; choose an empty folder or pass --force")
    }
    let index = DatasetIndex(build: build)
    try index.write(to: output)
    return index
}

private func describeMismatch(_ old: BuildRecord?, _ new: BuildRecord) -> String {
    guard let old else { return "no build record" }
    if old.inputs != new.inputs { return "inputs were \(old.inputs.joined(separator: " "))" }
    let keys = Set(old.options.keys).union(new.options.keys).sorted().filter { old.options[$0] != new.options[$0] }
    return keys.map { "\($0) was \(old.options[$0] ?? "unset"), now \(new.options[$0] ?? "unset")" }.joined(separator: ", ")
}

/// Lets worker closures write disjoint slots of one buffer.
struct SendablePointer<T>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<T>
    init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}
