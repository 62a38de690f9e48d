import FuzzSupport
import Shards
import Support

nonisolated(unsafe) var window = [UInt16](repeating: 0, count: windowLength)

/// The input as an HDF5 shard: attributes, shapes and `/documents`, then every window (Fletcher32, zstd).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let url = writeInput(input(start, count), to: "train-000000.h5")
    guard let reader = try? ShardReader(url: url, format: .hdf5) else { return 0 }
    for k in 0..<reader.windowCount {
        try? window.withUnsafeMutableBufferPointer { try reader.readWindow(k, into: $0) }
    }
    return 0
}
