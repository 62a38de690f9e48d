import Cluster
import Foundation
import Shards
import Support
import Tokenizer

extension Preprocessor {
    static func isRankFolder(_ name: String) -> Bool { name.hasPrefix("rank-") && name.contains("-of-") }

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
        var topOptions = options.record
        topOptions["ranks"] = String(world.size)
        let result = try distributedRun(output: output, build: BuildRecord(inputs: inputs, options: topOptions, funnel: options.stage.funnel), mode: mode, world: world) { folder, mode in
            let p = Preprocessor(inputs: inputs, output: folder, options: options, tokenizer: tokenizer, share: (world.rank, world.size))
            p.progress = world.rank == 0 ? progress : nil
            if let warn { p.warn = warn }
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

/// The distributed frame of `preprocess` and `import`: rank 0 checks the output folder as a single run would
/// (fresh, force or resume); every rank runs `work` on its share into `OUT/rank-r-of-N/` (resumable, as it is a
/// single run there) and returns that folder's index; rank 0 hard-links the ranks' shards into OUT, renumbered per
/// split in rank order, under one index whose counts are the ranks' sums, and removes the rank folders.
public func distributedRun(output: URL, build: BuildRecord, mode: OutputMode, world: World,
                           work: (_ folder: URL, _ mode: OutputMode) throws -> DatasetIndex) throws -> (index: DatasetIndex, alreadyComplete: Bool) {
    var status = Data("go".utf8)
    // Rank 0 owns OUT; every rank's work locks its own rank folder, so no rank waits on another's lock.
    var lock: FolderLock?
    defer { lock?.release() }
    if world.rank == 0 {
        do {
            lock = try FolderLock(output)
            if try prepareDatasetFolder(output, mode: mode, build: build).complete { status = Data("complete".utf8) }
        } catch {
            status = Data("error: \(error)".utf8)
        }
    }
    let verdict = String(decoding: world.allGather(status)[0], as: UTF8.self)
    if verdict.hasPrefix("error: ") { throw PreprocessError(String(verdict.dropFirst(7))) }
    if verdict == "complete" {
        if world.rank == 0 { removeRankFolders(output) }
        return (try DatasetIndex.load(from: output), true)
    }
    let folder = output.appendingPathComponent("rank-\(world.rank)-of-\(world.size)")
    let local = try work(folder, mode == .resume ? .resume : .force)

    let indexes = try world.allGather(JSONEncoder().encode(local)).map { try JSONDecoder().decode(DatasetIndex.self, from: $0) }
    var merged = DatasetIndex(build: build)
    if world.rank == 0 {
        var number: [Split: Int] = [:]
        var counts = BuildCounts()
        for (r, index) in indexes.enumerated() {
            let dir = output.appendingPathComponent("rank-\(r)-of-\(world.size)")
            for split in Split.allCases {
                for var shard in index.shards where shard.split == split {
                    let name = shard.format.fileName(split: split, number: number[split, default: 0])
                    number[split, default: 0] += 1
                    let target = output.appendingPathComponent(name)
                    guard let source = contained(shard.file, in: dir) else {
                        throw FileError(dir.appendingPathComponent(DatasetIndex.fileName), "shard entry '\(shard.file)' leaves the rank folder")
                    }
                    try? FileManager.default.removeItem(at: target)
                    guard link(source.path, target.path) == 0 else {
                        throw FileError(target, "cannot link from \(dir.lastPathComponent)/\(shard.file) (\(String(cString: strerror(errno))))")
                    }
                    shard.file = name
                    merged.shards.append(shard)
                }
            }
            if let c = index.build?.counts { counts += c }
        }
        merged.sortShards()
        merged.finish(counts: counts)
        try merged.write(to: output)
        removeRankFolders(output)
    }
    world.barrier()
    return (world.rank == 0 ? merged : try DatasetIndex.load(from: output), false)
}

private func removeRankFolders(_ output: URL) {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: output.path)) ?? []
    for name in names where Preprocessor.isRankFolder(name) { try? FileManager.default.removeItem(at: output.appendingPathComponent(name)) }
}
