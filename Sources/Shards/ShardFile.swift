import CLongCrawl
import Foundation
import Support

/// Where a window came from: its document id, its first token's offset in that document, and its roll: the window
/// is stored as `numpy.roll(tokens, roll)`, so the column `roll` holds the token at `offset` (0: stored in order).
public struct WindowSource: Codable, Equatable, Sendable {
    public var document: String
    public var offset: Int
    public var roll: Int
    public init(document: String, offset: Int, roll: Int = 0) { self.document = document; self.offset = offset; self.roll = roll }

    enum CodingKeys: String, CodingKey { case document, offset, roll }

    /// Metadata written before rolls existed has no `roll`: 0.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(document: c.decode(String.self, forKey: .document), offset: c.decode(Int.self, forKey: .offset),
                      roll: c.decodeIfPresent(Int.self, forKey: .roll) ?? 0)
    }

    /// `roll` only when not 0, so a shard of unrolled windows has the same bytes as before rolls existed.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(document, forKey: .document)
        try c.encode(offset, forKey: .offset)
        if roll != 0 { try c.encode(roll, forKey: .roll) }
    }
}

/// Shard attributes shared by both formats (HDF5 root attributes; JSON in the zst metadata frame).
struct ShardAttributes: Codable, Equatable {
    var format = "longcrawl-shard"
    var version = 1
    var tokenizer = "gpt2"
    var vocab_size = GPT2.vocabularySize
    var window = windowLength
    var split: Split

    /// Checks what a reader relies on; the fault names the attribute.
    func check(_ url: URL) throws {
        guard format == "longcrawl-shard" else { throw FileError(url, "attribute format is '\(format)', expected 'longcrawl-shard'") }
        guard version == 1 else { throw FileError(url, "shard version \(version), this build reads 1") }
        guard window == windowLength else { throw FileError(url, "window \(window), expected \(windowLength)") }
        guard tokenizer == "gpt2" else { throw FileError(url, "tokenizer '\(tokenizer)', expected 'gpt2'") }
    }
}

/// Writes one shard under its temporary name and renames it into place on `finish`, so a shard file under
/// its final name is always complete.
public final class ShardWriter {
    public let url: URL
    public let format: ShardFormat
    public let split: Split
    let temporary: URL
    private var zst: SeekableZstdWriter?
    private var h5: HDF5ShardWriter?
    private var sources: [WindowSource] = []
    private var finished = false

    /// Creates `directory/file` under its temporary name.
    public init(directory: URL, file: String, format: ShardFormat, split: Split, level: Int) throws {
        url = directory.appendingPathComponent(file)
        temporary = AtomicFile.temporaryURL(for: url)
        self.format = format
        self.split = split
        let attributes = ShardAttributes(split: split)
        switch format {
        case .zst: zst = try SeekableZstdWriter(url: temporary, finalName: url, level: level, attributes: attributes)
        case .hdf5: h5 = try HDF5ShardWriter(url: temporary, finalName: url, level: level, attributes: attributes)
        }
    }

    deinit { if !finished { abandon() } }

    /// Windows appended so far.
    public var windowCount: Int { sources.count }

    /// Appends one window of exactly 65,536 tokens.
    public func append(_ window: UnsafeBufferPointer<UInt16>, source: WindowSource) throws {
        guard window.count == windowLength else {
            throw FileError(url, "window of \(window.count) tokens, expected \(windowLength)")
        }
        if let zst { try zst.append(window) } else { try h5!.append(window, index: sources.count) }
        sources.append(source)
    }

    /// Flushes to disk, renames to the final name and returns the index entry (size and SHA-256 of the file).
    public func finish() throws -> ShardEntry {
        do {
            if let zst { try zst.finish(sources: sources) } else { try h5!.finish(sources: sources) }
            let (bytes, sha) = try sha256(of: temporary)
            try AtomicFile.commit(temporary, to: url)
            finished = true
            return ShardEntry(file: url.lastPathComponent, format: format, split: split, windows: sources.count, bytes: bytes, sha256: sha)
        } catch {
            abandon()
            throw error
        }
    }

    /// Deletes the temporary file; the final name is never touched.
    public func abandon() {
        finished = true
        zst?.close()
        h5?.close()
        unlink(temporary.path)
    }
}

/// Reads windows from a shard of either format; every window is checked against its checksum.
public final class ShardReader {
    public let url: URL
    public let format: ShardFormat
    public let split: Split
    /// Source document, offset and roll of each window.
    public let sources: [WindowSource]
    private let zst: SeekableZstdReader?
    private let h5: HDF5ShardReader?

    /// Opens a shard; the format comes from the file name unless given. Errors name the file and the fault.
    public init(url: URL, format: ShardFormat? = nil) throws {
        self.url = url
        let f = format ?? (url.lastPathComponent.hasSuffix(".h5") ? .hdf5 : .zst)
        self.format = f
        switch f {
        case .zst:
            let r = try SeekableZstdReader(url: url)
            zst = r; h5 = nil
            split = r.attributes.split; sources = r.sources
        case .hdf5:
            let r = try HDF5ShardReader(url: url)
            h5 = r; zst = nil
            split = r.attributes.split; sources = r.sources
        }
        if let bad = sources.firstIndex(where: { !(0..<windowLength).contains($0.roll) }) {
            throw FileError(url, "window \(bad): roll \(sources[bad].roll) is not in 0..<\(windowLength) (corrupt)")
        }
    }

    /// Opens shard `entry` of `directory` and checks its window count and split against the entry. With `checkDigest`
    /// (a process's first open of the shard) its size and SHA-256 are checked first: libhdf5 can crash or hang on
    /// corrupt metadata instead of failing, so a damaged file must never reach it (nor the zst reader).
    public convenience init(entry: ShardEntry, in directory: URL, checkDigest: Bool) throws {
        let url = directory.appendingPathComponent(entry.file)
        if checkDigest, let fault = try digestFault(entry, url) { throw FileError(url, fault) }
        try self.init(url: url, format: entry.format)
        guard windowCount == entry.windows else { throw FileError(url, "holds \(windowCount) windows, index.json says \(entry.windows)") }
        guard split == entry.split else { throw FileError(url, "split '\(split.rawValue)', index.json says '\(entry.split.rawValue)'") }
    }

    public var windowCount: Int { sources.count }

    /// Decompresses window `k` into `buffer` (65,536 tokens) and checks its checksum.
    public func readWindow(_ k: Int, into buffer: UnsafeMutableBufferPointer<UInt16>) throws {
        guard k >= 0, k < windowCount else { throw FileError(url, "window \(k) out of range 0..<\(windowCount)") }
        guard buffer.count == windowLength else { throw FileError(url, "buffer of \(buffer.count) tokens, expected \(windowLength)") }
        if let zst { try zst.read(k, into: buffer) } else { try h5!.read(k, into: buffer) }
    }
}

/// Every check on one shard against its index entry: size and SHA-256, attributes and shape, then every
/// window's checksum. One line per fault (`path: what is wrong`); empty when the shard is good.
public func verifyShard(_ entry: ShardEntry, in directory: URL) -> [String] {
    let url = directory.appendingPathComponent(entry.file)
    var faults: [String] = []
    func fault(_ message: String) { faults.append("\(url.path): \(message)") }
    guard FileManager.default.fileExists(atPath: url.path) else { return ["\(url.path): missing"] }
    // A damaged file is not parsed further: libhdf5 can crash on it.
    do { if let f = try digestFault(entry, url) { return ["\(url.path): \(f)"] } } catch { return ["\(error)"] }
    let reader: ShardReader
    do { reader = try ShardReader(url: url, format: entry.format) } catch {
        return ["\(error)"]
    }
    if reader.windowCount != entry.windows { fault("holds \(reader.windowCount) windows, index.json says \(entry.windows)") }
    if reader.split != entry.split { fault("split '\(reader.split.rawValue)', index.json says '\(entry.split.rawValue)'") }
    var buffer = [UInt16](repeating: 0, count: windowLength)
    for k in 0..<reader.windowCount {
        do {
            try buffer.withUnsafeMutableBufferPointer { try reader.readWindow(k, into: $0) }
            if let bad = buffer.firstIndex(where: { $0 >= GPT2.vocabularySize }) { fault("window \(k): token \(buffer[bad]) at \(bad) is outside the GPT-2 vocabulary") }
        } catch { faults.append("\(error)") }
    }
    return faults
}

/// What is wrong with the shard file at `url` against its index entry's size and SHA-256; nil when both match.
func digestFault(_ entry: ShardEntry, _ url: URL) throws -> String? {
    let (bytes, sha) = try sha256(of: url)
    if bytes != entry.bytes { return "size \(bytes) bytes, index.json says \(entry.bytes) (the file is damaged or replaced)" }
    if sha != entry.sha256 { return "SHA-256 \(sha) does not match index.json (\(entry.sha256)): the file is damaged" }
    return nil
}

/// Writes all of `bytes` at the file's current position; a short write (full disk, file size limit) throws
/// naming `name`.
func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, name: URL) throws {
    var done = 0
    while done < bytes.count {
        let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
        if n < 0 {
            if errno == EINTR { continue }
            throw FileError(name, "write failed (\(String(cString: strerror(errno))))")
        }
        done += n
    }
}
