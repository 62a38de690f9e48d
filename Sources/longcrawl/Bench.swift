import ArgumentParser
import Foundation
import Tensor

/// `longcrawl bench ...`: throughput against a baseline measured in the same run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print ratios against a baseline measured in the same run.",
        subcommands: [BenchTokenizer.self, BenchSignals.self, BenchShards.self, BenchImport.self, BenchExport.self, BenchParquet.self, BenchDedup.self, BenchScale.self, BenchWeb.self, BenchLoader.self, BenchKernels.self, BenchTrain.self, BenchScaling.self]
    )
}

/// The least wall time of `runs` runs of `body`: on a shared machine the fastest run is the least disturbed one.
/// The one "best of N" timer of the benchmarks.
func bestSeconds(_ runs: Int = 3, _ body: () throws -> Void) rethrows -> Double {
    try bestSeconds(runs, setup: {}, { _ in try body() })
}

/// The same, each run on a fresh `setup()` that is not timed.
func bestSeconds<T>(_ runs: Int = 3, setup: () throws -> T, _ body: (T) throws -> Void) rethrows -> Double {
    var times: [Double] = []
    for _ in 0..<runs {
        let input = try setup()
        let t0 = now(); try body(input); times.append(now() - t0)
    }
    return times.min()!
}

/// Runs `/usr/bin/env ARGS...` (a baseline in another tool, or this binary under mpirun) and returns its exit status
/// and standard output; standard error passes through.
func capture(_ args: [String]) throws -> (status: Int32, out: Data) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, out)
}
