import FuzzSupport
@testable import Preprocess

/// The input as a zarr array's `.zarray`; a valid one also gets the chunk grid `import` derives from it (row-chunk
/// count and ranges, chunk size, the missing-chunk scan of its first and last row-chunk).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let url = writeInput(input(start, count), to: "train.zarr/.zarray")
    guard let array = try? ZarrArray(path: url.deletingLastPathComponent().path) else { return 0 }
    _ = (array.chunkBytes, array.stripeTokens)
    for r in Set([0, array.rowChunks - 1]) where r >= 0 {
        _ = array.rowRange(ofRowChunk: r)
        _ = array.missingChunks(ofRowChunk: r)
    }
    return 0
}
