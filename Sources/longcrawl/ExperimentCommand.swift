import ArgumentParser
import Foundation
import Model
import Shards
import Streaming
import Support
import Tensor
import Training

/// `longcrawl experiment`: the paper's comparison in one command. Every variant trains with the same config, data
/// order, initialization seed and token budget into `EXP/VARIANT/` (a normal run folder), then every final
/// checkpoint is evaluated over the same windows, and `EXP/report.md` and `EXP/loss-by-position.png` compare them.
struct ExperimentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experiment",
        abstract: "Train several attention variants alike, evaluate them on the same windows, and report the comparison.",
        discussion: """
        Each variant is a run folder EXP/VARIANT (metrics.jsonl, checkpoints/); --resume continues the variant an \
        interrupted experiment was in and skips finished ones. Evaluation goes to EXP/eval/VARIANT (result.json with \
        standard errors), then EXP/report.md (the summary metrics per variant, with standard errors) and \
        EXP/loss-by-position.png (python -m longcrawl.plot). Softmax attends within independent segments of its training \
        context at evaluation; the sympow variants carry their state across the whole window.

        Example:
          longcrawl sample out/dev --split heldout --count 32 --seed 0 --out out/eval-windows.h5
          longcrawl experiment --data out/dev --config data/configs/tiny.json --context 256 --tokens 20000000 \\
            --eval-windows out/eval-windows.h5 --out runs/exp
        """
    )

    @Option(help: "Dataset folder (from preprocess).")
    var data: String?

    @Option(help: "Config JSON (model and training); every variant uses it, only the attention differs.")
    var config: String?

    @Option(help: "Training context L.")
    var context: Int?

    @Option(help: "Training tokens per variant (steps = tokens / (batch x context), rounded up).")
    var tokens: Int?

    @Option(help: "Comma-separated attention variants; NAME+carry trains NAME with its state carried across segments (e.g. sympow+gating,sympow+gating+carry).")
    var variants: String = "softmax,sympow,sympow+gating,conformal-sympow"

    @Flag(help: "Carry every variant's state across segments (train --carry-state): the same as +carry on each; sympow variants only.")
    var carryState = false

    @Option(help: "Evaluation windows (from `longcrawl sample`), the same for every variant.")
    var evalWindows: String?

    @Option(help: "Held-out windows evaluated during training (`sample --context L`), into each run's eval.jsonl.")
    var heldoutWindows: String?

    @Option(help: "Evaluate --heldout-windows every N steps.")
    var heldoutEvery: Int?

    @Option(help: "Rows per batch (default: the config's).")
    var batch: Int?

    @Option(help: "Seed of the initialization and the data order, shared by every variant.")
    var seed: UInt64 = 1

    @Option(help: "Checkpoint every N steps (default: a tenth of the run).")
    var saveEvery: Int?

    @Option(help: "Experiment folder.")
    var out: String

    @Flag(help: "Continue an interrupted experiment in --out (its experiment.json holds the settings).")
    var resume = false

    /// What an experiment is; written to `EXP/experiment.json` so `--resume` needs nothing else.
    struct Plan: Codable, Equatable {
        var data: String
        /// Read in the flat form of earlier versions too (`RunConfig`).
        var config: RunConfig
        var variants: [Variant]
        /// Sequential when a variant carries its state, so that every variant reads the same batches; nil (plans of
        /// earlier versions): longcrawl.
        var order: BatchOrder?
        var steps: Int
        var seed: UInt64
        var saveEvery: Int
        var evalWindows: String
        var heldoutWindows: String?
        var heldoutEvery: Int?
    }

    func run() throws {
        let exp = URL(fileURLWithPath: out)
        let planURL = exp.appendingPathComponent("experiment.json")
        let plan: Plan
        if resume {
            do { plan = try JSONDecoder().decode(Plan.self, from: Data(contentsOf: planURL)) } catch {
                throw ValidationError("\(planURL.path): cannot resume: \(error.localizedDescription)")
            }
        } else {
            plan = try makePlan()
            if FileManager.default.fileExists(atPath: planURL.path) {
                throw ValidationError("\(exp.path): already holds an experiment; pass --resume to continue it")
            }
            try FileManager.default.createDirectory(at: exp, withIntermediateDirectories: true)
            try AtomicFile.writeJSON(plan, to: planURL)
        }
        let windows = try EvalWindowFile(contentsOf: URL(fileURLWithPath: plan.evalWindows))
        guard windows.count >= 2 else {
            throw LongCrawlError("\(plan.evalWindows): \(windows.count) window(s); the recall probe's control needs at least 2")
        }

        // The plan: each variant's expected wall time from one measured step (in a scratch run folder).
        print("experiment \(exp.path): \(plan.config.model.name) at context \(plan.config.train.context), batch \(plan.config.train.batch), " +
              "\(plan.steps) steps = \(plan.steps * plan.config.train.batch * plan.config.train.context) tokens per variant, seed \(plan.seed)")
        var expected: [Variant: Double] = [:]
        for v in plan.variants where !finished(v, plan, in: exp) {
            let scratch = exp.appendingPathComponent(".measure-\(v.name)")
            defer { try? FileManager.default.removeItem(at: scratch) }
            let t = try makeTrainer(v, plan, run: scratch, resume: false, force: true)
            let m = try t.train(stopAfter: 1)
            expected[v] = m[0].elapsed * Double(plan.steps)
        }
        for v in plan.variants {
            let note = expected[v].map { "about " + ProgressReporter.duration($0) } ?? "finished"
            print("  \(v.name.padding(toLength: 23, withPad: " ", startingAt: 0)) \(note)")
        }
        let started = Date()
        var remaining = expected.values.reduce(0, +)
        for (k, v) in plan.variants.enumerated() {
            let run = exp.appendingPathComponent(v.name)
            if finished(v, plan, in: exp) { print("[\(k + 1)/\(plan.variants.count)] \(v.name): finished, skipped"); continue }
            print(String(format: "[%d/%d] %@ -> %@ (experiment ETA %@)", k + 1, plan.variants.count, v.name, run.path,
                         ProgressReporter.duration(remaining)))
            let trainer = try makeTrainer(v, plan, run: run, resume: !Checkpoint.all(in: run).isEmpty, force: false)
            trainer.progress = ProgressReporter(label: v.name)
            try trainer.train()
            remaining -= expected[v] ?? 0
        }
        print("trained in " + ProgressReporter.duration(Date().timeIntervalSince(started)))

        var rows: [Row] = []
        for v in plan.variants {
            let ckpt = try Checkpoint.resolve(exp.appendingPathComponent(v.name))
            let state = try Checkpoint.loadState(ckpt)
            let model = try Checkpoint.loadModel(ckpt, state: state)
            let result = try Evaluator.evaluate(model, trainedContext: state.config.train.context, file: windows, context: nil, checkpoint: ckpt.path,
                                                windowsFile: plan.evalWindows, progress: ProgressReporter(label: "eval \(v.name)"))
            try result.write(to: exp.appendingPathComponent("eval").appendingPathComponent(v.name))
            let probe = Probe.evaluate(model, trainedContext: state.config.train.context, file: windows, windowsFile: plan.evalWindows,
                                       checkpoint: ckpt.path, progress: ProgressReporter(label: "probe \(v.name)"))
            try probe.write(to: exp.appendingPathComponent("probe").appendingPathComponent(v.name))
            rows.append(Row(variant: v, eval: result, state: state, probe: probe))
        }
        let report = exp.appendingPathComponent("report.md")
        try AtomicFile.write(Data(Self.report(plan, rows).utf8), to: report)
        print(Self.report(plan, rows))
        // The package's module: installed (pip install python/) or from this source tree.
        let path = [packageRoot.appendingPathComponent("python").path] + (ProcessInfo.processInfo.environment["PYTHONPATH"].map { [$0] } ?? [])
        var drawn = true
        for (kind, figure) in [("eval", "loss-by-position.png"), ("probe", "probe.png")] {
            let folders = plan.variants.map { exp.appendingPathComponent("\(kind)/\($0.name)").path }
            let (status, _) = try capture(["PYTHONPATH=" + path.joined(separator: ":"), "python3", "-m", "longcrawl.plot", kind] + folders + ["--out", exp.appendingPathComponent(figure).path])
            drawn = drawn && status == 0
        }
        print(drawn ? "wrote \(report.path), loss-by-position.png and probe.png"
                    : "wrote \(report.path); the figures need python3 with matplotlib (tools/setup.sh)")
    }

    /// One variant's results, a row of the report.
    struct Row {
        var variant: Variant
        var eval: EvalResult
        var state: TrainState
        var probe: ProbeResult
    }

    func makePlan() throws -> Plan {
        guard let data, let config, let context, let tokens, let evalWindows else {
            throw ValidationError("--data, --config, --context, --tokens and --eval-windows are required (except with --resume)")
        }
        try BatchPacker.validate(context: context)
        var cfg = try RunConfig.load(URL(fileURLWithPath: config))
        cfg.train.context = context
        if let batch { cfg.train.batch = batch }
        let steps = max(1, (tokens + cfg.train.batch * context - 1) / (cfg.train.batch * context))
        cfg.train.steps = steps
        cfg.train.warmupSteps = min(cfg.train.warmupSteps, max(1, steps / 10))
        let kinds = try variants.split(separator: ",").map { name -> Variant in
            var v = try Variant(parsing: String(name))
            if carryState { v.carries = true }
            if v.carries && v.attention == .softmax {
                throw ValidationError("--variants: softmax cannot carry its state (its state is its whole history)")
            }
            return v
        }
        guard !kinds.isEmpty, Set(kinds).count == kinds.count else { throw ValidationError("--variants must name each variant once") }
        let path = { URL(fileURLWithPath: $0).standardizedFileURL.path }
        return Plan(data: path(data), config: cfg, variants: kinds, order: kinds.contains(where: \.carries) ? .sequential : nil, steps: steps, seed: seed, saveEvery: saveEvery ?? max(1, steps / 10),
                    evalWindows: path(evalWindows), heldoutWindows: heldoutWindows.map(path), heldoutEvery: heldoutWindows == nil ? nil : heldoutEvery ?? max(1, steps / 10))
    }

    /// The variant's config: the shared one with its attention (and name).
    static func config(_ v: Variant, _ plan: Plan) -> RunConfig {
        var c = plan.config
        c.model.attention = v.attention
        c.model.name = plan.config.model.name + "-" + v.attention.rawValue
        return c
    }

    func makeTrainer(_ v: Variant, _ plan: Plan, run: URL, resume: Bool, force: Bool) throws -> Trainer {
        var options = TrainOptions(data: plan.data)
        options.seed = plan.seed
        if let order = plan.order { options.order = order }
        if v.carries { options.carryState = true }
        options.saveEvery = plan.saveEvery
        options.keep = 1
        options.evalWindows = plan.heldoutWindows
        options.evalEvery = plan.heldoutEvery
        return try Trainer(config: Self.config(v, plan), options: options, run: run, resume: resume, force: force)
    }

    func finished(_ v: Variant, _ plan: Plan, in exp: URL) -> Bool {
        guard let last = Checkpoint.all(in: exp.appendingPathComponent(v.name)).last, let state = try? Checkpoint.loadState(last) else { return false }
        return state.step == plan.steps
    }

    /// The comparison table: one row per variant, every figure with its standard error across the windows.
    static func report(_ plan: Plan, _ rows: [Row]) -> String {
        let l = plan.config.train.context
        let names = rows.first?.eval.summary.ranges.map(\.name) ?? []
        func cell(_ e: Estimate?) -> String {
            guard let e else { return "-" }
            return e.se.map { String(format: "%.3f ± %.3f", e.mean, $0) } ?? String(format: "%.3f (SE n/a)", e.mean)
        }
        var md = """
        # Experiment: \(plan.config.model.name) trained at context L = \(l)

        Same config, data order (seed \(plan.seed)), initialization and budget for every variant: \(plan.steps) steps of \
        \(plan.config.train.batch) x \(l) tokens. Evaluation: \(rows.first?.eval.windows ?? 0) windows of `\(plan.evalWindows)`, the same \
        for every variant; loss in nats per token, mean ± standard error across windows (the windows are the independent \
        samples). Ranges are of context lengths (position + 1). The extrapolation gap is the mean over (L, 4L] minus the \
        mean over (L/2, L], a paired difference per window. Softmax is evaluated in independent segments of its training \
        context (its attention form has no state to carry); the sympow variants in one pass with their state carried.\(plan.order == .sequential ? """
         Training order sequential (each row reads its window segment after segment); a +carry variant starts each \
        segment from the state its row's previous one ended with (truncated backpropagation: the gradient stops at the \
        segment's start), the others from an empty state.
        """ : "")

        | variant | best-context [0.9L, L) | \(names.joined(separator: " | ")) | gap (L,4L] - (L/2,L] | tokens seen | train wall time | eval form |
        | --- | ---: |\(String(repeating: " ---: |", count: names.count)) ---: | ---: | ---: | --- |

        """
        for row in rows {
            let r = row.eval
            let ranges = names.map { n in cell(r.summary.ranges.first { $0.name == n }?.loss) }
            md += "| \(row.variant.name) | \(cell(r.summary.bestContext)) | \(ranges.joined(separator: " | ")) | \(cell(r.summary.extrapolationGap)) | " +
                  "\(row.state.tokens) | \(ProgressReporter.duration(row.state.elapsed)) | \(r.form) |\n"
        }
        md += "\n![loss by position](loss-by-position.png)\n"
        guard rows.contains(where: { !$0.probe.distances.isEmpty }) else { return md }
        md += """

        ## Recall probe

        Copy gain: the loss on the second copy of a \(Probe.defaultSpan)-token span, Δ tokens of other text after the \
        first, in a control whose first span is another window's, minus the loss on it after the real first span (after \
        each copy's first token), paired per window, mean ± standard error over the same windows. A model that \
        retrieves over Δ shows a gain at Δ; one that remembers nothing across Δ shows 0. `longcrawl probe` computes the \
        same alone.

        | variant | Δ | control | second copy | gain |
        | --- | ---: | ---: | ---: | ---: |

        """
        for row in rows {
            for d in row.probe.distances {
                md += "| \(row.variant.name) | \(d.delta) | \(cell(d.control)) | \(cell(d.secondCopy)) | \(cell(d.gain)) |\n"
            }
        }
        md += "\n![copy gain by distance](probe.png)\n"
        return md
    }
}

/// The package root (for the Python package's plots), from this file's path at build time.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A variant of an experiment: an attention kind, trained with its state carried across segments or not. Named and
/// stored as `sympow+gating` or `sympow+gating+carry`, so plans of earlier versions (kinds alone) still read.
struct Variant: Codable, Hashable {
    var attention: AttentionKind
    var carries = false

    var name: String { attention.rawValue + (carries ? Self.carrySuffix : "") }
    static let carrySuffix = "+carry"

    init(parsing name: String) throws {
        carries = name.hasSuffix(Self.carrySuffix)
        let kind = carries ? String(name.dropLast(Self.carrySuffix.count)) : name
        guard let k = AttentionKind(rawValue: kind) else {
            throw ValidationError("--variants: unknown variant '\(name)' (softmax, sympow, sympow+gating, conformal-sympow, each sympow one with +carry)")
        }
        attention = k
    }

    init(from decoder: Decoder) throws { try self.init(parsing: decoder.singleValueContainer().decode(String.self)) }

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(name)
    }
}
