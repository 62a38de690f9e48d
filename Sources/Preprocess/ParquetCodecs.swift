import CLongCrawl
import Foundation
import Support

/// Decompresses the pages of one column chunk: uncompressed, snappy, gzip (or zlib) and zstd.
struct PageDecompressor {
    let url: URL
    /// The column's dotted name, for errors.
    let column: String
    let codec: Int
    /// One zstd context for all pages of the chunk: ZSTD_decompress would set up (and allocate) one per page.
    private let zstd = ZstdContext()

    init(url: URL, column: String, codec: Int) {
        self.url = url; self.column = column; self.codec = codec
    }

    func fail(_ why: String) -> FileError { FileError(url, "column '\(column)': \(why)") }

    /// A page body decompressed to exactly `size` bytes.
    func decompress(_ bytes: [UInt8], _ range: Range<Int>, size: Int) throws -> [UInt8] {
        guard size >= 0, size <= maxPageBytes else { throw fail("corrupt page: uncompressed size \(size)") }
        if codec == Codec.uncompressed {
            guard range.count == size else { throw fail("corrupt page: \(range.count) bytes stored, \(size) declared") }
            return Array(bytes[range])
        }
        if size == 0 { return [] }
        guard !range.isEmpty else { throw fail("corrupt page: empty compressed body") }
        let name = enumName(codecNames, codec)
        // The size comes from the page header: check it against the compressed data before allocating it.
        let plausible: Bool = bytes.withUnsafeBytes { src in
            let input = src.baseAddress! + range.lowerBound
            switch codec {
            case Codec.snappy:
                var n = 0
                // A snappy element of 3 bytes gives at most 64: a larger claim is corruption, caught before allocating it.
                return snappy_uncompressed_length(input.assumingMemoryBound(to: CChar.self), range.count, &n) == SNAPPY_OK && n == size
                    && size <= range.count * 22
            case Codec.zstd:
                let n = ZSTD_getFrameContentSize(input, range.count)
                guard n == UInt64(size) || n == UInt64.max else { return false }  // UInt64.max: the frame does not say (ZSTD_CONTENTSIZE_UNKNOWN)
                // A frame header may claim any size and zstd can expand 32,768:1: past 64:1 (rare in real pages,
                // a long run of one value) the output is counted before it is allocated.
                return size <= range.count * 64 || zstdOutputSize(input, range.count, limit: size) == size
            default:
                return size <= range.count * 1032 + 64  // deflate expands at most 1032:1
            }
        }
        guard plausible else { throw fail("corrupt page: \(name) data does not hold the \(size) bytes its header declares") }
        // Not zero-filled first: the decompressor writes every byte, or the page is refused.
        var ok = false
        let out = [UInt8](unsafeUninitializedCapacity: size) { dst, initialized in
            ok = bytes.withUnsafeBytes { src in
                let input = src.baseAddress! + range.lowerBound
                switch codec {
                case Codec.snappy:
                    var n = size
                    return snappy_uncompress(input.assumingMemoryBound(to: CChar.self), range.count, UnsafeMutableRawPointer(dst.baseAddress!).assumingMemoryBound(to: CChar.self), &n) == SNAPPY_OK && n == size
                case Codec.zstd:
                    let n = ZSTD_decompressDCtx(zstd.context, dst.baseAddress!, size, input, range.count)
                    return ZSTD_isError(n) == 0 && n == size
                default:
                    return inflateExactly(input, range.count, dst.baseAddress!, size)
                }
            }
            initialized = ok ? size : 0
        }
        guard ok else { throw fail("corrupt page: \(name) data does not decompress to \(size) bytes") }
        return out
    }
}

extension PageDecompressor {
    /// The bytes zstd data decompresses to (all its frames), counted in a scratch buffer and never past `limit + 1`;
    /// nil when it is corrupt or truncated. Its window is capped at 8 MiB, which pages written at once never need.
    fileprivate func zstdOutputSize(_ input: UnsafeRawPointer, _ count: Int, limit: Int) -> Int? {
        guard let context = ZSTD_createDCtx() else { return nil }
        defer { ZSTD_freeDCtx(context) }
        ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, 23)
        var scratch = [UInt8](repeating: 0, count: 1 << 17)
        return scratch.withUnsafeMutableBytes { scratch in
            var source = ZSTD_inBuffer(src: input, size: count, pos: 0)
            var total = 0
            while total <= limit {
                var output = ZSTD_outBuffer(dst: scratch.baseAddress!, size: scratch.count, pos: 0)
                let read = source.pos
                let r = ZSTD_decompressStream(context, &output, &source)
                if ZSTD_isError(r) != 0 || (output.pos == 0 && source.pos == read && r != 0) { return nil }
                total += output.pos
                if source.pos == source.size, output.pos < output.size { return r == 0 ? total : nil }  // all read; a frame left open is truncated
            }
            return total
        }
    }
}

/// A zstd decompression context, freed with its owner.
private final class ZstdContext {
    let context = ZSTD_createDCtx()
    deinit { ZSTD_freeDCtx(context) }
}

/// Inflates a gzip or zlib stream (auto-detected) that must fill `output` exactly.
private func inflateExactly(_ input: UnsafeRawPointer, _ count: Int, _ output: UnsafeMutableRawPointer, _ size: Int) -> Bool {
    var strm = z_stream()
    guard inflateInit2_(&strm, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return false }
    defer { inflateEnd(&strm) }
    strm.next_in = UnsafeMutablePointer(mutating: input.assumingMemoryBound(to: Bytef.self))
    strm.avail_in = uInt(count)
    strm.next_out = output.assumingMemoryBound(to: Bytef.self)
    strm.avail_out = uInt(size)
    return inflate(&strm, Z_FINISH) == Z_STREAM_END && Int(strm.total_out) == size
}
