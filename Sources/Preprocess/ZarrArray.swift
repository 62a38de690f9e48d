import CLongCrawl
import Foundation
import Support

/// A two-dimensional zarr v2 array of little-endian uint16 tokens, as LongCrawl64 publishes its splits: the
/// `.zarray` metadata (and `.zattrs`' encoder), chunk keys, and chunk decoding that checks every chunk instead
/// of reading a missing one as zeros, as zarr itself does.
struct ZarrArray {
    enum Compressor: Equatable {
        case none, zstd
        /// `codec`: the header's codec number for `cname`; `shuffle`: numcodecs' setting, 0 none, 1 (or -1, automatic,
        /// for 2-byte items) byte-wise, 2 bit-wise.
        case blosc(codec: Int32, shuffle: Int)
    }

    /// The folder as given (no trailing slash), which errors name.
    let path: String
    let url: URL
    let rows: Int, columns: Int
    let chunkRows: Int, chunkColumns: Int
    let compressor: Compressor
    /// Between a chunk's row and column index in its key: `.` (`3.0`) or `/` (`3/0`).
    let separator: String
    /// `.zattrs`' `encoder`, when there is one.
    let encoder: String?

    /// Reads and checks `PATH/.zarray` (and `.zattrs` if present); refuses what this reader does not decode exactly.
    init(path given: String) throws {
        path = given.count > 1 && given.hasSuffix("/") ? String(given.dropLast()) : given
        url = URL(fileURLWithPath: path)
        let metaPath = path + "/.zarray"
        func bad(_ message: String) -> Error { FileError(path: metaPath, message) }
        guard FileManager.default.fileExists(atPath: metaPath) else { throw bad("missing: not a zarr v2 array folder") }
        let meta: [String: Any]
        do {
            let bytes = try readWholeFile(url.appendingPathComponent(".zarray"))
            guard let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { throw bad("not a JSON object") }
            meta = object
        } catch let error as FileError { throw error } catch {
            throw bad("not JSON (\(error.localizedDescription))")
        }
        guard meta["zarr_format"] as? Int == 2 else { throw bad("zarr_format is \(meta["zarr_format"] ?? "missing"), expected 2") }
        guard let shape = meta["shape"] as? [Int], shape.count == 2, shape.allSatisfy({ $0 >= 0 }) else { throw bad("shape must be [rows, columns]") }
        guard let chunks = meta["chunks"] as? [Int], chunks.count == 2, chunks.allSatisfy({ $0 > 0 }) else { throw bad("chunks must be two positive sizes") }
        let dtype = meta["dtype"] as? String ?? "missing"
        guard dtype == "<u2" else { throw bad("dtype \(dtype) is not supported (tokens are little-endian uint16, \"<u2\")") }
        let order = meta["order"] as? String ?? "missing"
        guard order == "C" else { throw bad("order \(order) is not supported (only C, row-major)") }
        if let filters = meta["filters"], !(filters is NSNull), (filters as? [Any])?.isEmpty != true {
            throw bad("filters are not supported (filters must be null)")
        }
        separator = meta["dimension_separator"] as? String ?? "."
        guard separator == "." || separator == "/" else { throw bad("dimension_separator '\(separator)' is not supported (. or /)") }
        switch meta["compressor"] {
        case nil, is NSNull: compressor = .none
        case let c as [String: Any]:
            switch c["id"] as? String {
            case "blosc":
                let cname = c["cname"] as? String ?? "lz4"
                guard let codec = Self.bloscCodecs[cname] else {
                    throw bad("blosc cname \(cname) is not supported (\(Self.bloscCodecs.keys.sorted().joined(separator: ", ")))")
                }
                compressor = .blosc(codec: codec, shuffle: c["shuffle"] as? Int ?? 1)
            case "zstd": compressor = .zstd
            case let id: throw bad("compressor \(id ?? "without id") is not supported (blosc, zstd or null)")
            }
        default: throw bad("compressor must be an object or null")
        }
        (rows, columns) = (shape[0], shape[1])
        (chunkRows, chunkColumns) = (chunks[0], chunks[1])
        guard columns == windowLength else { throw bad("rows are \(columns) tokens wide; a window is \(windowLength)") }
        // Sizes from the file bound every product and sum below (row-chunk counts and ranges, chunk and stripe sizes)
        // and what one chunk and one stripe take in memory.
        guard rows <= Int.max / (2 * windowLength) else { throw bad("shape [\(rows), \(columns)]: too many rows") }
        let (tokens, overflow) = chunkRows.multipliedReportingOverflow(by: chunkColumns)
        guard !overflow, tokens <= Self.maxChunkTokens else {
            throw bad("chunks [\(chunkRows), \(chunkColumns)] exceed \(Self.maxChunkTokens) tokens, the most one blosc buffer holds")
        }
        guard min(chunkRows, rows) <= Self.maxStripeRows else {
            throw bad("chunks of \(chunkRows) rows: a row-chunk stripe is decoded in memory, at most \(Self.maxStripeRows) rows (2 GiB)")
        }

        let attrs = url.appendingPathComponent(".zattrs")
        if FileManager.default.fileExists(atPath: attrs.path) {
            let object = try? JSONSerialization.jsonObject(with: Data(try readWholeFile(attrs)))
            guard let dict = object as? [String: Any] else { throw FileError(attrs, "not a JSON object") }
            encoder = dict["encoder"].map { $0 as? String ?? "\($0)" }
        } else {
            encoder = nil
        }
    }

    /// blosc's largest buffer (INT_MAX minus its 16-byte header), in 2-byte tokens.
    static let maxChunkTokens = (Int(Int32.max) - 16) / 2
    static let maxStripeRows = 16_384

    /// Codec numbers in a blosc header's flags (bits 5-7) for each numcodecs `cname`.
    static let bloscCodecs: [String: Int32] = ["blosclz": 0, "lz4": 1, "lz4hc": 1, "snappy": 2, "zlib": 3, "zstd": 4]

    /// The folder's name (`train.zarr`), which prefixes document ids.
    var name: String { url.lastPathComponent }
    var rowChunks: Int { (rows + chunkRows - 1) / chunkRows }
    var columnChunks: Int { (columns + chunkColumns - 1) / chunkColumns }
    /// Decoded size of one chunk file: edge chunks are stored whole, padded past the shape.
    var chunkBytes: Int { chunkRows * chunkColumns * 2 }
    /// Tokens of the buffer one row-chunk stripe is decoded into (`readStripe`).
    var stripeTokens: Int { min(chunkRows, rows) * columns }

    /// The array rows of row-chunk `r`, cropped to the shape.
    func rowRange(ofRowChunk r: Int) -> Range<Int> { (r * chunkRows)..<min(rows, (r + 1) * chunkRows) }

    /// The chunk's key, built only from its indices so it can never name a file outside the array folder.
    func key(_ r: Int, _ c: Int) -> String { "\(r)\(separator)\(c)" }

    /// The keys of row-chunk `r`'s chunk files that do not exist.
    func missingChunks(ofRowChunk r: Int) -> [String] {
        (0..<columnChunks).map { key(r, $0) }.filter { access(path + "/" + $0, F_OK) != 0 }
    }

    /// Decodes row-chunk `r` into `stripe` (its rows, cropped, times `columns` tokens, row-major): the column
    /// chunks are decoded on `workers` threads, checked and copied into place. Errors name the chunk file.
    func readStripe(_ r: Int, into stripe: UnsafeMutableBufferPointer<UInt16>, workers: Int) throws {
        let rowCount = rowRange(ofRowChunk: r).count
        precondition(stripe.count >= rowCount * columns)
        var failures = [Error?](repeating: nil, count: columnChunks)
        failures.withUnsafeMutableBufferPointer { slots in
            let failed = SendablePointer(slots.baseAddress!)
            let out = SendablePointer(stripe.baseAddress!)
            let threads = min(workers, columnChunks)
            // Each thread takes every threads-th chunk in order, so the lowest failing chunk is always the one reported.
            DispatchQueue.concurrentPerform(iterations: threads) { worker in
                var chunk = [UInt16](repeating: 0, count: chunkRows * chunkColumns)
                for c in stride(from: worker, to: columnChunks, by: threads) {
                    do {
                        try chunk.withUnsafeMutableBytes { try decodeChunk(r, c, into: $0) }
                        try copy(chunk, row: r, column: c, into: out.pointer, rowCount: rowCount)
                    } catch { failed.pointer[c] = error; return }
                }
            }
        }
        if let first = failures.lazy.compactMap({ $0 }).first { throw first }
    }

    /// Copies the part of chunk (`r`, `c`) inside the shape into the stripe, refusing tokens outside GPT-2's vocabulary
    /// (what a wrongly decoded chunk most likely holds).
    private func copy(_ chunk: [UInt16], row r: Int, column c: Int, into stripe: UnsafeMutablePointer<UInt16>, rowCount: Int) throws {
        let first = c * chunkColumns, width = min(columns, first + chunkColumns) - first
        for i in 0..<rowCount {
            var largest: UInt16 = 0
            chunk.withUnsafeBufferPointer { all in
                let source = UnsafeBufferPointer(rebasing: all[(i * chunkColumns)..<(i * chunkColumns + width)])
                for t in source { largest = max(largest, t) }
                (stripe + i * columns + first).update(from: source.baseAddress!, count: width)
            }
            if largest >= GPT2.vocabularySize {
                throw FileError(path: path + "/" + key(r, c), "token \(largest) in row \(r * chunkRows + i) is outside the GPT-2 vocabulary (corrupt chunk?)")
            }
        }
    }

    /// Reads and decodes chunk file (`r`, `c`) into `out` (`chunkBytes`), checking its size and header first.
    func decodeChunk(_ r: Int, _ c: Int, into out: UnsafeMutableRawBufferPointer) throws {
        let file = path + "/" + key(r, c)
        func bad(_ message: String) -> Error { FileError(path: file, message) }
        guard access(file, F_OK) == 0 else { throw bad("chunk file missing (rows \(rowRange(ofRowChunk: r)))") }
        let bytes = try readWholeFile(URL(fileURLWithPath: file))
        let expected = chunkBytes
        try bytes.withUnsafeBytes { src in
            switch compressor {
            case .none:
                guard src.count == expected else { throw bad("\(src.count) bytes, an uncompressed chunk is \(expected)") }
                out.copyMemory(from: src)
            case .zstd:
                let size = ZSTD_getFrameContentSize(src.baseAddress, src.count)
                guard size != ZSTD_CONTENTSIZE_ERROR else { throw bad("not a zstd frame") }
                guard size == ZSTD_CONTENTSIZE_UNKNOWN || size == UInt64(expected) else { throw bad("zstd frame holds \(size) bytes, a chunk is \(expected)") }
                let n = ZSTD_decompress(out.baseAddress, expected, src.baseAddress, src.count)
                guard ZSTD_isError(n) == 0 else { throw bad("zstd: \(String(cString: ZSTD_getErrorName(n)))") }
                guard n == expected else { throw bad("zstd gave \(n) bytes, a chunk is \(expected)") }
            case .blosc(let codec, let shuffle):
                try checkBloscHeader(src, codec: codec, shuffle: shuffle, expected: expected, bad)
                let n = blosc_decompress_ctx(src.baseAddress, out.baseAddress, expected, 1)
                guard n == expected else { throw bad(n < 0 ? "blosc cannot decode it (error \(n))" : "blosc gave \(n) bytes, a chunk is \(expected)") }
            }
        }
    }

    /// The 16-byte blosc header against the file and the array: format versions, compressed and decoded sizes, and the
    /// codec, shuffle and item size that decoding applies (a damaged flag or item size could decode to other tokens
    /// without an error, and a plain-copy chunk ignores the codec fields).
    private func checkBloscHeader(_ src: UnsafeRawBufferPointer, codec: Int32, shuffle: Int, expected: Int, _ bad: (String) -> Error) throws {
        guard src.count >= Int(BLOSC_MIN_HEADER_LENGTH) else { throw bad("\(src.count) bytes, shorter than a blosc header") }
        var version: Int32 = 0, codecVersion: Int32 = 0
        blosc_cbuffer_versions(src.baseAddress, &version, &codecVersion)
        guard (1...BLOSC_VERSION_FORMAT).contains(version), codecVersion == 1 else {
            throw bad("blosc format version \(version), codec format version \(codecVersion): not a blosc chunk this build decodes")
        }
        var nbytes = 0, cbytes = 0, blocksize = 0
        blosc_cbuffer_sizes(src.baseAddress, &nbytes, &cbytes, &blocksize)
        guard cbytes == src.count else { throw bad("\(src.count) bytes, its blosc header says \(cbytes) (truncated or corrupt)") }
        guard nbytes == expected else { throw bad("blosc header says \(nbytes) bytes decoded, a chunk is \(expected)") }
        guard blosc_cbuffer_validate(src.baseAddress, src.count, &nbytes) == 0 else { throw bad("invalid blosc header") }
        var typesize = 0, flags: Int32 = 0
        blosc_cbuffer_metainfo(src.baseAddress, &typesize, &flags)
        // blosc_cbuffer_metainfo masks the codec bits off the flags byte.
        let headerCodec = Int32(src[2] >> 5)
        guard headerCodec == codec else { throw bad("blosc header's codec \(headerCodec) disagrees with .zarray's cname (codec \(codec))") }
        let shuffled = flags & Int32(BLOSC_DOSHUFFLE | BLOSC_DOBITSHUFFLE)
        let declared: Int32 = shuffle == 0 ? 0 : shuffle == 2 ? Int32(BLOSC_DOBITSHUFFLE) : Int32(BLOSC_DOSHUFFLE)
        guard shuffled == declared else { throw bad("blosc header's shuffle flags \(shuffled) disagree with .zarray's shuffle \(shuffle)") }
        guard shuffled == 0 || typesize == 2 else { throw bad("blosc header says item size \(typesize), tokens are 2 bytes") }
    }
}
