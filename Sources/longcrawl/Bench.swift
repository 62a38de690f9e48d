import ArgumentParser

/// `longcrawl bench ...`: throughput against a baseline measured in the same run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print ratios against a baseline measured in the same run.",
        subcommands: [BenchTokenizer.self, BenchShards.self, BenchImport.self, BenchLoader.self, BenchKernels.self, BenchTrain.self, BenchScaling.self]
    )
}
