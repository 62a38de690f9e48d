import Foundation
import Support

/// Thrift compact-protocol type ids (the low nibble of a field header or list header).
enum CompactType {
    static let stop: UInt8 = 0, boolTrue: UInt8 = 1, boolFalse: UInt8 = 2, byte: UInt8 = 3, i16: UInt8 = 4, i32: UInt8 = 5
    static let i64: UInt8 = 6, double: UInt8 = 7, binary: UInt8 = 8, list: UInt8 = 9, set: UInt8 = 10, map: UInt8 = 11
    static let structure: UInt8 = 12
}

/// Decodes Thrift's compact protocol (parquet's footer and page headers) from `bytes[position..<end]`.
/// Every length and count is checked against the bytes left, and skipping nests at most `maxDepth` deep,
/// so corrupt input throws a one-line error instead of reading out of bounds or recursing without end.
struct CompactReader {
    let bytes: [UInt8]
    private(set) var position: Int
    let end: Int
    let url: URL
    /// What is being decoded ("footer", "page header at byte 1234"), for errors.
    let context: String
    static let maxDepth = 32

    init(_ bytes: [UInt8], from: Int, to: Int, url: URL, context: String) {
        self.bytes = bytes; position = from; end = to; self.url = url; self.context = context
    }

    func corrupt(_ why: String) -> FileError { FileError(url, "corrupt \(context): \(why)") }

    var remaining: Int { end - position }

    mutating func byte() throws -> UInt8 {
        guard position < end else { throw corrupt("ends early") }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            let b = try byte()
            value |= UInt64(b & 0x7F) << UInt64(shift)
            if b & 0x80 == 0 { return value }
        }
        throw corrupt("varint longer than 10 bytes")
    }

    mutating func zigzag() throws -> Int64 {
        let v = try varint()
        return Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1)
    }

    /// The next field header of the struct being read, or nil at its end. `last` is the previous field id
    /// (the compact protocol stores ids as deltas); start each struct with `last = 0`.
    mutating func field(after last: inout Int) throws -> (id: Int, type: UInt8)? {
        let header = try byte()
        let type = header & 0x0F
        if type == CompactType.stop { return nil }
        let delta = Int(header >> 4)
        // Field ids are i16; a corrupt long id must not overflow the next delta.
        last = delta == 0 ? Int(Int16(truncatingIfNeeded: try zigzag())) : last + delta
        return (last, type)
    }

    /// Any integer field (i8, i16, i32, i64) as Int; range checks are the caller's.
    mutating func int(_ type: UInt8) throws -> Int {
        switch type {
        case CompactType.byte: return Int(Int8(bitPattern: try byte()))
        case CompactType.i16, CompactType.i32, CompactType.i64: return Int(try zigzag())
        default: throw corrupt("expected an integer, found type \(type)")
        }
    }

    /// A bool struct field: its value is the type nibble itself.
    func bool(_ type: UInt8) throws -> Bool {
        guard type == CompactType.boolTrue || type == CompactType.boolFalse else { throw corrupt("expected a bool, found type \(type)") }
        return type == CompactType.boolTrue
    }

    mutating func binary(_ type: UInt8) throws -> [UInt8] {
        guard type == CompactType.binary else { throw corrupt("expected a string, found type \(type)") }
        let n = try varint()
        guard n <= UInt64(remaining) else { throw corrupt("string of \(n) bytes, \(remaining) left") }
        defer { position += Int(n) }
        return Array(bytes[position..<position + Int(n)])
    }

    mutating func string(_ type: UInt8) throws -> String { String(decoding: try binary(type), as: UTF8.self) }

    /// A list or set header: element count (at most the bytes left, as each element takes at least one) and type.
    mutating func list(_ type: UInt8) throws -> (count: Int, element: UInt8) {
        guard type == CompactType.list || type == CompactType.set else { throw corrupt("expected a list, found type \(type)") }
        let header = try byte()
        let count = header >> 4 == 15 ? try varint() : UInt64(header >> 4)
        guard count <= UInt64(remaining) else { throw corrupt("list of \(count) elements, \(remaining) bytes left") }
        return (Int(count), header & 0x0F)
    }

    mutating func expectStruct(_ type: UInt8) throws {
        guard type == CompactType.structure else { throw corrupt("expected a struct, found type \(type)") }
    }

    /// Skips a value of any type. Inside lists and maps a bool takes a byte; as a struct field it takes none.
    mutating func skip(_ type: UInt8, inCollection: Bool = false, depth: Int = 0) throws {
        guard depth < Self.maxDepth else { throw corrupt("nested more than \(Self.maxDepth) deep") }
        switch type {
        case CompactType.boolTrue, CompactType.boolFalse: if inCollection { _ = try byte() }
        case CompactType.byte: _ = try byte()
        case CompactType.i16, CompactType.i32, CompactType.i64: _ = try varint()
        case CompactType.double:
            guard remaining >= 8 else { throw corrupt("ends early") }
            position += 8
        case CompactType.binary:
            let n = try varint()
            guard n <= UInt64(remaining) else { throw corrupt("string of \(n) bytes, \(remaining) left") }
            position += Int(n)
        case CompactType.list, CompactType.set:
            let (count, element) = try list(type)
            for _ in 0..<count { try skip(element, inCollection: true, depth: depth + 1) }
        case CompactType.map:
            let count = try varint()
            guard count > 0 else { return }
            guard count <= UInt64(remaining) else { throw corrupt("map of \(count) entries, \(remaining) bytes left") }
            let kinds = try byte()
            for _ in 0..<count {
                try skip(kinds >> 4, inCollection: true, depth: depth + 1)
                try skip(kinds & 0x0F, inCollection: true, depth: depth + 1)
            }
        case CompactType.structure:
            var last = 0
            while let (_, fieldType) = try field(after: &last) { try skip(fieldType, depth: depth + 1) }
        default:
            throw corrupt("unknown type \(type)")
        }
    }
}
