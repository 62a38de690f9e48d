import Foundation
import Model
import Shards
import Streaming
import Support

/// A run folder as rank 0 of a `Trainer` writes it, held for the trainer's lifetime (a second run into it is refused):
/// `config.json`, `options.json`, `metrics.jsonl` and `eval.jsonl` (each opened once and appended to), `checkpoints/`.
final class RunFolder {
    let url: URL
    private let lock: FolderLock
    private var logs: [String: FileHandle] = [:]
    static let metricsName = "metrics.jsonl", heldoutName = "eval.jsonl"

    /// Takes the folder's lock, before anything in it is read or removed.
    init(_ url: URL) throws {
        self.url = url
        lock = try FolderLock(url)
    }

    deinit { for file in logs.values { try? file.close() } }

    /// A new run's folder: with `force` the old run's checkpoints and logs removed first.
    func start(config: RunConfig, options: TrainOptions, force: Bool) throws {
        if force {
            for name in ["checkpoints", Self.metricsName, Self.heldoutName] { try? FileManager.default.removeItem(at: url.appendingPathComponent(name)) }
        }
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        try AtomicFile.writeJSON(config, to: url.appendingPathComponent("config.json"))
        try AtomicFile.writeJSON(options, to: url.appendingPathComponent("options.json"))
    }

    /// A resumed run's folder at `step`: the config it now runs with (another number of ranks changes B, B x ranks
    /// kept), and the log lines of steps after the checkpoint (a run killed after it wrote them) dropped: they will be
    /// taken again.
    func resume(at step: Int, config: RunConfig, saved: RunConfig) throws {
        if config != saved { try AtomicFile.writeJSON(config, to: url.appendingPathComponent("config.json")) }
        try Self.truncate(url.appendingPathComponent(Self.metricsName), after: step, as: StepMetrics.self) { $0.step }
        try Self.truncate(url.appendingPathComponent(Self.heldoutName), after: step, as: HeldoutMetrics.self) { $0.step }
    }

    /// Appends one line to `metrics.jsonl`.
    func log(_ m: StepMetrics) throws { try append(m, to: Self.metricsName) }

    /// Appends one line to `eval.jsonl`.
    func log(_ m: HeldoutMetrics) throws { try append(m, to: Self.heldoutName) }

    private func append<T: Encodable>(_ value: T, to name: String) throws {
        let file: FileHandle
        if let open = logs[name] {
            file = open
        } else {
            let path = url.appendingPathComponent(name).path
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            file = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try file.seekToEnd()
            logs[name] = file
        }
        try file.write(contentsOf: try JSONEncoder.sorted.encode(value) + Data("\n".utf8))
    }

    /// The lines of `RUN/eval.jsonl` (every rank reads them on a resume).
    static func heldoutLog(_ run: URL) -> [HeldoutMetrics] {
        let data = (try? Data(contentsOf: run.appendingPathComponent(heldoutName))) ?? Data()
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? JSONDecoder().decode(HeldoutMetrics.self, from: Data($0)) }
    }

    /// Drops the lines of steps after `step`.
    static func truncate<T: Decodable>(_ url: URL, after step: Int, as type: T.Type, step stepOf: (T) -> Int) throws {
        guard let data = try? Data(contentsOf: url) else { return }
        let decoder = JSONDecoder()
        let kept = data.split(separator: UInt8(ascii: "\n")).filter { line in
            (try? decoder.decode(T.self, from: Data(line))).map { stepOf($0) <= step } ?? false
        }
        var out = Data()
        for line in kept { out.append(contentsOf: line); out.append(UInt8(ascii: "\n")) }
        try AtomicFile.write(out, to: url)
    }
}

/// The checks of a run's inputs against its folder: held-out windows, and a resumed run against its checkpoint.
extension Trainer {
    /// The held-out windows of a run, checked: every row must hold the training context plus one token.
    static func heldoutWindows(_ options: TrainOptions, context: Int) throws -> EvalWindowFile? {
        guard let every = options.evalEvery else { return nil }
        guard every >= 1 else { throw LongCrawlError("--eval-every must be positive, got \(every)") }
        guard let path = options.evalWindows else { throw LongCrawlError("--eval-every needs --eval-windows FILE (from longcrawl sample)") }
        let file = try EvalWindowFile(contentsOf: URL(fileURLWithPath: path))
        guard file.count > 0 else { throw LongCrawlError("\(path): no windows") }
        guard file.length >= context + 1 else {
            throw LongCrawlError("\(path): rows of \(file.length) tokens, the training context \(context) needs \(context + 1) (longcrawl sample --context \(context))")
        }
        return file
    }

    /// What differs between a saved run and the requested one, if anything.
    /// B may differ when the number of ranks does, as long as B x ranks, which fixes the windows of each step, is
    /// the same.
    static func difference(saved: TrainState, config: RunConfig, options: TrainOptions, ranks: Int) -> String? {
        var same = config
        same.train.batch = saved.config.train.batch
        if saved.config != same {
            let a = (try? String(decoding: JSONEncoder().encode(saved.config), as: UTF8.self)) ?? "?"
            let b = (try? String(decoding: JSONEncoder().encode(config), as: UTF8.self)) ?? "?"
            return "the run's config \(a) differs from the given \(b)"
        }
        var o = options
        o.dataset = saved.options.dataset
        if saved.options != o { return "the run's options differ (order, accumulation, save-every, keep, seed, recompute, eval-windows, eval-every, mask-seam, carry-state, init-from or context-schedule)" }
        let (was, b) = (saved.cursors.count, saved.config.train.batch)
        if was * b != ranks * config.train.batch {
            let fit = was * b % ranks == 0 ? "; resume with --batch \(was * b / ranks)" : ""
            return "written by \(was) rank(s) x batch \(b) = global batch \(was * b), resumed with \(ranks) rank(s) x batch \(config.train.batch) = " +
                   "\(ranks * config.train.batch) (B x ranks fixes which windows each step reads\(fit))"
        }
        return nil
    }
}
