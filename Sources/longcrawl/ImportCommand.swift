import ArgumentParser
import Cluster
import Foundation
import Preprocess
import Shards
import Support

/// `longcrawl import`: LongCrawl64's zarr v2 release (already GPT-2 tokens) into a dataset folder.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Convert zarr v2 token arrays (LongCrawl64's train.zarr, heldout.zarr) into a dataset folder.",
        discussion: """
        Each input is a zarr v2 array of uint16 GPT-2 tokens, one 65,536-token document per row; each row becomes \
        one window (document ARRAY:ROW) of the split the folder is named after (train.zarr, heldout.zarr) or of \
        --split. Every chunk file is checked: a missing one is an error (zarr would read zeros) unless \
        --skip-missing, which imports only the rows whose chunks are all present.

        Examples:
          longcrawl import longcrawl64/train.zarr longcrawl64/heldout.zarr --out out/lc64 --skip-missing
          longcrawl import tokens.zarr --split heldout --out out/extra --format zst
          longcrawl import longcrawl64/train.zarr --out out/lc64 --skip-missing --resume   # after an interruption
        """
    )

    @Argument(help: "Zarr v2 array folders.")
    var inputs: [String]

    @OptionGroup var output: DatasetOutputOptions

    @Option(help: "Split of the only input (train or heldout), when its folder is not named after one.")
    var split: Split?

    @Flag(help: "Import the rows whose chunks are all present instead of failing on a missing chunk file.")
    var skipMissing = false

    @Flag(help: "Accept an array whose .zattrs encoder is not GPT-2's.")
    var forceTokenizer = false

    @Option(help: "The rows' text encoding, raw or json (LongCrawl64's JSON escape), when known; by default it is detected from the tokens and the evidence recorded (inspect prints it).")
    var textEncoding: TextEncoding?

    func run() throws {
        var options = ImportOptions()
        options.format = output.shardFormat
        options.level = output.level
        options.shardWindows = output.shardWindows
        options.split = split
        options.skipMissing = skipMissing
        options.forceTokenizer = forceTokenizer
        options.textEncoding = textEncoding
        let mode = output.mode
        let dataset = URL(fileURLWithPath: output.out)
        let world = World.shared
        var summary: ImportSummary
        if world.isDistributed {
            // Ranks take every world-th row-chunk into rank folders; rank 0 merges them (as preprocess does).
            var local: ImportSummary?
            let build = try ZarrImporter(inputs: inputs, output: dataset, options: options).distributedBuild(ranks: world.size)
            let started = Date()
            let result = try distributedRun(output: dataset, build: build, mode: mode, world: world) { folder, mode in
                let importer = ZarrImporter(inputs: inputs, output: folder, options: options, share: (world.rank, world.size))
                importer.progress = world.rank == 0 ? ProgressReporter(label: "import") : nil
                local = try importer.run(mode: mode)
                return local!.index
            }
            summary = ImportSummary(index: result.index, alreadyComplete: result.alreadyComplete, seconds: Date().timeIntervalSince(started),
                                    skipped: local?.skipped ?? [])
            guard world.rank == 0 else { return }
        } else {
            let importer = ZarrImporter(inputs: inputs, output: dataset, options: options)
            importer.progress = ProgressReporter(label: "import")
            summary = try importer.run(mode: mode)
        }
        if summary.alreadyComplete {
            print("\(output.out): already complete, nothing to do")
            return
        }
        let c = summary.index.build?.counts ?? BuildCounts()
        print("rows \(c["rows"]): imported \(c["imported"])" +
              (c["skipped_missing_rows"] > 0 ? ", skipped \(c["skipped_missing_rows"]) in \(c["skipped_missing_row_chunks"]) row-chunks with missing chunk files" : ""))
        for s in summary.skipped where !s.rowChunks.isEmpty {
            print("  \(s.input): skipped \(s.rows) rows, row-chunks \(describeRanges(s.rowChunks))")
        }
        printSplits(summary.index)
        print(describeTextEncoding(summary.index))
        print(String(format: "%.2f s, %.0f rows/s", summary.seconds, Double(c["imported"]) / max(summary.seconds, 1e-9)))
        print("wrote \(output.out)/\(DatasetIndex.fileName)")
    }
}

/// Sorted integers as runs: `3, 5..<9, 12`.
func describeRanges(_ values: [Int]) -> String {
    var parts: [String] = []
    var i = 0
    while i < values.count {
        var j = i
        while j + 1 < values.count, values[j + 1] == values[j] + 1 { j += 1 }
        parts.append(j == i ? "\(values[i])" : "\(values[i])..<\(values[j] + 1)")
        i = j + 1
    }
    return parts.joined(separator: ", ")
}
