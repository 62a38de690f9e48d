import CLongCrawl
import Foundation
import Support
import Tokenizer

/// One raw document: a stable id (for the split hash), where it came from, and its UTF-8 text.
public struct Document: Sendable {
    /// Position over all records of all inputs, in input order; resume restarts from one.
    public var ordinal: Int
    public var id: String
    /// `file` or `file:line`, for messages.
    public var origin: String
    public var text: [UInt8]
    /// Index of its input part (a file, or a parquet row group) among all parts, before any split over ranks.
    public var file: Int
}

/// Why a record was not turned into windows.
public enum DropReason: String, CaseIterable, Sendable {
    case empty
    case unreadable
    case tooShort = "too_short"
}

/// What the reader yields per record: a document, or a record it could not use and why.
public enum CorpusRecord: Sendable {
    case document(Document)
    case dropped(ordinal: Int, origin: String, reason: DropReason, detail: String)

    public var ordinal: Int {
        switch self {
        case .document(let d): return d.ordinal
        case .dropped(let o, _, _, _): return o
        }
    }
}

/// What an input file holds, told from its bytes, never its name: parquet (`PAR1` at both ends), or after any
/// zstd or gzip decoding, WARC records (`WARC/`), JSONL (a first line that is a JSON object), or UTF-8 text
/// (one document).
enum InputKind: Equatable {
    case parquet
    case stream(Compression)
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
            if (try? JSONSerialization.jsonObject(with: Data(line))) is [String: Any] { self = .jsonl; return }
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

/// Reads documents from input files and folders in a fixed order: inputs as given, folder contents sorted by
/// relative path. Every kind streams (JSONL and WARC record by record, through zstd or gzip; parquet row group by
/// row group), never holding a whole file in memory, except a text file, which is one document.
public final class CorpusReader: Sequence, IteratorProtocol {
    /// A unit of reading: a whole file, or one row group of a parquet file (so ranks can split one big file).
    struct InputPart {
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
    }

    let parts: [InputPart]
    let textField: String
    let idField: String?
    private var partIndex = 0
    private var ordinal = 0
    /// The open stream of the current part and what it holds.
    private var stream: (bytes: ByteStream, content: StreamContent, records: Int)?
    /// The current parquet part's rows not yet returned, and the row number of the first.
    private var rows: (values: ArraySlice<ParquetRow>, first: Int)?
    private var parquet: ParquetReader?
    /// Input bytes, for progress and ETA.
    public var totalBytes: Int { parts.reduce(0) { $0 + $1.bytes } }
    /// Bytes of parts fully read so far, plus the position in the current one.
    public var progressBytes: Int { bytesDone + (stream?.bytes.fileOffset ?? 0) }
    private var bytesDone = 0

    /// Lists the inputs. Errors (a missing path, an empty folder, a parquet footer that cannot be read) name the path.
    /// - Parameters:
    ///   - textField: the JSON key (a dotted path into nested objects) or parquet column holding the text.
    ///   - idField: the same for the document id; when nil or absent in a record, the id is `file:line` (JSONL),
    ///     `file:row` (parquet, rows from 0) or the WARC record's `WARC-Record-ID`.
    ///   - share: read only the parts at positions `rank`, `rank + world`, ... (ranks of a distributed run).
    public init(inputs: [String], textField: String = "text", idField: String? = "id", share: (rank: Int, world: Int) = (0, 1)) throws {
        var files: [(url: URL, name: String)] = []
        for input in inputs {
            let url = URL(fileURLWithPath: input)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
                throw FileError(url, "no such file or folder")
            }
            if isDir.boolValue {
                let found = try Self.listFolder(url)
                guard !found.isEmpty else { throw FileError(url, "folder holds no files") }
                files += found
            } else {
                files.append((url, url.lastPathComponent))
            }
        }
        var parts: [InputPart] = []
        for file in files {
            let size = (try? file.url.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0
            let kind = try Self.kind(of: file.url, size: size)
            if kind == .parquet {
                let reader = try ParquetReader(url: file.url, textColumn: textField, idColumn: idField)
                for g in 0..<reader.rowGroupCount {
                    parts.append(InputPart(url: file.url, name: file.name, kind: kind, group: g, bytes: reader.byteSize(group: g)))
                }
            } else {
                parts.append(InputPart(url: file.url, name: file.name, kind: kind, bytes: size))
            }
        }
        for i in parts.indices { parts[i].index = i }
        self.parts = parts.filter { $0.index % share.world == share.rank }
        self.textField = textField
        self.idField = idField
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

    /// The next record, or nil at the end of the last input. A file that cannot be opened or decoded, or whose
    /// content is no known kind, is reported as a dropped record (with file and offset), never skipped silently.
    public func next() -> CorpusRecord? {
        while partIndex < parts.count {
            let part = parts[partIndex]
            let record: CorpusRecord?
            do {
                switch part.kind {
                case .parquet: record = try nextRow(part)
                case .stream(let compression): record = try nextInStream(part, compression)
                }
            } catch {
                // A broken file ends there: the rest of it is one unreadable record.
                let at = stream.map { "\(part.url.path):\($0.bytes.lineNumber + 1)" } ?? part.url.path
                record = .dropped(ordinal: ordinal, origin: at, reason: .unreadable, detail: "\(error); the rest of this file is skipped")
                endPart()
            }
            if let record { ordinal += 1; return record }
            endPart()
        }
        return nil
    }

    private func endPart() {
        bytesDone += parts[partIndex].bytes
        partIndex += 1
        stream = nil; rows = nil
    }

    private func nextRow(_ part: InputPart) throws -> CorpusRecord? {
        if rows == nil {
            if parquet?.url != part.url { parquet = try ParquetReader(url: part.url, textColumn: textField, idColumn: idField) }
            let first = (0..<part.group).reduce(0) { $0 + parquet!.rowCount(group: $1) }
            rows = (ArraySlice(try parquet!.readRowGroup(part.group)), first)
        }
        guard let row = rows!.values.popFirst() else { return nil }
        let number = rows!.first + rows!.values.startIndex - 1
        let origin = "\(part.url.path):\(number)"
        guard let text = row.text else { return .dropped(ordinal: ordinal, origin: origin, reason: .empty, detail: "null \"\(textField)\"") }
        return document(text, id: row.id ?? "\(part.name):\(number)", origin: origin, part: part, what: "\"\(textField)\"")
    }

    private func nextInStream(_ part: InputPart, _ compression: Compression) throws -> CorpusRecord? {
        if stream == nil {
            let bytes = try ByteStream(url: part.url, compression: compression)
            let head = try bytes.peek(StreamContent.sniffBytes)
            // An empty file is an empty text.
            stream = (bytes, head.isEmpty ? .text : StreamContent(head: head, complete: head.count < StreamContent.sniffBytes), 0)
        }
        let (bytes, content, records) = stream!
        defer { stream?.records = records + 1 }
        switch content {
        case .unknown(let why):
            guard records == 0 else { return nil }
            return .dropped(ordinal: ordinal, origin: part.url.path, reason: .unreadable,
                            detail: "content is none of parquet, WARC, JSONL or UTF-8 text (\(why))")
        case .text:
            guard records == 0 else { return nil }
            return document(try bytes.rest(), id: part.name, origin: part.url.path, part: part, what: "file")
        case .jsonl:
            guard let line = try bytes.nextLine() else { return nil }
            return parseJSONLine(line, number: bytes.lineNumber, part: part)
        case .warc:
            return try nextWARCRecord(bytes, part: part)
        }
    }

    /// The next conversion record of a WARC stream (Common Crawl's WET files): headers up to a blank line, then
    /// `Content-Length` bytes of text. Other record types (warcinfo, request, metadata) hold no document and are
    /// passed over.
    private func nextWARCRecord(_ bytes: ByteStream, part: InputPart) throws -> CorpusRecord? {
        while true {
            var line = try bytes.nextLine()
            while line?.isEmpty == true { line = try bytes.nextLine() }
            guard let version = line else { return nil }
            let at = "\(part.url.path):\(bytes.lineNumber)"
            guard version.starts(with: Array("WARC/".utf8)) else { throw FileError(part.url, "line \(bytes.lineNumber): expected a WARC record header") }
            var headers: [String: String] = [:]
            while let h = try bytes.nextLine(), !h.isEmpty {
                guard let colon = h.firstIndex(of: UInt8(ascii: ":")) else { continue }
                let key = String(decoding: h[..<colon], as: UTF8.self).lowercased()
                headers[key] = String(decoding: h[(colon + 1)...], as: UTF8.self).trimmingCharacters(in: .whitespaces)
            }
            guard let length = headers["content-length"].flatMap({ Int($0) }), length >= 0 else {
                throw FileError(part.url, "line \(bytes.lineNumber): WARC record without a valid Content-Length")
            }
            let content = try bytes.next(length)
            guard content.count == length else { throw FileError(part.url, "WARC record at \(at) truncated (\(content.count) of \(length) bytes)") }
            guard headers["warc-type"] == "conversion" else { continue }
            let id = headers["warc-record-id"] ?? "\(part.name):\(bytes.lineNumber)"
            if content.isEmpty { return .dropped(ordinal: ordinal, origin: at, reason: .empty, detail: "empty WARC record") }
            return document(content, id: id, origin: at, part: part, what: "WARC record")
        }
    }

    private func parseJSONLine(_ line: [UInt8], number: Int, part: InputPart) -> CorpusRecord {
        let origin = "\(part.url.path):\(number)"
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) {
            return .dropped(ordinal: ordinal, origin: origin, reason: .empty, detail: "blank line")
        }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: Data(line), options: [.fragmentsAllowed]) } catch {
            return .dropped(ordinal: ordinal, origin: origin, reason: .unreadable, detail: "not JSON (\(jsonErrorSummary(error)))")
        }
        guard let dict = object as? [String: Any] else {
            return .dropped(ordinal: ordinal, origin: origin, reason: .unreadable, detail: "not a JSON object")
        }
        guard let text = field(dict, textField) as? String else {
            let what = field(dict, textField) == nil ? "has no \"\(textField)\" field" : "\"\(textField)\" is not a string"
            return .dropped(ordinal: ordinal, origin: origin, reason: .unreadable, detail: what)
        }
        var id = "\(part.name):\(number)"
        if let idField, let value = field(dict, idField) {
            if let s = value as? String { id = s } else if let n = value as? NSNumber { id = n.stringValue }
        }
        return document(Array(text.utf8), id: id, origin: origin, part: part, what: "\"\(textField)\"")
    }

    /// A document, or the drop of an empty or non-UTF-8 one.
    private func document(_ text: [UInt8], id: String, origin: String, part: InputPart, what: String) -> CorpusRecord {
        if text.isEmpty { return .dropped(ordinal: ordinal, origin: origin, reason: .empty, detail: "empty \(what)") }
        if let bad = text.withUnsafeBufferPointer({ firstInvalidUTF8($0) }) {
            return .dropped(ordinal: ordinal, origin: origin, reason: .unreadable, detail: "\(what) is not UTF-8 (invalid byte at offset \(bad))")
        }
        return .document(Document(ordinal: ordinal, id: id, origin: origin, text: text, file: part.index))
    }
}

/// A value by key, or by a dotted path into nested objects (`metadata.WARC-Record-ID`); a key that itself holds
/// dots is found first.
func field(_ object: [String: Any], _ path: String) -> Any? {
    if let value = object[path] { return value }
    var node: Any = object
    for key in path.split(separator: ".", omittingEmptySubsequences: false) {
        guard let next = (node as? [String: Any])?[String(key)] else { return nil }
        node = next
    }
    return node
}

private func jsonErrorSummary(_ error: Error) -> String {
    let ns = error as NSError
    return (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? ns.localizedDescription
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
