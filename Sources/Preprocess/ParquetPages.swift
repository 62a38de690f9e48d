import Foundation
import Support

// Parquet pages: dictionary pages and data pages v1 and v2, their definition levels (the RLE / bit-packed hybrid)
// and values (PLAIN, or indices into the dictionary).

/// Decodes one column chunk's pages in order into `values` and `lengths`, keeping its dictionary. A value shorter than
/// `minBytes` is measured but never copied: on the web almost every document is shorter than the texts kept.
struct ColumnDecoder {
    let url: URL
    let column: LeafColumn
    /// The chunk's value count: no page may take values past it.
    let rows: Int
    /// Values shorter than this many bytes are left out of `values` (their lengths are kept).
    let minBytes: Int
    /// Each row's value: nil for a null or a value shorter than `minBytes`.
    private(set) var values: [[UInt8]?] = []
    /// Each row's value length in bytes, -1 for a null.
    private(set) var lengths: [Int] = []
    /// The dictionary page's values (nil where shorter than `minBytes`) and their lengths, decoded once per chunk.
    private var dictionary: (values: [[UInt8]?], lengths: [Int])?
    /// Decompresses the chunk's pages.
    private let pages: PageDecompressor
    /// One page's present values and their lengths, before nulls are spread among them; kept to reuse the storage.
    private var pageValues: [[UInt8]?] = [], pageLengths: [Int] = []

    init(url: URL, column: LeafColumn, codec: Int, rows: Int, minBytes: Int = 0) {
        self.url = url; self.column = column; self.rows = rows; self.minBytes = minBytes
        pages = PageDecompressor(url: url, column: column.name, codec: codec)
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
            let data = try pages.decompress(bytes, body, size: page.uncompressedSize)
            var entries: (values: [[UInt8]?], lengths: [Int]) = ([], [])
            try plainValues(data, 0..<data.count, count: h.numValues, into: &entries.values, &entries.lengths)
            dictionary = entries
        case PageType.data:
            guard let h = page.dataPage else { throw fail("corrupt page: data page without its header") }
            try checkCount(h.numValues)
            let data = try pages.decompress(bytes, body, size: page.uncompressedSize)
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
            let data = h.isCompressed ? try pages.decompress(bytes, valuesRange, size: valuesSize) : Array(bytes[valuesRange])
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

    /// Appends a data page's `count` rows: a value where the definition level is the maximum, else a null.
    private mutating func append(_ data: [UInt8], _ range: Range<Int>, encoding: Int, count: Int, levels: [UInt32]?) throws {
        let present = levels?.count(where: { $0 == column.maxDefinition }) ?? count
        pageValues.removeAll(keepingCapacity: true)
        pageLengths.removeAll(keepingCapacity: true)
        switch encoding {
        case Encoding.plain:
            try plainValues(data, range, count: present, into: &pageValues, &pageLengths)
        case Encoding.plainDictionary, Encoding.rleDictionary:
            guard let dictionary else { throw fail("corrupt chunk: dictionary-encoded page without a dictionary page") }
            guard present > 0 else { break }
            // Dictionary indices: one byte of bit width, then the RLE / bit-packed hybrid without a length prefix.
            guard !range.isEmpty, data[range.lowerBound] <= 32 else { throw fail("corrupt page: bad dictionary index width") }
            let indices = try rleHybrid(data, range.lowerBound + 1..<range.upperBound, bitWidth: Int(data[range.lowerBound]), count: present)
            pageValues.reserveCapacity(present)
            pageLengths.reserveCapacity(present)
            for i in indices {
                guard i < dictionary.values.count else { throw fail("corrupt page: dictionary index \(i) of \(dictionary.values.count) entries") }
                pageValues.append(dictionary.values[Int(i)])
                pageLengths.append(dictionary.lengths[Int(i)])
            }
        default:
            throw fail("encoding \(enumName(encodingNames, encoding)) is not supported (PLAIN and dictionary encodings are)")
        }
        guard let levels else {
            values.append(contentsOf: pageValues)
            lengths.append(contentsOf: pageLengths)
            return
        }
        var next = 0
        for level in levels {
            if level == column.maxDefinition {
                values.append(pageValues[next])
                lengths.append(pageLengths[next])
                next += 1
            } else {
                values.append(nil)
                lengths.append(-1)
            }
        }
    }

    /// Appends `count` PLAIN values and their lengths: byte arrays as they are, integers as decimal digits; a value
    /// shorter than `minBytes` as nil. A byte array's length prefix gives its size without copying it.
    private func plainValues(_ data: [UInt8], _ range: Range<Int>, count: Int, into out: inout [[UInt8]?], _ lengths: inout [Int]) throws {
        let width = column.type == PhysicalType.int64 ? 8 : 4
        // Every value takes at least `width` bytes, which bounds the count before anything is allocated.
        guard count >= 0, count <= range.count / width else { throw fail("corrupt page: \(count) values in \(range.count) bytes") }
        out.reserveCapacity(out.count + count)
        lengths.reserveCapacity(lengths.count + count)
        try data.withUnsafeBufferPointer { data in
            var p = range.lowerBound
            for _ in 0..<count {
                guard range.upperBound - p >= width else { throw fail("corrupt page: values end early") }
                var v: UInt64 = 0
                for k in 0..<width { v |= UInt64(data[p + k]) << UInt64(8 * k) }
                p += width
                let value: [UInt8]
                switch column.type {
                case PhysicalType.byteArray:
                    guard v <= UInt64(range.upperBound - p) else { throw fail("corrupt page: a value of \(v) bytes, \(range.upperBound - p) left") }
                    let n = Int(v)
                    lengths.append(n)
                    out.append(n >= minBytes ? Array(UnsafeBufferPointer(rebasing: data[p..<p + n])) : nil)
                    p += n
                    continue
                case PhysicalType.int32: value = Array(String(Int32(truncatingIfNeeded: v)).utf8)
                default: value = Array(String(Int64(bitPattern: v)).utf8)
                }
                lengths.append(value.count)
                out.append(value.count >= minBytes ? value : nil)
            }
        }
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
}

/// Bits needed for values 0...maxValue.
func bitWidth(_ maxValue: Int) -> Int { Int.bitWidth - maxValue.leadingZeroBitCount }
