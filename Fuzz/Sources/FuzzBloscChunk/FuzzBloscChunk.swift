import Foundation
import FuzzSupport
@testable import Preprocess

/// The `.zarray` of each layout the first input byte picks: compressor and chunk rows (2 rows over a 1-row array
/// is a ragged edge chunk, cropped when copied).
let layouts: [(compressor: String, chunkRows: Int)] = [
    (#"{"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}"#, 1),
    (#"{"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 0, "blocksize": 0}"#, 2),
    (#"{"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 2, "blocksize": 0}"#, 1),
    (#"{"id": "blosc", "cname": "blosclz", "clevel": 5, "shuffle": 1, "blocksize": 0}"#, 1),
    (#"{"id": "zstd", "level": 3}"#, 1),
    ("null", 1),
]

/// One array folder per layout, written once.
let arrays: [ZarrArray] = layouts.enumerated().map { i, layout in
    let meta = """
    {"zarr_format": 2, "shape": [1, 65536], "chunks": [\(layout.chunkRows), 65536], "dtype": "<u2", "order": "C",
     "compressor": \(layout.compressor), "fill_value": 0, "filters": null}
    """
    let url = Array(meta.utf8).withUnsafeBytes { writeInput($0, to: "layout\(i)/train.zarr/.zarray") }
    return try! ZarrArray(path: url.deletingLastPathComponent().path)
}

nonisolated(unsafe) var stripe = [UInt16](repeating: 0, count: 65_536)

/// The first byte picks a layout; the rest is its chunk file `0.0`, decoded, checked and copied into a stripe.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard count >= 1 else { return 0 }
    let bytes = input(start, count)
    let array = arrays[Int(bytes[0]) % arrays.count]
    writeInput(UnsafeRawBufferPointer(rebasing: bytes[1...]), to: String(array.path.dropFirst(scratch.path.count + 1)) + "/0.0")
    try? stripe.withUnsafeMutableBufferPointer { try array.readStripe(0, into: $0, workers: 1) }
    return 0
}
