import Foundation
import Model
import Shards
import Streaming
import Support

/// The run folder of a `Trainer`: held-out windows and log, the check of a resumed run against its checkpoint, and the
/// truncation of metrics a killed run wrote after its last checkpoint.
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

    /// The lines of `RUN/eval.jsonl`.
    static func heldoutLog(_ run: URL) -> [HeldoutMetrics] {
        let data = (try? Data(contentsOf: run.appendingPathComponent("eval.jsonl"))) ?? Data()
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? JSONDecoder().decode(HeldoutMetrics.self, from: Data($0)) }
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
        o.data = saved.options.data
        if saved.options != o { return "the run's options differ (order, accumulation, save-every, keep, seed, recompute, eval-windows, eval-every, mask-seam, carry-state, init-from or context-schedule)" }
        let (was, b) = (saved.cursors.count, saved.config.train.batch)
        if was * b != ranks * config.train.batch {
            let fit = was * b % ranks == 0 ? "; resume with --batch \(was * b / ranks)" : ""
            return "written by \(was) rank(s) x batch \(b) = global batch \(was * b), resumed with \(ranks) rank(s) x batch \(config.train.batch) = " +
                   "\(ranks * config.train.batch) (B x ranks fixes which windows each step reads\(fit))"
        }
        return nil
    }

    /// Drops the lines of steps after `step` (written by a run killed after its last checkpoint): they will be
    /// taken again.
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
