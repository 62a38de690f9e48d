import FuzzSupport
@testable import Shards

/// The input as a dataset folder's `index.json`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let url = writeInput(input(start, count), to: "dataset/index.json")
    guard let index = try? DatasetIndex.load(from: url.deletingLastPathComponent()) else { return 0 }
    for split in Set(index.shards.map(\.split)) { _ = index.windows(split: split) }
    return 0
}
