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
    /// Reading and tokenizing threads; does not change the output.
    public var workers = ProcessInfo.processInfo.activeProcessorCount
    /// Abort on the first unreadable record instead of dropping it with a warning; does not change the output.
    public var strict = false
    /// The document stage's rules, in order (cheapest first), between the readers' drops and the tokenizer.
    public var rules: [DocumentRule] = []
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
        try stage.validate()
    }

    /// The stages between reading and tokenizing: a text needs 65,536 bytes for each window it must give.
    var stage: DocumentStage { DocumentStage(rules: rules, minTextBytes: windowLength * (windowsPerDocument ?? 1)) }

    /// `roll` only when set, so the index of a dataset built without it (and its `--resume`) stays as it was.
    var record: [String: String] {
        var r = ["format": format.rawValue, "level": String(level), "heldout_fraction": String(heldoutFraction),
                 "windows_per_doc": windowsPerDocument.map(String.init) ?? "all", "shard_windows": String(shardWindows),
                 "text_field": textField, "id_field": idField, "tokenizer": "gpt2"].merging(stage.record) { $1 }
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

/// The preprocessing pipeline: read input parts on `workers` threads through the document stage (docs/ARCHITECTURE.md),
/// tokenize what survives, keep documents of at least 65,536 tokens, cut windows, assign splits by id hash, and
/// write shards plus `index.json`, all in input order.
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
    /// Test hook: called before each document is tokenized (to count what reaches the tokenizer).
    var beforeTokenizing: (@Sendable (Document) -> Void)?
    /// The input files this run reads: all of them, or a rank's share.
    let share: (rank: Int, world: Int)
    /// Whether the held-back document becomes the heldout set, given this run's heldout windows, kept documents
    /// and the input file of the held-back document (nil: none, or the run was already complete). A distributed
    /// run answers over all ranks; every rank calls it exactly once.
    var heldoutDecision: ((_ heldout: Int, _ kept: Int, _ pendingFile: Int?) -> Bool)?

    public init(inputs: [String], output: URL, options: PreprocessOptions, tokenizer: GPT2Tokenizer, share: (rank: Int, world: Int) = (0, 1)) {
        self.inputs = inputs; self.output = output; self.options = options; self.tokenizer = tokenizer; self.share = share
    }

    // Run state (what a ResumePoint snapshots, plus the dataset being written).
    private var dataset: DatasetWriter!
    private var produced: [Split: Int] = [:]
    private var counts = BuildCounts()
    private var skip: [Split: Int] = [:]
    private var warnings = 0
    /// The last kept train document, held back while no document has hashed to heldout (see `finishSplits`).
    private var pending: (doc: Emitted, start: ResumePoint)?
    /// Per split, the state before the first document with a window in the open shard.
    private var openStart: [Split: ResumePoint] = [:]

    struct Emitted {
        var id: String
        var windows: [ArraySlice<UInt16>]
        /// Input part index (for the distributed heldout rule).
        var part: Int
    }

    /// Runs to completion; throws on the first fatal error (unwritable output, `--strict` violation).
    public func run(mode: OutputMode) throws -> PreprocessSummary {
        try options.validate()
        let lock = try FolderLock(output)
        defer { lock.release() }
        let started = Date()
        let stage = options.stage
        let build = BuildRecord(inputs: inputs, options: options.record, funnel: stage.funnel)
        let reader = try CorpusReader(inputs: inputs, textField: options.textField, idField: options.idField,
                                      minTextBytes: stage.minTextBytes, share: share)
        dataset = try DatasetWriter(output: output, mode: mode, build: build, format: options.format, level: options.level,
                                    shardWindows: options.shardWindows)
        dataset.afterShard = afterShard
        defer { dataset.abandon() }
        let index = dataset.index
        if index.complete {
            _ = heldoutDecision?(index.windows(split: .heldout), index.build?.counts["kept"] ?? 0, nil)
            return PreprocessSummary(index: index, alreadyComplete: true)
        }
        var start = dataset.resume

        produced = start.produced
        counts = start.counts
        for s in Split.allCases { skip[s] = index.windows(split: s) - start.produced[s, default: 0] }
        progress?.begin(totalBytes: reader.totalBytes)

        // Records before the restart point are read again (their parts must be) but neither tokenized nor counted.
        let feed = DocumentFeed(reader: reader, stage: stage, workers: options.workers)
        defer { feed.stop() }
        var ordinal = 0, bytesDone = 0
        let restart = start.document
        while let piece = feed.next() {
            var records = piece.records
            for i in records.indices { records[i].ordinal = ordinal; ordinal += 1 }
            records.removeAll { $0.ordinal < restart }
            let tokens = tokenize(records)
            for (r, t) in zip(records, tokens) {
                start = ResumePoint(document: r.ordinal, produced: produced, counts: counts)
                try emit(r, tokens: t, start: start)
            }
            if piece.last { bytesDone += reader.parts[piece.part].bytes }
            progress?.update(bytes: bytesDone + (piece.last ? 0 : piece.bytesRead), documents: counts["records"], kept: counts["kept"],
                             tokens: produced.values.reduce(0, +) * windowLength)
        }
        try finishSplits(endState: ResumePoint(document: ordinal, produced: produced, counts: counts))
        progress?.end()
        return PreprocessSummary(index: dataset.index, seconds: Date().timeIntervalSince(started), inputBytes: reader.totalBytes)
    }

    /// Tokens for each document of a piece (empty for dropped records), computed on `workers` threads.
    private func tokenize(_ records: [CorpusRecord]) -> [[UInt16]] {
        let needed = options.windowsPerDocument.map { $0 * windowLength }
        var results = [[UInt16]](repeating: [], count: records.count)
        let documents = records.indices.filter { if case .document = records[$0] { return true } else { return false } }
        results.withUnsafeMutableBufferPointer { out in
            let slots = SendablePointer(out.baseAddress!)
            let work = { (k: Int) in
                guard case .document(let d) = records[documents[k]] else { return }
                self.beforeTokenizing?(d)
                slots.pointer[documents[k]] = encodePrefix(d.text, needed: needed, tokenizer: self.tokenizer)
            }
            if options.workers == 1 || documents.count == 1 { for k in documents.indices { work(k) } }
            else { DispatchQueue.concurrentPerform(iterations: documents.count, execute: work) }
        }
        return results
    }

    /// Accounts for one record and sends its windows to its split.
    private func emit(_ record: CorpusRecord, tokens: [UInt16], start: ResumePoint) throws {
        counts["records"] += 1
        let doc: Document
        switch record {
        case .dropped(let d):
            counts[d.reason.counter] += 1
            if let bytes = d.bytes { counts.countLength(bytes) }
            if options.strict, d.reason == .unreadable { throw PreprocessError("\(d.origin): \(d.detail)") }
            guard !d.detail.isEmpty else { return }
            warnings += 1
            if warnings <= 20 { warn("warning: \(d.origin): \(d.detail); dropped") }
            if warnings == 20 { warn("warning: further dropped-record warnings suppressed; index.json counts them all") }
            return
        case .document(let d): doc = d
        }
        counts.countLength(doc.text.count)
        let available = tokens.count / windowLength
        guard available >= 1 else { counts[DocumentStage.tooFewTokens.counter] += 1; return }
        counts["kept"] += 1
        counts.countLength(doc.text.count, kept: true)
        let n = min(available, options.windowsPerDocument ?? available)
        let windows = (0..<n).map { tokens[($0 * windowLength)..<(($0 + 1) * windowLength)] }
        let split: Split = heldoutScore(id: doc.id) < options.heldoutFraction ? .heldout : .train
        produced[split, default: 0] += n
        let emitted = Emitted(id: doc.id, windows: windows, part: doc.part)
        guard split == .train else { try write(emitted, to: .heldout, start: start); return }
        // Hold back the latest train document until a heldout one exists: it may have to become the heldout set.
        if let p = pending { pending = nil; try write(p.doc, to: .train, start: p.start) }
        if options.heldoutFraction > 0, produced[.heldout, default: 0] == 0 { pending = (emitted, start) } else { try write(emitted, to: .train, start: start) }
    }

    private func write(_ doc: Emitted, to split: Split, start: ResumePoint) throws {
        for (k, window) in doc.windows.enumerated() {
            if skip[split, default: 0] > 0 { skip[split]! -= 1; continue }
            if !dataset.hasOpenShard(split) { openStart[split] = start }
            let roll = options.roll.map { rollShift(seed: $0, document: doc.id, window: k) } ?? 0
            // numpy.roll: the window's last `roll` tokens first, then the rest.
            let stored = roll == 0 ? window : window.suffix(roll) + window.dropLast(roll)
            let source = WindowSource(document: doc.id, offset: k * windowLength, roll: roll)
            guard try stored.withUnsafeBufferPointer({ try dataset.append($0, source: source, to: split) }) else { continue }
            openStart[split] = nil
            let waiting = [start, pending?.start].compactMap { $0 } + Array(openStart.values)
            try dataset.commit(resume: waiting.min { $0.document < $1.document }!)
        }
    }

    /// Ends the run: the held-back train document becomes the heldout set if the fraction is positive, no
    /// document hashed to heldout, and at least two were kept (so a small corpus still gets a heldout window); then the last partial shards
    /// and the complete index are written.
    private func finishSplits(endState: ResumePoint) throws {
        let heldout = produced[.heldout, default: 0], kept = counts["kept"]
        let toHeldout = heldoutDecision?(heldout, kept, pending?.doc.part)
            ?? (options.heldoutFraction > 0 && heldout == 0 && kept >= 2)
        if let p = pending {
            pending = nil
            try write(p.doc, to: toHeldout ? .heldout : .train, start: p.start)
        }
        try dataset.finish(counts: endState.counts)
    }
}
