import CLongCrawl
import Foundation
import Support

/// Serial HDF5 is not thread-safe: every HDF5 call in the process goes through this lock.
let hdf5Lock = NSRecursiveLock()

/// HDF5 registers an atexit handler that closes every open identifier when the process exits, while a thread
/// (or a deinit running during exit) may still hold a shard reader: its own close then fails with
/// "not a dataset ID" on stderr. Every handle here is closed by its owner, so the library is told not to
/// (H5dont_atexit must come before any other HDF5 call: the first use of the lock does it).
let hdf5Setup: Void = { _ = H5dont_atexit() }()

/// Runs `body` under the HDF5 lock with the library's own error printing off: every failure becomes one line of
/// ours, and a corrupt window read by a packer worker printed libhdf5's whole error stack to stderr.
func withHDF5<T>(_ body: () throws -> T) rethrows -> T {
    hdf5Lock.lock(); defer { hdf5Lock.unlock() }
    _ = hdf5Setup
    lc_h5_silence_errors()
    return try body()
}

/// The last OS error, when HDF5 failed because a system call did (a full disk, a file size limit).
func osReason() -> String { errno != 0 ? " (\(String(cString: strerror(errno))))" : "" }

/// `/documents` rows in memory: a C string pointer, an offset and, with rolls, a roll, as the compound type describes.
func documentRowSize(rolls: Bool) -> Int { rolls ? 24 : 16 }

/// The compound type of `/documents`: {document: variable-length UTF-8 string, offset: int64}, plus `roll: int64`
/// when `rolls` (files written before rolls existed, and files of unrolled windows, have no `roll` member).
func documentsType(rolls: Bool) -> hid_t {
    let s = utf8StringType()
    let t = H5Tcreate(H5T_COMPOUND, documentRowSize(rolls: rolls))
    H5Tinsert(t, "document", 0, s)
    H5Tinsert(t, "offset", 8, lc_h5t_native_int64())
    if rolls { H5Tinsert(t, "roll", 16, lc_h5t_native_int64()) }
    H5Tclose(s)
    return t
}

func utf8StringType() -> hid_t {
    let s = H5Tcopy(lc_h5t_c_s1())
    H5Tset_size(s, lc_h5t_variable())
    H5Tset_cset(s, H5T_CSET_UTF8)
    return s
}

/// `/tokens [windows, 65536] uint16`, one window per chunk, zstd (filter 32015) then Fletcher32, so the checksum
/// covers the compressed bytes and a flipped byte is caught before decompression. Object times are not recorded,
/// so the same windows always give the same file bytes.
///
/// The file is built in memory (HDF5's core driver) and written out by `finish` with plain checked writes: HDF5
/// left with a failed write on disk (a full disk) cannot close the file cleanly, and crashes at process exit.
final class HDF5ShardWriter {
    let url: URL, finalName: URL
    let attributes: ShardAttributes
    private var fd: Int32
    private var file: hid_t = -1
    private var tokens: hid_t = -1
    private let memory: hid_t

    init(url: URL, finalName: URL, level: Int, attributes: ShardAttributes) throws {
        self.url = url; self.finalName = finalName; self.attributes = attributes
        fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw FileError(url, "cannot create (\(String(cString: strerror(errno))))") }
        (file, tokens, memory) = try withHDF5 {
            guard lc_register_zstd_filter() == 0 else { throw FileError(finalName, "cannot register the HDF5 zstd filter") }
            let fcpl = H5Pcreate(lc_h5p_file_create())
            H5Pset_obj_track_times(fcpl, false)
            let fapl = H5Pcreate(lc_h5p_file_access())
            H5Pset_fapl_core(fapl, 1 << 22, false)
            defer { H5Pclose(fcpl); H5Pclose(fapl) }
            errno = 0
            let file = H5Fcreate(url.path, lc_h5f_acc_trunc(), fcpl, fapl)
            guard file >= 0 else { throw FileError(url, "cannot create HDF5 file\(osReason())") }
            var dims: [hsize_t] = [0, hsize_t(windowLength)]
            var maxDims: [hsize_t] = [lc_h5s_unlimited(), hsize_t(windowLength)]
            var chunk: [hsize_t] = [1, hsize_t(windowLength)]
            let space = H5Screate_simple(2, &dims, &maxDims)
            let dcpl = H5Pcreate(lc_h5p_dataset_create())
            H5Pset_chunk(dcpl, 2, &chunk)
            var cd: [UInt32] = [UInt32(level)]
            H5Pset_filter(dcpl, H5Z_filter_t(LC_H5Z_FILTER_ZSTD), UInt32(H5Z_FLAG_MANDATORY), 1, &cd)
            H5Pset_fletcher32(dcpl)
            H5Pset_obj_track_times(dcpl, false)
            let tokens = H5Dcreate2(file, "tokens", lc_h5t_std_u16le(), space, lc_h5p_default(), dcpl, lc_h5p_default())
            H5Pclose(dcpl); H5Sclose(space)
            guard tokens >= 0 else { H5Fclose(file); throw FileError(url, "cannot create /tokens\(osReason())") }
            var one: [hsize_t] = [1, hsize_t(windowLength)]
            return (file, tokens, H5Screate_simple(2, &one, nil))
        }
    }

    deinit { close(); _ = withHDF5 { H5Sclose(memory) } }

    func close() {
        withHDF5 {
            if tokens >= 0 { H5Dclose(tokens); tokens = -1 }
            if file >= 0 { H5Fclose(file); file = -1 }
        }
        if fd >= 0 { Foundation.close(fd); fd = -1 }
    }

    func append(_ window: UnsafeBufferPointer<UInt16>, index: Int) throws {
        try withHDF5 {
            var dims: [hsize_t] = [hsize_t(index + 1), hsize_t(windowLength)]
            errno = 0
            guard H5Dset_extent(tokens, &dims) >= 0 else { throw FileError(finalName, "cannot extend /tokens\(osReason())") }
            let space = H5Dget_space(tokens)
            defer { H5Sclose(space) }
            var start: [hsize_t] = [hsize_t(index), 0]
            var count: [hsize_t] = [1, hsize_t(windowLength)]
            H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nil, &count, nil)
            guard H5Dwrite(tokens, lc_h5t_native_uint16(), memory, space, lc_h5p_default(), window.baseAddress) >= 0 else {
                throw FileError(finalName, "write of window \(index) failed\(osReason())")
            }
        }
    }

    /// Writes `/documents` and the root attributes, then the file image to disk, and flushes it.
    func finish(sources: [WindowSource]) throws {
        let image: [UInt8] = try withHDF5 {
            try writeDocuments(sources, file: file, name: finalName)
            try writeAttributes()
            H5Dclose(tokens); tokens = -1
            guard H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0 else { throw FileError(finalName, "HDF5 flush failed") }
            let size = H5Fget_file_image(file, nil, 0)
            guard size > 0 else { throw FileError(finalName, "HDF5 file image unavailable") }
            var image = [UInt8](repeating: 0, count: size)
            guard H5Fget_file_image(file, &image, size) == size else { throw FileError(finalName, "HDF5 file image unavailable") }
            H5Fclose(file); file = -1
            return image
        }
        try image.withUnsafeBytes { try writeAll(fd, $0, name: finalName) }
        guard fsync(fd) == 0 else { throw FileError(finalName, "fsync failed (\(String(cString: strerror(errno))))") }
        close()
    }

    private func writeAttributes() throws {
        for (name, value) in [("format", attributes.format), ("tokenizer", attributes.tokenizer), ("split", attributes.split.rawValue)] {
            try writeStringAttribute(file, name, value, finalName)
        }
        for (name, value) in [("version", attributes.version), ("vocab_size", attributes.vocab_size), ("window", attributes.window)] {
            try writeIntAttribute(file, name, Int64(value), finalName)
        }
    }
}

final class HDF5ShardReader {
    let url: URL
    let attributes: ShardAttributes
    let sources: [WindowSource]
    private let file: hid_t
    private let tokens: hid_t
    private let memory: hid_t

    init(url: URL) throws {
        self.url = url
        (file, tokens, memory, attributes, sources) = try withHDF5 {
            _ = lc_register_zstd_filter()
            guard H5Fis_hdf5(url.path) > 0 else { throw FileError(url, "not an HDF5 file (truncated or corrupt superblock)") }
            let file = H5Fopen(url.path, lc_h5f_acc_rdonly(), lc_h5p_default())
            guard file >= 0 else { throw FileError(url, "cannot open HDF5 file (truncated or corrupt)") }
            do {
                func string(_ name: String) throws -> String { try readStringAttribute(file, name, url) }
                func int(_ name: String) throws -> Int { Int(try readIntAttribute(file, name, url)) }
                let name = try string("split")
                guard let split = Split(rawValue: name) else { throw FileError(url, "attribute split is '\(name)', expected train or heldout") }
                let attributes = ShardAttributes(format: try string("format"), version: try int("version"), tokenizer: try string("tokenizer"),
                                                 vocab_size: try int("vocab_size"), window: try int("window"), split: split)
                try attributes.check(url)
                let tokens = H5Dopen2(file, "tokens", lc_h5p_default())
                guard tokens >= 0 else { throw FileError(url, "dataset /tokens missing") }
                let dims = datasetShape(tokens)
                guard dims.count == 2, dims[1] == hsize_t(windowLength) else {
                    H5Dclose(tokens)
                    throw FileError(url, "/tokens has shape \(dims), expected [windows, \(windowLength)]")
                }
                let sources: [WindowSource]
                do { sources = try readDocuments(file, url, rows: try storedRows(tokens, dims[0], url)) } catch { H5Dclose(tokens); throw error }
                var one: [hsize_t] = [1, hsize_t(windowLength)]
                return (file, tokens, H5Screate_simple(2, &one, nil), attributes, sources)
            } catch {
                H5Fclose(file)
                throw error
            }
        }
    }

    deinit { withHDF5 { H5Sclose(memory); H5Dclose(tokens); H5Fclose(file) } }

    func read(_ k: Int, into buffer: UnsafeMutableBufferPointer<UInt16>) throws {
        try withHDF5 {
            let space = H5Dget_space(tokens)
            defer { H5Sclose(space) }
            var start: [hsize_t] = [hsize_t(k), 0]
            var count: [hsize_t] = [1, hsize_t(windowLength)]
            H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nil, &count, nil)
            guard H5Dread(tokens, lc_h5t_native_uint16(), memory, space, lc_h5p_default(), buffer.baseAddress) >= 0 else {
                throw FileError(url, "window \(k): fails its Fletcher32 checksum or cannot be decompressed (corrupt)")
            }
        }
    }
}

/// Writes `/documents` (one row per window: source document id, token offset and roll) into an open HDF5 file;
/// the `roll` member only when some window is rolled, so unrolled windows give the bytes they gave before rolls.
func writeDocuments(_ sources: [WindowSource], file: hid_t, name finalName: URL) throws {
    let rolls = sources.contains { $0.roll != 0 }, rowSize = documentRowSize(rolls: rolls)
    let type = documentsType(rolls: rolls)
    defer { H5Tclose(type) }
    var dims: [hsize_t] = [hsize_t(sources.count)]
    let space = H5Screate_simple(1, &dims, nil)
    defer { H5Sclose(space) }
    let dcpl = H5Pcreate(lc_h5p_dataset_create())
    H5Pset_obj_track_times(dcpl, false)
    let set = H5Dcreate2(file, "documents", type, space, lc_h5p_default(), dcpl, lc_h5p_default())
    H5Pclose(dcpl)
    guard set >= 0 else { throw FileError(finalName, "cannot create /documents\(osReason())") }
    defer { H5Dclose(set) }
    guard !sources.isEmpty else { return }
    let rows = UnsafeMutableRawPointer.allocate(byteCount: rowSize * sources.count, alignment: 8)
    let strings = sources.map { strdup($0.document)! }
    defer { rows.deallocate(); strings.forEach { free($0) } }
    for (i, s) in sources.enumerated() {
        rows.storeBytes(of: strings[i], toByteOffset: i * rowSize, as: UnsafeMutablePointer<CChar>.self)
        rows.storeBytes(of: Int64(s.offset), toByteOffset: i * rowSize + 8, as: Int64.self)
        if rolls { rows.storeBytes(of: Int64(s.roll), toByteOffset: i * rowSize + 16, as: Int64.self) }
    }
    guard H5Dwrite(set, type, lc_h5s_all(), lc_h5s_all(), lc_h5p_default(), rows) >= 0 else {
        throw FileError(finalName, "write of /documents failed\(osReason())")
    }
}

/// The dimensions of a dataset (HDF5 allows up to 32); empty when it has no simple dataspace.
func datasetShape(_ set: hid_t) -> [hsize_t] {
    let space = H5Dget_space(set)
    defer { H5Sclose(space) }
    let rank = H5Sget_simple_extent_ndims(space)
    guard rank > 0, rank <= 32 else { return [] }
    var dims = [hsize_t](repeating: 0, count: Int(rank))
    return H5Sget_simple_extent_dims(space, &dims, nil) == rank ? dims : []
}

/// The row count of `/tokens` (`set`), checked against the chunks stored: every row written here is its own chunk,
/// so more rows than chunks is a corrupt header, whose rows HDF5 would read as zeros (and a reader of all rows
/// would allocate for).
func storedRows(_ set: hid_t, _ rows: hsize_t, _ url: URL) throws -> Int {
    guard rows > 0 else { return 0 }
    var stored: hsize_t = 0
    let space = H5Dget_space(set)
    defer { H5Sclose(space) }
    guard H5Dget_num_chunks(set, space, &stored) >= 0, rows <= stored else {
        throw FileError(url, "/tokens claims \(rows) rows, \(stored) are stored (corrupt)")
    }
    return Int(rows)
}

/// Reads `/documents` from an open HDF5 file: exactly `rows` rows, one per `/tokens` row.
func readDocuments(_ file: hid_t, _ url: URL, rows: Int) throws -> [WindowSource] {
    let set = H5Dopen2(file, "documents", lc_h5p_default())
    guard set >= 0 else { throw FileError(url, "dataset /documents missing") }
    defer { H5Dclose(set) }
    let space = H5Dget_space(set)
    defer { H5Sclose(space) }
    // Checked before the read, which fills as many rows as the dataset holds.
    let n = Int(H5Sget_simple_extent_npoints(space))
    guard n == rows else { throw FileError(url, "/documents has \(n) rows, /tokens \(rows)") }
    guard n > 0 else { return [] }
    try checkStringLengths(set, rows: n, url)
    let rolls = try hasRollMember(set, url), rowSize = documentRowSize(rolls: rolls)
    let type = documentsType(rolls: rolls)
    defer { H5Tclose(type) }
    let rows = UnsafeMutableRawPointer.allocate(byteCount: rowSize * n, alignment: 8)
    defer { rows.deallocate() }
    guard H5Dread(set, type, lc_h5s_all(), lc_h5s_all(), lc_h5p_default(), rows) >= 0 else {
        throw FileError(url, "/documents is unreadable")
    }
    defer { H5Dvlen_reclaim(type, space, lc_h5p_default(), rows) }
    return (0..<n).map { i in
        let p = rows.load(fromByteOffset: i * rowSize, as: UnsafeMutablePointer<CChar>?.self)
        return WindowSource(document: p.map { String(cString: $0) } ?? "",
                            offset: Int(rows.load(fromByteOffset: i * rowSize + 8, as: Int64.self)),
                            roll: rolls ? Int(rows.load(fromByteOffset: i * rowSize + 16, as: Int64.self)) : 0)
    }
}

/// Whether `/documents` has the `roll` member (absent: written before rolls existed, or no window is rolled).
private func hasRollMember(_ set: hid_t, _ url: URL) throws -> Bool {
    let type = H5Dget_type(set)
    guard type >= 0 else { throw FileError(url, "/documents has no readable type (corrupt)") }
    defer { H5Tclose(type) }
    return H5Tget_member_index(type, "roll") >= 0
}

/// HDF5 allocates as many bytes as a variable-length string's header in the file claims (up to 4 GiB) before it
/// reads the string, so a corrupt `/documents` would exhaust memory inside H5Dread: each row's length (the first
/// 4 bytes of its `document` field, stored contiguously as written here) is checked against the file's size first.
private func checkStringLengths(_ set: hid_t, rows n: Int, _ url: URL) throws {
    func corrupt(_ why: String) -> FileError { FileError(url, "/documents \(why) (corrupt)") }
    let fd = open(url.path, O_RDONLY)
    guard fd >= 0 else { throw FileError(url, "cannot open (\(String(cString: strerror(errno))))") }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw FileError(url, "cannot stat (\(String(cString: strerror(errno))))") }
    let size = UInt64(st.st_size)
    let offset = H5Dget_offset(set), storage = H5Dget_storage_size(set)
    guard offset != haddr_t.max, storage > 0, storage <= size, offset <= size - storage, storage % UInt64(n) == 0 else {
        throw corrupt("is not stored contiguously inside the file")
    }
    let type = H5Dget_type(set)
    defer { H5Tclose(type) }
    let member = H5Tget_member_index(type, "document")
    guard member >= 0 else { throw corrupt("has no document field") }
    let field = H5Tget_member_offset(type, UInt32(member)), row = Int(storage) / n
    guard field + 4 <= row else { throw corrupt("rows are \(row) bytes, too short for their document field") }
    var raw = [UInt8](repeating: 0, count: Int(storage))
    guard raw.withUnsafeMutableBytes({ pread(fd, $0.baseAddress!, $0.count, off_t(offset)) }) == raw.count else {
        throw FileError(url, "short read of /documents at byte \(offset)")
    }
    for i in 0..<n {
        let at = i * row + field
        let length = UInt64(raw[at]) | UInt64(raw[at + 1]) << 8 | UInt64(raw[at + 2]) << 16 | UInt64(raw[at + 3]) << 24
        guard length <= size else { throw corrupt("row \(i) claims a string of \(length) bytes, more than the file holds") }
    }
}

/// Writes a root attribute holding a variable-length UTF-8 string (h5py reads it as `str`).
func writeStringAttribute(_ file: hid_t, _ name: String, _ value: String, _ url: URL) throws {
    let scalar = H5Screate(H5S_SCALAR), type = utf8StringType()
    defer { H5Sclose(scalar); H5Tclose(type) }
    try value.withCString { c in
        var p: UnsafePointer<CChar>? = c
        let a = H5Acreate2(file, name, type, scalar, lc_h5p_default(), lc_h5p_default())
        defer { if a >= 0 { H5Aclose(a) } }
        guard a >= 0, H5Awrite(a, type, &p) >= 0 else { throw FileError(url, "cannot write attribute \(name)\(osReason())") }
    }
}

/// Writes a root attribute holding a little-endian int64.
func writeIntAttribute(_ file: hid_t, _ name: String, _ value: Int64, _ url: URL) throws {
    let scalar = H5Screate(H5S_SCALAR)
    defer { H5Sclose(scalar) }
    var v = value
    let a = H5Acreate2(file, name, lc_h5t_std_i64le(), scalar, lc_h5p_default(), lc_h5p_default())
    defer { if a >= 0 { H5Aclose(a) } }
    guard a >= 0, H5Awrite(a, lc_h5t_native_int64(), &v) >= 0 else { throw FileError(url, "cannot write attribute \(name)\(osReason())") }
}

/// Opens a root attribute that holds one value: a read fills as many values as the attribute holds, into room for one.
private func openScalarAttribute(_ file: hid_t, _ name: String, _ url: URL) throws -> hid_t {
    let a = H5Aopen(file, name, lc_h5p_default())
    guard a >= 0 else { throw FileError(url, "attribute \(name) missing") }
    let space = H5Aget_space(a)
    let points = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1
    if space >= 0 { H5Sclose(space) }
    guard points == 1 else { H5Aclose(a); throw FileError(url, "attribute \(name) holds \(points) values, expected one") }
    return a
}

/// Reads a root string attribute; errors name the file and the attribute.
func readStringAttribute(_ file: hid_t, _ name: String, _ url: URL) throws -> String {
    let a = try openScalarAttribute(file, name, url)
    defer { H5Aclose(a) }
    let s = utf8StringType()
    defer { H5Tclose(s) }
    var p: UnsafeMutablePointer<CChar>?
    guard H5Aread(a, s, &p) >= 0, let p else { throw FileError(url, "attribute \(name) is not a string") }
    defer { H5free_memory(p) }
    return String(cString: p)
}

/// Reads a root integer attribute; errors name the file and the attribute.
func readIntAttribute(_ file: hid_t, _ name: String, _ url: URL) throws -> Int64 {
    let a = try openScalarAttribute(file, name, url)
    defer { H5Aclose(a) }
    var v: Int64 = 0
    guard H5Aread(a, lc_h5t_native_int64(), &v) >= 0 else { throw FileError(url, "attribute \(name) is not an integer") }
    return v
}
