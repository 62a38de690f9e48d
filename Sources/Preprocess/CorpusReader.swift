import CLongCrawl
import Foundation
import Support
import Tokenizer

/// One raw document: a stable id (for the split hash), where it came from, and its UTF-8 text.
public struct Document: Sendable {
    /// Position over all records of all inputs, in input order; resume restarts from one.
    var ordinal: Int
    public var id: String
    /// `file` or `file:line`, for messages.
    public var origin: String
    public var text: [UInt8]
    /// Index of its input part (a file, or a parquet row group) among all parts, before any split over ranks.
    public var part: Int
}

/// Why a record was not turned into windows: the name of the stage that dropped it, counted in `index.json` as
/// `dropped_<name>`. Readers give the first three; each document rule and the tokenizer name their own.
public struct DropReason: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name }
    public var description: String { name }
    /// The counter in `index.json`.
    public var counter: String { "dropped_" + name }

    /// A record without text: an empty file, string, row or WARC record, a blank line, a null value.
    public static let empty = DropReason("empty")
    /// A record that is not what its kind requires (not JSON, no text field, not UTF-8, a broken file's rest).
    public static let unreadable = DropReason("unreadable")
    /// A text shorter than the windows it must give (in UTF-8 bytes: every GPT-2 token is at least one byte), told
    /// from its length before it is decoded, checked as UTF-8 or tokenized.
    public static let tooShort = DropReason("too_short")
    /// An input that could not be had under `--skip-missing`: a URL answering 404 or 410 (an RPv2 documents file or
    /// its duplicates file), or a local path that does not exist. One record a file.
    public static let missing = DropReason("missing")
}

/// A record that was dropped: where, why, and its text's UTF-8 length when it had one.
public struct DroppedRecord: Sendable {
    public var ordinal: Int
    public var origin: String
    public var reason: DropReason
    /// What was wrong, for the warning of an unreadable record; empty for a rule's drop.
    public var detail: String
    public var bytes: Int?
    /// The run cannot go on without what this record stands for (an RPv2 duplicates file found but unreadable:
    /// going on would keep the duplicates it flags): the pipeline stops with `origin: detail`.
    public var fatal = false
}

/// What a reader yields per record: a document, or a record it could not use and why.
public enum CorpusRecord: Sendable {
    case document(Document)
    case dropped(DroppedRecord)

    public var ordinal: Int {
        get {
            switch self {
            case .document(let d): return d.ordinal
            case .dropped(let d): return d.ordinal
            }
        }
        set {
            switch self {
            case .document(var d): d.ordinal = newValue; self = .document(d)
            case .dropped(var d): d.ordinal = newValue; self = .dropped(d)
            }
        }
    }
}

/// What an input file holds, told from its bytes, never its name: parquet (`PAR1` at both ends), or after any
/// zstd or gzip decoding, WARC records (`WARC/`), JSONL (a first line that is a JSON object), or UTF-8 text
/// (one document).
enum InputKind: Equatable {
    case parquet
    case stream(Compression)
    /// A URL: its kind is told from its first bytes when it is opened (parquet is refused there).
    case remote
    /// A local input that does not exist, kept under `--skip-missing` to be counted as `dropped_missing`.
    case missing
}

/// What a decoded stream holds, from its first 64 KiB.
enum StreamContent: Equatable {
    case warc, jsonl, text
    /// None of the kinds: the reason, for the drop message.
    case unknown(String)

    static let sniffBytes = 1 << 16

    init(head: ArraySlice<UInt8>, complete: Bool) {
        if head.starts(with: Array("WARC/".utf8)) { self = .warc; return }
        var body = head
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        let blank: [UInt8] = [0x20, 0x09, 0x0A, 0x0D]
        if let first = body.firstIndex(where: { !blank.contains($0) }), body[first] == UInt8(ascii: "{") {
            let line = body[first...].prefix { $0 != 0x0A }
            if line.withUnsafeBufferPointer({ JSONLineScanner(paths: []).isObject($0) }) { self = .jsonl; return }
            // A first record longer than the sniff window: an object that opens with a key.
            let cut = line.endIndex == body.endIndex && !complete
            if cut, line.dropFirst().first(where: { !blank.contains($0) }) == UInt8(ascii: "\"") { self = .jsonl; return }
        }
        // A sniff window may end inside a multi-byte character: only an earlier fault counts.
        let invalid = head.withUnsafeBufferPointer { firstInvalidUTF8($0) }
        if let bad = invalid, complete || bad < head.count - 3 { self = .unknown("invalid UTF-8 at offset \(bad)"); return }
        if let nul = head.firstIndex(of: 0) { self = .unknown("a NUL byte at offset \(nul - head.startIndex)"); return }
        self = .text
    }
}

/// A unit of reading: a whole file, or one row group of a parquet file (so ranks and threads can split one big
/// file).
struct InputPart: Sendable {
    var url: URL
    /// Path relative to the input argument (a folder) or the file name (a file argument).
    var name: String
    var kind: InputKind
    /// The parquet row group, for a parquet part.
    var group = 0
    /// Position among all parts of all inputs.
    var index = 0
    /// Bytes of the file this part stands for (a row group's compressed bytes for parquet).
    var bytes = 0
    /// Set for a RedPajama-v2 documents file: ids and duplicate flags are RPv2's.
    var rpv2: RPv2Shard?
}

/// An input as given (on the command line or in a listing): a URL when it has a scheme (`https://...`), else a
/// local path. A scheme other than http(s) is refused by name when the input is listed.
func inputURL(_ input: String, relativeTo base: URL? = nil) -> URL {
    if input.contains("://"), let url = URL(string: input) { return url }
    if let base, !input.hasPrefix("/") {
        return base.isFileURL ? base.deletingLastPathComponent().appendingPathComponent(input) : URL(string: input, relativeTo: base)?.absoluteURL ?? base
    }
    return URL(fileURLWithPath: input)
}

/// What every reader of one input kind is told: which fields hold the text and the id, and the shortest text
/// worth reading.
struct ReadSettings: Sendable {
    var textField = "text"
    var idField: String? = "id"
    /// Texts of fewer UTF-8 bytes are dropped as `too_short` from their length alone (0: none).
    var minTextBytes = 0
    /// Drop the documents RedPajama-v2's duplicates files flag.
    var rpv2Flags = true
    /// For the json text encoding, the least length a text's escape needs (a byte for each token of its windows):
    /// a shorter one is dropped as `too_short` from one table lookup a byte, before it is tokenized. Nil for raw text.
    var minEscapedBytes: Int?
    /// Keep JSON input's lone surrogate escapes as WTF-8 (`JSONLineScanner.loneSurrogates`): the json text encoding
    /// writes them back out as escapes; raw text cannot hold them and drops the record.
    var loneSurrogates: Bool { minEscapedBytes != nil }
    /// The run's open parquet files, each footer parsed once for all its row groups.
    var parquetFiles = ParquetFiles()
    /// How URLs are fetched.
    var http = HTTPSettings()
    /// A missing input (HTTP 404 or 410, a local path that does not exist) is one `dropped_missing` record, not an error.
    var skipMissing = false

    /// A document, or the drop of an empty, too short or non-UTF-8 one, in that order (a short text is never
    /// checked as UTF-8).
    func document(_ text: [UInt8], id: @autoclosure () -> String, origin: String, part: InputPart, what: String) -> CorpusRecord {
        if let drop = dropByLength(text.count, origin: origin, what: what) { return drop }
        if let least = minEscapedBytes, text.withUnsafeBufferPointer(JSONText.escapedLength) < least {
            return dropped(origin, .tooShort, "", bytes: text.count)
        }
        if let bad = text.withUnsafeBufferPointer({ firstInvalidText($0) }) {
            return dropped(origin, .unreadable, "\(what) is not UTF-8 (invalid byte at offset \(bad))", bytes: text.count)
        }
        return .document(Document(ordinal: 0, id: id(), origin: origin, text: text, part: part.index))
    }

    /// The first byte that is not valid UTF-8, a kept lone surrogate's WTF-8 (`ED A0..BF xx`) allowed.
    func firstInvalidText(_ text: UnsafeBufferPointer<UInt8>) -> Int? {
        var from = 0
        while let bad = firstInvalidUTF8(UnsafeBufferPointer(rebasing: text[from...])).map({ $0 + from }) {
            guard loneSurrogates, bad + 2 < text.count, text[bad] == 0xED, text[bad + 1] & 0xE0 == 0xA0, text[bad + 2] & 0xC0 == 0x80 else { return bad }
            from = bad + 3
        }
        return nil
    }

    /// The drop of a text of `bytes` bytes that is empty or too short; nil if it is long enough.
    func dropByLength(_ bytes: Int, origin: String, what: String) -> CorpusRecord? {
        if bytes == 0 { return dropped(origin, .empty, "empty \(what)", bytes: 0) }
        if bytes < minTextBytes { return dropped(origin, .tooShort, "", bytes: bytes) }
        return nil
    }

    func dropped(_ origin: String, _ reason: DropReason, _ detail: String, bytes: Int? = nil) -> CorpusRecord {
        .dropped(DroppedRecord(ordinal: 0, origin: origin, reason: reason, detail: detail, bytes: bytes))
    }
}

/// Reads the records of one input part in order: the one protocol every input kind implements (`JSONLReader`,
/// `WARCReader`, `TextReader`, `ParquetPartReader`). Records come with ordinal 0; the caller numbers them.
protocol PartReader: AnyObject {
    /// The next record, or nil at the end of the part. Throws when the rest of the part cannot be read.
    func next() throws -> CorpusRecord?
    /// Bytes of the part's file consumed so far (compressed bytes for compressed input), for progress.
    var bytesRead: Int { get }
    /// Where the reader is, for the record that reports a thrown error (`file:line`, or the file).
    var position: String { get }
}

/// One part's records, never throwing: a part that cannot be opened or decoded, or whose content is no known
/// kind, ends with one unreadable record naming the file (and line), never silently.
final class PartCursor {
    let part: InputPart
    private let settings: ReadSettings
    private var reader: PartReader?
    private var done = false

    /// RPv2's flagged ids of this part (read when the part is opened).
    private var flagged: Set<String> = []
    private var flagsRead = false

    init(_ part: InputPart, _ settings: ReadSettings) {
        self.part = part
        var settings = settings
        if part.rpv2 != nil { settings.textField = RPv2Shard.textField; settings.idField = nil }
        self.settings = settings
    }

    var bytesRead: Int { reader?.bytesRead ?? 0 }

    func next() -> CorpusRecord? {
        guard !done else { return nil }
        do {
            if reader == nil {
                if part.kind == .missing {
                    done = true
                    return settings.dropped(part.url.location, .missing, "no such file or folder; skipped (--skip-missing)")
                }
                if settings.rpv2Flags, let rpv2 = part.rpv2, !flagsRead {
                    flagsRead = true
                    do { flagged = try rpv2.flagged(http: settings.http) } catch let e as HTTPError {
                        // A missing one is counted like a missing input, its documents read unflagged.
                        guard e.missing, settings.skipMissing else { throw e }
                        return settings.dropped(e.url.location, .missing, "\(e.message); its documents are read unflagged (--skip-missing)")
                    } catch {
                        done = true
                        return .dropped(DroppedRecord(ordinal: 0, origin: part.url.location, reason: .unreadable,
                                                      detail: "cannot read RedPajama-v2's duplicate flags: \(error)", bytes: nil, fatal: true))
                    }
                }
                reader = try open()
            }
            if let record = try reader!.next() {
                if case .document(let d) = record, flagged.contains(d.id) {
                    return .dropped(DroppedRecord(ordinal: 0, origin: d.origin, reason: .duplicateRPv2, detail: "", bytes: d.text.count))
                }
                return record
            }
        } catch let e as HTTPError {
            // A URL that cannot be had is never a short file: the run stops there (resumable), unless it is missing
            // and --skip-missing says to count it and go on.
            done = true
            if e.missing, settings.skipMissing { return settings.dropped(e.url.location, .missing, "\(e.message); skipped (--skip-missing)") }
            return .dropped(DroppedRecord(ordinal: 0, origin: e.url.location, reason: .unreadable,
                                          detail: e.message + (e.missing ? " (--skip-missing skips missing inputs)" : ""), fatal: true))
        } catch {
            done = true
            return settings.dropped(reader?.position ?? part.url.location, .unreadable, "\(error); the rest of this file is skipped")
        }
        done = true
        return nil
    }

    private func open() throws -> PartReader {
        switch part.kind {
        case .parquet: return try ParquetPartReader(part, settings)
        case .missing: preconditionFailure("a missing part is never opened")
        case .stream, .remote:
            var compression: Compression?
            if case .stream(let c) = part.kind { compression = c }
            let bytes = try ByteStream(url: part.url, compression: compression, http: settings.http)
            if bytes.head == Array("PAR1".utf8) {
                // Its parts are row groups, listed from the footer before any reading: every rank would fetch every
                // footer first, and each group's columns are scattered reads. RPv2's documents are gzip JSONL.
                throw HTTPError(url: part.url, message: "parquet is not read from a URL (its row groups are read at random); download it and pass the local file")
            }
            let head = try bytes.peek(StreamContent.sniffBytes)
            // An empty file is an empty text.
            switch head.isEmpty ? .text : StreamContent(head: head, complete: head.count < StreamContent.sniffBytes) {
            case .text: return TextReader(bytes, part, settings)
            case .jsonl: return JSONLReader(bytes, part, settings)
            case .warc: return WARCReader(bytes, part, settings)
            case .unknown(let why):
                throw FileError(part.url, "content is none of parquet, WARC, JSONL or UTF-8 text (\(why))")
            }
        }
    }
}

/// Reads documents from input files and folders in a fixed order: inputs as given, folder contents sorted by
/// relative path. Every kind streams (JSONL and WARC record by record, through zstd or gzip; parquet row group by
/// row group), never holding a whole file in memory, except a text file, which is one document. Iterating it
/// reads the parts one after another; the preprocessing pipeline reads them on several threads (`DocumentFeed`).
public final class CorpusReader: Sequence, IteratorProtocol {
    let parts: [InputPart]
    let settings: ReadSettings
    private var partIndex = 0
    private var ordinal = 0
    private var cursor: PartCursor?
    /// The RedPajama-v2 shards among all inputs (every rank's), and those without a duplicates file.
    public let rpv2Tags: [String], rpv2MissingDuplicates: [String]
    /// Input bytes, for progress and ETA (of local files: a URL's size is known once it is read).
    public var totalBytes: Int { parts.reduce(0) { $0 + $1.bytes } }
    /// The `inputsFrom` listing, as read.
    let listing: InputListing?
    /// Whether any part is read over HTTP(S).
    var hasRemote: Bool { parts.contains { $0.kind == .remote } }

    /// Lists the inputs. Errors (a missing path, an empty folder, a parquet footer that cannot be read) name the path.
    /// - Parameters:
    ///   - textField: the JSON key (a dotted path into nested objects) or parquet column holding the text.
    ///   - idField: the same for the document id; when nil or absent in a record, the id is `file:line` (JSONL),
    ///     `file:row` (parquet, rows from 0) or the WARC record's `WARC-Record-ID`. A JSON number is its literal
    ///     (an integer) or its shortest decimal form; other JSON values count as absent.
    ///   - minTextBytes: texts shorter than this are dropped as `too_short` from their length alone.
    ///   - rpv2Flags: drop the documents of RedPajama-v2 documents files that its duplicates files flag.
    ///   - share: read only the parts at positions `rank`, `rank + world`, ... (ranks of a distributed run).
    ///   - inputsFrom: a listing of more inputs, read after `inputs` (`InputListing`).
    ///   - http: how URLs are fetched; skipMissing: a missing input is counted as `dropped_missing`, not an error.
    public init(inputs: [String], textField: String = "text", idField: String? = "id", minTextBytes: Int = 0,
                rpv2Flags: Bool = true, minEscapedBytes: Int? = nil, share: (rank: Int, world: Int) = (0, 1),
                inputsFrom: String? = nil, http: HTTPSettings = HTTPSettings(), skipMissing: Bool = false) throws {
        listing = try inputsFrom.map { try InputListing(inputURL($0), http: http) }
        var files: [(url: URL, name: String, kind: InputKind?)] = []
        for url in inputs.map({ inputURL($0) }) + (listing?.inputs ?? []) {
            guard url.isFileURL else {
                guard ["http", "https"].contains(url.scheme?.lowercased() ?? "") else {
                    throw FileError(url, "unsupported scheme '\(url.scheme ?? "")': inputs are local paths or http(s) URLs")
                }
                files.append((url, url.lastPathComponent, .remote))
                continue
            }
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
                guard skipMissing else { throw FileError(url, "no such file or folder") }
                files.append((url, url.lastPathComponent, .missing))
                continue
            }
            if isDir.boolValue {
                // An RPv2 download: its documents only (quality_signals/, duplicates/, minhash/ are not text).
                let root = RPv2Shard.isRoot(url) ? url.appendingPathComponent("documents") : url
                let found = try Self.listFolder(root)
                guard !found.isEmpty else { throw FileError(url, "folder holds no files") }
                files += found.map { ($0.url, $0.name, nil) }
            } else {
                files.append((url, url.lastPathComponent, nil))
            }
        }
        var parts: [InputPart] = []
        let parquetFiles = ParquetFiles()
        for file in files {
            if let kind = file.kind {
                parts.append(InputPart(url: file.url, name: file.name, kind: kind, rpv2: kind == .remote ? RPv2Shard(file.url) : nil))
                continue
            }
            let size = (try? file.url.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0
            let kind = try Self.kind(of: file.url, size: size)
            if kind == .parquet {
                let reader = try parquetFiles.reader(file.url, textColumn: textField, idColumn: idField)
                for g in 0..<reader.rowGroupCount {
                    parts.append(InputPart(url: file.url, name: file.name, kind: kind, group: g, bytes: reader.byteSize(group: g)))
                }
            } else {
                parts.append(InputPart(url: file.url, name: file.name, kind: kind, bytes: size, rpv2: RPv2Shard(file.url)))
            }
        }
        for i in parts.indices { parts[i].index = i }
        rpv2Tags = parts.compactMap { $0.rpv2?.tag }
        rpv2MissingDuplicates = parts.compactMap { $0.rpv2.flatMap { $0.duplicates == nil ? $0.tag : nil } }
        self.parts = parts.filter { $0.index % share.world == share.rank }
        settings = ReadSettings(textField: textField, idField: idField, minTextBytes: minTextBytes, rpv2Flags: rpv2Flags,
                                minEscapedBytes: minEscapedBytes, parquetFiles: parquetFiles, http: http, skipMissing: skipMissing)
    }

    /// The kind from the first and last bytes; a file that cannot be read at all is a stream, reported when opened.
    static func kind(of url: URL, size: Int) throws -> InputKind {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { return .stream(.none) }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 4), tail = head
        let n = pread(fd, &head, 4, 0)
        if n == 4, size >= 12, head == Array("PAR1".utf8), pread(fd, &tail, 4, off_t(size - 4)) == 4, tail == head { return .parquet }
        return .stream(Compression(magic: Array(head.prefix(Swift.max(n, 0)))))
    }

    private static func listFolder(_ root: URL) throws -> [(url: URL, name: String)] {
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey],
                                                          options: [.skipsHiddenFiles]) else {
            throw FileError(root, "cannot list folder")
        }
        let rootPath = root.standardizedFileURL.path
        var out: [(url: URL, name: String)] = []
        for case let url as URL in walker {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
            var rel = url.standardizedFileURL.path
            if rel.hasPrefix(rootPath + "/") { rel.removeFirst(rootPath.count + 1) }
            out.append((url, rel))
        }
        // Byte order, not locale order: the same on every machine.
        return out.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
    }

    /// The next record, numbered over all parts, or nil at the end of the last input.
    public func next() -> CorpusRecord? {
        while partIndex < parts.count {
            if cursor == nil { cursor = PartCursor(parts[partIndex], settings) }
            if var record = cursor!.next() {
                record.ordinal = ordinal
                ordinal += 1
                return record
            }
            cursor = nil
            partIndex += 1
        }
        return nil
    }
}

/// Reads a whole regular file with read(2), naming the file in errors.
func readWholeFile(_ url: URL) throws -> [UInt8] {
    let fd = open(url.path, O_RDONLY)
    guard fd >= 0 else { throw FileError(url, "cannot open (\(String(cString: strerror(errno))))") }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw FileError(url, "cannot stat (\(String(cString: strerror(errno))))") }
    var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
    var done = 0
    try bytes.withUnsafeMutableBytes { raw in
        while done < raw.count {
            let n = read(fd, raw.baseAddress! + done, raw.count - done)
            if n < 0 { if errno == EINTR { continue }; throw FileError(url, "read failed at byte \(done) (\(String(cString: strerror(errno))))") }
            if n == 0 { break }
            done += n
        }
    }
    if done < bytes.count { bytes.removeLast(bytes.count - done) }
    return bytes
}

/// A listing of inputs (`--inputs-from`): one local path or http(s) URL a line, as RedPajama-v2's URL lists are;
/// blank lines and lines starting with `#` are skipped. The listing itself may be local or a URL, plain or
/// compressed; a relative entry is relative to the listing's own folder (or URL).
struct InputListing {
    let inputs: [URL]
    /// SHA-256 of the entries as read (one a line), recorded so that `--resume` refuses a changed listing.
    let digest: String

    init(_ url: URL, http: HTTPSettings) throws {
        if url.isFileURL, !FileManager.default.fileExists(atPath: url.path) { throw FileError(url, "no such listing") }
        let bytes = try ByteStream(url: url, compression: nil, http: http)
        let sha = SHA256()
        var inputs: [URL] = []
        while let line = try bytes.nextLine() {
            let entry = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
            guard !entry.isEmpty, !entry.hasPrefix("#") else { continue }
            Array((entry + "\n").utf8).withUnsafeBytes { sha.update($0) }
            inputs.append(inputURL(entry, relativeTo: url))
        }
        guard !inputs.isEmpty else { throw FileError(url, "listing holds no inputs") }
        self.inputs = inputs
        digest = sha.hex()
    }
}
