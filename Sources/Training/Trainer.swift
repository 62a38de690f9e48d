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
    /// The run folder.
    let directory: URL
    /// How the model trains (the run config's `train`); the architecture is `model.config`.
    public let config: TrainingConfig
    public let options: TrainOptions
    public let model: Transformer<Float>
    let optimizer: AdamW<Float>
    /// The rows of each step, the context phases and the carried states (`StepBatches`).
    let batches: StepBatches
    var packer: BatchPacker { batches.packer }
    /// Steps taken so far (over every resumed segment of the run).
    public private(set) var completedSteps = 0
    private var tokens = 0
    private var elapsed = 0.0
    /// The MFU ceiling and when it is measured (`MFUMeter`).
    private var meter: MFUMeter
    /// sgemm's best GFLOP/s at the model's own GEMM shapes, the MFU ceiling in force.
    public internal(set) var ceiling: Double { get { meter.ceiling } set { meter.ceiling = newValue } }
    /// Where the progress line goes (nil: silent); rank 0 only.
    public var progress: ProgressReporter?
    /// Under MPI, start each bucket's sum as backward finishes it (`GradientBuckets`), or with false sum the whole
    /// block with one blocking allreduce after backward (`--no-overlap`). On 2 ranks both give the same parameters
    /// bit for bit (every element is a + b); on more, Open MPI may associate the sums differently by message size,
    /// so a resumed run repeats an uninterrupted one exactly only with the same choice.
    public var overlapsAllreduce = true
    private var buckets: GradientBuckets?
    let world: World
    /// The run folder, written by rank 0 alone (nil on the other ranks).
    private let folder: RunFolder?
    /// Held-out windows evaluated every `options.evalEvery` steps, and the lowest loss logged so far.
    let heldout: EvalWindowFile?
    private var bestHeldout = Double.infinity
    private var lastHeldout: Estimate?
    /// Bytes of this rank's carried states.
    public var carryBytes: Int { batches.carryBytes }

    /// Starts a run in `run` (refused if it already holds checkpoints, unless `force`), or with `resume`
    /// continues its newest checkpoint; `config` and `options` must then equal the run's.
    public init(config: RunConfig, options: TrainOptions, run: URL, resume: Bool = false, force: Bool = false,
                world: World = .shared) throws {
        // The checkpoints record the text encoding of the data (an unreadable index fails below, with the catalog).
        var options = options
        options.textEncoding = (try? DatasetIndex.load(from: URL(fileURLWithPath: options.dataset)))?.textEncoding == .json ? .json : nil
        try config.validate()
        try options.validate(for: config.model)
        directory = run
        self.config = config.train
        self.options = options
        self.world = world
        let phases = options.contextSchedule ?? [ContextPhase(context: config.train.context, steps: config.train.steps)]
        try Self.validate(phases, config: config)
        heldout = try Self.heldoutWindows(options, context: phases.map(\.context).max()!)
        // Before anything is read or removed (--force deletes checkpoints).
        folder = world.rank == 0 ? try RunFolder(run) : nil
        let existing = Checkpoint.all(in: run)
        // An empty or missing train split is an error here, naming the folder.
        let catalog = try WindowCatalog(directory: URL(fileURLWithPath: options.dataset), split: .train)
        model = Transformer<Float>(config: config.model, seed: options.seed)
        meter = MFUMeter(config.model, rows: config.train.batch * config.train.context)
        optimizer = AdamW(parameters: model.parameters, beta1: config.train.beta1, beta2: config.train.beta2, weightDecay: config.train.weightDecay)
        try StepBatches.checkPhaseBoundaries(phases, config: config.train, options: options, world: world, windows: catalog.count)
        var resuming: (checkpoint: URL, state: TrainState)?
        if resume {
            guard let latest = try Checkpoint.newest(in: run) else { throw LongCrawlError("\(run.path): nothing to resume (no checkpoint)") }
            let state = try Checkpoint.loadState(latest)
            if let why = Self.difference(saved: state, config: config, options: options, ranks: world.size) {
                throw LongCrawlError("\(latest.path): cannot resume: \(why)")
            }
            try Checkpoint.loadModel(latest, into: model)
            try Checkpoint.loadOptimizer(latest, into: optimizer, parameters: model.parameters)
            completedSteps = state.step; tokens = state.tokens; elapsed = state.elapsed
            try folder?.resume(at: completedSteps, config: config, saved: state.config)
            // Every rank knows the best loss so far (every rank evaluates, so they decide alike).
            bestHeldout = RunFolder.heldoutLog(run).map(\.loss.mean).min() ?? .infinity
            resuming = (latest, state)
        } else {
            if let source = options.initFrom { try Self.initialize(model, from: URL(fileURLWithPath: source)) }
            if !existing.isEmpty && !force {
                throw LongCrawlError("\(run.path): already holds a run (checkpoints/); use --resume to continue it or --force to start over")
            }
            try folder?.start(config: config, options: options, force: force)
        }
        world.barrier()
        batches = try StepBatches(catalog: catalog, model: model, config: config.train, options: options, phases: phases, world: world,
                                  resuming: resuming)
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

    /// Runs steps until `config.steps` (or `stopAfter` more steps, for tests that interrupt a run) and returns
    /// the metrics of the steps taken: each step, its line in `metrics.jsonl`, the held-out evaluation when due,
    /// the progress line, a checkpoint when due.
    @discardableResult
    public func train(stopAfter: Int? = nil) throws -> [StepMetrics] {
        let end = min(config.steps, stopAfter.map { completedSteps + $0 } ?? config.steps)
        var taken: [StepMetrics] = []
        while completedSteps < end {
            let m = try step()
            taken.append(m)
            try folder?.log(m)
            let evaluated = try evaluateHeldout(last: m)
            if let progress, progress.due() || completedSteps == end || evaluated { show(m, on: progress) }
            if completedSteps % options.saveEvery == 0 || completedSteps == config.steps { try saveCheckpoint(last: m, to: Checkpoint.folder(in: directory, step: completedSteps)) }
        }
        progress?.end()
        return taken
    }

    /// One optimizer step: each micro-batch of the step (`StepBatches`) forward and backward, the gradients and the
    /// loss averaged over micro-batches and ranks, clipped, AdamW; its metrics. It logs and saves nothing (`train`
    /// does). A NaN or infinite loss or gradient stops with an error naming the step and the windows, before the
    /// parameters change.
    @discardableResult
    public func step() throws -> StepMetrics {
        let gradients = model.parameters.gradients
        let stepTokens = config.batch * config.context * options.accumulation
        meter.beforeStep(completedSteps)
        let (phaseIndex, t) = try batches.begin(step: completedSteps)
        let rows = stepTokens / options.accumulation / t
        let flopsPerStep = 3 * model.config.forwardFlopsPerToken(context: t) * Double(stepTokens)
        if world.isDistributed && overlapsAllreduce && buckets == nil { buckets = GradientBuckets(world: world, block: gradients) }
        let overlapped = overlapsAllreduce ? buckets : nil
        let t0 = now()
        let lr = learningRate(step: completedSteps, peak: config.learningRate, floor: config.minLearningRate, warmup: config.warmupSteps, total: config.steps)
        model.zeroGradients()
        var loss = 0.0
        for micro in 0..<options.accumulation {
            let (batch, carry) = try batches.micro(micro)
            let (l, _) = model.forward(tokens: batch.inputs, targets: batch.targets, mask: batch.mask, batch: rows,
                                       length: t, recompute: options.recompute, state: carry?.state)
            // The last micro-batch leaves each range final as its backward ends: its sum can start there.
            model.backward(onGradientsReady: micro == options.accumulation - 1 ? overlapped?.ready : nil)
            loss += l / Double(options.accumulation)
        }
        // Mean over micro-batches and ranks: the gradient block summed in place, the loss in Float64 on its own.
        let scale = Float(1 / Double(options.accumulation * world.size))
        let r0 = now()
        if world.isDistributed {
            if let overlapped { overlapped.finish() } else { world.sum(gradients.data, count: gradients.count) }
            loss = world.sum([loss])[0] / Double(world.size)
        }
        let allreduce = now() - r0
        if scale != 1 { gradients.scale(by: scale) }
        guard loss.isFinite else { throw nonFinite("loss \(loss)") }
        let norm = clipGradients(gradients, maxNorm: config.gradClip)
        guard norm.isFinite else { throw nonFinite("gradient norm \(norm)") }
        optimizer.update(model.parameters, lr: lr)
        completedSteps += 1
        let seconds = now() - t0
        let mfu = meter.afterStep(flops: flopsPerStep, seconds: seconds)
        elapsed += seconds
        tokens += stepTokens * world.size
        let scheduled = options.contextSchedule != nil
        return StepMetrics(step: completedSteps, loss: loss, lr: lr, gradNorm: norm, tokensPerSecond: Double(stepTokens * world.size) / seconds,
                           mfu: mfu, elapsed: elapsed, loaderShare: batches.wait / seconds, allreduceSeconds: allreduce,
                           windows: batches.rows.map(\.window), offsets: batches.rows.map(\.offset), offset: batches.carriedOffset,
                           context: scheduled ? t : nil, phase: scheduled ? phaseIndex + 1 : nil)
    }

    private func show(_ m: StepMetrics, on progress: ProgressReporter) {
        guard folder != nil else { return }
        let eta = ProgressReporter.duration(elapsed / Double(completedSteps) * Double(config.steps - completedSteps))
        let held = lastHeldout.map { String(format: " | held-out %.4f%@", $0.mean, $0.se.map { String(format: " ± %.4f", $0) } ?? "") } ?? ""
        progress.show(String(format: "step %d/%d loss %.4f lr %.2e%@ | %.0f tokens/s, MFU %.1f%% | ETA %@", completedSteps, config.steps, m.loss, m.lr,
                             held, m.tokensPerSecond, 100 * m.mfu, eta))
    }

    /// Every rank's cursor and carried states go to rank 0, which writes the checkpoint (`best` is not one of the last K).
    private func saveCheckpoint(last: StepMetrics, to checkpoint: URL) throws {
        let cursors = try world.allGather(JSONEncoder().encode(packer.cursor)).map { try JSONDecoder().decode(PackerCursor.self, from: $0) }
        var state = TrainState(step: completedSteps, config: RunConfig(model: model.config, train: config), options: options, cursors: cursors,
                               initSeed: options.seed, tokens: tokens, elapsed: elapsed, last: last)
        var carry: [(String, Tensor<Float>)] = []
        let carries = batches.carries
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
        if folder != nil {
            if checkpoint == Checkpoint.best(in: directory) {
                try Checkpoint.write(model: model, optimizer: optimizer, state: state, carry: carry, to: checkpoint)
            } else {
                try Checkpoint.save(model: model, optimizer: optimizer, state: state, carry: carry, run: directory, keep: options.keep)
            }
        }
        world.barrier()
    }

    /// A new run's model from a checkpoint (`--init-from`, a checkpoint or run folder): refused unless its model
    /// config is the run's (the name aside).
    static func initialize(_ model: Transformer<Float>, from source: URL) throws {
        let checkpoint = try Checkpoint.open(source)
        var saved = checkpoint.state.config.model
        saved.name = model.config.name
        guard saved == model.config else {
            let a = String(decoding: (try? JSONEncoder.sorted.encode(saved)) ?? Data(), as: UTF8.self)
            let b = String(decoding: (try? JSONEncoder.sorted.encode(model.config)) ?? Data(), as: UTF8.self)
            throw LongCrawlError("--init-from \(checkpoint.url.path): its model \(a) differs from the run's \(b)")
        }
        try Checkpoint.loadModel(checkpoint.url, into: model)
    }

    /// At every `evalEvery`-th step and the last: the mean held-out loss at the training context (each row's first
    /// T inputs, `EvalWindowFile.modelRow`), into `eval.jsonl`, and `checkpoints/best` when it is the lowest so far.
    /// It reads the model only, draws no random numbers and touches no training state, so the run's losses do not change.
    private func evaluateHeldout(last: StepMetrics) throws -> Bool {
        guard let heldout, let every = options.evalEvery, completedSteps % every == 0 || completedSteps == config.steps else { return false }
        let t = packer.cursor.context
        let perWindow = (0..<heldout.count).map { i -> Double in
            let losses = Evaluator.losses(model, row: heldout.modelRow(i, context: t, masksSeam: false), segment: t)
            return losses.reduce(0, +) / Double(losses.count)
        }
        let loss = Estimate(perWindow)
        guard loss.mean.isFinite else { throw LongCrawlError("step \(completedSteps): held-out loss \(loss.mean) on \(options.evalWindows ?? "?")") }
        lastHeldout = loss
        try folder?.log(HeldoutMetrics(step: completedSteps, loss: loss, tokens: tokens))
        if loss.mean < bestHeldout {
            bestHeldout = loss.mean
            try saveCheckpoint(last: last, to: Checkpoint.best(in: directory))
        }
        return true
    }

    /// Every rank reaches this together (the loss and norm are averaged over ranks): the message lists all ranks' rows
    /// (`StepBatches.rows`, every rank's: row q is rank q mod ranks's).
    private func nonFinite(_ what: String) -> LongCrawlError {
        let rows = batches.rows.enumerated().map { (rank: $0.offset % world.size, text: "\($0.element.window)@\($0.element.offset)") }
        let ranks = (0..<world.size).map { r in rows.filter { $0.rank == r }.map(\.text).joined(separator: " ") }
        let ids = world.isDistributed ? ranks.enumerated().map { "rank \($0.offset): \($0.element)" }.joined(separator: "; ") : ranks[0]
        let kept = Checkpoint.all(in: directory).last.map { "; last good checkpoint: \($0.path)" } ?? "; no checkpoint yet"
        return LongCrawlError("step \(completedSteps + 1): \(what) (windows@offsets: \(ids))\(kept)")
    }
}
