import FuzzSupport
@testable import Training

/// The input as a `.safetensors` file (checkpoint model and optimizer files).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let url = writeInput(input(start, count), to: "model.safetensors")
    _ = try? SafetensorsFile(contentsOf: url)
    return 0
}
