import Cluster
import Foundation
import Shards
import Support
import Tokenizer

extension Preprocessor {
    /// Runs on every rank of `world`: rank r preprocesses input parts (files, parquet row groups) r, r + world, ... into `OUT/rank-r-of-N/`
    /// (resumable like a single run), the held-back document is decided over all ranks, and rank 0 merges the
    /// ranks' shards into `OUT` (hard links, renumbered per split in rank order) under one index, then removes the
    /// rank folders. The windows and splits equal a single-process run's; only shard boundaries differ. Alone
    /// (no mpirun), this is `run(mode:)`.
    public static func run(inputs: [String], output: URL, options: PreprocessOptions, tokenizer: GPT2Tokenizer, mode: OutputMode,
                           world: World = .shared, progress: ProgressReporter? = nil,
                           warn: ((String) -> Void)? = nil) throws -> PreprocessSummary {
        guard world.isDistributed else {
            let p = Preprocessor(inputs: inputs, output: output, options: options, tokenizer: tokenizer)
            p.progress = progress
            if let warn { p.warn = warn }
            return try p.run(mode: mode)
        }
        let started = Date()
        var build = options.build(inputs: inputs, reader: try options.reader(inputs, share: (0, 1)))
        build.options["ranks"] = String(world.size)
        let result = try distributedRun(output: output, build: build, mode: mode, world: world) { folder, mode in
            let p = Preprocessor(inputs: inputs, output: folder, options: options, tokenizer: tokenizer, share: (world.rank, world.size))
            p.progress = world.rank == 0 ? progress : nil
            if let warn { p.warn = warn }
            // Read once: the first pass keeps every record's outcome in the rank's scratch, the second replays it.
            // In the output folder, a killed run's is removed by the next; elsewhere, named by the process.
            let scratch = options.scratch.map { $0.appendingPathComponent(".longcrawl-\(folder.lastPathComponent)-\(getpid()).scratch.tmp") }
                ?? AtomicFile.temporaryURL(for: output.appendingPathComponent(folder.lastPathComponent + ".scratch"))
            defer { try? FileManager.default.removeItem(at: scratch) }
            if let dedup = options.dedup {
                let log = output.appendingPathComponent(DedupLog.duplicatesName), partial = AtomicFile.temporaryURL(for: log)
                let candidates = try p.dedupCandidates(scratch: try ScratchWriter(scratch))
                p.plannedDuplicates = try DedupPlan(settings: dedup, mine: candidates, world: world,
                                                    duplicates: world.rank == 0 ? partial : nil).drops
                if world.rank == 0 { try AtomicFile.commit(partial, to: log) }
                p.replay = scratch
            }
            p.heldoutDecision = { heldout, kept, pendingFile in
                let sums = world.sum([Double(heldout), Double(kept)])
                let last = world.max([Int64(pendingFile ?? -1)])[0]
                // As a single run: the globally last kept document, if no document hashed to heldout anywhere.
                return options.heldoutFraction > 0 && sums[0] == 0 && sums[1] >= 2 && pendingFile.map { Int64($0) == last } == true
            }
            return try p.run(mode: mode).index
        }
        return PreprocessSummary(index: result.index, alreadyComplete: result.alreadyComplete, seconds: Date().timeIntervalSince(started))
    }

}

