import CLongCrawl
import Foundation
import Support

// Parquet (apache/parquet-format, parquet.thrift): "PAR1", column chunks of pages, the footer (a Thrift
// compact-protocol FileMetaData), its length as a little-endian u32, "PAR1". We read only what pyarrow writes
// for flat string and integer columns: PLAIN and dictionary encodings, data pages v1 and v2, RLE definition levels.

private let physicalTypeNames = ["BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"]
private let codecNames = ["UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"]
private let encodingNames = ["PLAIN", "GROUP_VAR_INT", "PLAIN_DICTIONARY", "RLE", "BIT_PACKED", "DELTA_BINARY_PACKED",
                             "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY", "RLE_DICTIONARY", "BYTE_STREAM_SPLIT", "ALP"]

private func enumName(_ names: [String], _ value: Int) -> String { names.indices.contains(value) ? names[value] : "\(value)" }

private enum PhysicalType { static let int32 = 1, int64 = 2, byteArray = 6 }
private enum Codec { static let uncompressed = 0, snappy = 1, gzip = 2, zstd = 6 }
private enum Encoding { static let plain = 0, plainDictionary = 2, rle = 3, rleDictionary = 8 }
private enum PageType { static let data = 0, dictionary = 2, dataV2 = 3 }
private enum Repetition { static let required = 0, repeated = 2 }

/// A page's decompressed size above this is taken for corruption, not data.
private let maxPageBytes = 1 << 30
/// Rows in one page above this are taken for corruption (writers cut pages at 20k rows by default).
private let maxPageValues = 1 << 24
/// Rows in one row group above this are taken for corruption.
private let maxRowGroupRows = 1 << 40

// MARK: - Footer metadata (the fields of parquet.thrift the reader uses)

/// A node of the schema tree (stored depth-first in the footer).
private struct SchemaElement {
    var name = ""
    var type: Int?
    var repetition: Int?
    var numChildren: Int?
}

/// Where one column's chunk of one row group lies and how it is stored.
private struct ColumnMetaData {
    var type = -1
    var path: [String] = []
    var codec = -1
    var numValues = -1
    var totalCompressedSize = -1
    var dataPageOffset = -1
    var dictionaryPageOffset: Int?

    /// The chunk starts at its dictionary page when it has one (some writers store 0 for "none").
    var start: Int {
        if let d = dictionaryPageOffset, d > 0, d < dataPageOffset { return d }
        return dataPageOffset
    }
}

/// A horizontal slice of the file: one chunk per leaf column.
private struct RowGroup {
    var numRows = -1
    /// nil where a chunk has no plaintext metadata (encrypted columns).
    var columns: [ColumnMetaData?] = []
}

/// The footer.
private struct FileMetaData {
    var schema: [SchemaElement] = []
    var numRows = -1
    var rowGroups: [RowGroup] = []
}

/// A v1 data page: levels and values compressed together.
private struct DataPageHeader {
    var numValues = -1
    var encoding = -1
    var definitionEncoding = -1
}

/// A v2 data page: uncompressed levels (lengths given here), then the values, compressed unless `isCompressed` is false.
private struct DataPageHeaderV2 {
    var numValues = -1
    var numNulls = -1
    var encoding = -1
    var definitionLength = -1
    var repetitionLength = -1
    var isCompressed = true
}

/// The chunk's dictionary: PLAIN values that dictionary-encoded pages index.
private struct DictionaryPageHeader {
    var numValues = -1
    var encoding = -1
}

/// The Thrift header before each page's bytes.
private struct PageHeader {
    var type = -1
    var uncompressedSize = -1
    var compressedSize = -1
    var dataPage: DataPageHeader?
    var dictionaryPage: DictionaryPageHeader?
    var dataPageV2: DataPageHeaderV2?
}

private extension CompactReader {
    mutating func fileMetaData() throws -> FileMetaData {
        var m = FileMetaData(), last = 0
        while let (id, type) = try field(after: &last) {
            switch id {
            case 2: m.schema = try structs(type) { try $0.schemaElement() }
            case 3: m.numRows = try int(type)
            case 4: m.rowGroups = try structs(type) { try $0.rowGroup() }
            // A plaintext footer over encrypted columns: their metadata would be unreadable.
            case 8: throw FileError(url, "footer names an encryption algorithm: encrypted columns are not supported")
            default: try skip(type)
            }
        }
        return m
    }

    /// A list of structs, each decoded by `element`.
    mutating func structs<T>(_ type: UInt8, _ element: (inout CompactReader) throws -> T) throws -> [T] {
        let (count, kind) = try list(type)
        try expectStruct(kind)
        var out: [T] = []
        out.reserveCapacity(count)
        for _ in 0..<count { out.append(try element(&self)) }
        return out
    }

    mutating func schemaElement() throws -> SchemaElement {
        var e = SchemaElement(), last = 0
        while let (id, type) = try field(after: &last) {
            switch id {
            case 1: e.type = try int(type)
            case 3: e.repetition = try int(type)
            case 4: e.name = try string(type)
            case 5: e.numChildren = try int(type)
            default: try skip(type)
            }
        }
        return e
    }

    mutating func rowGroup() throws -> RowGroup {
        var g = RowGroup(), last = 0
        while let (id, type) = try field(after: &last) {
            switch id {
            case 1: g.columns = try structs(type) { try $0.columnChunk() }
            case 3: g.numRows = try int(type)
            default: try skip(type)
            }
        }
        return g
    }

    mutating func columnChunk() throws -> ColumnMetaData? {
        var meta: ColumnMetaData?, last = 0
        while let (id, type) = try field(after: &last) {
            switch id {
            case 1: throw FileError(url, "column chunks stored in other files (file_path) are not supported")
            case 3: try expectStruct(type); meta = try columnMetaData()
            default: try skip(type)
            }
        }
        return meta
    }

    mutating func columnMetaData() throws -> ColumnMetaData {
        var c = ColumnMetaData(), last = 0
        while let (id, type) = try field(after: &last) {
            switch id {
            case 1: c.type = try int(type)
            case 3:
                let (count, kind) = try list(type)
                c.path = try (0..<count).map { _ in try string(kind) }
            case 4: c.codec = try int(type)
            case 5: c.numValues = try int(type)
            case 7: c.totalCompressedSize = try int(type)
            case 9: c.dataPageOffset = try int(type)
            case 11: c.dictionaryPageOffset = try int(type)
            default: try skip(type)
            }
        }
        return c
    }

    mutating func pageHeader() throws -> PageHeader {
        var h = PageHeader(), last = 0
        while let (id, type) = try field(after: &last) {
            switch id {
            case 1: h.type = try int(type)
            case 2: h.uncompressedSize = try int(type)
            case 3: h.compressedSize = try int(type)
            case 5: try expectStruct(type); h.dataPage = try dataPageHeader()
            case 7: try expectStruct(type); h.dictionaryPage = try dictionaryPageHeader()
            case 8: try expectStruct(type); h.dataPageV2 = try dataPageHeaderV2()
            default: try skip(type)
            }
        }
        return h
    }

    mutating func dataPageHeader() throws -> DataPageHeader {
        var h = DataPageHeader(), last = 0
        while let (id, type) = try field(after: &last) {
            switch id {
            case 1: h.numValues = try int(type)
            case 2: h.encoding = try int(type)
            case 3: h.definitionEncoding = try int(type)
            default: try skip(type)
            }
        }
        return h
    }

    mutating func dataPageHeaderV2() throws -> DataPageHeaderV2 {
        var h = DataPageHeaderV2(), last = 0
        while let (id, type) = try field(after: &last) {
            switch id {
            case 1: h.numValues = try int(type)
            case 2: h.numNulls = try int(type)
            case 4: h.encoding = try int(type)
            case 5: h.definitionLength = try int(type)
            case 6: h.repetitionLength = try int(type)
            case 7: h.isCompressed = try bool(type)
            default: try skip(type)
            }
        }
        return h
    }

    mutating func dictionaryPageHeader() throws -> DictionaryPageHeader {
        var h = DictionaryPageHeader(), last = 0
        while let (id, type) = try field(after: &last) {
            switch id {
            case 1: h.numValues = try int(type)
            case 2: h.encoding = try int(type)
            default: try skip(type)
            }
        }
        return h
    }
}

// MARK: - Schema

/// A leaf of the schema tree: one column chunk per row group, at `index` among the row group's chunks.
private struct LeafColumn {
    var path: [String]
    var index: Int
    var type: Int?
    /// Definition level of a present value: the optional and repeated elements on its path.
    var maxDefinition: Int
    var maxRepetition: Int
    var name: String { path.joined(separator: ".") }
}

/// Flattens the schema's depth-first element list (the root first) into its leaves, in column-chunk order.
private func leafColumns(_ schema: [SchemaElement], _ url: URL) throws -> [LeafColumn] {
    guard let root = schema.first else { throw FileError(url, "corrupt footer: empty schema") }
    var leaves: [LeafColumn] = []
    var next = 1
    func walk(_ children: Int, _ parent: [String], definition: Int, repetition: Int) throws {
        guard parent.count < CompactReader.maxDepth else { throw FileError(url, "corrupt footer: schema nested too deep") }
        for _ in 0..<max(children, 0) {
            guard next < schema.count else { throw FileError(url, "corrupt footer: schema has fewer elements than its groups claim") }
            let e = schema[next]
            next += 1
            let repetitionType = e.repetition ?? Repetition.required
            let d = definition + (repetitionType == Repetition.required ? 0 : 1)
            let r = repetition + (repetitionType == Repetition.repeated ? 1 : 0)
            if let n = e.numChildren, n > 0 {
                try walk(n, parent + [e.name], definition: d, repetition: r)
            } else {
                leaves.append(LeafColumn(path: parent + [e.name], index: leaves.count, type: e.type, maxDefinition: d, maxRepetition: r))
            }
        }
    }
    try walk(root.numChildren ?? 0, [], definition: 0, repetition: 0)
    guard next == schema.count else { throw FileError(url, "corrupt footer: schema has \(schema.count - next) elements outside its tree") }
    return leaves
}

// MARK: - Reader

/// One row as read: text nil for a null value; id nil when null or when the file has no id column.
public struct ParquetRow {
    public var text: [UInt8]?
    public var id: String?
}

/// Reads the text column (and optionally an id column) of a parquet file, row group by row group.
/// Only the byte ranges of the two columns' chunks in one row group are read (pread), so memory is bounded
/// by a row group's pages of those columns, not by the file.
public final class ParquetReader {
    public let url: URL
    private let fd: Int32
    private let rowGroups: [RowGroup]
    private let text: LeafColumn
    private let id: LeafColumn?

    /// Reads and checks the footer. `textColumn` and `idColumn` are dotted paths ("metadata.id" for a struct's
    /// field). A missing text column is an error naming the columns there are; a missing id column gives nil ids.
    public init(url: URL, textColumn: String, idColumn: String?) throws {
        self.url = url
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw FileError(url, "cannot open (\(String(cString: strerror(errno))))") }
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
                guard (0...maxRowGroupRows).contains(g.numRows) else { throw FileError(url, "corrupt footer: a row group of \(g.numRows) rows") }
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
    public var rowCount: Int { rowGroups.reduce(0) { $0 + $1.numRows } }
    public func rowCount(group: Int) -> Int { rowGroups[group].numRows }

    /// Compressed bytes of the row group's chunks of the columns read (for progress).
    public func byteSize(group: Int) -> Int {
        chunk(text, group).totalCompressedSize + (id.map { chunk($0, group).totalCompressedSize } ?? 0)
    }

    /// The rows of one row group, in order.
    public func readRowGroup(_ group: Int) throws -> [ParquetRow] {
        let texts = try readColumn(text, group)
        let ids = try id.map { try readColumn($0, group) }
        return texts.indices.map { i in
            ParquetRow(text: texts[i], id: ids?[i].map { String(decoding: $0, as: UTF8.self) })
        }
    }

    private func chunk(_ column: LeafColumn, _ group: Int) -> ColumnMetaData { rowGroups[group].columns[column.index]! }

    /// One column of one row group: its chunk's bytes, decoded page by page. Integers become decimal strings.
    private func readColumn(_ column: LeafColumn, _ group: Int) throws -> [[UInt8]?] {
        let meta = chunk(column, group)
        let bytes = try readExactly(fd, at: meta.start, count: meta.totalCompressedSize, url)
        var decoder = ColumnDecoder(url: url, column: column, codec: meta.codec, rows: meta.numValues)
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
        return decoder.values
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

// MARK: - Pages

/// Decodes one column chunk's pages in order into `values` (nil for nulls), keeping its dictionary.
private struct ColumnDecoder {
    let url: URL
    let column: LeafColumn
    let codec: Int
    /// The chunk's value count: no page may take values past it.
    let rows: Int
    private(set) var values: [[UInt8]?] = []
    private var dictionary: [[UInt8]]?
    /// One zstd context for all pages of the chunk: ZSTD_decompress would set up (and allocate) one per page.
    private let zstd = ZstdContext()

    init(url: URL, column: LeafColumn, codec: Int, rows: Int) {
        self.url = url; self.column = column; self.codec = codec; self.rows = rows
    }

    func fail(_ why: String) -> FileError { FileError(url, "column '\(column.name)': \(why)") }

    mutating func decode(_ page: PageHeader, _ bytes: [UInt8], _ body: Range<Int>) throws {
        guard page.uncompressedSize >= 0, page.uncompressedSize <= maxPageBytes else {
            throw fail("corrupt page: uncompressed size \(page.uncompressedSize)")
        }
        switch page.type {
        case PageType.dictionary:
            guard let h = page.dictionaryPage else { throw fail("corrupt page: dictionary page without its header") }
            guard dictionary == nil else { throw fail("corrupt chunk: a second dictionary page") }
            guard h.encoding == Encoding.plain || h.encoding == Encoding.plainDictionary else {
                throw fail("dictionary encoding \(enumName(encodingNames, h.encoding)) is not supported")
            }
            let data = try decompress(bytes, body, size: page.uncompressedSize)
            dictionary = try plainValues(data, 0..<data.count, count: h.numValues)
        case PageType.data:
            guard let h = page.dataPage else { throw fail("corrupt page: data page without its header") }
            try checkCount(h.numValues)
            let data = try decompress(bytes, body, size: page.uncompressedSize)
            var valuesStart = 0
            var levels: [UInt32]?
            if column.maxDefinition > 0 {
                guard h.definitionEncoding == Encoding.rle else {
                    throw fail("definition level encoding \(enumName(encodingNames, h.definitionEncoding)) is not supported")
                }
                guard data.count >= 4 else { throw fail("corrupt page: no definition levels") }
                let length = Int(data[0]) | Int(data[1]) << 8 | Int(data[2]) << 16 | Int(data[3]) << 24
                guard length <= data.count - 4 else { throw fail("corrupt page: definition levels of \(length) bytes") }
                levels = try rleHybrid(data, 4..<4 + length, bitWidth: bitWidth(column.maxDefinition), count: h.numValues)
                valuesStart = 4 + length
            }
            try append(data, valuesStart..<data.count, encoding: h.encoding, count: h.numValues, levels: levels)
        case PageType.dataV2:
            guard let h = page.dataPageV2 else { throw fail("corrupt page: data page v2 without its header") }
            try checkCount(h.numValues)
            // v2 keeps the levels outside the compressed part: repetition levels, definition levels, values.
            guard (0...body.count).contains(h.repetitionLength), (0...body.count).contains(h.definitionLength),
                  h.repetitionLength + h.definitionLength <= min(body.count, page.uncompressedSize) else {
                throw fail("corrupt page: level lengths \(h.repetitionLength) and \(h.definitionLength)")
            }
            let levelsStart = body.lowerBound + h.repetitionLength
            let valuesRange = levelsStart + h.definitionLength..<body.upperBound
            let valuesSize = page.uncompressedSize - h.repetitionLength - h.definitionLength
            guard h.isCompressed || valuesRange.count == valuesSize else { throw fail("corrupt page: \(valuesRange.count) value bytes, \(valuesSize) declared") }
            let data = h.isCompressed ? try decompress(bytes, valuesRange, size: valuesSize) : Array(bytes[valuesRange])
            let levels = column.maxDefinition == 0 ? nil :
                try rleHybrid(bytes, levelsStart..<valuesRange.lowerBound, bitWidth: bitWidth(column.maxDefinition), count: h.numValues)
            if let levels, h.numNulls >= 0, levels.count(where: { $0 != column.maxDefinition }) != h.numNulls {
                throw fail("corrupt page: definition levels disagree with the header's \(h.numNulls) nulls")
            }
            try append(data, 0..<data.count, encoding: h.encoding, count: h.numValues, levels: levels)
        default:
            break  // index pages carry nothing we need
        }
    }

    private func checkCount(_ count: Int) throws {
        guard count >= 0, count <= min(rows - values.count, maxPageValues) else {
            throw fail("corrupt page: \(count) values where \(rows - values.count) are left in the chunk")
        }
    }

    /// Appends a data page's `count` rows: a value where the definition level is the maximum, else nil.
    private mutating func append(_ data: [UInt8], _ range: Range<Int>, encoding: Int, count: Int, levels: [UInt32]?) throws {
        let present = levels?.count(where: { $0 == column.maxDefinition }) ?? count
        var decoded: [[UInt8]]
        switch encoding {
        case Encoding.plain:
            decoded = try plainValues(data, range, count: present)
        case Encoding.plainDictionary, Encoding.rleDictionary:
            guard let dictionary else { throw fail("corrupt chunk: dictionary-encoded page without a dictionary page") }
            guard present > 0 else { decoded = []; break }
            // Dictionary indices: one byte of bit width, then the RLE / bit-packed hybrid without a length prefix.
            guard !range.isEmpty, data[range.lowerBound] <= 32 else { throw fail("corrupt page: bad dictionary index width") }
            let indices = try rleHybrid(data, range.lowerBound + 1..<range.upperBound, bitWidth: Int(data[range.lowerBound]), count: present)
            decoded = []
            decoded.reserveCapacity(present)
            for i in indices {
                guard i < dictionary.count else { throw fail("corrupt page: dictionary index \(i) of \(dictionary.count) entries") }
                decoded.append(dictionary[Int(i)])
            }
        default:
            throw fail("encoding \(enumName(encodingNames, encoding)) is not supported (PLAIN and dictionary encodings are)")
        }
        guard let levels else { values.append(contentsOf: decoded.map(Optional.some)); return }
        var next = 0
        for level in levels {
            if level == column.maxDefinition { values.append(decoded[next]); next += 1 } else { values.append(nil) }
        }
    }

    /// `count` PLAIN values: byte arrays as they are, integers as decimal digits.
    private func plainValues(_ data: [UInt8], _ range: Range<Int>, count: Int) throws -> [[UInt8]] {
        let width = column.type == PhysicalType.int64 ? 8 : 4
        // Every value takes at least `width` bytes, which bounds the count before anything is allocated.
        guard count >= 0, count <= range.count / width else { throw fail("corrupt page: \(count) values in \(range.count) bytes") }
        var out: [[UInt8]] = []
        out.reserveCapacity(count)
        var p = range.lowerBound
        for _ in 0..<count {
            guard range.upperBound - p >= width else { throw fail("corrupt page: values end early") }
            var v: UInt64 = 0
            for k in 0..<width { v |= UInt64(data[p + k]) << UInt64(8 * k) }
            p += width
            switch column.type {
            case PhysicalType.byteArray:
                guard v <= UInt64(range.upperBound - p) else { throw fail("corrupt page: a value of \(v) bytes, \(range.upperBound - p) left") }
                out.append(Array(data[p..<p + Int(v)]))
                p += Int(v)
            case PhysicalType.int32: out.append(Array(String(Int32(truncatingIfNeeded: v)).utf8))
            default: out.append(Array(String(Int64(bitPattern: v)).utf8))
            }
        }
        return out
    }

    /// `count` values of parquet's RLE / bit-packed hybrid: runs of one repeated value, or groups of 8 bit-packed values.
    private func rleHybrid(_ data: [UInt8], _ range: Range<Int>, bitWidth: Int, count: Int) throws -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(count)
        var reader = CompactReader(data, from: range.lowerBound, to: range.upperBound, url: url, context: "levels of column '\(column.name)'")
        let byteWidth = (bitWidth + 7) / 8
        let mask: UInt64 = (1 << UInt64(bitWidth)) - 1
        while out.count < count {
            let header = try reader.varint()
            let want = count - out.count
            if header & 1 == 0 {
                let run = Int(min(header >> 1, UInt64(want)))
                var v: UInt32 = 0
                for k in 0..<byteWidth { v |= UInt32(try reader.byte()) << UInt32(8 * k) }
                out.append(contentsOf: repeatElement(v, count: run))
            } else {
                // Writers may drop the padding of the last group, so require only the bytes of the values used.
                let groups = min(header >> 1, UInt64(Int32.max))
                let take = Int(min(groups * 8, UInt64(want)))
                let groupBytes = Int(min(groups * UInt64(bitWidth), UInt64(reader.remaining)))
                guard (take * bitWidth + 7) / 8 <= reader.remaining else { throw fail("corrupt page: bit-packed levels end early") }
                var acc: UInt64 = 0, bits = 0, p = reader.position
                for _ in 0..<take {
                    while bits < bitWidth { acc |= UInt64(data[p]) << UInt64(bits); p += 1; bits += 8 }
                    out.append(UInt32(acc & mask))
                    acc >>= UInt64(bitWidth)
                    bits -= bitWidth
                }
                for _ in 0..<groupBytes { _ = try reader.byte() }
            }
        }
        return out
    }

    /// A page body decompressed to exactly `size` bytes.
    private func decompress(_ bytes: [UInt8], _ range: Range<Int>, size: Int) throws -> [UInt8] {
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
                return snappy_uncompressed_length(input.assumingMemoryBound(to: CChar.self), range.count, &n) == SNAPPY_OK && n == size
            case Codec.zstd:
                let n = ZSTD_getFrameContentSize(input, range.count)
                return n == UInt64(size) || n == UInt64.max  // UInt64.max: the frame does not say (ZSTD_CONTENTSIZE_UNKNOWN)
            default:
                return size <= range.count * 1032 + 64  // deflate expands at most 1032:1
            }
        }
        guard plausible else { throw fail("corrupt page: \(name) data does not hold the \(size) bytes its header declares") }
        var out = [UInt8](repeating: 0, count: size)
        let ok: Bool = bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                let input = src.baseAddress! + range.lowerBound
                switch codec {
                case Codec.snappy:
                    var n = size
                    return snappy_uncompress(input.assumingMemoryBound(to: CChar.self), range.count, dst.baseAddress!.assumingMemoryBound(to: CChar.self), &n) == SNAPPY_OK && n == size
                case Codec.zstd:
                    let n = ZSTD_decompressDCtx(zstd.context, dst.baseAddress!, size, input, range.count)
                    return ZSTD_isError(n) == 0 && n == size
                default:
                    return inflateExactly(input, range.count, dst.baseAddress!, size)
                }
            }
        }
        guard ok else { throw fail("corrupt page: \(name) data does not decompress to \(size) bytes") }
        return out
    }
}

/// `count` (> 0) bytes at `offset`, with pread.
private func readExactly(_ fd: Int32, at offset: Int, count: Int, _ url: URL) throws -> [UInt8] {
    var b = [UInt8](repeating: 0, count: count)
    var done = 0
    try b.withUnsafeMutableBytes { raw in
        while done < count {
            let n = pread(fd, raw.baseAddress! + done, count - done, off_t(offset + done))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw FileError(url, "read failed at byte \(offset + done) (\(n < 0 ? String(cString: strerror(errno)) : "end of file"))") }
            done += n
        }
    }
    return b
}

/// Bits needed for values 0...maxValue.
private func bitWidth(_ maxValue: Int) -> Int { Int.bitWidth - maxValue.leadingZeroBitCount }

/// Inflates a gzip or zlib stream (auto-detected) that must fill `output` exactly.
/// A zstd decompression context, freed with its owner.
private final class ZstdContext {
    let context = ZSTD_createDCtx()
    deinit { ZSTD_freeDCtx(context) }
}

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
