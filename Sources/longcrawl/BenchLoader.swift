import ArgumentParser
import Foundation
import Shards
import Streaming
import Support
import Tensor

/// `longcrawl bench loader`: BatchPacker throughput against a plain sequential read of the same shards.
struct BenchLoader: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loader",
        abstract: "Windows/s and tokens/s of the streaming loader beside a plain sequential read + decompress, and consumer stall.",
        discussion: """
        Example (dev corpus, all windows of every document):
          longcrawl preprocess ../shared/data/corpus-dev --out out/dev --windows-per-doc all --heldout-fraction 0.05
          longcrawl bench loader --data out/dev
        """
    )

    @Option(help: "Dataset folder.")
    var data: String

    @Option(help: "Split to stream.")
    var split: Split = .train

    @Option(help: "Rows per batch.")
    var batch: Int = 8

    @Option(help: "Context length (divides 65,536).")
    var context: Int = 4096

    @Option(help: "Simulated training step for the stall measurement, in milliseconds.")
    var stepMs: Double = 50

    @Option(help: "Batches taken in the stall measurement.")
    var stallBatches: Int = 40

    func run() throws {
        let dir = URL(fileURLWithPath: data)
        let catalog = try WindowCatalog(directory: dir, split: split)
        let n = catalog.count
        print("dataset \(dir.path), split \(split): \(n) windows in \(catalog.shards.count) shards")

        // Best of three runs each: the machine is shared and the first pass also warms the page cache.
        // Baseline: every window of every shard, in file order, decompressed into one buffer.
        var buffer = [UInt16](repeating: 0, count: windowLength)
        let plain = try Double(n) / bestSeconds {
            for entry in catalog.shards {
                let reader = try ShardReader(url: dir.appendingPathComponent(entry.file), format: entry.format)
                for k in 0..<reader.windowCount { try buffer.withUnsafeMutableBufferPointer { try reader.readWindow(k, into: $0) } }
            }
        }
        // Whole windows one by one, shuffled: an epoch decompresses each window once (a fresh packer, empty cache).
        let windows = try Double(n) / bestSeconds {
            let packer = try BatchPacker(catalog: catalog, batchSize: 1, context: windowLength, seed: 1)
            for _ in 0..<packer.batchesPerEpoch { _ = try packer.next() }
        }

        var rows: [(String, Double)] = [("plain sequential read + decompress", plain), ("BatchPacker B=1 T=65536 (whole windows)", windows)]
        for order in BatchOrder.allCases {
            // A whole epoch: every window passes through the packer once per slot.
            var batches = 0
            let seconds = try bestSeconds(setup: { try BatchPacker(catalog: catalog, batchSize: batch, context: context, order: order, seed: 1) }) { packer in
                batches = packer.batchesPerEpoch
                for _ in 0..<batches { _ = try packer.next() }
            }
            let tokensPerSecond = Double(batches * batch * context) / seconds
            rows.append(("BatchPacker \(order.rawValue) B=\(batch) T=\(context)", tokensPerSecond / Double(windowLength)))
        }
        print("\n| reader | windows/s | tokens/s | vs plain |")
        print("| --- | ---: | ---: | ---: |")
        for (name, wps) in rows {
            print(String(format: "| %@ | %.1f | %.1fM | %.2f |", name, wps, wps * Double(windowLength) / 1e6, wps / plain))
        }
        print("(best of 3 runs; packer windows/s = tokens delivered / 65,536)")

        // Stall: a consumer that takes one batch every stepMs, as a trainer would.
        let packer = try BatchPacker(catalog: catalog, batchSize: batch, context: context, seed: 2)
        _ = try packer.next()
        let before = packer.stallSeconds
        let steps = min(stallBatches, packer.batchesPerEpoch - 1)
        for _ in 0..<steps {
            usleep(useconds_t(stepMs * 1000))
            _ = try packer.next()
        }
        let stall = packer.stallSeconds - before
        print(String(format: "\nconsumer stall at a %.0f ms step: %.3f ms over %d batches = %.3f%% of step time",
                     stepMs, stall * 1000, steps, 100 * stall / (Double(steps) * stepMs / 1000)))
    }
}

