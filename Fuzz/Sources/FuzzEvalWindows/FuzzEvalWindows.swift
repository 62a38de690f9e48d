import FuzzSupport
@testable import Shards

/// The input as an evaluation-window file (`longcrawl sample`'s output, `eval`'s input).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let url = writeInput(input(start, count), to: "eval-windows.h5")
    guard let file = try? EvalWindowFile(contentsOf: url) else { return 0 }
    for i in 0..<file.count { _ = file.row(i).first }
    return 0
}
