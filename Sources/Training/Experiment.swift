import Foundation
import Model
import Shards
import Streaming
import Support

/// A variant of a run: an attention kind, trained with its state carried across segments or not. Named (and its run
/// folder named) `sympow+gating` or `sympow+gating+carry`, so experiment plans of earlier versions (kinds alone) read.
public struct Variant: Codable, Hashable, Sendable {
    public var attention: AttentionKind
    public var carries = false

    public init(attention: AttentionKind, carries: Bool = false) { self.attention = attention; self.carries = carries }

    /// The run folder's name, the report's and the figures' label.
    public var name: String { attention.rawValue + (carries ? Self.carrySuffix : "") }
    static let carrySuffix = "+carry"

    public init(parsing name: String) throws {
        carries = name.hasSuffix(Self.carrySuffix)
        let kind = carries ? String(name.dropLast(Self.carrySuffix.count)) : name
        guard let k = AttentionKind(rawValue: kind) else {
            throw LongCrawlError("--variants: unknown variant '\(name)' (\(AttentionKind.names), each one with a state with \(Self.carrySuffix))")
        }
        attention = k
    }

    /// `--variants a,b+carry`, each named once; `carryAll` carries every one. Softmax cannot carry its state.
    public static func list(_ text: String, carryAll: Bool) throws -> [Variant] {
        let variants = try text.split(separator: ",").map { name -> Variant in
            var v = try Variant(parsing: String(name))
            if carryAll { v.carries = true }
            guard !v.carries || v.attention.carriesState else {
                throw LongCrawlError("--variants: \(v.attention.rawValue) cannot carry its state (its state is its whole history)")
            }
            return v
        }
        guard !variants.isEmpty, Set(variants).count == variants.count else { throw LongCrawlError("--variants must name each variant once") }
        return variants
    }

    /// `shared` with this variant's attention and carried state.
    public func overrides(_ shared: RunOverrides) -> RunOverrides {
        var o = shared
        o.attention = attention
        o.carryState = carries
        return o
    }

    public init(from decoder: Decoder) throws { try self.init(parsing: decoder.singleValueContainer().decode(String.self)) }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(name)
    }
}

/// The paper's comparison: every variant trains with the same config, data order, initialization seed and token
/// budget into `EXP/VARIANT/` (a run folder), then every final checkpoint is evaluated and probed over the same
/// windows (`EXP/eval/VARIANT`, `EXP/probe/VARIANT`) and `EXP/report.md` compares them. `EXP/experiment.json` holds
/// the plan, so an interrupted experiment resumes from it alone: finished variants are skipped, the one it was in
/// continues its newest checkpoint.
public struct Experiment {
    /// What an experiment is: `EXP/experiment.json`.
    public struct Plan: Codable, Equatable, Sendable {
        public var data: String
        /// The shared config, its context, batch and steps set; read in the flat form of earlier versions too.
        public var config: RunConfig
        public var variants: [Variant]
        /// Sequential when a variant carries its state, so that every variant reads the same batches; nil (plans of
        /// earlier versions, or no variant carrying): longcrawl.
        public var order: BatchOrder?
        public var steps: Int
        public var seed: UInt64
        public var saveEvery: Int
        public var evalWindows: String
        var heldoutWindows: String?
        var heldoutEvery: Int?

        /// The plan for `config` with `shared` (its context, batch and tokens) applied; checkpoints every tenth of the
        /// run unless `saveEvery`, held-out evaluation as often unless `heldoutEvery`.
        public init(data: String, config: RunConfig, shared: RunOverrides, variants: [Variant], seed: UInt64, saveEvery: Int?,
                    evalWindows: String, heldoutWindows: String?, heldoutEvery: Int?) throws {
            let path = { URL(fileURLWithPath: $0).standardizedFileURL.path }
            self.config = try config.applying(shared, to: TrainOptions(dataset: data)).config
            steps = self.config.train.steps
            let tenth = max(1, steps / 10)
            (self.data, self.variants, self.seed, self.saveEvery) = (path(data), variants, seed, saveEvery ?? tenth)
            order = variants.contains(where: \.carries) ? .sequential : nil
            (self.evalWindows, self.heldoutWindows) = (path(evalWindows), heldoutWindows.map(path))
            self.heldoutEvery = heldoutWindows == nil ? nil : heldoutEvery ?? tenth
        }

        /// The variant's config and options: the shared config with its attention, every variant on the same data
        /// order and seed, the newest checkpoint alone kept.
        func settings(for v: Variant) throws -> (config: RunConfig, options: TrainOptions) {
            var o = RunOverrides()
            (o.order, o.seed, o.saveEvery, o.keep, o.evalWindows, o.evalEvery) = (order, seed, saveEvery, 1, heldoutWindows, heldoutEvery)
            return try config.applying(v.overrides(o), to: TrainOptions(dataset: data))
        }
    }

    let folder: URL
    public let plan: Plan
    var planURL: URL { folder.appendingPathComponent("experiment.json") }

    /// A new experiment in `folder`, refused where one is already (resume it instead).
    public init(creating folder: URL, plan: Plan) throws {
        (self.folder, self.plan) = (folder, plan)
        guard !FileManager.default.fileExists(atPath: planURL.path) else {
            throw LongCrawlError("\(folder.path): already holds an experiment; pass --resume to continue it")
        }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try AtomicFile.writeJSON(plan, to: planURL)
    }

    /// The experiment in `folder`, from its `experiment.json`.
    public init(resuming folder: URL) throws {
        self.folder = folder
        let url = folder.appendingPathComponent("experiment.json")
        do { plan = try JSONDecoder().decode(Plan.self, from: Data(contentsOf: url)) } catch {
            throw LongCrawlError("\(url.path): cannot resume: \(error.localizedDescription)")
        }
    }

    /// Trains what is left of every variant, then evaluates and probes each, writes `report.md` and returns it.
    /// `log` gets one line per stage (the expected times, each variant's start); the trainers, evaluation and probe
    /// show their progress on the terminal.
    @discardableResult
    public func run(log: (String) -> Void) throws -> String {
        let windows = try EvalWindowFile(contentsOf: URL(fileURLWithPath: plan.evalWindows))
        guard windows.count >= 2 else {
            throw LongCrawlError("\(plan.evalWindows): \(windows.count) window(s); the recall probe's control needs at least 2")
        }
        let train = plan.config.train
        log("experiment \(folder.path): \(plan.config.model.name) at context \(train.context), batch \(train.batch), " +
            "\(plan.steps) steps = \(plan.steps * train.batch * train.context) tokens per variant, seed \(plan.seed)")
        try trainAll(log: log)
        var rows: [ExperimentRow] = []
        for v in plan.variants {
            let opened = try Checkpoint.open(folder.appendingPathComponent(v.name))
            let (ckpt, state, model) = (opened.url, opened.state, try opened.model())
            let evalFolder = folder.appendingPathComponent("eval").appendingPathComponent(v.name)
            let probeFolder = folder.appendingPathComponent("probe").appendingPathComponent(v.name)
            // A resumed experiment keeps the results already saved for this checkpoint and these windows.
            let result = try saved(evalFolder.appendingPathComponent("result.json"), "eval \(v.name)", ckpt, log: log) { ($0.checkpoint, $0.windowsFile) }
                ?? {
                    let r = try Evaluator.evaluate(model, trainedContext: state.config.train.context, file: windows, context: nil, checkpoint: ckpt.path,
                                                   windowsFile: plan.evalWindows, progress: ProgressReporter(label: "eval \(v.name)"))
                    try r.write(to: evalFolder)
                    return r
                }()
            let probe = try saved(probeFolder.appendingPathComponent("probe.json"), "probe \(v.name)", ckpt, log: log) { ($0.checkpoint, $0.windowsFile) }
                ?? {
                    let p = Probe.evaluate(model, trainedContext: state.config.train.context, file: windows, windowsFile: plan.evalWindows,
                                           checkpoint: ckpt.path, progress: ProgressReporter(label: "probe \(v.name)"))
                    try p.write(to: probeFolder)
                    return p
                }()
            rows.append(ExperimentRow(variant: v, eval: result, state: state, probe: probe))
        }
        let report = Self.report(plan, rows)
        try AtomicFile.write(Data(report.utf8), to: folder.appendingPathComponent("report.md"))
        return report
    }

    /// The result saved at `url` (`what`: its log label) if it reads and is of checkpoint `ckpt` and the plan's
    /// windows (`identity` gives those two of a result), else nil.
    private func saved<R: Decodable>(_ url: URL, _ what: String, _ ckpt: URL, log: (String) -> Void,
                                     identity: (R) -> (checkpoint: String, windows: String)) -> R? {
        guard let data = try? Data(contentsOf: url), let r = try? JSONDecoder().decode(R.self, from: data),
              identity(r) == (ckpt.path, plan.evalWindows) else { return nil }
        log("\(what): saved for \(ckpt.lastPathComponent), kept")
        return r
    }

    /// Each unfinished variant's expected wall time from one measured step (in a scratch run folder), then each
    /// trained to the end, an interrupted one from its newest checkpoint.
    func trainAll(log: (String) -> Void) throws {
        var expected: [Variant: Double] = [:]
        for v in plan.variants where !finished(v) {
            let scratch = folder.appendingPathComponent(".measure-\(v.name)")
            defer { try? FileManager.default.removeItem(at: scratch) }
            let t = try trainer(v, run: scratch, resume: false, force: true)
            expected[v] = try t.step().elapsed * Double(plan.steps)
        }
        for v in plan.variants {
            log("  \(v.name.padding(toLength: 23, withPad: " ", startingAt: 0)) \(expected[v].map { "about " + ProgressReporter.duration($0) } ?? "finished")")
        }
        let started = Date()
        var remaining = expected.values.reduce(0, +)
        for (k, v) in plan.variants.enumerated() {
            let run = folder.appendingPathComponent(v.name)
            if finished(v) { log("[\(k + 1)/\(plan.variants.count)] \(v.name): finished, skipped"); continue }
            log("[\(k + 1)/\(plan.variants.count)] \(v.name) -> \(run.path) (experiment ETA \(ProgressReporter.duration(remaining)))")
            let trainer = try trainer(v, run: run, resume: !Checkpoint.all(in: run).isEmpty, force: false)
            trainer.progress = ProgressReporter(label: v.name)
            try trainer.train()
            remaining -= expected[v] ?? 0
        }
        log("trained in " + ProgressReporter.duration(Date().timeIntervalSince(started)))
    }

    func trainer(_ v: Variant, run: URL, resume: Bool, force: Bool) throws -> Trainer {
        let (config, options) = try plan.settings(for: v)
        return try Trainer(config: config, options: options, run: run, resume: resume, force: force)
    }

    func finished(_ v: Variant) -> Bool {
        guard let last = Checkpoint.all(in: folder.appendingPathComponent(v.name)).last, let state = try? Checkpoint.loadState(last) else { return false }
        return state.step == plan.steps
    }
}
