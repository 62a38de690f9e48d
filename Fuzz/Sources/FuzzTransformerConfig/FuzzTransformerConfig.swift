import FuzzSupport
@testable import Model
@testable import Training

/// The input as a config file (`data/configs/*.json`, either form); a valid one also gets its model's derived sizes
/// computed, as `train` and `bench` print them.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let url = writeInput(input(start, count), to: "config.json")
    guard let config = try? RunConfig.load(url) else { return 0 }
    _ = (config.model.headDim, config.model.hidden)
    return 0
}
