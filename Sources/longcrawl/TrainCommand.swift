import ArgumentParser
import Cluster
import Foundation
import Model
import Streaming
import Support
import Training

/// `longcrawl train`: train a model on a dataset's train split, with checkpoints and metrics in a run folder.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a sympow transformer on streamed batches of a dataset's train split.",
        discussion: """
        Every option left out takes its value from the config file (or, with --resume, from the run). The run folder \
        gets config.json and options.json (what the run uses), metrics.jsonl (one line per step), with \
        --eval-windows eval.jsonl (held-out loss with its standard error) and checkpoints/best, and \
        checkpoints/step-NNNNNN/{model.safetensors, optimizer.safetensors, state.json}. --resume continues the \
        newest checkpoint with bit-identical losses; it refuses options that differ from the run's. It may go on with \
        another number of ranks if --batch keeps B x ranks (which fixes the windows of each step): each rank's data \
        cursor and its rows' carried states are rebuilt, the losses then equal up to the order of float sums.

        Examples:
          longcrawl train --data out/sample --config data/configs/tiny.json --out runs/tiny
          longcrawl train --data out/dev --config data/configs/small.json --context 4096 --batch 4 --accum 2 --out runs/small
          longcrawl train --out runs/small --resume
          mpirun -np 2 longcrawl train --out runs/small --resume --batch 2   # saved on 1 rank with batch 4
        """
    )

    @Option(help: "Dataset folder (from preprocess).")
    var data: String?

    @Option(help: "Config JSON: the model and its training (data/configs/*.json).")
    var config: String?

    @Option(help: ArgumentHelp("Attention variant: \(AttentionKind.names) (baselines share the config otherwise)."))
    var attention: AttentionKind?

    @Option(help: "Context length T (divides \(windowLength) and is a multiple of the config's chunk).")
    var context: Int?

    @Option(help: "Phases of T and steps, e.g. 256:1000,1024:500: T changes only at window boundaries, tokens per step kept (B x T of the first phase); sets --context and --steps.")
    var contextSchedule: String?

    @Option(help: "Rows per micro-batch.")
    var batch: Int?

    @Option(help: "Micro-batches per step (gradient accumulation).")
    var accum: Int?

    @Option(help: "Total optimizer steps.")
    var steps: Int?

    @Option(help: "Peak learning rate.")
    var lr: Double?

    @Option(name: .customLong("min-lr"), help: "Learning-rate floor of the cosine schedule.")
    var minLR: Double?

    @Option(help: "Warmup steps.")
    var warmup: Int?

    @Option(help: "Batch order: longcrawl or sequential.")
    var order: BatchOrder?

    @Option(help: "Checkpoint every N steps (and at the end).")
    var saveEvery: Int?

    @Option(help: "Checkpoints to keep.")
    var keep: Int?

    @Option(help: "Seed of the initialization and the data order.")
    var seed: UInt64?

    @Option(help: "Held-out windows (from `longcrawl sample --context T`) evaluated during training into RUN/eval.jsonl.")
    var evalWindows: String?

    @Option(help: "Evaluate --eval-windows every N steps and at the end; the best checkpoint is kept as checkpoints/best.")
    var evalEvery: Int?

    @Flag(help: "Carry each row's attention state (phi_p state, normalizer, rotary position) into its next segment; implies --order sequential (refuses longcrawl), a sympow variant. Truncated backpropagation: the gradient stops at the segment's start.")
    var carryState = false

    @Option(help: "Start from this checkpoint's weights and model config (a checkpoint folder, or a run folder: its newest): fresh optimizer, step 0.")
    var initFrom: String?

    @Flag(help: "Rebuild each block's MLP activations in backward (about 35% less activation memory, 3% more flops, same gradients).")
    var recompute = false

    @Flag(help: "Mask the target that crosses each rolled window's seam (its input the document's last kept token, its target the first); LongCrawl64 trains on it.")
    var maskSeam = false

    @Flag(help: "Under mpirun, sum the gradients with one blocking allreduce after backward instead of in buckets during it (same parameters on 2 ranks).")
    var noOverlap = false

    @Option(help: "Run folder.")
    var out: String = "runs/run"

    @Flag(help: "Continue the run's newest checkpoint.")
    var resume = false

    @Flag(help: "Delete the run's checkpoints and metrics and start over.")
    var force = false

    func validate() throws {
        if resume && force { throw ValidationError("--resume and --force exclude each other") }
        if !resume && (data == nil || (config == nil && initFrom == nil)) {
            throw ValidationError("--data and --config (or --init-from) are required (except with --resume)")
        }
        if resume && initFrom != nil { throw ValidationError("--init-from starts a new run; --resume continues one") }
    }

    func run() throws {
        let runURL = URL(fileURLWithPath: out)
        var o = RunOverrides()
        (o.data, o.attention, o.context, o.contextSchedule, o.batch, o.steps) = (data, attention, context, contextSchedule, batch, steps)
        (o.lr, o.minLR, o.warmup, o.accum, o.order, o.seed) = (lr, minLR, warmup, accum, order, seed)
        (o.saveEvery, o.keep, o.evalWindows, o.evalEvery) = (saveEvery, keep, evalWindows, evalEvery)
        (o.carryState, o.recompute, o.maskSeam) = (carryState, recompute, maskSeam)
        // The base: the run's own (a config file given again must describe the same run; the trainer says what
        // differs), the --init-from checkpoint's (unless --config, whose model the trainer checks against it), or --config.
        let given = try config.map { try RunConfig.load(URL(fileURLWithPath: $0)) }
        let base: (RunConfig, TrainOptions)
        if resume {
            let state = try Checkpoint.loadState(Checkpoint.resolve(runURL))
            base = (given ?? state.config, state.options)
        } else if let initFrom {
            let source = try Checkpoint.resolve(URL(fileURLWithPath: initFrom))
            o.initFrom = source.path
            base = (try given ?? Checkpoint.loadState(source).config, TrainOptions(dataset: data!))
        } else {
            base = (given!, TrainOptions(dataset: data!))
        }
        let (cfg, options) = try base.0.applying(o, to: base.1)
        let trainer = try Trainer(config: cfg, options: options, run: runURL, resume: resume, force: force)
        trainer.overlapsAllreduce = !noOverlap
        let world = World.shared
        if world.rank == 0 { trainer.progress = ProgressReporter(label: "train") }
        if world.rank != 0 {
            try trainer.train()
            return
        }
        let ranks = world.isDistributed ? " on \(world.size) ranks (gradient sums \(noOverlap ? "after" : "overlapped with") backward)" : ""
        if trainer.completedSteps == 0 {
            print("train \(cfg.model.name) (\(cfg.model.attention.rawValue)): \(trainer.model.parameters.values.count) parameters, " +
                  "context \(cfg.train.context), batch \(cfg.train.batch) x \(options.accumulation), \(cfg.train.steps) steps, order \(options.order.rawValue)\(ranks) -> \(out)")
            if let source = options.initFrom { print("weights from \(source)") }
            if let phases = options.contextSchedule { print("context schedule: " + phases.map { "T \($0.context) for \($0.steps) steps" }.joined(separator: ", ")) }
            if options.carries {
                print(String(format: "carried state: %.1f MB per rank (B x layers x heads x D x (d + 1) floats), saved with each checkpoint",
                             Double(trainer.carryBytes) / 1e6))
            }
        } else {
            print("resume \(out) at step \(trainer.completedSteps) of \(cfg.train.steps)\(ranks)")
        }
        let metrics = try trainer.train()
        if let m = metrics.last {
            print(String(format: "step %d: loss %.4f, %.0f tokens/s, MFU %.1f%%, loader %.2f%% of step time; checkpoint %@", m.step, m.loss,
                         m.tokensPerSecond, 100 * m.mfu, 100 * metrics.map(\.loaderShare).reduce(0, +) / Double(metrics.count),
                         Checkpoint.all(in: runURL).last?.path ?? "-"))
        }
    }
}

extension BatchOrder: ExpressibleByArgument {}
extension AttentionKind: ExpressibleByArgument {}
