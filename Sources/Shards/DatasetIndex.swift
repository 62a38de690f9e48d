import Foundation

/// Tokens per window: LongCrawl64 cuts every kept document to windows of exactly this length.
public let windowLength = 65_536

/// The on-disk format of one shard (DESIGN.md section 4).
public enum ShardFormat: String, Codable, Sendable, CaseIterable {
    /// `shard-NNNNNN.h5`: `/tokens [windows, 65536] uint16`, zstd filter 32015 + Fletcher32.
    case hdf5
    /// `shard-NNNNNN.tokens.zst`: one zstd frame per window and a seek table (zstd's seekable format).
    case zst

    /// File name of shard `number` of `split` in this format.
    public func fileName(split: String, number: Int) -> String {
        let stem = "\(split)-" + String(format: "%06d", number)
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
    /// `train` or `heldout`.
    public var split: String
    /// Number of 65,536-token windows.
    public var windows: Int
    /// File size in bytes.
    public var bytes: Int
    /// Hex SHA-256 of the whole file.
    public var sha256: String

    public init(file: String, format: ShardFormat, split: String, windows: Int, bytes: Int, sha256: String) {
        self.file = file; self.format = format; self.split = split
        self.windows = windows; self.bytes = bytes; self.sha256 = sha256
    }
}

/// Where a resumed run restarts: the state just before document `document` (input order). Every window
/// not yet in a finished shard comes from that document or a later one.
public struct ResumePoint: Codable, Equatable, Sendable {
    /// Ordinal of the first document (over all inputs, in input order) to process again.
    public var document: Int
    /// Windows produced per split by documents before `document`.
    public var produced: [String: Int]
    /// Drop and keep counters accumulated over documents before `document`.
    public var counts: [String: Int]

    public init(document: Int = 0, produced: [String: Int] = [:], counts: [String: Int] = [:]) {
        self.document = document; self.produced = produced; self.counts = counts
    }
}

/// How the dataset was built: enough to refuse a mismatched `--resume` and to continue one.
public struct BuildRecord: Codable, Equatable, Sendable {
    /// Input paths as given, in order.
    public var inputs: [String]
    /// Every option that changes the output bytes, rendered as strings (format, level, split fraction, ...).
    public var options: [String: String]
    /// Where to restart so that no window is lost or duplicated.
    public var resume: ResumePoint
    /// Final counters (documents read, kept, dropped by reason, tokens), set when `complete`.
    public var counts: [String: Int]

    public init(inputs: [String], options: [String: String], resume: ResumePoint = ResumePoint(), counts: [String: Int] = [:]) {
        self.inputs = inputs; self.options = options; self.resume = resume; self.counts = counts
    }
}

/// `index.json`: the manifest of a dataset folder. Rewritten atomically after every finished shard,
/// so a crash loses at most the shard in progress.
public struct DatasetIndex: Codable, Equatable, Sendable {
    public static let fileName = "index.json"
    public static let currentVersion = 1

    public var format = "longcrawl-dataset"
    public var version = DatasetIndex.currentVersion
    public var tokenizer = "gpt2"
    public var vocabSize = 50_257
    public var window = windowLength
    /// False while preprocessing runs; a dataset is only usable once complete.
    public var complete = false
    /// Creation time (ISO 8601); the only field that differs between identical runs.
    public var created: String
    public var shards: [ShardEntry] = []
    public var build: BuildRecord?

    public init(build: BuildRecord?, created: Date = Date()) {
        self.build = build
        self.created = ISO8601DateFormatter().string(from: created)
    }

    /// Windows in `split` over all shards.
    public func windows(split: String) -> Int {
        shards.filter { $0.split == split }.reduce(0) { $0 + $1.windows }
    }

    /// Reads `index.json` from `directory`, naming the file in any error.
    public static func load(from directory: URL) throws -> DatasetIndex {
        let url = directory.appendingPathComponent(fileName)
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ShardError(url, "cannot read dataset index (\(error.localizedDescription))")
        }
        let index: DatasetIndex
        do { index = try JSONDecoder().decode(DatasetIndex.self, from: data) } catch {
            throw ShardError(url, "not a LongCrawl dataset index (\(error))")
        }
        guard index.format == "longcrawl-dataset" else { throw ShardError(url, "format is '\(index.format)', expected 'longcrawl-dataset'") }
        guard index.version == currentVersion else { throw ShardError(url, "index version \(index.version), this build reads \(currentVersion)") }
        guard index.window == windowLength else { throw ShardError(url, "window \(index.window), expected \(windowLength)") }
        var total = 0
        for shard in index.shards {
            guard contained(shard.file, in: directory) != nil else {
                throw ShardError(url, "shard entry '\(shard.file)' leaves the dataset folder (an absolute path, '..', or a symlink out)")
            }
            // Window counts are summed per split (windows(split:)): negative or overflowing ones are refused here.
            let (sum, overflow) = total.addingReportingOverflow(shard.windows)
            guard shard.windows >= 0, shard.bytes >= 0, !overflow else {
                throw ShardError(url, "shard entry '\(shard.file)': \(shard.windows) windows, \(shard.bytes) bytes (negative or too many)")
            }
            total = sum
        }
        return index
    }

    /// Writes `index.json` into `directory` atomically (temp file, fsync, rename).
    public func write(to directory: URL) throws {
        try AtomicFile.writeJSON(self, to: directory.appendingPathComponent(DatasetIndex.fileName))
    }
}

/// `folder/name` when `name` is a relative path that stays inside `folder`, symlinks resolved; nil when it is
/// absolute, has a `..` component, or resolves outside (so a file that names other files cannot reach past its folder).
public func contained(_ name: String, in folder: URL) -> URL? {
    guard !name.isEmpty, !name.hasPrefix("/"), !name.split(separator: "/").contains("..") else { return nil }
    let url = folder.appendingPathComponent(name)
    guard let root = realPath(folder.path) else { return nil }
    // A file not created yet: its folder must resolve inside.
    let resolved = realPath(url.path) ?? realPath(url.deletingLastPathComponent().path).map { $0 + "/" + url.lastPathComponent }
    guard let resolved, resolved.hasPrefix(root == "/" ? "/" : root + "/") else { return nil }
    return url
}

private func realPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}

/// A one-line error naming the file and what is wrong with it.
public struct ShardError: Error, CustomStringConvertible, LocalizedError {
    public let path: String
    public let message: String
    public init(_ url: URL, _ message: String) { self.path = url.path; self.message = message }
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }
    public var errorDescription: String? { description }
}

/// Whole-file writes that never leave a partial file under the final name.
public enum AtomicFile {
    /// The temporary name a file is written under before its rename: hidden, same folder (same file system).
    public static func temporaryURL(for url: URL) -> URL {
        url.deletingLastPathComponent().appendingPathComponent("." + url.lastPathComponent + ".tmp")
    }

    /// Writes `value` as pretty-printed JSON with sorted keys and a final newline, atomically.
    public static func writeJSON<T: Encodable>(_ value: T, to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var data = try encoder.encode(value)
        data.append(0x0A)
        try write(data, to: url)
    }

    /// Writes `data` to a temporary file beside `url`, flushes it to disk, then renames it over `url`.
    public static func write(_ data: Data, to url: URL) throws {
        let tmp = temporaryURL(for: url)
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw ShardError(tmp, "cannot create (\(String(cString: strerror(errno))))") }
        var failure: String?
        data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 { if errno == EINTR { continue }; failure = String(cString: strerror(errno)); return }
                done += n
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        close(fd)
        if let failure {
            unlink(tmp.path)
            throw ShardError(url, "write failed (\(failure)); the previous file is unchanged")
        }
        try commit(tmp, to: url)
    }

    /// Renames a finished temporary file over its final name.
    public static func commit(_ tmp: URL, to url: URL) throws {
        guard rename(tmp.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp.path)
            throw ShardError(url, "cannot rename from \(tmp.lastPathComponent) (\(reason))")
        }
    }
}
