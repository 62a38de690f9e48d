import Cluster
import Foundation
import Model
import Streaming
import Support
import Tensor

/// Where a `Trainer`'s steps get their rows: the packer, the context phases and, under `--carry-state`, each
/// micro-batch's carried state. Only here does the carry mode change how rows are read: carrying, a packer batch is a
/// whole step (accumulation x B rows; micro-batch m keeps rows m B ..< (m + 1) B from step to step, so that its state
/// follows them); otherwise each micro-batch is a packer batch of B rows.
final class StepBatches {
    private(set) var packer: BatchPacker
    /// Each micro-batch's carried state under `--carry-state`; empty otherwise.
    private(set) var carries: [SegmentCarry]
    let accumulation: Int
    private let options: TrainOptions
    /// T and steps of each phase: `--context-schedule`, or the config's context for all steps.
    let phases: [ContextPhase]
    private let model: Transformer<Float>
    /// B x T of a micro-batch: the config's, kept by every phase.
    private let tokens: Int
    /// The step begun last (0-based) and its rows so far: every rank's, in the global batch's order.
    private var step = 0
    private(set) var rows: [(window: Int, offset: Int)] = []
    /// Seconds this step has waited for the packer.
    private(set) var wait = 0.0
    /// Carrying, the step's packer batch that the micro-batches are sliced from.
    private var whole: Batch?

    /// The packer at the start of a run, or with `resuming` at a checkpoint's cursors (on as many ranks or another
    /// number) with the carried states it saved.
    init(catalog: WindowCatalog, model: Transformer<Float>, config: TrainingConfig, options: TrainOptions, phases: [ContextPhase],
         world: World, resuming: (checkpoint: URL, state: TrainState)?) throws {
        self.model = model; self.phases = phases; self.options = options
        accumulation = options.accumulation
        tokens = config.batch * config.context
        var cursor = Self.start(config: config, options: options, world: world)
        carries = []
        if let (checkpoint, state) = resuming {
            cursor = try Self.cursor(resuming: state.cursors, rank: world.rank, world: world.size)
            if options.carries {
                carries = Self.carries(model, accumulation: accumulation, cursor)
                try Self.restore(carries, from: checkpoint, state: state, saved: RowLayout(state.cursors[0], accumulation: accumulation),
                                 now: RowLayout(cursor, accumulation: accumulation), rank: world.rank)
            }
        } else if options.carries {
            carries = Self.carries(model, accumulation: accumulation, cursor)
        }
        packer = try BatchPacker(catalog: catalog, cursor: cursor, masksSeam: options.maskSeam == true)
    }

    /// A run's first cursor.
    static func start(config: TrainingConfig, options: TrainOptions, world: World) -> PackerCursor {
        PackerCursor(seed: options.seed, rank: world.rank, world: world.size,
                     batchSize: packerRows(tokens: config.batch * config.context, context: config.context, options),
                     context: config.context, order: options.order, nextBatch: 0)
    }

    /// Rows of a packer batch at T = `context`: a micro-batch's, or carrying a whole step's.
    static func packerRows(tokens: Int, context: Int, _ options: TrainOptions) -> Int {
        tokens / context * (options.carries ? options.accumulation : 1)
    }

    /// Packer batches a step takes.
    static func packerBatches(_ options: TrainOptions) -> Int { options.carries ? 1 : options.accumulation }

    /// Refuses a schedule whose T would change in the middle of a window (or where the windows used so far are not
    /// a whole number of the next phase's groups of rows): the cursor at each boundary, as `switchPhase` moves it.
    static func checkPhaseBoundaries(_ phases: [ContextPhase], config: TrainingConfig, options: TrainOptions, world: World, windows: Int) throws {
        var cursor = start(config: config, options: options, world: world), step = 0
        for (i, (p, next)) in zip(phases, phases.dropFirst()).enumerated() {
            cursor.nextBatch += p.steps * packerBatches(options)
            step += p.steps
            let rows = packerRows(tokens: config.batch * config.context, context: next.context, options)
            guard let moved = ContextPhase.translate(cursor, windows: windows, context: next.context, rows: rows) else {
                throw LongCrawlError("--context-schedule: phase \(i + 2) (T \(next.context)) would start after step \(step) in the middle of a window " +
                                    "(or of a group of \(rows) windows) in the \(options.order.rawValue) order; T changes only at window boundaries")
            }
            cursor = moved
        }
    }

    /// Readies step `step` (0-based): at the first step of a phase the packer goes on with the phase's T. Returns the
    /// phase's index and T.
    func begin(step: Int) throws -> (phase: Int, context: Int) {
        let (index, phase) = ContextPhase.at(step, in: phases)
        if phase.context != packer.cursor.context { try switchPhase(to: phase, step: step) }
        self.step = step
        rows = []; wait = 0
        return (index, phase.context)
    }

    /// Micro-batch `m` of the step begun last, with its carried state (readied for it) under `--carry-state`.
    func micro(_ m: Int) throws -> (batch: Batch, carry: SegmentCarry?) {
        if carries.isEmpty { return (try nextBatch(), nil) }
        if m == 0 { whole = try nextBatch() }
        let batch = whole!.micro(m, of: accumulation), carry = carries[m]
        do { try carry.prepare(batch) } catch let e as LongCrawlError { throw LongCrawlError("step \(step + 1), micro-batch \(m): \(e.description)") }
        return (batch, carry)
    }

    /// The segment's offset in its windows under `--carry-state` (every row of a step is at the same one), as the
    /// metrics log it; nil otherwise.
    var carriedOffset: Int? { carries.isEmpty ? nil : rows.first?.offset }

    /// Bytes of this rank's carried states.
    var carryBytes: Int { 4 * carries.reduce(0) { $0 + $1.state.count } }

    private func nextBatch() throws -> Batch {
        rows += packer.globalRows(batch: packer.cursor.nextBatch)
        let t0 = now()
        defer { wait += now() - t0 }
        return try packer.next()
    }

    /// At the first step of a phase: the packer goes on from the same place in the window order with the phase's T
    /// and rows (every row at a window's start, so the carried states start empty).
    private func switchPhase(to phase: ContextPhase, step: Int) throws {
        let rows = Self.packerRows(tokens: tokens, context: phase.context, options)
        guard let cursor = ContextPhase.translate(packer.cursor, windows: packer.catalog.count, context: phase.context, rows: rows) else {
            throw LongCrawlError("step \(step + 1): T \(phase.context) would start in the middle of a window")
        }
        packer = try BatchPacker(catalog: packer.catalog, cursor: cursor, masksSeam: packer.masksSeam)
        if !carries.isEmpty { carries = Self.carries(model, accumulation: accumulation, cursor) }
    }
}
