import ArgumentParser
import CLongCrawl
import Foundation
import Streaming
import Support

/// `longcrawl pack`: the batches `BatchPacker` gives for a set of options, as JSON lines (`--dump`) that another
/// reader (the Python one) must reproduce, or a one-line throughput check.
struct PackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Build training batches with BatchPacker; with --dump, one JSON line per batch.",
        discussion: """
        Each --dump line holds the batch number, epoch, continues, every row's window id, token offset and seam (the \
        position whose target is a rolled window's first document token, or null), and \
        sha256: the SHA-256 of the batch's inputs and targets (little-endian int32, [B, T] each) followed by its \
        mask (little-endian float32), so two readers agree on a batch exactly when their lines are equal.

        Examples:
          longcrawl pack out/sample --batch 2 --context 1024 --count 4 --dump
          longcrawl pack out/sample --batch 2 --context 1024 --count 4 --dump --save-cursor c.json
          longcrawl pack out/sample --cursor c.json --count 4 --dump
        """
    )

    @Argument(help: "Dataset folder (holding index.json).")
    var dataset: String

    @Option(help: "Split to pack.")
    var split: Split = .train

    @Option(help: "Rows per batch (B).")
    var batch: Int = 8

    @Option(help: "Tokens per row (T, dividing \(windowLength)).")
    var context: Int = 1024

    @Option(help: "longcrawl or sequential.")
    var order: BatchOrder = .longcrawl

    @Option(help: "Seed of the epoch permutation.")
    var seed: UInt64 = 0

    @Option(help: "This rank (0-based).")
    var rank: Int = 0

    @Option(help: "Number of ranks.")
    var world: Int = 1

    @Option(help: "Continue from a saved PackerCursor (JSON); its batch, context, order, seed, rank and world replace those options.")
    var cursor: String?

    @Option(help: "Batches to build.")
    var count: Int = 1

    @Flag(help: "Print one JSON line per batch.")
    var dump = false

    @Option(help: "Write the cursor after the last batch here (JSON).")
    var saveCursor: String?

    @Flag(help: "Mask the target that crosses each row's seam (a rolled window's first document token), as train --mask-seam.")
    var maskSeam = false

    func run() throws {
        let catalog = try WindowCatalog(directory: URL(fileURLWithPath: dataset), split: split)
        var start = PackerCursor(seed: seed, rank: rank, world: world, batchSize: batch, context: context, order: order)
        if let cursor {
            let url = URL(fileURLWithPath: cursor)
            do { start = try JSONDecoder().decode(PackerCursor.self, from: Data(contentsOf: url)) } catch {
                throw FileError(url, "not a packer cursor (\(error.localizedDescription))")
            }
        }
        let packer = try BatchPacker(catalog: catalog, cursor: start, masksSeam: maskSeam)
        let encoder = JSONEncoder.sorted
        let t0 = Date()
        for _ in 0..<max(0, count) {
            let number = packer.cursor.nextBatch
            let b = try packer.next()
            guard dump else { continue }
            let line = DumpLine(batch: number, epoch: b.epoch, continues: b.continues, windows: b.rows.map(\.window),
                                offsets: b.rows.map(\.offset), seams: b.rows.map(\.seam), sha256: b.digest)
            FileHandle.standardOutput.write(try encoder.encode(line) + Data("\n".utf8))
        }
        if let saveCursor { try AtomicFile.writeJSON(packer.cursor, to: URL(fileURLWithPath: saveCursor)) }
        if !dump {
            let seconds = Date().timeIntervalSince(t0)
            print("\(count) batches of [\(start.batchSize), \(start.context)] from \(split) (\(packer.batchesPerEpoch) per epoch) in "
                  + String(format: "%.2f s, %.0f batches/s", seconds, Double(count) / max(seconds, 1e-9)))
        }
    }

    struct DumpLine: Encodable {
        var batch: Int
        var epoch: Int
        var continues: Bool
        var windows: [Int]
        var offsets: [Int]
        var seams: [Int?]
        var sha256: String
    }
}
