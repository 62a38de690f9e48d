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
    /// The document stage's rules, in order (cheapest first), between the readers' drops and the tokenizer (those
    /// that read the whole text after the tokenizer's drop).
    public var rules: [DocumentRule] = []
    /// Dedup among the documents that pass every other stage, before the split is assigned; nil for none.
    public var dedup: DedupSettings?
    /// What the tokenizer reads of each text: its UTF-8, or LongCrawl64's JSON escape of it. The rules and quality
    /// signals read the text itself either way (as RedPajama-v2 computes them); the 65,536-token rule counts the
    /// tokens of what the tokenizer reads.
    public var textEncoding: TextEncoding = .raw
    /// Seed of LongCrawl64's roll: each window stored as `numpy.roll(window, rollShift(...))`; nil stores windows in order.
    public var roll: UInt64?
    /// A listing of more inputs (`--inputs-from`), read after the inputs given; recorded with its digest.
    public var inputsFrom: String?
    /// Count a missing input (URL 404/410, local path absent) as `dropped_missing` and go on, instead of stopping.
    public var skipMissing = false
    /// How URL inputs are fetched; does not change the output.
    public var http = HTTPSettings()
    /// Where a distributed run with dedup keeps each rank's first pass (nil: the output folder); does not change the output.
    public var scratch: URL?

    public init() {}

    /// Checks ranges; errors say which option is wrong.
    public func validate() throws {
        func bad(_ message: String) -> Error { LongCrawlError(message) }
        guard (1...22).contains(level) else { throw bad("--level must be 1...22, got \(level)") }
        guard heldoutFraction >= 0, heldoutFraction < 1 else { throw bad("--heldout-fraction must be in [0, 1), got \(heldoutFraction)") }
        if let w = windowsPerDocument, w < 1 { throw bad("--windows-per-doc must be a positive number or 'all', got \(w)") }
        guard shardWindows >= 1 else { throw bad("--shard-windows must be positive, got \(shardWindows)") }
        guard workers >= 1 else { throw bad("--workers must be positive, got \(workers)") }
        guard http.connections >= 1 else { throw bad("--connections must be positive, got \(http.connections)") }
        try stage.validate()
        try dedup?.validate()
    }

    /// The stages between reading and tokenizing: a text needs a byte of what the tokenizer reads for each token of
    /// its windows, and each byte of text escapes to at most `textEncoding.maxExpansion` bytes.
    var stage: DocumentStage {
        let tokens = windowLength * (windowsPerDocument ?? 1), expansion = textEncoding.maxExpansion
        return DocumentStage(rules: rules, minTextBytes: (tokens + expansion - 1) / expansion, dedup: dedup, skipMissing: skipMissing)
    }

    /// The build record of a run over `reader`'s inputs: the options, and for RedPajama-v2 input its shard count and
    /// the shards without a duplicates file (so the report of what was not deduplicated stays with the dataset).
    func build(inputs: [String], reader: CorpusReader) -> BuildRecord {
        var stage = self.stage, r = record
        stage.rpv2 = !reader.rpv2Tags.isEmpty
        if stage.rpv2 {
            r["rpv2.shards"] = String(reader.rpv2Tags.count)
            r["rpv2.duplicates_missing"] = reader.rpv2MissingDuplicates.isEmpty ? "none" : reader.rpv2MissingDuplicates.joined(separator: " ")
        }
        if let inputsFrom, let listing = reader.listing {
            r["inputs_from"] = inputsFrom
            r["inputs_from.sha256"] = listing.digest
        }
        return BuildRecord(inputs: inputs, options: r, funnel: stage.funnel)
    }

    /// The reader of a run's inputs (a rank's share): texts too short for the windows dropped by their length (for
    /// the json encoding, by their escape's length too), and for json, JSON input's lone surrogate escapes kept, to
    /// be escaped back as they were.
    func reader(_ inputs: [String], share: (rank: Int, world: Int)) throws -> CorpusReader {
        try CorpusReader(inputs: inputs, textField: textField, idField: idField, minTextBytes: stage.minTextBytes,
                         minEscapedBytes: textEncoding == .json ? windowLength * (windowsPerDocument ?? 1) : nil, share: share,
                         inputsFrom: inputsFrom, http: http, skipMissing: skipMissing)
    }

    /// `roll`, `text_encoding` and `skip_missing` only when set, so the index of a dataset built without it (and its `--resume`) stays as it was.
    var record: [String: String] {
        var r = ["format": format.rawValue, "level": String(level), "heldout_fraction": String(heldoutFraction),
                 "windows_per_doc": windowsPerDocument.map(String.init) ?? "all", "shard_windows": String(shardWindows),
                 "text_field": textField, "id_field": idField, "tokenizer": "gpt2"].merging(stage.record) { $1 }
        if let roll { r["roll"] = String(roll) }
        if textEncoding != .raw { r["text_encoding"] = textEncoding.rawValue }
        if skipMissing { r["skip_missing"] = "true" }
        return r
    }
}

/// Heldout or train by the document id alone, so a document keeps its split when the corpus grows:
/// FNV-1a over the id's UTF-8, then the splitmix64 finalizer for uniform bits, as a number in [0, 1).
public func heldoutScore(id: String) -> Double {
    Double(SplitMix64.mix(fnv1a(id.utf8)) >> 11) / Double(1 << 53)
}

/// Tokens of `text` in `encoding` up to at least `needed` tokens (all of them when `needed` is nil or the text is
/// short), encoded in stretches of about `stretchBytes` of text, so at most one stretch past the need is tokenized
/// (and, for `json`, escaped: one stretch's escape is the only copy). Cuts the text only before an ASCII space that
/// follows a byte that is not whitespace in what the tokenizer reads: no GPT-2 pre-token spans such a point and
/// none looks past it, so the stretches' tokens are exactly the whole text's. In raw text that byte must be
/// printable ASCII (a multi-byte character may be whitespace); in escaped text any byte but a space will do, as
/// every other byte escapes to printable ASCII.
func encodePrefix(_ text: [UInt8], needed: Int?, tokenizer: GPT2Tokenizer, memo: inout TokenizerMemo,
                  encoding: TextEncoding = .raw, stretchBytes: Int = 1 << 16) -> [UInt16] {
    text.withUnsafeBufferPointer { all -> [UInt16] in
        if needed == nil, encoding == .raw { return tokenizer.encode(bytes: all, memo: &memo) }
        let needed = needed ?? .max
        var out: [UInt16] = [], escaped: [UInt8] = []
        var start = 0
        while start < all.count, out.count < needed {
            var cut = min(start + stretchBytes, all.count)
            switch encoding {
            case .raw: while cut < all.count, !(all[cut] == 0x20 && all[cut - 1] > 0x20 && all[cut - 1] < 0x7F) { cut += 1 }
            case .json: while cut < all.count, !(all[cut] == 0x20 && all[cut - 1] != 0x20) { cut += 1 }
            }
            let stretch = UnsafeBufferPointer(rebasing: all[start..<cut])
            if encoding == .raw {
                out += tokenizer.encode(bytes: stretch, memo: &memo)
            } else {
                escaped.removeAll(keepingCapacity: true)
                encoding.encode(stretch, into: &escaped)
                out += escaped.withUnsafeBufferPointer { tokenizer.encode(bytes: $0, memo: &memo) }
            }
            start = cut
        }
        return out
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
    /// Test hook: called before each document is tokenized, on the thread that tokenizes it (to count what reaches
    /// the tokenizer).
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
    /// A single run's dedup, decided as documents come.
    private var dedupLog: DedupLog?
    /// A rank's dedup, decided over all ranks beforehand: the rank's dropped documents by ordinal.
    var plannedDuplicates: [Int: (kept: String, jaccard: Double)]?
    /// The first pass's scratch of a distributed run with dedup: replayed instead of reading the inputs again.
    var replay: URL?

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
        let reader = try options.reader(inputs, share: share)
        let build = options.build(inputs: inputs, reader: reader)
        let missing = reader.rpv2MissingDuplicates
        if share.rank == 0, !missing.isEmpty {
            warn("warning: \(missing.count) of \(reader.rpv2Tags.count) RedPajama-v2 shards have no duplicates/*.duplicates.parquet, so none of their documents are flagged: \(missing.prefix(3).joined(separator: ", "))\(missing.count > 3 ? ", ..." : "") (index.json: rpv2.duplicates_missing)")
        }
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
        if let dedup = options.dedup, plannedDuplicates == nil {
            dedupLog = try DedupLog(folder: output, settings: dedup, kept: start.counts["kept"],
                                    dropped: start.counts[DocumentStage.duplicate.counter])
        }
        progress?.begin(totalBytes: reader.totalBytes)

        // Records before the restart point are read again (their parts must be) but neither tokenized nor counted.
        let restart = start.record
        let source: OutcomeSource
        if let replay { source = try ScratchReader(replay) } else {
            source = FeedOutcomes(reader: reader, stage: stage, workers: options.workers, restart: restart,
                                  tokenizing: tokenizing(from: restart, dedup: plannedDuplicates == nil ? options.dedup : nil))
        }
        defer { source.stop() }
        var bytesDone = 0
        while let piece = try source.next() {
            for outcome in piece.records where outcome.ordinal >= restart {
                start = ResumePoint(record: outcome.ordinal, produced: produced, counts: counts)
                try emit(outcome, start: start)
            }
            bytesDone = piece.progressBytes
            progress?.update(bytes: bytesDone, documents: counts["records"], kept: counts["kept"],
                             tokens: produced.values.reduce(0, +) * windowLength)
        }
        let ordinal = source.records
        try finishSplits(endState: ResumePoint(record: ordinal, produced: produced, counts: counts))
        try dedupLog?.finish()
        progress?.end()
        return PreprocessSummary(index: dataset.index, seconds: Date().timeIntervalSince(started), inputBytes: bytesDone)
    }

    /// The tokenizer's stage of this run: records numbered from `from` on are tokenized, and fingerprinted for `dedup`.
    func tokenizing(from: Int, dedup: DedupSettings?) -> Tokenizing {
        Tokenizing(tokenizer: tokenizer, rules: options.stage.rulesAfterTokenizer, needed: options.windowsPerDocument.map { $0 * windowLength },
                   from: from, hook: beforeTokenizing, encoding: options.textEncoding, dedup: dedup)
    }

    /// Accounts for one record and sends its windows to its split.
    private func emit(_ outcome: Outcome, start: ResumePoint) throws {
        counts["records"] += 1
        let doc: Outcome.Tokenized
        switch outcome {
        case .dropped(let d):
            counts[d.reason.counter] += 1
            if let bytes = d.bytes { counts.countLength(bytes) }
            if d.fatal || (options.strict && d.reason == .unreadable) { throw LongCrawlError("\(d.origin): \(d.detail)") }
            guard !d.detail.isEmpty else { return }
            warnings += 1
            if warnings <= 20 { warn("warning: \(d.origin): \(d.detail); dropped") }
            if warnings == 20 { warn("warning: further dropped-record warnings suppressed; index.json counts them all") }
            return
        case .document(let d): doc = d
        }
        counts.countLength(doc.textBytes)
        let tokens = doc.tokens, available = tokens.count / windowLength
        guard available >= 1 else { counts[DocumentStage.tooFewTokens.counter] += 1; return }
        let duplicate = try plannedDuplicates.map { $0[doc.ordinal] } ?? dedupLog?.check(id: doc.id, fingerprint: doc.fingerprint)
        guard duplicate == nil else { counts[DocumentStage.duplicate.counter] += 1; return }
        counts["kept"] += 1
        counts.countLength(doc.textBytes, kept: true)
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
            try dedupLog?.synchronize()
            try dataset.commit(resume: waiting.min { $0.record < $1.record }!)
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
