import Foundation
import Support

// We read only what pyarrow writes for flat string and integer columns: PLAIN and dictionary encodings, data pages
// v1 and v2, RLE definition levels; uncompressed, snappy, gzip and zstd. The layers: ParquetMetadata.swift (footer
// and page headers), ParquetPages.swift (pages and encodings), ParquetCodecs.swift (decompression), this file.

/// One row as read. `text` is nil for a null value or one shorter than the read's `minTextBytes`; `textBytes` tells
/// the two apart (nil for a null). `id` is nil when null or when the file has no id column.
public struct ParquetRow {
    public var text: [UInt8]?
    /// The text value's length in UTF-8 bytes, nil for a null.
    public var textBytes: Int?
    public var id: String?
}

/// Reads the text column (and optionally an id column) of a parquet file, row group by row group.
/// Only the byte ranges of the two columns' chunks in one row group are read (pread), so memory is bounded
/// by a row group's pages of those columns, not by the file.
/// Immutable once open, and it reads with `pread`: threads share one (`ParquetFiles`).
public final class ParquetReader: @unchecked Sendable {
    public let url: URL
    private let fd: Int32
    private let rowGroups: [RowGroup]
    /// The columns read; `id` is nil when the file has no such column (FuzzParquet then tries "metadata.id").
    let text: LeafColumn
    let id: LeafColumn?

    /// Reads and checks the footer. `textColumn` and `idColumn` are dotted paths ("metadata.id" for a struct's
    /// field). A missing text column is an error naming the columns there are; a missing id column gives nil ids.
    public convenience init(url: URL, textColumn: String, idColumn: String?) throws {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw FileError(url, "cannot open (\(String(cString: strerror(errno))))") }
        try self.init(url: url, descriptor: fd, textColumn: textColumn, idColumn: idColumn)
    }

    /// Reads the open file `fd` (closed when the reader ends, or on an error); errors name `url`.
    init(url: URL, descriptor fd: Int32, textColumn: String, idColumn: String?) throws {
        self.url = url
        do {
            let (meta, dataEnd) = try Self.readFooter(fd, url)
            let leaves = try leafColumns(meta.schema, url)
            guard let text = leaves.first(where: { $0.name == textColumn }) else {
                let names = leaves.map { String($0.name.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : Character($0) }) }
                throw FileError(url, "no column '\(textColumn)' (columns: \(names.joined(separator: ", ")))")
            }
            let id = idColumn.flatMap { name in leaves.first { $0.name == name } }
            try Self.check(text, allowed: [PhysicalType.byteArray], url)
            if let id { try Self.check(id, allowed: [PhysicalType.byteArray, PhysicalType.int32, PhysicalType.int64], url) }
            // Every count is bounded before it is added, so corrupt ones cannot overflow the sum.
            var rows = 0
            for g in meta.rowGroups where rows <= meta.numRows {
                guard g.numRows >= 0 else { throw FileError(url, "corrupt footer: a row group of \(g.numRows) rows") }
                guard g.numRows <= maxRowGroupRows else {
                    throw FileError(url, "a row group of \(g.numRows) rows: more than \(maxRowGroupRows) in one row group are not read")
                }
                rows += g.numRows
            }
            guard (0...1 << 62).contains(meta.numRows), rows == meta.numRows else {
                throw FileError(url, "corrupt footer: \(meta.numRows) rows, but its row groups hold \(rows)")
            }
            for group in meta.rowGroups.indices {
                for column in [text] + (id.map { [$0] } ?? []) {
                    try Self.checkChunk(meta.rowGroups[group], group, column, dataEnd: dataEnd, url)
                }
            }
            (rowGroups, self.text, self.id) = (meta.rowGroups, text, id)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
    }

    deinit { close(fd) }

    public var rowGroupCount: Int { rowGroups.count }
    var rowCount: Int { rowGroups.reduce(0) { $0 + $1.numRows } }
    func rowCount(group: Int) -> Int { rowGroups[group].numRows }

    /// Compressed bytes of the row group's chunks of the columns read (for progress).
    func byteSize(group: Int) -> Int {
        chunk(text, group).totalCompressedSize + (id.map { chunk($0, group).totalCompressedSize } ?? 0)
    }

    /// The rows of one row group, in order, every text value kept.
    public func readRowGroup(_ group: Int) throws -> [ParquetRow] { try readRowGroup(group, minTextBytes: 0) }

    /// The rows of one row group, in order; a text value shorter than `minTextBytes` is measured from its length
    /// (PLAIN's length prefix, or the chunk's dictionary) and never copied: its row has `text` nil, `textBytes` set.
    public func readRowGroup(_ group: Int, minTextBytes: Int) throws -> [ParquetRow] {
        let texts = try readColumn(text, group, minBytes: minTextBytes)
        let ids = try id.map { try readColumn($0, group, minBytes: 0).values }
        return texts.values.indices.map { i in
            let length = texts.lengths[i]
            return ParquetRow(text: texts.values[i], textBytes: length < 0 ? nil : length,
                              id: ids?[i].map { String(decoding: $0, as: UTF8.self) })
        }
    }

    private func chunk(_ column: LeafColumn, _ group: Int) -> ColumnMetaData { rowGroups[group].columns[column.index]! }

    /// One column of one row group: its chunk's bytes, decoded page by page. Integers become decimal strings.
    /// Values shorter than `minBytes` are nil in `values`; `lengths` holds every value's length, -1 for a null.
    private func readColumn(_ column: LeafColumn, _ group: Int, minBytes: Int) throws -> (values: [[UInt8]?], lengths: [Int]) {
        let meta = chunk(column, group)
        let bytes = try readExactly(fd, at: meta.start, count: meta.totalCompressedSize, url)
        var decoder = ColumnDecoder(url: url, column: column, codec: meta.codec, rows: meta.numValues, minBytes: minBytes)
        var position = 0
        while decoder.values.count < meta.numValues {
            guard position < bytes.count else {
                throw FileError(url, "column '\(column.name)', row group \(group): chunk ends after \(decoder.values.count) of \(meta.numValues) values")
            }
            var header = CompactReader(bytes, from: position, to: bytes.count, url: url,
                                       context: "page header at byte \(meta.start + position) (column '\(column.name)')")
            let page = try header.pageHeader()
            guard page.compressedSize >= 0, page.compressedSize <= header.remaining else {
                throw header.corrupt("page of \(page.compressedSize) bytes, \(header.remaining) left in the chunk")
            }
            position = header.position + page.compressedSize
            try decoder.decode(page, bytes, header.position..<position)
        }
        return (decoder.values, decoder.lengths)
    }

    /// The footer, and where the column data ends (the footer's first byte).
    private static func readFooter(_ fd: Int32, _ url: URL) throws -> (FileMetaData, Int) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError(url, "cannot stat (\(String(cString: strerror(errno))))") }
        let size = Int(st.st_size)
        guard size >= 12 else { throw FileError(url, "not a parquet file (\(size) bytes)") }
        let head = try readExactly(fd, at: 0, count: 4, url), tail = try readExactly(fd, at: size - 8, count: 8, url)
        if tail[4...] == Array("PARE".utf8)[...] { throw FileError(url, "parquet file has an encrypted footer (not supported)") }
        guard head == Array("PAR1".utf8), tail[4...] == Array("PAR1".utf8)[...] else {
            throw FileError(url, "not a parquet file (no PAR1 magic at both ends; truncated?)")
        }
        let length = Int(tail[0]) | Int(tail[1]) << 8 | Int(tail[2]) << 16 | Int(tail[3]) << 24
        guard length > 0, length <= size - 12 else { throw FileError(url, "corrupt footer: length \(length) in a file of \(size) bytes") }
        let footer = try readExactly(fd, at: size - 8 - length, count: length, url)
        var reader = CompactReader(footer, from: 0, to: length, url: url, context: "footer")
        return (try reader.fileMetaData(), size - 8 - length)
    }

    /// A column must be flat (no lists) and of a type we turn into text.
    private static func check(_ column: LeafColumn, allowed: [Int], _ url: URL) throws {
        guard let type = column.type, allowed.contains(type) else {
            let want = allowed.map { physicalTypeNames[$0] }.joined(separator: " or ")
            throw FileError(url, "column '\(column.name)' has physical type \(column.type.map { enumName(physicalTypeNames, $0) } ?? "none"), expected \(want)")
        }
        guard column.maxRepetition == 0 else { throw FileError(url, "column '\(column.name)' is repeated (a list); only flat columns are read") }
    }

    /// A chunk's metadata must match the schema, its codec be one we decode and its bytes lie inside the file's data.
    private static func checkChunk(_ rowGroup: RowGroup, _ group: Int, _ column: LeafColumn, dataEnd: Int, _ url: URL) throws {
        let name = column.name
        guard rowGroup.columns.count > column.index, let c = rowGroup.columns[column.index] else {
            throw FileError(url, "row group \(group) has no metadata for column '\(name)' (encrypted or corrupt)")
        }
        guard c.path == column.path, c.type == column.type else {
            throw FileError(url, "corrupt footer: row group \(group) chunk \(column.index) is not column '\(name)'")
        }
        guard [Codec.uncompressed, Codec.snappy, Codec.gzip, Codec.zstd].contains(c.codec) else {
            throw FileError(url, "column '\(name)': codec \(enumName(codecNames, c.codec)) is not supported (UNCOMPRESSED, SNAPPY, GZIP and ZSTD are)")
        }
        guard c.numValues == rowGroup.numRows else {
            throw FileError(url, "corrupt footer: row group \(group) has \(rowGroup.numRows) rows but column '\(name)' \(c.numValues) values")
        }
        guard c.start >= 4, c.totalCompressedSize > 0, c.totalCompressedSize <= dataEnd - c.start else {
            throw FileError(url, "corrupt footer: column '\(name)' in row group \(group) claims bytes outside the file's data")
        }
    }
}

/// `count` (> 0) bytes at `offset`, with pread.
private func readExactly(_ fd: Int32, at offset: Int, count: Int, _ url: URL) throws -> [UInt8] {
    // Not zero-filled first: every byte is read, or this throws.
    try [UInt8](unsafeUninitializedCapacity: count) { raw, initialized in
        var done = 0
        while done < count {
            let n = pread(fd, raw.baseAddress! + done, count - done, off_t(offset + done))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw FileError(url, "read failed at byte \(offset + done) (\(n < 0 ? String(cString: strerror(errno)) : "end of file"))") }
            done += n
        }
        initialized = count
    }
}
