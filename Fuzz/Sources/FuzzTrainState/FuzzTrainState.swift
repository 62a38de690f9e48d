import FuzzSupport
@testable import Training

/// The input as a checkpoint's `state.json`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let url = writeInput(input(start, count), to: "checkpoint/state.json")
    _ = try? Checkpoint.loadState(url.deletingLastPathComponent())
    return 0
}
