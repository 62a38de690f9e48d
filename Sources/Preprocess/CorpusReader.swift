import CLongCrawl
import Foundation
import Shards
import Tokenizer

/// One raw document: a stable id (for the split hash), where it came from, and its UTF-8 text.
public struct Document: Sendable {
    /// Position over all records of all inputs, in input order; resume restarts from one.
    public var ordinal: Int
    public var id: String
    /// `file` or `file:line`, for messages.
    public var origin: String
    public var text: [UInt8]
    /// Index of its file among all input files (before any split over ranks).
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

/// The input kinds: a `.txt` file is one document; `.jsonl` and `.jsonl.zst` hold one JSON object a line.
enum InputKind {
    case text, jsonl, jsonlZstd

    init?(path: String) {
        if path.hasSuffix(".jsonl.zst") { self = .jsonlZstd }
        else if path.hasSuffix(".jsonl") { self = .jsonl }
        else if path.hasSuffix(".txt") { self = .text }
        else { return nil }
    }
}

/// Reads documents from folders of `.txt` files, `.jsonl` and `.jsonl.zst` files, in a fixed order:
/// inputs as given, folder contents sorted by relative path. JSONL is streamed line by line (and through
/// zstd for `.zst`), never held in memory whole.
public final class CorpusReader: Sequence, IteratorProtocol {
    /// One input file with the id prefix its documents get.
    struct InputFile {
        var url: URL
        /// Path relative to the input argument (a folder) or the file name (a file argument).
        var name: String
        var kind: InputKind
        /// Position among all input files.
        var index = 0
    }

    let files: [InputFile]
    let textField: String
    let idField: String?
    private var fileIndex = 0
    private var ordinal = 0
    private var lines: LineReader?
    /// Files found under the inputs, for progress and ETA.
    public var totalBytes: Int { files.reduce(0) { $0 + ((try? $1.url.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0) } }
    /// Bytes of input files fully read so far, plus the position in the current one.
    public private(set) var bytesDone = 0
    private var currentFileBytesDone = 0

    /// Lists the inputs. Errors (missing path, unsupported file given explicitly, an empty folder) name the path.
    /// - Parameters:
    ///   - textField: the JSON key holding the text.
    ///   - idField: the JSON key holding the document id; when nil or absent in a record, the id is `file:line`.
    ///   - share: read only the files at positions `rank`, `rank + world`, ... (ranks of a distributed run).
    public init(inputs: [String], textField: String = "text", idField: String? = "id", share: (rank: Int, world: Int) = (0, 1)) throws {
        var files: [InputFile] = []
        for input in inputs {
            let url = URL(fileURLWithPath: input)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
                throw ShardError(url, "no such file or folder")
            }
            if isDir.boolValue {
                let found = try Self.listFolder(url)
                guard !found.isEmpty else { throw ShardError(url, "folder holds no .txt, .jsonl or .jsonl.zst files") }
                files += found
            } else {
                guard let kind = InputKind(path: url.path) else {
                    throw ShardError(url, "unsupported input (expected .txt, .jsonl or .jsonl.zst)")
                }
                files.append(InputFile(url: url, name: url.lastPathComponent, kind: kind))
            }
        }
        for i in files.indices { files[i].index = i }
        self.files = files.filter { $0.index % share.world == share.rank }
        self.textField = textField
        self.idField = idField
    }

    private static func listFolder(_ root: URL) throws -> [InputFile] {
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey],
                                                          options: [.skipsHiddenFiles]) else {
            throw ShardError(root, "cannot list folder")
        }
        let rootPath = root.standardizedFileURL.path
        var out: [InputFile] = []
        for case let url as URL in walker {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true,
                  let kind = InputKind(path: url.path) else { continue }
            var rel = url.standardizedFileURL.path
            if rel.hasPrefix(rootPath + "/") { rel.removeFirst(rootPath.count + 1) }
            out.append(InputFile(url: url, name: rel, kind: kind))
        }
        // Byte order, not locale order: the same on every machine.
        return out.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
    }

    /// The next record, or nil at the end of the last input. A file that cannot be opened or decoded is
    /// reported as a dropped record (with file and offset), never skipped silently.
    public func next() -> CorpusRecord? {
        while fileIndex < files.count {
            let file = files[fileIndex]
            switch file.kind {
            case .text:
                fileIndex += 1
                defer { ordinal += 1 }
                let record = readTextFile(file)
                bytesDone += currentFileSize(file)
                return record
            case .jsonl, .jsonlZstd:
                if lines == nil {
                    do { lines = try LineReader(url: file.url, zstd: file.kind == .jsonlZstd) } catch {
                        fileIndex += 1
                        bytesDone += currentFileSize(file)
                        defer { ordinal += 1 }
                        return .dropped(ordinal: ordinal, origin: file.url.path, reason: .unreadable, detail: "\(error)")
                    }
                }
                let reader = lines!
                do {
                    if let line = try reader.nextLine() {
                        currentFileBytesDone = reader.compressedOffset
                        defer { ordinal += 1 }
                        return parseJSONLine(line, number: reader.lineNumber, file: file)
                    }
                } catch {
                    // A broken stream ends the file: report the rest as one unreadable record.
                    lines = nil
                    fileIndex += 1
                    bytesDone += currentFileSize(file)
                    currentFileBytesDone = 0
                    defer { ordinal += 1 }
                    return .dropped(ordinal: ordinal, origin: "\(file.url.path):\(reader.lineNumber + 1)", reason: .unreadable,
                                    detail: "\(error); the rest of this file is skipped")
                }
                lines = nil
                fileIndex += 1
                bytesDone += currentFileSize(file)
                currentFileBytesDone = 0
            }
        }
        return nil
    }

    /// Input bytes consumed so far, for progress.
    public var progressBytes: Int { bytesDone + currentFileBytesDone }

    private func currentFileSize(_ file: InputFile) -> Int {
        (try? file.url.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0
    }

    private func readTextFile(_ file: InputFile) -> CorpusRecord {
        let path = file.url.path
        let bytes: [UInt8]
        do { bytes = try readWholeFile(file.url) } catch {
            return .dropped(ordinal: ordinal, origin: path, reason: .unreadable, detail: "\(error)")
        }
        if bytes.isEmpty { return .dropped(ordinal: ordinal, origin: path, reason: .empty, detail: "empty file") }
        if let bad = bytes.withUnsafeBufferPointer({ firstInvalidUTF8($0) }) {
            return .dropped(ordinal: ordinal, origin: path, reason: .unreadable, detail: "not UTF-8 text (invalid byte at offset \(bad))")
        }
        return .document(Document(ordinal: ordinal, id: file.name, origin: path, text: bytes, file: file.index))
    }

    private func parseJSONLine(_ line: [UInt8], number: Int, file: InputFile) -> CorpusRecord {
        let origin = "\(file.url.path):\(number)"
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
        guard let text = dict[textField] as? String else {
            let what = dict[textField] == nil ? "has no \"\(textField)\" field" : "\"\(textField)\" is not a string"
            return .dropped(ordinal: ordinal, origin: origin, reason: .unreadable, detail: what)
        }
        if text.isEmpty { return .dropped(ordinal: ordinal, origin: origin, reason: .empty, detail: "empty \"\(textField)\"") }
        var id = "\(file.name):\(number)"
        if let idField, let value = dict[idField] {
            if let s = value as? String { id = s } else if let n = value as? NSNumber { id = n.stringValue }
        }
        return .document(Document(ordinal: ordinal, id: id, origin: origin, text: Array(text.utf8), file: file.index))
    }
}

private func jsonErrorSummary(_ error: Error) -> String {
    let ns = error as NSError
    return (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? ns.localizedDescription
}

/// Reads a whole regular file with read(2), naming the file in errors.
func readWholeFile(_ url: URL) throws -> [UInt8] {
    let fd = open(url.path, O_RDONLY)
    guard fd >= 0 else { throw ShardError(url, "cannot open (\(String(cString: strerror(errno))))") }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw ShardError(url, "cannot stat (\(String(cString: strerror(errno))))") }
    var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
    var done = 0
    try bytes.withUnsafeMutableBytes { raw in
        while done < raw.count {
            let n = read(fd, raw.baseAddress! + done, raw.count - done)
            if n < 0 { if errno == EINTR { continue }; throw ShardError(url, "read failed at byte \(done) (\(String(cString: strerror(errno))))") }
            if n == 0 { break }
            done += n
        }
    }
    if done < bytes.count { bytes.removeLast(bytes.count - done) }
    return bytes
}

/// Splits a file, optionally through a zstd stream decoder, into lines of any length.
final class LineReader {
    private let url: URL
    private let fd: Int32
    private var dctx: OpaquePointer?
    private var raw = [UInt8](repeating: 0, count: 1 << 20)
    private var rawStart = 0, rawEnd = 0
    private var buffer: [UInt8] = []
    private var bufferStart = 0
    private var eof = false
    /// Lines returned so far (the last one's 1-based number).
    private(set) var lineNumber = 0
    /// Bytes of the file read so far (compressed bytes for `.zst`).
    private(set) var compressedOffset = 0
    private var frameOpen = false

    init(url: URL, zstd: Bool) throws {
        self.url = url
        fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw ShardError(url, "cannot open (\(String(cString: strerror(errno))))") }
        if zstd { dctx = ZSTD_createDCtx() }
        buffer.reserveCapacity(1 << 20)
    }

    deinit {
        close(fd)
        if let dctx { ZSTD_freeDCtx(dctx) }
    }

    /// The next line without its `\n` (and without a trailing `\r`), or nil at the end of the file.
    func nextLine() throws -> [UInt8]? {
        var scanFrom = bufferStart
        while true {
            if let nl = buffer[scanFrom...].firstIndex(of: 0x0A) {
                var end = nl
                if end > bufferStart, buffer[end - 1] == 0x0D { end -= 1 }
                let line = Array(buffer[bufferStart..<end])
                bufferStart = nl + 1
                lineNumber += 1
                return line
            }
            scanFrom = buffer.count
            if eof {
                guard bufferStart < buffer.count else { return nil }
                var end = buffer.count
                if buffer[end - 1] == 0x0D { end -= 1 }
                let line = Array(buffer[bufferStart..<end])
                bufferStart = buffer.count
                lineNumber += 1
                return line
            }
            // Compact before refilling so memory holds one line plus one read, not the whole file.
            if bufferStart > 0 {
                buffer.removeFirst(bufferStart)
                scanFrom -= bufferStart
                bufferStart = 0
            }
            try fill()
        }
    }

    private func readRaw() throws -> Int {
        while true {
            let n = raw.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw ShardError(url, "read failed at byte \(compressedOffset) (\(String(cString: strerror(errno))))") }
            compressedOffset += n
            return n
        }
    }

    private func fill() throws {
        guard let dctx else {
            let n = try readRaw()
            if n == 0 { eof = true } else { buffer.append(contentsOf: raw[0..<n]) }
            return
        }
        var out = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            if rawStart == rawEnd {
                let n = try readRaw()
                if n == 0 {
                    if frameOpen { throw ShardError(url, "zstd stream truncated at byte \(compressedOffset)") }
                    eof = true
                    return
                }
                rawStart = 0; rawEnd = n
            }
            var produced = 0
            let result: Int = raw.withUnsafeBytes { src in
                out.withUnsafeMutableBytes { dst in
                    var input = ZSTD_inBuffer(src: src.baseAddress! + rawStart, size: rawEnd - rawStart, pos: 0)
                    var output = ZSTD_outBuffer(dst: dst.baseAddress!, size: dst.count, pos: 0)
                    let r = ZSTD_decompressStream(dctx, &output, &input)
                    rawStart += input.pos
                    produced = output.pos
                    return r
                }
            }
            if ZSTD_isError(result) != 0 {
                let offset = compressedOffset - (rawEnd - rawStart)
                throw ShardError(url, "zstd: \(String(cString: ZSTD_getErrorName(result))) near byte \(offset)")
            }
            frameOpen = result != 0
            if produced > 0 { buffer.append(contentsOf: out[0..<produced]); return }
        }
    }
}
