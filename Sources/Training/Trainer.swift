import Foundation
import Model
import Shards
import Streaming
import Tensor

/// Trains a `Transformer` on streamed batches of a dataset's train split: AdamW, warmup + cosine schedule,
/// global-norm clipping, gradient accumulation, checkpoints every `saveEvery` steps and at the end, metrics in
/// `RUN/metrics.jsonl`. A resumed run gives bit for bit the losses of an uninterrupted one: the model, the
/// moments and the data cursor are restored exactly, and every kernel is deterministic for a given thread count.
public final class Trainer {
    public let run: URL
    public let config: TransformerConfig
    public let options: TrainOptions
    public let model: Transformer<Float>
    let optimizer: AdamW<Float>
    let packer: BatchPacker
    public private(set) var step = 0
    private var tokens = 0
    private var elapsed = 0.0
    /// GFLOP/s of sgemm measured at start: the MFU baseline.
    public let sgemmPeak: Double
    /// Where the progress line goes (nil: silent).
    public var progress: ProgressReporter?

    /// Starts a run in `run` (refused if it already holds checkpoints, unless `force`), or with `resume`
    /// continues its newest checkpoint; `config` and `options` must then equal the run's.
    public init(config: TransformerConfig, options: TrainOptions, run: URL, resume: Bool = false, force: Bool = false) throws {
        try config.validate()
        guard options.accumulation >= 1, options.saveEvery >= 1, options.keep >= 1 else {
            throw TrainingError("accumulation, save-every and keep must be positive")
        }
        self.run = run
        self.config = config
        self.options = options
        let fm = FileManager.default
        let existing = Checkpoint.all(in: run)
        let catalog = try WindowCatalog(directory: URL(fileURLWithPath: options.data), split: "train")
        guard catalog.count > 0 else { throw TrainingError("\(options.data): the train split has no windows") }
        model = Transformer<Float>(config: config, seed: options.seed)
        optimizer = AdamW(parameters: model.parameters, beta1: config.beta1, beta2: config.beta2, weightDecay: config.weightDecay)
        var cursor = PackerCursor(seed: options.seed, rank: 0, world: 1, batchSize: config.batch, context: config.context,
                                  order: options.order, batch: 0)
        if resume {
            guard let latest = existing.last else { throw TrainingError("\(run.path): nothing to resume (no checkpoint)") }
            let state = try Checkpoint.loadState(latest)
            if let why = Self.difference(saved: state, config: config, options: options) {
                throw TrainingError("\(latest.path): cannot resume: \(why)")
            }
            try Checkpoint.loadModel(latest, into: model)
            try Checkpoint.loadOptimizer(latest, into: optimizer, parameters: model.parameters)
            step = state.step; tokens = state.tokens; elapsed = state.elapsed; cursor = state.cursor
            try Self.truncateMetrics(run, after: step)
        } else {
            if !existing.isEmpty && !force {
                throw TrainingError("\(run.path): already holds a run (checkpoints/); use --resume to continue it or --force to start over")
            }
            if force { try? fm.removeItem(at: run.appendingPathComponent("checkpoints")); try? fm.removeItem(at: run.appendingPathComponent("metrics.jsonl")) }
            try fm.createDirectory(at: run, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try encoder.encode(config), to: run.appendingPathComponent("config.json"))
            try AtomicFile.write(try encoder.encode(options), to: run.appendingPathComponent("options.json"))
        }
        packer = try BatchPacker(catalog: catalog, cursor: cursor)
        sgemmPeak = sgemmGFLOPs(m: 4096, n: 4 * config.dModel, k: config.dModel)
    }

    /// Runs steps until `config.steps` (or `stopAfter` more steps, for tests that interrupt a run) and returns
    /// the metrics of the steps taken. A NaN or infinite loss or gradient stops with an error naming the step
    /// and the windows, before anything of that step is saved.
    @discardableResult
    public func train(stopAfter: Int? = nil) throws -> [StepMetrics] {
        let params = model.parameters
        let flopsPerStep = 3 * config.forwardFlopsPerToken * Double(config.batch * config.context * options.accumulation)
        let end = min(config.steps, stopAfter.map { step + $0 } ?? config.steps)
        var taken: [StepMetrics] = []
        let metricsURL = run.appendingPathComponent("metrics.jsonl")
        if !FileManager.default.fileExists(atPath: metricsURL.path) { _ = FileManager.default.createFile(atPath: metricsURL.path, contents: nil) }
        let metricsFile = try FileHandle(forWritingTo: metricsURL)
        defer { try? metricsFile.close() }
        try metricsFile.seekToEnd()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        while step < end {
            let t0 = now()
            var wait = 0.0
            let lr = learningRate(step: step, peak: config.learningRate, floor: config.minLearningRate, warmup: config.warmupSteps, total: config.steps)
            model.zeroGradients()
            var loss = 0.0
            var windows: [BatchRow] = []
            for _ in 0..<options.accumulation {
                let w0 = now()
                let batch = try packer.next()
                wait += now() - w0
                windows += batch.rows
                let (l, _) = model.forward(tokens: batch.inputs, targets: batch.targets, mask: batch.mask, batch: config.batch,
                                           length: config.context, recompute: options.recompute)
                guard l.isFinite else { throw nonFinite("loss \(l)", windows) }
                model.backward()
                loss += l / Double(options.accumulation)
            }
            if options.accumulation > 1 {
                let s = Float(1 / Double(options.accumulation))
                for p in params { for i in 0..<p.grad.count { p.grad[i] *= s } }
            }
            let norm = clipGradients(params, maxNorm: config.gradClip)
            guard norm.isFinite else { throw nonFinite("gradient norm \(norm)", windows) }
            optimizer.update(params, lr: lr)
            step += 1
            let seconds = now() - t0
            elapsed += seconds
            tokens += config.batch * config.context * options.accumulation
            let m = StepMetrics(step: step, loss: loss, lr: lr, gradNorm: norm,
                                tokensPerSecond: Double(config.batch * config.context * options.accumulation) / seconds,
                                mfu: flopsPerStep / seconds / 1e9 / sgemmPeak, elapsed: elapsed, loaderShare: wait / seconds)
            taken.append(m)
            try metricsFile.write(contentsOf: try encoder.encode(m) + Data("\n".utf8))
            if let progress, progress.due() || step == end {
                let eta = ProgressReporter.duration(elapsed / Double(step) * Double(config.steps - step))
                progress.show(String(format: "step %d/%d loss %.4f lr %.2e | %.0f tokens/s, MFU %.1f%% | ETA %@", step, config.steps, loss, lr,
                                     m.tokensPerSecond, 100 * m.mfu, eta))
            }
            if step % options.saveEvery == 0 || step == config.steps {
                try Checkpoint.save(model: model, optimizer: optimizer, state: state(last: m), run: run, keep: options.keep)
            }
        }
        progress?.end()
        return taken
    }

    func state(last: StepMetrics?) -> TrainState {
        TrainState(step: step, config: config, options: options, cursor: packer.cursor, rng: options.seed, tokens: tokens,
                   elapsed: elapsed, last: last)
    }

    private func nonFinite(_ what: String, _ rows: [BatchRow]) -> TrainingError {
        let ids = rows.map { "\($0.window)@\($0.offset)" }.joined(separator: " ")
        let kept = Checkpoint.all(in: run).last.map { "; last good checkpoint: \($0.path)" } ?? "; no checkpoint yet"
        return TrainingError("step \(step + 1): \(what) (windows@offsets: \(ids))\(kept)")
    }

    /// What differs between a saved run and the requested one, if anything.
    static func difference(saved: TrainState, config: TransformerConfig, options: TrainOptions) -> String? {
        if saved.config != config {
            let a = (try? String(decoding: JSONEncoder().encode(saved.config), as: UTF8.self)) ?? "?"
            let b = (try? String(decoding: JSONEncoder().encode(config), as: UTF8.self)) ?? "?"
            return "the run's config \(a) differs from the given \(b)"
        }
        var o = options
        o.data = saved.options.data
        if saved.options != o { return "the run's options differ (order, accumulation, save-every, keep, seed or recompute)" }
        return nil
    }

    /// Drops metric lines of steps after `step` (written by a run killed after its last checkpoint): they will
    /// be taken again.
    static func truncateMetrics(_ run: URL, after step: Int) throws {
        let url = run.appendingPathComponent("metrics.jsonl")
        guard let data = try? Data(contentsOf: url) else { return }
        let decoder = JSONDecoder()
        let kept = data.split(separator: UInt8(ascii: "\n")).filter { line in
            (try? decoder.decode(StepMetrics.self, from: Data(line))).map { $0.step <= step } ?? false
        }
        var out = Data()
        for line in kept { out.append(contentsOf: line); out.append(UInt8(ascii: "\n")) }
        try AtomicFile.write(out, to: url)
    }
}

/// Seconds on the monotonic clock.
func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
