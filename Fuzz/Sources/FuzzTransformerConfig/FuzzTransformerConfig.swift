import FuzzSupport
import Model

/// The input as a model config (`data/configs/*.json`); a valid one also gets its derived sizes computed, as
/// `train` and `bench` print them.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let url = writeInput(input(start, count), to: "config.json")
    guard let config = try? TransformerConfig.load(url) else { return 0 }
    _ = (config.headDim, config.hidden)
    return 0
}
