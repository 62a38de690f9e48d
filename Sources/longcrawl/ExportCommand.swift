import ArgumentParser
import Foundation
import Preprocess
import Shards
import Streaming
import Support

/// `longcrawl export`: one split as nanoGPT's or llm.c's token files, or the splits as LongCrawl64's zarr arrays.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a split's windows as nanoGPT's train.bin or llm.c's token shards, or the dataset in LongCrawl64's zarr layout.",
        discussion: """
        Windows go in index order, each with GPT-2's end-of-text (50256): after it for nanogpt (as nanoGPT's \
        prepare.py appends it to each document), before it for llmc (as llm.c's fineweb.py prepends it). nanogpt: \
        one flat little-endian uint16 file. llmc: shards of at most --shard-tokens tokens, a 256 x int32 header \
        (magic 20240520, version 1, token count) then uint16 tokens, named NAME_SPLIT_000000.bin, ... (heldout is \
        written as val). zarr: OUT/train.zarr and OUT/heldout.zarr (--split for one) in LongCrawl64's release \
        layout (zarr v2, <u2, shape [rows, 65536], chunks [2048, 2048], blosc lz4 5 with byte shuffle), rows \
        shuffled by --seed (--order window keeps ours), and OUT/SPLIT.rows.json mapping each row to its window; \
        a killed export is resumed by running it again. Files appear under their names only when all are complete.

        Examples:
          longcrawl export out/sample --split train --format nanogpt --out train.bin
          longcrawl export out/sample --split heldout --format llmc --out llmc/
          longcrawl export out/lc64 --format zarr --out lc64-zarr/
        """
    )

    @Argument(help: "Dataset folder (holding index.json).")
    var dataset: String

    @Option(help: "Split to export (nanogpt, llmc: train by default; zarr: both by default).")
    var split: Split?

    @Option(help: "nanogpt, llmc or zarr.")
    var format: String

    @Option(help: "zarr: rows shuffled (LongCrawl64's rows are) or in window order.")
    var order: String = "shuffled"

    @Option(help: "zarr: seed of the row shuffle.")
    var seed: UInt64 = 0

    @Option(help: "Output file (nanogpt) or folder (llmc, zarr).")
    var out: String

    @Option(help: "llmc: shard name prefix.")
    var name: String = "longcrawl"

    @Option(help: "llmc: tokens per shard (llm.c's fineweb.py uses 10^8).")
    var shardTokens: Int = 100_000_000

    @Flag(help: "Replace an earlier export.")
    var force = false

    func validate() throws {
        guard format == "zarr" || ExportFormat(rawValue: format) != nil else { throw ValidationError("--format must be nanogpt, llmc or zarr, got '\(format)'") }
        guard ["shuffled", "window"].contains(order) else { throw ValidationError("--order must be shuffled or window, got '\(order)'") }
    }

    func run() throws {
        guard let format = ExportFormat(rawValue: format) else { return try exportZarr() }
        let split = split ?? .train
        let catalog = try WindowCatalog(directory: URL(fileURLWithPath: dataset), split: split)
        let summary = try exportTokens(catalog, format: format, out: URL(fileURLWithPath: out), name: name, shardTokens: shardTokens,
                                       force: force, progress: ProgressReporter(label: "export"))
        let target = summary.files.count == 1 ? summary.files[0].path : "\(summary.files.count) shards in \(out)"
        print("wrote \(target): \(summary.windows) windows of \(split), \(summary.tokens) tokens (\(format.rawValue))")
    }

    private func exportZarr() throws {
        let dir = URL(fileURLWithPath: dataset)
        let splits = try split.map { [$0] } ?? Split.allCases.filter { try DatasetIndex.load(from: dir).windows(split: $0) > 0 }
        for s in splits {
            var export = ZarrExport(dataset: dir, split: s)
            export.order = order == "window" ? .window : .shuffled(seed: seed)
            export.progress = ProgressReporter(label: "export \(s.rawValue)")
            let rows = try export.run(out: URL(fileURLWithPath: out), force: force)
            print("wrote \(out)/\(s.rawValue).zarr: \(rows) rows; \(out)/\(s.rawValue).rows.json maps each to its window")
        }
    }
}
