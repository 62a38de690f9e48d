import Cluster
import Foundation
import Shards
import Support

/// The one way `preprocess` and `import` write a dataset folder: a shard writer per split, a new shard every
/// `shardWindows` windows, named `SPLIT-NNNNNN` in order, and `index.json` committed after every finished shard
/// with the resume point the producer gives, so a killed build loses at most its open shards.
final class DatasetWriter {
    let output: URL
    let format: ShardFormat
    let level: Int
    let shardWindows: Int
    private(set) var index: DatasetIndex
    /// Test hook: called after each commit of the index (to simulate a kill between shards).
    var afterShard: ((DatasetIndex) throws -> Void)?
    private var writers: [Split: ShardWriter] = [:]

    /// Prepares `output` for a build (`prepareDatasetFolder`): the existing index to continue with `.resume`, else a
    /// fresh one.
    init(output: URL, mode: OutputMode, build: BuildRecord, format: ShardFormat, level: Int, shardWindows: Int) throws {
        self.output = output; self.format = format; self.level = level; self.shardWindows = shardWindows
        index = try prepareDatasetFolder(output, mode: mode, build: build)
    }

    deinit { abandon() }

    /// Where a resumed build restarts (the start of the build for a fresh one).
    var resume: ResumePoint { index.build?.resume ?? ResumePoint() }

    /// Whether `split` has a shard open (the next window of `split` goes into it, not into a new one).
    func hasOpenShard(_ split: Split) -> Bool { writers[split] != nil }

    /// Appends one window to `split`'s open shard (opening one if none is); true when the window filled the shard
    /// and the shard was finished: the caller then commits the index with its resume point.
    func append(_ window: UnsafeBufferPointer<UInt16>, source: WindowSource, to split: Split) throws -> Bool {
        let writer = try writers[split] ?? {
            let number = index.shards.filter { $0.split == split }.count
            let w = try ShardWriter(directory: output, file: format.fileName(split: split, number: number), format: format, split: split, level: level)
            writers[split] = w
            return w
        }()
        try writer.append(window, source: source)
        guard writer.windowCount == shardWindows else { return false }
        try finishShard(split)
        return true
    }

    /// Finishes `split`'s open shard, if it has one (committed with the next `commit`); false if none was open.
    @discardableResult
    func finishShard(_ split: Split) throws -> Bool {
        guard let writer = writers.removeValue(forKey: split) else { return false }
        index.shards.append(try writer.finish())
        return true
    }

    /// Writes `index.json` with the shards finished so far and the point a resumed build restarts from.
    func commit(resume: ResumePoint) throws {
        index.build?.resume = resume
        try write()
    }

    /// Finishes every open shard and writes the complete index with the build's final counters.
    func finish(counts: BuildCounts) throws {
        for split in Split.allCases { try finishShard(split) }
        index.finish(counts: counts)
        try write()
    }

    /// Deletes the open shards' temporary files (a failed build); finished shards stay, for `--resume`.
    func abandon() {
        for w in writers.values { w.abandon() }
        writers = [:]
    }

    private func write() throws {
        index.sortShards()
        try index.write(to: output)
        try afterShard?(index)
    }
}

/// What to do when the output folder already holds a dataset.
public enum OutputMode: Sendable {
    /// Refuse a folder that already holds files.
    case fresh
    /// Continue from `index.json` (same inputs and options), or start if the folder is empty.
    case resume
    /// Delete the dataset that is there (index and shards) and start over.
    case force
}

/// Creates, checks or clears a dataset folder for a build (preprocess or import) and returns its index: the
/// existing one to continue with `.resume`, else a fresh one already written. Refuses a folder holding another
/// dataset (or anything else) unless `.force`, and a resume with other inputs or options; removes the hidden
/// temporary files a killed run leaves behind.
func prepareDatasetFolder(_ output: URL, mode: OutputMode, build: BuildRecord) throws -> DatasetIndex {
    let fm = FileManager.default
    try fm.createDirectory(at: output, withIntermediateDirectories: true)
    // Temporary files are never part of a dataset: a killed run leaves them behind.
    for name in (try? fm.contentsOfDirectory(atPath: output.path)) ?? [] where name.hasPrefix(".") && name.hasSuffix(".tmp") {
        try? fm.removeItem(at: output.appendingPathComponent(name))
    }
    let visible = ((try? fm.contentsOfDirectory(atPath: output.path)) ?? []).filter { !$0.hasPrefix(".") }
    let indexURL = output.appendingPathComponent(DatasetIndex.fileName)
    let hasIndex = fm.fileExists(atPath: indexURL.path)

    if mode == .force {
        // Only what a dataset consists of (and a distributed run's rank folders): other files are left alone.
        var doomed = Set(visible.filter { $0 == DatasetIndex.fileName || $0.hasSuffix(".h5") || $0.hasSuffix(".tokens.zst") || isRankFolder($0) || $0 == DedupLog.duplicatesName })
        if hasIndex, let old = try? DatasetIndex.load(from: output) { doomed.formUnion(old.shards.map(\.file)) }
        for name in doomed where fm.fileExists(atPath: output.appendingPathComponent(name).path) {
            try fm.removeItem(at: output.appendingPathComponent(name))
        }
    } else if hasIndex {
        let old = try DatasetIndex.load(from: output)
        let same = old.build?.inputs == build.inputs && old.build?.options == build.options
        guard mode == .resume else {
            throw LongCrawlError("\(output.path): already holds \(same ? "this" : "a different") dataset (index.json); pass --resume to continue it or --force to replace it")
        }
        guard same, old.build != nil else {
            throw LongCrawlError("\(output.path): holds a different dataset (\(describeMismatch(old.build, build))); --resume needs the same inputs and options, or pass --force to replace it")
        }
        return old
    } else if !visible.isEmpty {
        throw LongCrawlError("\(output.path): folder is not empty and holds no dataset index; choose an empty folder or pass --force")
    }
    let index = DatasetIndex(build: build)
    try index.write(to: output)
    return index
}

private func describeMismatch(_ old: BuildRecord?, _ new: BuildRecord) -> String {
    guard let old else { return "no build record" }
    if old.inputs != new.inputs { return "inputs were \(old.inputs.joined(separator: " "))" }
    let keys = Set(old.options.keys).union(new.options.keys).sorted().filter { old.options[$0] != new.options[$0] }
    return keys.map { "\($0) was \(old.options[$0] ?? "unset"), now \(new.options[$0] ?? "unset")" }.joined(separator: ", ")
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
    if verdict.hasPrefix("error: ") { throw LongCrawlError(String(verdict.dropFirst(7))) }
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

/// A distributed build's per-rank folder, `rank-R-of-N`.
func isRankFolder(_ name: String) -> Bool { name.hasPrefix("rank-") && name.contains("-of-") }

private func removeRankFolders(_ output: URL) {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: output.path)) ?? []
    for name in names where isRankFolder(name) { try? FileManager.default.removeItem(at: output.appendingPathComponent(name)) }
}
