import CLongCrawl
import Foundation
import Support

/// Evaluation windows as `longcrawl sample` writes them and `eval` reads them: a small HDF5 file with
/// `/tokens [N, L] uint16` (zstd + Fletcher32, one row per chunk), `/source [N] int64` (window id in the split),
/// `/documents` (source document, token offset of each row's first token and the row's roll, see Streaming's `ModelRow`),
/// and root attributes
/// `format = "longcrawl-eval-windows"`, `split`, `seed`, `length` (L), `context` (T, the inputs of a row), `dataset`. A file
/// without `context` (written before it was recorded) has the one `inferredContext(length:)` gives.
///
/// The file starts with a 512-byte HDF5 user block (which libhdf5 and h5py skip) holding the SHA-256 of the rest of
/// the file, checked before libhdf5 parses a byte: libhdf5 1.10 can crash on corrupt metadata instead of failing.
/// Files written before the block existed (they start with the HDF5 signature) are refused, saying to sample again.
public struct EvalWindowFile: Equatable, Sendable {
    public var split: Split
    public var seed: UInt64
    /// Source dataset folder, as given.
    public var dataset: String
    /// Tokens per row: 65,536 for whole windows, T + 1 for `--context T` samples (T inputs and their T targets).
    public var length: Int
    /// Inputs per row (`ModelRow`'s context): T for `--context T` samples, 65,536 for whole windows (the last target
    /// masked).
    public var context: Int
    /// [N x length] tokens, row-major.
    public var tokens: [UInt16]
    /// Window id (in the split) of each row.
    public var windows: [Int]
    /// Each row's document and offset; its `roll` is the row's column holding the document's first token when a
    /// target of the row has it (1 ..< length: the window's roll minus the row's start column), else 0.
    public var sources: [WindowSource]

    public var count: Int { windows.count }

    /// `context` nil: `inferredContext(length:)`.
    public init(split: Split, seed: UInt64, dataset: String, length: Int, context: Int? = nil, tokens: [UInt16], windows: [Int],
                sources: [WindowSource]) {
        self.split = split; self.seed = seed; self.dataset = dataset; self.length = length
        self.context = context ?? Self.inferredContext(length: length)
        self.tokens = tokens; self.windows = windows; self.sources = sources
    }

    /// The inputs of a row of `length` tokens where nothing records them: T + 1 tokens with T dividing a window are
    /// T inputs and their T targets; any other length is fed whole, its last target masked.
    public static func inferredContext(length: Int) -> Int {
        length > 1 && windowLength % (length - 1) == 0 ? length - 1 : length
    }

    /// Row `i`'s tokens.
    public func row(_ i: Int) -> ArraySlice<UInt16> { tokens[(i * length)..<((i + 1) * length)] }

    /// Writes the file atomically (built in memory, then temp file + rename).
    public func write(to url: URL) throws {
        let image: [UInt8] = try withHDF5 {
            guard lc_register_zstd_filter() == 0 else { throw FileError(url, "cannot register the HDF5 zstd filter") }
            let fcpl = H5Pcreate(lc_h5p_file_create()), fapl = H5Pcreate(lc_h5p_file_access())
            H5Pset_obj_track_times(fcpl, false)
            H5Pset_fapl_core(fapl, 1 << 22, false)
            defer { H5Pclose(fcpl); H5Pclose(fapl) }
            let file = H5Fcreate("eval-\(UUID().uuidString)", lc_h5f_acc_trunc(), fcpl, fapl)
            guard file >= 0 else { throw FileError(url, "cannot create HDF5 file in memory") }
            defer { H5Fclose(file) }
            let dcpl = H5Pcreate(lc_h5p_dataset_create())
            defer { H5Pclose(dcpl) }
            H5Pset_obj_track_times(dcpl, false)
            if count > 0 {
                var chunk: [hsize_t] = [1, hsize_t(length)]
                H5Pset_chunk(dcpl, 2, &chunk)
                var cd: [UInt32] = [3]
                H5Pset_filter(dcpl, H5Z_filter_t(LC_H5Z_FILTER_ZSTD), UInt32(H5Z_FLAG_MANDATORY), 1, &cd)
                H5Pset_fletcher32(dcpl)
            }
            var dims: [hsize_t] = [hsize_t(count), hsize_t(length)]
            let space = H5Screate_simple(2, &dims, nil)
            let set = H5Dcreate2(file, "tokens", lc_h5t_std_u16le(), space, lc_h5p_default(), dcpl, lc_h5p_default())
            H5Sclose(space)
            guard set >= 0, count == 0 || H5Dwrite(set, lc_h5t_native_uint16(), lc_h5s_all(), lc_h5s_all(), lc_h5p_default(), tokens) >= 0 else {
                throw FileError(url, "cannot write /tokens")
            }
            H5Dclose(set)
            var n: [hsize_t] = [hsize_t(count)]
            let idSpace = H5Screate_simple(1, &n, nil)
            let plain = H5Pcreate(lc_h5p_dataset_create())
            H5Pset_obj_track_times(plain, false)
            let ids = H5Dcreate2(file, "source", lc_h5t_std_i64le(), idSpace, lc_h5p_default(), plain, lc_h5p_default())
            H5Sclose(idSpace); H5Pclose(plain)
            let values = windows.map(Int64.init)
            guard ids >= 0, count == 0 || H5Dwrite(ids, lc_h5t_native_int64(), lc_h5s_all(), lc_h5s_all(), lc_h5p_default(), values) >= 0 else {
                throw FileError(url, "cannot write /source")
            }
            H5Dclose(ids)
            try writeDocuments(sources, file: file, name: url)
            for (name, value) in [("format", "longcrawl-eval-windows"), ("split", split.rawValue), ("dataset", dataset)] {
                try writeStringAttribute(file, name, value, url)
            }
            try writeIntAttribute(file, "seed", Int64(bitPattern: seed), url)
            try writeIntAttribute(file, "length", Int64(length), url)
            try writeIntAttribute(file, "context", Int64(context), url)
            guard H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0 else { throw FileError(url, "HDF5 flush failed") }
            let size = H5Fget_file_image(file, nil, 0)
            var image = [UInt8](repeating: 0, count: max(size, 0))
            guard size > 0, H5Fget_file_image(file, &image, size) == size else { throw FileError(url, "HDF5 file image unavailable") }
            return image
        }
        // libhdf5 finds a superblock at 512 and takes it as the base address, as for h5jam's user blocks.
        var file = Data("\(Self.checksumTag)\(sha256(Data(image)))\n".utf8)
        file.append(Data(count: Self.checksumBlock - file.count))
        file.append(contentsOf: image)
        try AtomicFile.write(file, to: url)
    }

    /// The user block's size and its text's start, followed by 64 hex digits and a newline, then zeros.
    static let checksumBlock = 512
    static let checksumTag = "longcrawl-eval-windows sha256 "

    /// Refuses a file whose user block is missing or whose SHA-256 differs, before libhdf5 sees it.
    static func checkDigest(_ url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw FileError(url, FileManager.default.fileExists(atPath: url.path) ? "cannot read (\(error.localizedDescription))" : "no such file")
        }
        let hdf5Signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]
        if data.starts(with: hdf5Signature) {
            throw FileError(url, "written without a checksum by an earlier LongCrawl; run `longcrawl sample` again")
        }
        let tag = Array(checksumTag.utf8)
        guard data.count > checksumBlock, data.starts(with: tag) else {
            throw FileError(url, "not an HDF5 file with a LongCrawl checksum block (damaged, or not an eval-window file)")
        }
        let stored = String(decoding: data[tag.count..<(tag.count + 64)], as: UTF8.self)
        guard stored == sha256(data[checksumBlock...]) else {
            throw FileError(url, "SHA-256 differs from the one in its first block (the file is damaged)")
        }
    }

    /// Reads and checks a file written by `write`; errors name the file and the fault.
    public init(contentsOf url: URL) throws {
        self = try withHDF5 {
            _ = lc_register_zstd_filter()
            try Self.checkDigest(url)
            guard H5Fis_hdf5(url.path) > 0 else { throw FileError(url, "not an HDF5 file") }
            let file = H5Fopen(url.path, lc_h5f_acc_rdonly(), lc_h5p_default())
            guard file >= 0 else { throw FileError(url, "cannot open HDF5 file (truncated or corrupt)") }
            defer { H5Fclose(file) }
            func string(_ name: String) throws -> String { try readStringAttribute(file, name, url) }
            func int(_ name: String) throws -> Int64 { try readIntAttribute(file, name, url) }
            guard try string("format") == "longcrawl-eval-windows" else { throw FileError(url, "not a LongCrawl evaluation-window file") }
            let declared = try int("length")
            // Whole windows, or T + 1 tokens for a context T that divides a window.
            guard (1...Int64(windowLength + 1)).contains(declared) else { throw FileError(url, "length \(declared) is not in 1...\(windowLength + 1)") }
            let length = Int(declared)
            guard length >= 2 else { throw FileError(url, "rows of \(length) token(s): a row needs at least one input and its target") }
            let set = H5Dopen2(file, "tokens", lc_h5p_default())
            guard set >= 0 else { throw FileError(url, "dataset /tokens missing") }
            defer { H5Dclose(set) }
            let dims = datasetShape(set)
            guard dims.count == 2, dims[1] == hsize_t(length) else { throw FileError(url, "/tokens is not [N, \(length)]") }
            let n = try storedRows(set, dims[0], url)
            var tokens = [UInt16](repeating: 0, count: n * length)
            guard n == 0 || H5Dread(set, lc_h5t_native_uint16(), lc_h5s_all(), lc_h5s_all(), lc_h5p_default(), &tokens) >= 0 else {
                throw FileError(url, "/tokens fails its checksum or cannot be decompressed (corrupt)")
            }
            // An id past the vocabulary would index outside the embedding.
            if let bad = tokens.firstIndex(where: { $0 >= GPT2.vocabularySize }) {
                throw FileError(url, "token \(tokens[bad]) in row \(bad / length) at \(bad % length) is outside the GPT-2 vocabulary")
            }
            let ids = H5Dopen2(file, "source", lc_h5p_default())
            guard ids >= 0 else { throw FileError(url, "dataset /source missing") }
            defer { H5Dclose(ids) }
            // Checked before the read, which fills as many values as the dataset holds.
            guard datasetShape(ids) == [hsize_t(n)] else { throw FileError(url, "/source has shape \(datasetShape(ids)), expected [\(n)]") }
            var windows = [Int64](repeating: 0, count: n)
            guard n == 0 || H5Dread(ids, lc_h5t_native_int64(), lc_h5s_all(), lc_h5s_all(), lc_h5p_default(), &windows) >= 0 else {
                throw FileError(url, "/source is unreadable")
            }
            let sources = try readDocuments(file, url, rows: n)
            if let bad = sources.firstIndex(where: { !(0..<length).contains($0.roll) }) {
                throw FileError(url, "row \(bad): roll \(sources[bad].roll) is not in 0..<\(length) (corrupt)")
            }
            let name = try string("split")
            guard let split = Split(rawValue: name) else { throw FileError(url, "split '\(name)', expected train or heldout") }
            var context: Int?
            if H5Aexists(file, "context") > 0 {
                let declared = try int("context")
                // A row holds the inputs and at least their targets but the last.
                guard (1...Int64(length)).contains(declared), Int64(length) - declared <= 1 else {
                    throw FileError(url, "context \(declared) does not fit rows of \(length) tokens")
                }
                context = Int(declared)
            }
            return EvalWindowFile(split: split, seed: UInt64(bitPattern: try int("seed")), dataset: try string("dataset"),
                                  length: length, context: context, tokens: tokens, windows: windows.map(Int.init), sources: sources)
        }
    }
}
