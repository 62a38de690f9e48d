import ArgumentParser
import Foundation
import Model
import Support
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
    var variants: String = AttentionKind.allCases.map(\.rawValue).joined(separator: ",")

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

    func validate() throws {
        if !resume && (data == nil || config == nil || context == nil || tokens == nil || evalWindows == nil) {
            throw ValidationError("--data, --config, --context, --tokens and --eval-windows are required (except with --resume)")
        }
    }

    func run() throws {
        let folder = URL(fileURLWithPath: out)
        let experiment: Experiment
        if resume {
            experiment = try Experiment(resuming: folder)
        } else {
            var shared = RunOverrides()
            (shared.context, shared.batch, shared.tokens) = (context, batch, tokens)
            let plan = try Experiment.Plan(data: data!, config: RunConfig.load(URL(fileURLWithPath: config!)), shared: shared,
                                           variants: Variant.list(variants, carryAll: carryState), seed: seed, saveEvery: saveEvery,
                                           evalWindows: evalWindows!, heldoutWindows: heldoutWindows, heldoutEvery: heldoutEvery)
            experiment = try Experiment(creating: folder, plan: plan)
        }
        let report = try experiment.run { print($0) }
        print(report)
        // The package's module: installed (pip install python/) or from this source tree.
        let path = [packageRoot.appendingPathComponent("python").path] + (ProcessInfo.processInfo.environment["PYTHONPATH"].map { [$0] } ?? [])
        var drawn = true
        for (kind, figure) in [("eval", "loss-by-position.png"), ("probe", "probe.png")] {
            let folders = experiment.plan.variants.map { folder.appendingPathComponent("\(kind)/\($0.name)").path }
            let (status, _) = try capture(["PYTHONPATH=" + path.joined(separator: ":"), "python3", "-m", "longcrawl.plot", kind] + folders + ["--out", folder.appendingPathComponent(figure).path])
            drawn = drawn && status == 0
        }
        let written = folder.appendingPathComponent("report.md").path
        print(drawn ? "wrote \(written), loss-by-position.png and probe.png" : "wrote \(written); the figures need python3 with matplotlib (tools/setup.sh)")
    }
}

/// The package root (for the Python package's plots and the benchmarks' scripts), from this file's path at build time.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
