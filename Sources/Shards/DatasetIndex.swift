import Foundation
import Support

/// The on-disk format of one shard (docs/FORMATS.md).
public enum ShardFormat: String, Codable, Sendable, CaseIterable {
    /// `shard-NNNNNN.h5`: `/tokens [windows, 65536] uint16`, zstd filter 32015 + Fletcher32.
    case hdf5
    /// `shard-NNNNNN.tokens.zst`: one zstd frame per window and a seek table (zstd's seekable format).
    case zst

    /// File name of shard `number` of `split` in this format.
    public func fileName(split: Split, number: Int) -> String {
        let stem = "\(split.rawValue)-" + String(format: "%06d", number)
        switch self {
        case .hdf5: return stem + ".h5"
        case .zst: return stem + ".tokens.zst"
        }
    }
}

/// One finished shard as `index.json` lists it.
public struct ShardEntry: Codable, Equatable, Sendable {
    /// File name inside the dataset folder.
    public var file: String
    public var format: ShardFormat
    public var split: Split
    /// Number of 65,536-token windows.
    public var windows: Int
    /// File size in bytes.
    public var bytes: Int
    /// Hex SHA-256 of the whole file.
    public var sha256: String

    public init(file: String, format: ShardFormat, split: Split, windows: Int, bytes: Int, sha256: String) {
        self.file = file; self.format = format; self.split = split
        self.windows = windows; self.bytes = bytes; self.sha256 = sha256
    }
}

/// Where a resumed run restarts: the state just before document `document` (input order). Every window
/// not yet in a finished shard comes from that document or a later one.
public struct ResumePoint: Codable, Equatable, Sendable {
    /// Ordinal of the first input record to process again, over all inputs in input order: a document read by
    /// `preprocess`, a zarr row for `import` (kept as `document` in `index.json`).
    public var record: Int
    /// Windows produced per split by records before `record`.
    public var produced: [Split: Int]
    /// Counters accumulated over records before `record` (no window totals).
    public var counts: BuildCounts

    enum CodingKeys: String, CodingKey { case record = "document", produced, counts }

    public init(record: Int = 0, produced: [Split: Int] = [:], counts: BuildCounts = BuildCounts()) {
        self.record = record; self.produced = produced; self.counts = counts
    }
}

/// How the dataset was built: enough to refuse a mismatched `--resume` and to continue one.
public struct BuildRecord: Codable, Equatable, Sendable {
    /// Input paths as given, in order.
    public var inputs: [String]
    /// Every option that changes the output bytes, rendered as strings (format, level, split fraction, each
    /// document rule's own options as `rule.option`, ...).
    public var options: [String: String]
    /// Where to restart so that no window is lost or duplicated.
    public var resume: ResumePoint
    /// Final counters, with the window totals, set when `complete`.
    public var counts: BuildCounts
    /// The counters in the order a record meets them (`records`, each stage's drops, `kept`): the funnel that
    /// `inspect` prints. Absent in the first indexes of version 1 (`DatasetIndex.upgrade` fills it in on load).
    public var funnel: [String]?

    public init(inputs: [String], options: [String: String], resume: ResumePoint = ResumePoint(), counts: BuildCounts = BuildCounts(),
                funnel: [String]? = nil) {
        self.inputs = inputs; self.options = options; self.resume = resume; self.counts = counts; self.funnel = funnel
    }
}

/// What a build counted, as `index.json` records it (`build.counts`, and `build.resume.counts` so far): named
/// counters whose names the producers choose (`records`, `dropped_too_short`, `imported`, a document rule's
/// `dropped_<rule>`, ...), each window total once the build is complete (`windows_train`, `windows_heldout`), and
/// documents by UTF-8 length (`lengths_read`, `lengths_kept`: bin b counts texts of [2^b, 2^(b+1)) bytes, bin 0
/// also the empty ones). A counter that is 0 is left out of the file.
public struct BuildCounts: Codable, Equatable, Sendable {
    public var counters: [String: Int] = [:]
    /// Windows of each split over all shards, once the build is complete.
    public var windows: [Split: Int]?
    /// Documents read (with a text) and kept, by log2 of their UTF-8 length.
    public var lengthsRead: [Int] = []
    public var lengthsKept: [Int] = []

    public init(_ counters: [String: Int] = [:], windows: [Split: Int]? = nil) {
        self.counters = counters.filter { $0.value != 0 }
        self.windows = windows
    }

    /// A counter's value; 0 when never counted.
    public subscript(_ key: String) -> Int {
        get { counters[key, default: 0] }
        set { counters[key] = newValue == 0 ? nil : newValue }
    }

    /// The length-histogram bin of a text of `bytes` bytes.
    static func lengthBin(_ bytes: Int) -> Int { bytes < 2 ? 0 : Int.bitWidth - 1 - bytes.leadingZeroBitCount }

    /// Counts a text of `bytes` UTF-8 bytes as read, or as kept.
    public mutating func countLength(_ bytes: Int, kept: Bool = false) {
        let bin = Self.lengthBin(bytes)
        if kept { Self.add(1, at: bin, to: &lengthsKept) } else { Self.add(1, at: bin, to: &lengthsRead) }
    }

    private static func add(_ n: Int, at bin: Int, to bins: inout [Int]) {
        if bins.count <= bin { bins += [Int](repeating: 0, count: bin + 1 - bins.count) }
        bins[bin] += n
    }

    /// Adds the counters and histograms of `other` (not its window totals): a merge of ranks' builds.
    public static func += (a: inout BuildCounts, b: BuildCounts) {
        for (key, n) in b.counters { a[key] += n }
        for (bin, n) in b.lengthsRead.enumerated() { add(n, at: bin, to: &a.lengthsRead) }
        for (bin, n) in b.lengthsKept.enumerated() { add(n, at: bin, to: &a.lengthsKept) }
    }

    private struct Key: CodingKey {
        var stringValue: String
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        var totals: [Split: Int] = [:]
        for key in c.allKeys {
            if key.stringValue == "lengths_read" { lengthsRead = try c.decode([Int].self, forKey: key); continue }
            if key.stringValue == "lengths_kept" { lengthsKept = try c.decode([Int].self, forKey: key); continue }
            let n = try c.decode(Int.self, forKey: key)
            if key.stringValue.hasPrefix("windows_") {
                guard let split = Split(rawValue: String(key.stringValue.dropFirst(8))) else {
                    throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "no split named '\(key.stringValue.dropFirst(8))'")
                }
                totals[split] = n
            } else {
                self[key.stringValue] = n
            }
        }
        windows = totals.isEmpty ? nil : totals
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        for (key, n) in counters where n != 0 { try c.encode(n, forKey: Key(key)) }
        for (split, n) in windows ?? [:] { try c.encode(n, forKey: Key("windows_" + split.rawValue)) }
        if !lengthsRead.isEmpty { try c.encode(lengthsRead, forKey: Key("lengths_read")) }
        if !lengthsKept.isEmpty { try c.encode(lengthsKept, forKey: Key("lengths_kept")) }
    }
}

/// `index.json`: the manifest of a dataset folder. Rewritten atomically after every finished shard,
/// so a crash loses at most the shard in progress.
public struct DatasetIndex: Codable, Equatable, Sendable {
    public static let fileName = "index.json"
    /// 1: the first format. 2: `text_encoding` and its evidence. Every version written still opens (`upgrade`).
    static let currentVersion = 2

    public var format = "longcrawl-dataset"
    var version = DatasetIndex.currentVersion
    public var tokenizer = "gpt2"
    public var vocabSize = GPT2.vocabularySize
    public var window = windowLength
    /// False while preprocessing runs; a dataset is only usable once complete.
    public var complete = false
    /// Creation time (ISO 8601); the only field that differs between identical runs.
    public var created: String
    public var shards: [ShardEntry] = []
    public var build: BuildRecord?
    /// What the tokens encode (raw text, or LongCrawl64's JSON escape of it); nil when an import could not tell.
    public var textEncoding: TextEncoding?
    /// How an import decided `textEncoding` (what it counted in the rows), or that the user set it.
    public var textEncodingEvidence: String?

    enum CodingKeys: String, CodingKey {
        case format, version, tokenizer, vocabSize, window, complete, created, shards, build
        case textEncoding = "text_encoding", textEncodingEvidence = "text_encoding_evidence"
    }

    /// A new index: its text encoding is the build's `text_encoding` option (raw when unset), except for an import,
    /// which detects it (`finish`) unless the option gives it.
    public init(build: BuildRecord?, created: Date = Date()) {
        self.build = build
        self.created = ISO8601DateFormatter().string(from: created)
        let given = build?.options["text_encoding"].flatMap(TextEncoding.init)
        textEncoding = given ?? (isImport ? nil : .raw)
        if isImport, given != nil { textEncodingEvidence = "given by --text-encoding" }
    }

    /// Built by `import` from someone else's token rows.
    var isImport: Bool { build?.options["source"] == "zarr" }

    /// Windows in `split` over all shards.
    public func windows(split: Split) -> Int {
        shards.filter { $0.split == split }.reduce(0) { $0 + $1.windows }
    }

    /// Orders the shards by split name, then file name (within a split, the order its windows are numbered in).
    public mutating func sortShards() {
        shards.sort { ($0.split.rawValue, $0.file) < ($1.split.rawValue, $1.file) }
    }

    /// Marks the build complete with `counts` and each split's window total.
    public mutating func finish(counts: BuildCounts) {
        var counts = counts
        counts.windows = Dictionary(uniqueKeysWithValues: Split.allCases.map { ($0, windows(split: $0)) })
        build?.counts = counts
        complete = true
        if isImport, textEncodingEvidence == nil {
            (textEncoding, textEncodingEvidence) = TextEncoding.detect(rows: counts["imported"], raw: counts[TextEncoding.rowsRawCounter],
                                                                      escaped: counts[TextEncoding.rowsEscapedCounter])
        }
    }

    /// Reads `index.json` from `directory`, naming the file in any error.
    public static func load(from directory: URL) throws -> DatasetIndex {
        let url = directory.appendingPathComponent(fileName)
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw FileError(url, "cannot read dataset index (\(error.localizedDescription))")
        }
        var index: DatasetIndex
        do { index = try JSONDecoder().decode(DatasetIndex.self, from: data) } catch {
            throw FileError(url, "not a LongCrawl dataset index (\(error))")
        }
        guard index.format == "longcrawl-dataset" else { throw FileError(url, "format is '\(index.format)', expected 'longcrawl-dataset'") }
        guard (1...currentVersion).contains(index.version) else { throw FileError(url, "index version \(index.version), this build reads 1 to \(currentVersion)") }
        index.upgrade()
        guard index.window == windowLength else { throw FileError(url, "window \(index.window), expected \(windowLength)") }
        var total = 0
        for shard in index.shards {
            guard contained(shard.file, in: directory) != nil else {
                throw FileError(url, "shard entry '\(shard.file)' leaves the dataset folder (an absolute path, '..', or a symlink out)")
            }
            // Window counts are summed per split (windows(split:)): negative or overflowing ones are refused here.
            let (sum, overflow) = total.addingReportingOverflow(shard.windows)
            guard shard.windows >= 0, shard.bytes >= 0, !overflow else {
                throw FileError(url, "shard entry '\(shard.file)': \(shard.windows) windows, \(shard.bytes) bytes (negative or too many)")
            }
            total = sum
        }
        return index
    }

    /// Brings an index of an earlier version to the current one, the one place that knows what each version lacked:
    /// version 1 had no text encoding, and every dataset it built tokenized raw text (an import's was never checked);
    /// its first builds had no funnel, and counted only these stages, in this order.
    mutating func upgrade() {
        if version < 2 { textEncoding = isImport ? nil : .raw }
        if version < 2, build != nil, build?.funnel == nil {
            let stages = isImport ? ["rows", "skipped_missing_rows", "imported"] : ["records", "dropped_empty", "dropped_unreadable", "dropped_too_short", "kept"]
            build?.funnel = stages
        }
        version = Self.currentVersion
    }

    /// Writes `index.json` into `directory` atomically (temp file, fsync, rename).
    public func write(to directory: URL) throws {
        try AtomicFile.writeJSON(self, to: directory.appendingPathComponent(DatasetIndex.fileName))
    }
}
