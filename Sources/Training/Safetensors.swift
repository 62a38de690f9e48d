import Foundation
import Support
import Tensor

/// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the tensors' bytes back to back. Only F32 is written or read here.
/// Python opens these files with `safetensors.numpy.load_file` or `safe_open`.
struct SafetensorsFile: Equatable {
    public struct Entry: Equatable {
        public var name: String
        var shape: [Int]
        public var values: [Float]
        init(name: String, shape: [Int], values: [Float]) { self.name = name; self.shape = shape; self.values = values }
    }

    /// Tensors in file order.
    var tensors: [Entry]
    /// Free-form string metadata (`__metadata__`).
    var metadata: [String: String]

    init(tensors: [Entry], metadata: [String: String] = [:]) { self.tensors = tensors; self.metadata = metadata }

    subscript(name: String) -> Entry? { tensors.first { $0.name == name } }

    /// Writes the file atomically.
    public func write(to url: URL) throws { try Self.write(tensors.map { ($0.name, Tensor($0.shape, $0.values)) }, metadata: metadata, to: url) }

    /// Writes `tensors` in order, straight from their memory, atomically: header padded with spaces to a multiple
    /// of 8 bytes, then the tensors' bytes.
    public static func write(_ tensors: [(name: String, tensor: Tensor<Float>)], metadata: [String: String], to url: URL) throws {
        var header = "{"
        if !metadata.isEmpty {
            let items = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            header += "\"__metadata__\":{\(items.joined(separator: ","))},"
        }
        var offset = 0
        header += tensors.map { name, t in
            let bytes = t.count * 4
            defer { offset += bytes }
            return "\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}"
        }.joined(separator: ",")
        header += "}"
        while header.utf8.count % 8 != 0 { header += " " }
        var out = Data(capacity: 8 + header.utf8.count + offset)
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: Array(header.utf8))
        for (_, t) in tensors { out.append(UnsafeBufferPointer(t.buffer)) }
        try AtomicFile.write(out, to: url)
    }

    /// Reads and checks a file: header inside the file, F32 only, every byte range inside the data and
    /// matching its shape. Errors name the file and the fault.
    init(contentsOf url: URL) throws {
        func bad(_ why: String) -> LongCrawlError { LongCrawlError("\(url.path): \(why)") }
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw bad("cannot read (\(error.localizedDescription))") }
        guard data.count >= 8 else { throw bad("truncated: \(data.count) bytes, shorter than the 8-byte header length") }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw bad("truncated: header of \(headerLength) bytes announced, \(data.count - 8) bytes follow")
        }
        let dataStart = 8 + Int(headerLength)
        guard let header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<dataStart)) as? [String: Any] else {
            throw bad("not a safetensors file (header is not a JSON object)")
        }
        metadata = header["__metadata__"] as? [String: String] ?? [:]
        var entries: [(start: Int, entry: Entry)] = []
        for (name, value) in header where name != "__metadata__" {
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2 else {
                throw bad("tensor \(name): malformed header entry")
            }
            guard dtype == "F32" else { throw bad("tensor \(name): dtype \(dtype), only F32 is supported") }
            // Shape and offsets come from the file: every product and sum is checked, so a bad header throws, never traps.
            guard let count = shape.elementCount, count <= Int.max / 4 else { throw bad("tensor \(name): shape \(shape) is negative or too large") }
            guard offsets[0] >= 0, offsets[1] >= offsets[0], offsets[1] - offsets[0] == count * 4 else {
                throw bad("tensor \(name): byte range \(offsets) does not hold shape \(shape) of F32")
            }
            guard offsets[1] <= data.count - dataStart else {
                throw bad("truncated: tensor \(name) ends at byte \(offsets[1]) of the data, which holds \(data.count - dataStart)")
            }
            var values = [Float](repeating: 0, count: count)
            values.withUnsafeMutableBytes { dst in
                data.copyBytes(to: dst.bindMemory(to: UInt8.self), from: (dataStart + offsets[0])..<(dataStart + offsets[1]))
            }
            entries.append((offsets[0], Entry(name: name, shape: shape, values: values)))
        }
        tensors = entries.sorted { $0.start < $1.start }.map(\.entry)
    }
}

extension [Int] {
    /// The product of the sizes; nil when one is negative or the product overflows.
    var elementCount: Int? {
        var n = 1
        for d in self {
            guard d >= 0 else { return nil }
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            guard !overflow else { return nil }
            n = p
        }
        return n
    }
}

/// A JSON string literal.
func jsonString(_ s: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
    return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
}

