import CLongCrawl
import Foundation
import Support

// zstd's seekable format (contrib/seekable_format in the zstd repository): data frames, then a skippable frame
// holding the seek table, whose footer (frame count, descriptor, magic) ends the file. We put one more skippable
// frame, the shard's metadata as JSON, between the last data frame and the seek table: `zstd -d` skips it, and
// seekable readers locate data frames from offset 0 by the table's compressed sizes, so it is invisible to them.
let seekTableMagic: UInt32 = 0x8F92_EAB1
let seekTableFrameMagic: UInt32 = 0x184D_2A5E
let metadataFrameMagic: UInt32 = 0x184D_2A50
/// Seek table descriptor: bit 7 set = every entry carries a checksum.
let checksumFlag: UInt8 = 0x80

/// The metadata frame's JSON.
struct ZstdShardMetadata: Codable {
    var attributes: ShardAttributes
    var sources: [WindowSource]
}

/// One seek table entry: compressed and decompressed frame sizes and the low 32 bits of XXH64 of the frame's content.
struct SeekEntry {
    var compressed: UInt32
    var decompressed: UInt32
    var checksum: UInt32
}

final class SeekableZstdWriter {
    let url: URL, finalName: URL
    let attributes: ShardAttributes
    private var fd: Int32
    private let cctx: OpaquePointer
    private var entries: [SeekEntry] = []
    private var output: [UInt8]

    init(url: URL, finalName: URL, level: Int, attributes: ShardAttributes) throws {
        self.url = url; self.finalName = finalName; self.attributes = attributes
        fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw FileError(url, "cannot create (\(String(cString: strerror(errno))))") }
        cctx = ZSTD_createCCtx()
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, Int32(level))
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1)
        output = [UInt8](repeating: 0, count: ZSTD_compressBound(windowLength * 2))
    }

    deinit { close(); ZSTD_freeCCtx(cctx) }

    func close() {
        if fd >= 0 { Foundation.close(fd); fd = -1 }
    }

    /// Compresses one window into its own frame and appends it.
    func append(_ window: UnsafeBufferPointer<UInt16>) throws {
        let raw = UnsafeRawBufferPointer(window)
        let n = output.withUnsafeMutableBytes { ZSTD_compress2(cctx, $0.baseAddress!, $0.count, raw.baseAddress!, raw.count) }
        guard ZSTD_isError(n) == 0 else { throw FileError(finalName, "zstd: \(String(cString: ZSTD_getErrorName(n)))") }
        try output.withUnsafeBytes { try writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[0..<n]), name: finalName) }
        let hash = XXH64(raw.baseAddress!, raw.count, 0)
        entries.append(SeekEntry(compressed: UInt32(n), decompressed: UInt32(raw.count), checksum: UInt32(truncatingIfNeeded: hash)))
    }

    /// Writes the metadata frame and the seek table, then flushes the file to disk.
    func finish(sources: [WindowSource]) throws {
        let json = try JSONEncoder.sorted.encode(ZstdShardMetadata(attributes: attributes, sources: sources))
        var tail = [UInt8]()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { tail += $0 } }
        u32(metadataFrameMagic); u32(UInt32(json.count)); tail += json
        u32(seekTableFrameMagic); u32(UInt32(entries.count * 12 + 9))
        for e in entries { u32(e.compressed); u32(e.decompressed); u32(e.checksum) }
        u32(UInt32(entries.count)); tail.append(checksumFlag); u32(seekTableMagic)
        try tail.withUnsafeBytes { try writeAll(fd, $0, name: finalName) }
        guard fsync(fd) == 0 else { throw FileError(finalName, "fsync failed (\(String(cString: strerror(errno))))") }
        close()
    }
}

final class SeekableZstdReader {
    let url: URL
    let attributes: ShardAttributes
    let sources: [WindowSource]
    private let fd: Int32
    private let entries: [SeekEntry]
    private let offsets: [Int]
    private let dctx: OpaquePointer
    private var compressed: [UInt8] = []
    private let lock = NSLock()

    init(url: URL) throws {
        self.url = url
        fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw FileError(url, "cannot open (\(String(cString: strerror(errno))))") }
        do {
            (entries, offsets, attributes, sources) = try Self.parse(fd, url)
        } catch {
            Foundation.close(fd)
            throw error
        }
        dctx = ZSTD_createDCtx()
    }

    /// Reads the footer, the seek table and the metadata frame, checking that their sizes add up to the file's.
    private static func parse(_ fd: Int32, _ url: URL) throws -> ([SeekEntry], [Int], ShardAttributes, [WindowSource]) {
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        func bytes(_ offset: Int, _ count: Int) throws -> [UInt8] {
            guard offset >= 0, count >= 0, offset + count <= size else {
                throw FileError(url, "truncated: needs bytes \(offset)..<\(offset + count) of \(size)")
            }
            var b = [UInt8](repeating: 0, count: count)
            let n = b.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, count, off_t(offset)) }
            guard n == count else { throw FileError(url, "short read at byte \(offset)") }
            return b
        }
        func u32(_ b: [UInt8], _ at: Int) -> UInt32 {
            UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
        }
        guard size >= 9 else { throw FileError(url, "\(size) bytes: too short to be a seekable zstd shard") }
        let footer = try bytes(size - 9, 9)
        guard u32(footer, 5) == seekTableMagic else { throw FileError(url, "no seek table at the end of the file (truncated or not a seekable zstd shard)") }
        let frames = Int(u32(footer, 0))
        guard footer[4] & checksumFlag != 0 else { throw FileError(url, "seek table has no checksums") }
        let tableFrame = size - 9 - frames * 12 - 8
        guard frames <= (1 << 24), tableFrame >= 0 else { throw FileError(url, "seek table claims \(frames) frames, more than the file holds") }
        let table = try bytes(tableFrame, 8 + frames * 12)
        guard u32(table, 0) == seekTableFrameMagic, Int(u32(table, 4)) == frames * 12 + 9 else {
            throw FileError(url, "seek table frame header is corrupt")
        }
        var entries: [SeekEntry] = [], offsets: [Int] = []
        var offset = 0
        for i in 0..<frames {
            let e = SeekEntry(compressed: u32(table, 8 + 12 * i), decompressed: u32(table, 12 + 12 * i), checksum: u32(table, 16 + 12 * i))
            guard e.decompressed == windowLength * 2 else { throw FileError(url, "window \(i) holds \(e.decompressed) bytes, expected \(windowLength * 2)") }
            entries.append(e); offsets.append(offset)
            offset += Int(e.compressed)
        }
        let header = try bytes(offset, 8)
        guard u32(header, 0) == metadataFrameMagic else { throw FileError(url, "no metadata frame after the last window (byte \(offset))") }
        let length = Int(u32(header, 4))
        guard offset + 8 + length == tableFrame else { throw FileError(url, "frame sizes do not add up to the file size (corrupt seek table)") }
        let meta: ZstdShardMetadata
        let json = try bytes(offset + 8, length)
        do { meta = try JSONDecoder().decode(ZstdShardMetadata.self, from: Data(json)) } catch {
            throw FileError(url, "metadata frame is not valid JSON (\(error))")
        }
        try meta.attributes.check(url)
        guard meta.sources.count == frames else { throw FileError(url, "metadata lists \(meta.sources.count) windows, seek table \(frames)") }
        return (entries, offsets, meta.attributes, meta.sources)
    }

    deinit { Foundation.close(fd); ZSTD_freeDCtx(dctx) }

    func read(_ k: Int, into buffer: UnsafeMutableBufferPointer<UInt16>) throws {
        lock.lock(); defer { lock.unlock() }
        let e = entries[k]
        let n = Int(e.compressed)
        if compressed.count < n { compressed = [UInt8](repeating: 0, count: n) }
        let got = compressed.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, n, off_t(offsets[k])) }
        guard got == n else { throw FileError(url, "window \(k): short read (file truncated?)") }
        let raw = UnsafeMutableRawBufferPointer(buffer)
        let size = compressed.withUnsafeBytes { ZSTD_decompressDCtx(dctx, raw.baseAddress!, raw.count, $0.baseAddress!, n) }
        guard ZSTD_isError(size) == 0 else { throw FileError(url, "window \(k): corrupt (zstd: \(String(cString: ZSTD_getErrorName(size))))") }
        guard size == raw.count else { throw FileError(url, "window \(k): decompressed to \(size) bytes, expected \(raw.count)") }
        guard UInt32(truncatingIfNeeded: XXH64(raw.baseAddress!, raw.count, 0)) == e.checksum else {
            throw FileError(url, "window \(k): checksum mismatch (XXH64 of the tokens differs from the seek table)")
        }
    }
}
