import ArgumentParser
import Foundation
import Streaming
import Support

/// `longcrawl sample`: evaluation windows to a small HDF5 file.
struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Pick N windows of a split by seed (without replacement) and write them to an HDF5 file for eval.",
        discussion: """
        The file holds /tokens [N, \(windowLength)] uint16 (or [N, T+1] with --context T: T inputs and their targets at a \
        random offset), /source (window ids in the split), /documents (source document and offset).

        Examples:
          longcrawl sample out/sample --split heldout --count 1 --seed 0 --out out/eval.h5
          longcrawl sample out/dev --split heldout --count 64 --seed 1 --context 1024 --out out/eval-1k.h5
        """
    )

    @Argument(help: "Dataset folder.")
    var dataset: String

    @Option(help: "Split to sample from.")
    var split: Split = .heldout

    @Option(help: "Number of windows.")
    var count: Int

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    @Option(help: "Sample T+1-token rows at random offsets instead of whole windows.")
    var context: Int?

    @Option(help: "Output HDF5 file.")
    var out: String

    func validate() throws {
        if let context { try BatchPacker.validate(context: context) }
    }

    func run() throws {
        let catalog = try WindowCatalog(directory: URL(fileURLWithPath: dataset), split: split)
        let file = try EvalWindowSampler.sample(catalog, count: count, seed: seed, context: context, dataset: dataset)
        try file.write(to: URL(fileURLWithPath: out))
        print("wrote \(out): \(file.count) rows of \(file.length) tokens from \(split) (\(catalog.count) windows), seed \(seed)")
    }
}
