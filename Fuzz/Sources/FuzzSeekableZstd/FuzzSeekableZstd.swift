import FuzzSupport
@testable import Shards
@testable import Support

nonisolated(unsafe) var window = [UInt16](repeating: 0, count: windowLength)

/// The input as a seekable zstd shard: footer, seek table and metadata frame, then every window (checksums).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let url = writeInput(input(start, count), to: "train-000000.tokens.zst")
    guard let reader = try? ShardReader(url: url, format: .zst) else { return 0 }
    for k in 0..<reader.windowCount {
        try? window.withUnsafeMutableBufferPointer { try reader.readWindow(k, into: $0) }
    }
    return 0
}
