import CLongCrawl
import Foundation
import Support

/// How an input file's bytes are compressed, from its first bytes.
enum Compression {
    case none, zstd, gzip

    init(magic: [UInt8]) {
        if magic.starts(with: [0x28, 0xB5, 0x2F, 0xFD]) { self = .zstd }
        else if magic.starts(with: [0x1F, 0x8B]) { self = .gzip }
        else { self = .none }
    }
}

/// A file's decompressed bytes, read forward in pieces of any size: lines, exact counts, or everything.
/// zstd input may hold several frames (and skippable frames) with windows up to 2 GiB (long-distance mode);
/// gzip input may hold several members, as `cat a.gz b.gz` and per-record WARC files do.
final class ByteStream {
    let url: URL
    private let source: ByteSource
    private var compression = Compression.none
    /// The first raw bytes (up to 4) when the compression was told from them: a URL's parquet magic, for its refusal.
    private(set) var head: [UInt8] = []
    private var zstd: OpaquePointer?
    private var zlib: UnsafeMutablePointer<z_stream>?
    private var raw = [UInt8](repeating: 0, count: 1 << 20)
    /// Scratch for one decoding call, reused (zero-filling a fresh one per call cost as much as a copy).
    private var decoded = [UInt8](repeating: 0, count: 1 << 20)
    private var rawStart = 0, rawEnd = 0
    /// Decoded bytes not consumed yet start at `start`.
    private var buffer: [UInt8] = []
    private var start = 0
    private var eof = false
    /// A zstd frame or gzip member is open: the file may not end here.
    private var inFrame = false
    /// Lines returned so far (the last one's 1-based number).
    private(set) var lineNumber = 0
    /// Bytes of the file read so far (compressed bytes for compressed input).
    private(set) var fileOffset = 0

    /// A stream of the file or URL `url` (`openSource`); `compression` nil tells it from the first bytes (a
    /// URL's kind is not known before it is read).
    init(url: URL, compression: Compression?, http: HTTPSettings = HTTPSettings()) throws {
        self.url = url
        source = try openSource(url, http: http)
        if let compression {
            self.compression = compression
        } else {
            // Four bytes tell every kind; a source may give fewer per read.
            while rawEnd < 4, try readRaw(append: true) > 0 {}
            self.compression = Compression(magic: Array(raw[0..<min(rawEnd, 4)]))
            if self.compression == .none { buffer.append(contentsOf: raw[0..<rawEnd]); rawStart = rawEnd }
        }
        head = Array(raw[0..<min(rawEnd, 4)])
        switch self.compression {
        case .none: break
        case .zstd:
            zstd = ZSTD_createDCtx()
            // Frames written with --long (or --ultra) declare windows past zstd's default 128 MiB decoding limit.
            ZSTD_DCtx_setParameter(zstd, ZSTD_d_windowLogMax, 31)
        case .gzip:
            zlib = .allocate(capacity: 1)
            zlib!.initialize(to: z_stream())
            // 15 + 16: gzip framing only, largest window.
            guard inflateInit2_(zlib, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                throw FileError(url, "zlib: cannot initialize the gzip decoder")
            }
        }
        buffer.reserveCapacity(1 << 20)
    }

    deinit {
        if let zstd { ZSTD_freeDCtx(zstd) }
        if let zlib { inflateEnd(zlib); zlib.deallocate() }
    }

    /// At least `count` decoded bytes ahead (fewer only at the end), without consuming them.
    func peek(_ count: Int) throws -> ArraySlice<UInt8> {
        while buffer.count - start < count, !eof { try fill() }
        return buffer[start..<min(buffer.count, start + count)]
    }

    /// The next line without its `\n` (and without a trailing `\r`), or nil at the end.
    func nextLine() throws -> [UInt8]? {
        var scanFrom = start
        while true {
            let found = buffer.withUnsafeBufferPointer { b -> Int? in
                guard scanFrom < b.count, let p = memchr(b.baseAddress! + scanFrom, 0x0A, b.count - scanFrom) else { return nil }
                return UnsafeRawPointer(p) - UnsafeRawPointer(b.baseAddress!)
            }
            if let nl = found {
                var end = nl
                if end > start, buffer[end - 1] == 0x0D { end -= 1 }
                let line = Array(buffer[start..<end])
                start = nl + 1
                lineNumber += 1
                return line
            }
            scanFrom = buffer.count
            if eof {
                guard start < buffer.count else { return nil }
                var end = buffer.count
                if buffer[end - 1] == 0x0D { end -= 1 }
                let line = Array(buffer[start..<end])
                start = buffer.count
                lineNumber += 1
                return line
            }
            scanFrom -= compact()
            try fill()
        }
    }

    /// Exactly `count` bytes, or fewer at the end.
    func next(_ count: Int) throws -> [UInt8] {
        while buffer.count - start < count, !eof { _ = compact(); try fill() }
        let end = start + min(count, buffer.count - start)
        defer { start = end }
        return Array(buffer[start..<end])
    }

    /// Passes over `count` bytes (fewer only at the end) without copying them out; returns how many.
    func skip(_ count: Int) throws -> Int {
        var left = count
        while left > 0 {
            if start == buffer.count {
                if eof { break }
                _ = compact(); try fill(); continue
            }
            let n = min(left, buffer.count - start)
            start += n; left -= n
        }
        return count - left
    }

    /// Everything left.
    func rest() throws -> [UInt8] {
        while !eof { try fill() }
        defer { start = buffer.count }
        return Array(buffer[start...])
    }

    /// Drops consumed bytes so memory holds what is pending plus one read, not the whole file; returns how many.
    private func compact() -> Int {
        let dropped = start
        if start > 0 { buffer.removeFirst(start); start = 0 }
        return dropped
    }

    /// Reads the next raw bytes into `raw` (after those there when `append`), returning how many (0 at the end).
    private func readRaw(append: Bool = false) throws -> Int {
        let at = append ? rawEnd : 0
        let n = try raw.withUnsafeMutableBytes { try source.read($0.baseAddress! + at, $0.count - at) }
        fileOffset += n
        if !append { rawStart = 0 }
        rawEnd = at + n
        return n
    }

    /// Appends the next decoded bytes to `buffer`, or sets `eof`.
    private func fill() throws {
        if compression == .none {
            if try readRaw() == 0 { eof = true } else { buffer.append(contentsOf: raw[0..<rawEnd]) }
            return
        }
        while true {
            if rawStart == rawEnd, try readRaw() == 0 {
                if inFrame { throw FileError(url, "\(compression == .zstd ? "zstd" : "gzip") stream truncated at byte \(fileOffset)") }
                eof = true
                return
            }
            let produced = try decoded.withUnsafeMutableBytes { dst in
                try raw.withUnsafeMutableBytes { src in
                    compression == .zstd ? try decodeZstd(src, dst) : try decodeGzip(src, dst)
                }
            }
            if produced > 0 { buffer.append(contentsOf: decoded[0..<produced]); return }
        }
    }

    private func decodeZstd(_ src: UnsafeMutableRawBufferPointer, _ dst: UnsafeMutableRawBufferPointer) throws -> Int {
        var input = ZSTD_inBuffer(src: src.baseAddress! + rawStart, size: rawEnd - rawStart, pos: 0)
        var output = ZSTD_outBuffer(dst: dst.baseAddress!, size: dst.count, pos: 0)
        let r = ZSTD_decompressStream(zstd, &output, &input)
        rawStart += input.pos
        if ZSTD_isError(r) != 0 {
            throw FileError(url, "zstd: \(String(cString: ZSTD_getErrorName(r))) near byte \(fileOffset - (rawEnd - rawStart))")
        }
        inFrame = r != 0
        return output.pos
    }

    private func decodeGzip(_ src: UnsafeMutableRawBufferPointer, _ dst: UnsafeMutableRawBufferPointer) throws -> Int {
        let z = zlib!
        z.pointee.next_in = (src.baseAddress! + rawStart).assumingMemoryBound(to: Bytef.self)
        z.pointee.avail_in = UInt32(rawEnd - rawStart)
        z.pointee.next_out = dst.baseAddress!.assumingMemoryBound(to: Bytef.self)
        z.pointee.avail_out = UInt32(dst.count)
        inFrame = true
        let r = inflate(z, Z_NO_FLUSH)
        rawStart = rawEnd - Int(z.pointee.avail_in)
        let produced = dst.count - Int(z.pointee.avail_out)
        switch r {
        case Z_OK, Z_BUF_ERROR: break
        case Z_STREAM_END:
            // One member done; another may follow.
            inFrame = false
            inflateReset(z)
        default:
            let what = z.pointee.msg.map { String(cString: $0) } ?? "error \(r)"
            throw FileError(url, "gzip: \(what) near byte \(fileOffset - (rawEnd - rawStart))")
        }
        return produced
    }
}

/// Where a stream's raw bytes come from, read forward: a local file, or an HTTP(S) body (`HTTPSource`).
protocol ByteSource: AnyObject {
    /// Up to `count` bytes into `buffer`: how many, 0 at the end. Errors name the file or URL.
    func read(_ buffer: UnsafeMutableRawPointer, _ count: Int) throws -> Int
}

/// The source of `url`: a file for a file URL, else an HTTP(S) body (other schemes are refused by name).
func openSource(_ url: URL, http: HTTPSettings) throws -> ByteSource {
    url.isFileURL ? try FileSource(url) : try HTTPSource(url, http)
}

/// A local file read with read(2).
final class FileSource: ByteSource {
    let url: URL
    private let fd: Int32
    private var offset = 0

    init(_ url: URL) throws {
        self.url = url
        fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw FileError(url, "cannot open (\(String(cString: strerror(errno))))") }
    }

    deinit { close(fd) }

    func read(_ buffer: UnsafeMutableRawPointer, _ count: Int) throws -> Int {
        while true {
            let n = Foundation.read(fd, buffer, count)
            if n >= 0 { offset += n; return n }
            if errno != EINTR { throw FileError(url, "read failed at byte \(offset) (\(String(cString: strerror(errno))))") }
        }
    }
}
