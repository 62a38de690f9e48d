import Cluster
import Foundation
import Model
import Shards
import Streaming
import Support
import Tensor

/// Trains a `Transformer` on streamed batches of a dataset's train split: AdamW, warmup + cosine schedule,
/// global-norm clipping, gradient accumulation, checkpoints every `saveEvery` steps and at the end, metrics in
/// `RUN/metrics.jsonl`. A resumed run gives bit for bit the losses of an uninterrupted one: the model, the
/// moments and the data cursor are restored exactly, and every kernel is deterministic for a given thread count.
///
/// Under `mpirun` every rank streams its own share of windows (`rank`/`world` of the packer), gradients are
/// averaged over ranks by summing the gradient block in place, bucket by bucket while the last micro-batch's backward
/// runs (`overlapsAllreduce`), and the loss with a one-value Float64 allreduce; rank 0 alone writes metrics and
/// checkpoints; every rank's data cursor goes into the checkpoint.
public final class Trainer {
    public let run: URL
    /// How the model trains (the run config's `train`); the architecture is `model.config`.
    public let config: TrainingConfig
    public let options: TrainOptions
    public let model: Transformer<Float>
    let optimizer: AdamW<Float>
    private(set) var packer: BatchPacker
    public private(set) var step = 0
    private var tokens = 0
    private var elapsed = 0.0
    /// sgemm's best GFLOP/s at the model's own GEMM shapes (`ModelConfig.gemmShapes`), the MFU ceiling: measured
    /// before the first step the trainer takes, every `ceilingEvery` steps, and after any step that ran faster than
    /// it (all outside the steps' time); the highest kept, because a shared machine only ever makes a measurement lower.
    public internal(set) var ceiling = 0.0
    static let ceilingEvery = 200
    /// Where the progress line goes (nil: silent); rank 0 only.
    public var progress: ProgressReporter?
    /// Under MPI, start each bucket's sum as backward finishes it (`GradientBuckets`), or with false sum the whole
    /// block with one blocking allreduce after backward (`--no-overlap`). On 2 ranks both give the same parameters
    /// bit for bit (every element is a + b); on more, Open MPI may associate the sums differently by message size,
    /// so a resumed run repeats an uninterrupted one exactly only with the same choice.
    public var overlapsAllreduce = true
    let world: World
    /// Rank 0 writes the run folder.
    var writes: Bool { world.rank == 0 }
    /// Held-out windows evaluated every `options.evalEvery` steps, and the lowest loss logged so far.
    let heldout: EvalWindowFile?
    private var bestHeldout = Double.infinity
    private var lastHeldout: Estimate?
    /// Rank 0's hold on the run folder for the trainer's lifetime: a second run into it is refused.
    private let lock: FolderLock?
    /// Under `--carry-state`, each micro-batch's rows and their states (empty otherwise).
    private(set) var carries: [SegmentCarry]
    /// T and steps of each phase: `options.contextSchedule`, or the config's context for all steps.
    let phases: [ContextPhase]
    /// Bytes of this rank's carried states.
    public var carryBytes: Int { 4 * carries.reduce(0) { $0 + $1.state.count } }

    /// Starts a run in `run` (refused if it already holds checkpoints, unless `force`), or with `resume`
    /// continues its newest checkpoint; `config` and `options` must then equal the run's.
    public init(config: RunConfig, options: TrainOptions, run: URL, resume: Bool = false, force: Bool = false,
                world: World = .shared) throws {
        // The checkpoints record the text encoding of the data (an unreadable index fails below, with the catalog).
        var options = options
        options.textEncoding = (try? DatasetIndex.load(from: URL(fileURLWithPath: options.data)))?.textEncoding == .json ? .json : nil
        try config.validate()
        try options.validate(for: config.model)
        self.run = run
        self.config = config.train
        self.options = options
        self.world = world
        phases = options.contextSchedule ?? [ContextPhase(context: config.train.context, steps: config.train.steps)]
        try Self.validate(phases, config: config)
        heldout = try Self.heldoutWindows(options, context: phases.map(\.context).max()!)
        // Before anything is read or removed (--force deletes checkpoints).
        lock = world.rank == 0 ? try FolderLock(run) : nil
        let fm = FileManager.default
        let existing = Checkpoint.all(in: run)
        // An empty or missing train split is an error here, naming the folder.
        let catalog = try WindowCatalog(directory: URL(fileURLWithPath: options.data), split: .train)
        model = Transformer<Float>(config: config.model, seed: options.seed)
        optimizer = AdamW(parameters: model.parameters, beta1: config.train.beta1, beta2: config.train.beta2, weightDecay: config.train.weightDecay)
        // Carrying, a step takes one batch of accumulation x B rows and each micro-batch keeps its B rows throughout.
        var cursor = PackerCursor(seed: options.seed, rank: world.rank, world: world.size,
                                  batchSize: config.train.batch * (options.carries ? options.accumulation : 1),
                                  context: config.train.context, order: options.order, batch: 0)
        try Self.checkPhaseBoundaries(phases, from: cursor, windows: catalog.count, options: options, tokens: config.train.batch * config.train.context)
        carries = []
        if resume {
            guard let latest = try Checkpoint.newest(in: run) else { throw LongCrawlError("\(run.path): nothing to resume (no checkpoint)") }
            let state = try Checkpoint.loadState(latest)
            if let why = Self.difference(saved: state, config: config, options: options, ranks: world.size) {
                throw LongCrawlError("\(latest.path): cannot resume: \(why)")
            }
            try Checkpoint.loadModel(latest, into: model)
            try Checkpoint.loadOptimizer(latest, into: optimizer, parameters: model.parameters)
            step = state.step; tokens = state.tokens; elapsed = state.elapsed
            cursor = try Self.cursor(resuming: state.cursors, rank: world.rank, world: world.size)
            if options.carries {
                carries = Self.carries(model, options, cursor)
                try Self.restore(carries, from: latest, state: state, saved: RowLayout(state.cursors[0], options),
                                 now: RowLayout(cursor, options), rank: world.rank)
            }
            if world.rank == 0 {
                // Another number of ranks changes B (B x ranks kept): config.json says what the run now uses.
                if config != state.config { try AtomicFile.writeJSON(config, to: run.appendingPathComponent("config.json")) }
                try Self.truncate(run.appendingPathComponent("metrics.jsonl"), after: step, as: StepMetrics.self) { $0.step }
                try Self.truncate(run.appendingPathComponent("eval.jsonl"), after: step, as: HeldoutMetrics.self) { $0.step }
            }
            // Every rank knows the best loss so far (every rank evaluates, so they decide alike).
            bestHeldout = Self.heldoutLog(run).map(\.loss.mean).min() ?? .infinity
        } else {
            if let source = options.initFrom { try Self.initialize(model, from: URL(fileURLWithPath: source)) }
            if !existing.isEmpty && !force {
                throw LongCrawlError("\(run.path): already holds a run (checkpoints/); use --resume to continue it or --force to start over")
            }
            if world.rank == 0 {
                if force {
                    for name in ["checkpoints", "metrics.jsonl", "eval.jsonl"] { try? fm.removeItem(at: run.appendingPathComponent(name)) }
                }
                try fm.createDirectory(at: run, withIntermediateDirectories: true)
                try AtomicFile.writeJSON(config, to: run.appendingPathComponent("config.json"))
                try AtomicFile.writeJSON(options, to: run.appendingPathComponent("options.json"))
            }
        }
        world.barrier()
        packer = try BatchPacker(catalog: catalog, cursor: cursor, masksSeam: options.maskSeam == true)
        if options.carries && !resume { carries = Self.carries(model, options, cursor) }
    }

    /// Every phase's T trains the model (a multiple of its chunk) with the tokens per micro-batch of the config
    /// (B x T of its context, the first phase's), and the phases' steps are the config's.
    static func validate(_ phases: [ContextPhase], config: RunConfig) throws {
        let tokens = config.train.batch * config.train.context
        guard phases[0].context == config.train.context, phases.map(\.steps).reduce(0, +) == config.train.steps else {
            throw LongCrawlError("--context-schedule: the first phase's T and the steps of all phases must be the config's context \(config.train.context) and steps \(config.train.steps)")
        }
        for (i, p) in phases.enumerated() {
            guard p.context % config.model.chunk == 0, tokens % p.context == 0 else {
                throw LongCrawlError("--context-schedule: phase \(i + 1)'s T \(p.context) must be a multiple of the chunk \(config.model.chunk) and divide the \(tokens) tokens per micro-batch")
            }
        }
    }

    /// Refuses a schedule whose T would change in the middle of a window (or where the windows used so far are not
    /// a whole number of the next phase's groups of rows): the cursor at each boundary, as `switchPhase` moves it.
    static func checkPhaseBoundaries(_ phases: [ContextPhase], from start: PackerCursor, windows: Int, options: TrainOptions, tokens: Int) throws {
        var cursor = start, step = 0
        for (i, (p, next)) in zip(phases, phases.dropFirst()).enumerated() {
            cursor.batch += p.steps * (options.carries ? 1 : options.accumulation)
            step += p.steps
            let rows = tokens / next.context * (options.carries ? options.accumulation : 1)
            guard let moved = ContextPhase.translate(cursor, windows: windows, context: next.context, rows: rows) else {
                throw LongCrawlError("--context-schedule: phase \(i + 2) (T \(next.context)) would start after step \(step) in the middle of a window " +
                                    "(or of a group of \(rows) windows) in the \(options.order.rawValue) order; T changes only at window boundaries")
            }
            cursor = moved
        }
    }

    /// At the first step of a phase: the packer goes on from the same place in the window order with the phase's
    /// T and rows (every row at a window's start, so the carried states start empty).
    private func switchPhase(to phase: ContextPhase) throws {
        let rows = config.batch * config.context / phase.context * (carries.isEmpty ? 1 : options.accumulation)
        guard let cursor = ContextPhase.translate(packer.cursor, windows: packer.catalog.count, context: phase.context, rows: rows) else {
            throw LongCrawlError("step \(step + 1): T \(phase.context) would start in the middle of a window")
        }
        packer = try BatchPacker(catalog: packer.catalog, cursor: cursor, masksSeam: packer.masksSeam)
        if !carries.isEmpty { carries = Self.carries(model, options, cursor) }
    }

    /// Runs steps until `config.steps` (or `stopAfter` more steps, for tests that interrupt a run) and returns
    /// the metrics of the steps taken. A NaN or infinite loss or gradient stops with an error naming the step
    /// and the windows, before anything of that step is saved.
    @discardableResult
    public func train(stopAfter: Int? = nil) throws -> [StepMetrics] {
        let gradients = model.parameters.gradients
        let stepTokens = config.batch * config.context * options.accumulation
        let end = min(config.steps, stopAfter.map { step + $0 } ?? config.steps)
        var taken: [StepMetrics] = []
        let metricsURL = run.appendingPathComponent("metrics.jsonl")
        var metricsFile: FileHandle?
        if writes {
            if !FileManager.default.fileExists(atPath: metricsURL.path) { _ = FileManager.default.createFile(atPath: metricsURL.path, contents: nil) }
            metricsFile = try FileHandle(forWritingTo: metricsURL)
            try metricsFile?.seekToEnd()
        }
        defer { try? metricsFile?.close() }
        let encoder = JSONEncoder.sorted
        let shapes = model.config.gemmShapes(rows: config.batch * config.context)
        let buckets = world.isDistributed && overlapsAllreduce ? GradientBuckets(world: world, block: gradients) : nil
        while step < end {
            // At a step count, not a time, so that every MPI rank measures at the same step.
            if ceiling == 0 || step % Self.ceilingEvery == 0 { ceiling = max(ceiling, sgemmCeiling(shapes: shapes)) }
            let (phaseIndex, phase) = ContextPhase.at(step, in: phases)
            if phase.context != packer.cursor.context { try switchPhase(to: phase) }
            let t = phase.context, rows = stepTokens / options.accumulation / t
            let flopsPerStep = 3 * model.config.forwardFlopsPerToken(context: t) * Double(stepTokens)
            let t0 = now()
            var wait = 0.0
            let lr = learningRate(step: step, peak: config.learningRate, floor: config.minLearningRate, warmup: config.warmupSteps, total: config.steps)
            model.zeroGradients()
            var loss = 0.0
            var stepRows: [BatchRow] = []
            var whole: Batch?
            for micro in 0..<options.accumulation {
                let w0 = now()
                if micro == 0 || carries.isEmpty { whole = try packer.next() }
                wait += now() - w0
                let batch = carries.isEmpty ? whole! : whole!.micro(micro, of: options.accumulation)
                stepRows += batch.rows
                let carry = carries.isEmpty ? nil : carries[micro]
                do { try carry?.prepare(batch) } catch let e as LongCrawlError { throw LongCrawlError("step \(step + 1), micro-batch \(micro): \(e.description)") }
                let (l, _) = model.forward(tokens: batch.inputs, targets: batch.targets, mask: batch.mask, batch: rows,
                                           length: t, recompute: options.recompute, state: carry?.state)
                // The last micro-batch leaves each range final as its backward ends: its sum can start there.
                model.backward(onGradientsReady: micro == options.accumulation - 1 ? buckets?.ready : nil)
                loss += l / Double(options.accumulation)
            }
            // Mean over micro-batches and ranks: the gradient block summed in place, the loss in Float64 on its own.
            let scale = Float(1 / Double(options.accumulation * world.size))
            let r0 = now()
            if world.isDistributed {
                if let buckets { buckets.finish() } else { world.sum(gradients.data, count: gradients.count) }
                loss = world.sum([loss])[0] / Double(world.size)
            }
            let allreduce = now() - r0
            if scale != 1 { gradients.scale(by: scale) }
            guard loss.isFinite else { throw nonFinite("loss \(loss)", stepRows) }
            let norm = clipGradients(gradients, maxNorm: config.gradClip)
            guard norm.isFinite else { throw nonFinite("gradient norm \(norm)", stepRows) }
            optimizer.update(model.parameters, lr: lr)
            step += 1
            let seconds = now() - t0
            // A ceiling measured while something else held the cores understates sgemm, and a step faster than it
            // proves so: measure again rather than report more than 100%.
            if flopsPerStep / seconds / 1e9 > ceiling { ceiling = max(ceiling, sgemmCeiling(shapes: shapes)) }
            elapsed += seconds
            tokens += stepTokens * world.size
            let seen = globalRows(stepRows, perBatch: packer.cursor.batchSize)
            let m = StepMetrics(step: step, loss: loss, lr: lr, gradNorm: norm, tokensPerSecond: Double(stepTokens * world.size) / seconds,
                                mfu: flopsPerStep / seconds / 1e9 / ceiling, elapsed: elapsed, loaderShare: wait / seconds,
                                allreduceSeconds: allreduce, windows: seen.windows, offsets: seen.offsets,
                                offset: carries.isEmpty ? nil : seen.offsets.first,
                                context: options.contextSchedule == nil ? nil : t, phase: options.contextSchedule == nil ? nil : phaseIndex + 1)
            taken.append(m)
            try metricsFile?.write(contentsOf: try encoder.encode(m) + Data("\n".utf8))
            let evaluated = try evaluateHeldout(last: m)
            if writes, let progress, progress.due() || step == end || evaluated {
                let eta = ProgressReporter.duration(elapsed / Double(step) * Double(config.steps - step))
                let held = lastHeldout.map { String(format: " | held-out %.4f%@", $0.mean, $0.se.map { String(format: " ± %.4f", $0) } ?? "") } ?? ""
                progress.show(String(format: "step %d/%d loss %.4f lr %.2e%@ | %.0f tokens/s, MFU %.1f%% | ETA %@", step, config.steps, loss, lr,
                                     held, m.tokensPerSecond, 100 * m.mfu, eta))
            }
            if step % options.saveEvery == 0 || step == config.steps { try saveCheckpoint(last: m, to: Checkpoint.folder(in: run, step: step)) }
        }
        progress?.end()
        return taken
    }

    /// Every rank's cursor and carried states go to rank 0, which writes the checkpoint (`best` is not one of the last K).
    private func saveCheckpoint(last: StepMetrics, to folder: URL) throws {
        let cursors = try world.allGather(JSONEncoder().encode(packer.cursor)).map { try JSONDecoder().decode(PackerCursor.self, from: $0) }
        var state = TrainState(step: step, config: RunConfig(model: model.config, train: config), options: options, cursors: cursors,
                               initSeed: options.seed, tokens: tokens, elapsed: elapsed, last: last)
        var carry: [(String, Tensor<Float>)] = []
        if !carries.isEmpty {
            // Each rank's records as JSON, its states as the raw floats of every micro-batch's layers in order.
            let records = try world.allGather(JSONEncoder().encode(carries.indices.map { carries[$0].record(rank: world.rank, micro: $0) }))
                .map { try JSONDecoder().decode([CarryRecord].self, from: $0) }
            let floats = world.allGather(carries.flatMap { c in (0..<c.state.layers).flatMap(c.state.states(layer:)) }.withUnsafeBufferPointer { Data(buffer: $0) })
            for (rank, (mine, data)) in zip(records, floats).enumerated() {
                let values = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                let per = values.count / (mine.count * model.config.layers)
                for (m, record) in mine.enumerated() {
                    for l in 0..<model.config.layers {
                        let start = (m * model.config.layers + l) * per
                        carry.append((CarryRecord.tensorName(rank: rank, micro: record.micro, layer: l),
                                      Tensor([record.positions[l].count, per / record.positions[l].count], Array(values[start..<(start + per)]))))
                    }
                }
            }
            state.carries = records.flatMap { $0 }
            state.carryBytes = carry.reduce(0) { $0 + 4 * $1.1.count }
        }
        if writes {
            if folder == Checkpoint.best(in: run) {
                try Checkpoint.write(model: model, optimizer: optimizer, state: state, carry: carry, to: folder)
            } else {
                try Checkpoint.save(model: model, optimizer: optimizer, state: state, carry: carry, run: run, keep: options.keep)
            }
        }
        world.barrier()
    }

    /// A new run's model from a checkpoint (`--init-from`, a checkpoint or run folder): refused unless its model
    /// config is the run's (the name aside).
    static func initialize(_ model: Transformer<Float>, from source: URL) throws {
        let checkpoint = try Checkpoint.resolve(source)
        var saved = try Checkpoint.loadState(checkpoint).config.model
        saved.name = model.config.name
        guard saved == model.config else {
            let a = String(decoding: (try? JSONEncoder.sorted.encode(saved)) ?? Data(), as: UTF8.self)
            let b = String(decoding: (try? JSONEncoder.sorted.encode(model.config)) ?? Data(), as: UTF8.self)
            throw LongCrawlError("--init-from \(checkpoint.path): its model \(a) differs from the run's \(b)")
        }
        try Checkpoint.loadModel(checkpoint, into: model)
    }

    /// At every `evalEvery`-th step and the last: the mean held-out loss at the training context (each row's first
    /// T + 1 tokens), into `eval.jsonl`, and `checkpoints/best` when it is the lowest so far. It reads the model
    /// only, draws no random numbers and touches no training state, so the run's losses do not change.
    private func evaluateHeldout(last: StepMetrics) throws -> Bool {
        guard let heldout, let every = options.evalEvery, step % every == 0 || step == config.steps else { return false }
        let t = packer.cursor.context
        let perWindow = (0..<heldout.count).map { i -> Double in
            let row = heldout.row(i)
            let losses = Evaluator.losses(model, row: row.prefix(t + 1), segment: t)
            return losses.reduce(0, +) / Double(losses.count)
        }
        let loss = Estimate(perWindow)
        guard loss.mean.isFinite else { throw LongCrawlError("step \(step): held-out loss \(loss.mean) on \(options.evalWindows ?? "?")") }
        lastHeldout = loss
        if writes {
            let line = try JSONEncoder.sorted.encode(HeldoutMetrics(step: step, loss: loss, tokens: tokens)) + Data("\n".utf8)
            let url = run.appendingPathComponent("eval.jsonl")
            if !FileManager.default.fileExists(atPath: url.path) { _ = FileManager.default.createFile(atPath: url.path, contents: nil) }
            let file = try FileHandle(forWritingTo: url)
            defer { try? file.close() }
            try file.seekToEnd()
            try file.write(contentsOf: line)
        }
        if loss.mean < bestHeldout {
            bestHeldout = loss.mean
            try saveCheckpoint(last: last, to: Checkpoint.best(in: run))
        }
        return true
    }

    /// Every rank's rows of a step in the global batch's order (`RowLayout`), batch after batch: what a run of the same
    /// global batch on any number of ranks records. `mine` is this rank's packer batches of `perBatch` rows each.
    private func globalRows(_ mine: [BatchRow], perBatch: Int) -> (windows: [Int], offsets: [Int]) {
        guard world.isDistributed else { return (mine.map(\.window), mine.map(\.offset)) }
        let flat = mine.flatMap { [$0.window, $0.offset] }
        let all = world.allGather(flat.withUnsafeBufferPointer { Data(buffer: $0) }).map { $0.withUnsafeBytes { Array($0.bindMemory(to: Int.self)) } }
        var windows: [Int] = [], offsets: [Int] = []
        for k in 0..<(mine.count / perBatch) {
            for j in 0..<perBatch {
                for ranked in all {
                    let i = 2 * (k * perBatch + j)
                    windows.append(ranked[i]); offsets.append(ranked[i + 1])
                }
            }
        }
        return (windows, offsets)
    }

    /// Every rank reaches this together (the loss and norm are averaged over ranks): the message lists all ranks' rows.
    private func nonFinite(_ what: String, _ rows: [BatchRow]) -> LongCrawlError {
        let mine = rows.map { "\($0.window)@\($0.offset)" }.joined(separator: " ")
        let all = world.allGather(Data(mine.utf8)).map { String(decoding: $0, as: UTF8.self) }
        let ids = world.isDistributed ? all.enumerated().map { "rank \($0.offset): \($0.element)" }.joined(separator: "; ") : mine
        let kept = Checkpoint.all(in: run).last.map { "; last good checkpoint: \($0.path)" } ?? "; no checkpoint yet"
        return LongCrawlError("step \(step + 1): \(what) (windows@offsets: \(ids))\(kept)")
    }

}
