import ArgumentParser
import Foundation
import Streaming
import Support

/// `longcrawl export`: one split as nanoGPT's or llm.c's token files.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a split's windows as nanoGPT's train.bin or llm.c's token shards.",
        discussion: """
        Windows go in index order, each with GPT-2's end-of-text (50256): after it for nanogpt (as nanoGPT's \
        prepare.py appends it to each document), before it for llmc (as llm.c's fineweb.py prepends it). nanogpt: \
        one flat little-endian uint16 file. llmc: shards of at most --shard-tokens tokens, a 256 x int32 header \
        (magic 20240520, version 1, token count) then uint16 tokens, named NAME_SPLIT_000000.bin, ... (heldout is \
        written as val). Files appear under their names only when all are complete.

        Examples:
          longcrawl export out/sample --split train --format nanogpt --out train.bin
          longcrawl export out/sample --split heldout --format llmc --out llmc/
        """
    )

    @Argument(help: "Dataset folder (holding index.json).")
    var dataset: String

    @Option(help: "Split to export.")
    var split: Split = .train

    @Option(help: "nanogpt or llmc.")
    var format: ExportFormat

    @Option(help: "Output file (nanogpt) or folder (llmc).")
    var out: String

    @Option(help: "llmc: shard name prefix.")
    var name: String = "longcrawl"

    @Option(help: "llmc: tokens per shard (llm.c's fineweb.py uses 10^8).")
    var shardTokens: Int = 100_000_000

    @Flag(help: "Replace an earlier export.")
    var force = false

    func run() throws {
        let catalog = try WindowCatalog(directory: URL(fileURLWithPath: dataset), split: split)
        let summary = try exportTokens(catalog, format: format, out: URL(fileURLWithPath: out), name: name, shardTokens: shardTokens,
                                       force: force, progress: ProgressReporter(label: "export"))
        let target = summary.files.count == 1 ? summary.files[0].path : "\(summary.files.count) shards in \(out)"
        print("wrote \(target): \(summary.windows) windows of \(split), \(summary.tokens) tokens (\(format.rawValue))")
    }
}

extension ExportFormat: ExpressibleByArgument {}
