import Foundation
import Support

// Parquet (apache/parquet-format, parquet.thrift): "PAR1", column chunks of pages, the footer (a Thrift
// compact-protocol FileMetaData), its length as a little-endian u32, "PAR1". This file holds the footer's and page
// headers' Thrift structs (the fields the reader uses), their decoding, and the schema's leaves;
// ParquetPages.swift decodes pages, ParquetCodecs.swift decompresses them, ParquetReader.swift reads row groups.

let physicalTypeNames = ["BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"]
let codecNames = ["UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"]
let encodingNames = ["PLAIN", "GROUP_VAR_INT", "PLAIN_DICTIONARY", "RLE", "BIT_PACKED", "DELTA_BINARY_PACKED",
                     "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY", "RLE_DICTIONARY", "BYTE_STREAM_SPLIT", "ALP"]

func enumName(_ names: [String], _ value: Int) -> String { names.indices.contains(value) ? names[value] : "\(value)" }

enum PhysicalType { static let int32 = 1, int64 = 2, byteArray = 6 }
enum Codec { static let uncompressed = 0, snappy = 1, gzip = 2, zstd = 6 }
enum Encoding { static let plain = 0, plainDictionary = 2, rle = 3, rleDictionary = 8 }
enum PageType { static let data = 0, dictionary = 2, dataV2 = 3 }
enum Repetition { static let required = 0, repeated = 2 }

/// A page's decompressed size above this is taken for corruption, not data.
let maxPageBytes = 1 << 30
/// Rows in one page above this are taken for corruption (writers cut pages at 20k rows by default).
let maxPageValues = 1 << 24
/// Rows in one row group above this are refused: a row group is held in memory whole (about 60 bytes a row before
/// its text), and pyarrow writes at most 2^20 rows to one. Without a bound a few bytes of runs of nulls could claim
/// billions of rows (2^30 in a 2 kB file ran out of memory).
let maxRowGroupRows = 1 << 22

// MARK: - Footer metadata (the fields of parquet.thrift the reader uses)

/// A node of the schema tree (stored depth-first in the footer).
struct SchemaElement {
    var name = ""
    var type: Int?
    var repetition: Int?
    var numChildren: Int?
}

/// Where one column's chunk of one row group lies and how it is stored.
struct ColumnMetaData {
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
struct RowGroup {
    var numRows = -1
    /// nil where a chunk has no plaintext metadata (encrypted columns).
    var columns: [ColumnMetaData?] = []
}

/// The footer.
struct FileMetaData {
    var schema: [SchemaElement] = []
    var numRows = -1
    var rowGroups: [RowGroup] = []
}

/// A v1 data page: levels and values compressed together.
struct DataPageHeader {
    var numValues = -1
    var encoding = -1
    var definitionEncoding = -1
}

/// A v2 data page: uncompressed levels (lengths given here), then the values, compressed unless `isCompressed` is false.
struct DataPageHeaderV2 {
    var numValues = -1
    var numNulls = -1
    var encoding = -1
    var definitionLength = -1
    var repetitionLength = -1
    var isCompressed = true
}

/// The chunk's dictionary: PLAIN values that dictionary-encoded pages index.
struct DictionaryPageHeader {
    var numValues = -1
    var encoding = -1
}

/// The Thrift header before each page's bytes.
struct PageHeader {
    var type = -1
    var uncompressedSize = -1
    var compressedSize = -1
    var dataPage: DataPageHeader?
    var dictionaryPage: DictionaryPageHeader?
    var dataPageV2: DataPageHeaderV2?
}

extension CompactReader {
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
struct LeafColumn {
    var path: [String]
    var index: Int
    var type: Int?
    /// Definition level of a present value: the optional and repeated elements on its path.
    var maxDefinition: Int
    var maxRepetition: Int
    var name: String { path.joined(separator: ".") }
}

/// Flattens the schema's depth-first element list (the root first) into its leaves, in column-chunk order.
func leafColumns(_ schema: [SchemaElement], _ url: URL) throws -> [LeafColumn] {
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
