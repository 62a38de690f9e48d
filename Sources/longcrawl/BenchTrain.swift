import ArgumentParser
import Cluster
import Foundation
import Support
import Model
import Training

/// `longcrawl bench train`: whole training steps (data loading included) of a config, MFU against sgemm.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Tokens/s and MFU of full training steps (streamed data, forward, backward, AdamW), the loader's share of step time, and under mpirun the allreduce time (the wait after backward).",
        discussion: """
        Example (dev corpus):
          longcrawl preprocess ../shared/data/corpus-dev --out out/dev --windows-per-doc all
          longcrawl bench train --data out/dev --config data/configs/small.json --context 4096
          mpirun -np 2 --bind-to core longcrawl bench train --data out/dev --context 1024 --batch 2
          longcrawl bench train --data out/dev --config data/configs/tiny.json --context 256 --compare-carry --steps 40
        """
    )

    @OptionGroup var inputs: TrainingBenchOptions

    @Option(help: "Context length.")
    var context: Int = 4096

    @Option(help: "Rows per batch and rank (default: the config's).")
    var batch: Int?

    @Option(help: "Measured steps (after one warm-up step).")
    var steps: Int = 8

    @Flag(help: "Under mpirun, one blocking allreduce after backward instead of buckets overlapped with it.")
    var noOverlap = false

    @Flag(help: "Under mpirun, alternate blocking and overlapped steps, reported apart (bench scaling: both under the same machine load).")
    var alternate = false

    @Flag(help: "Carry each row's attention state across steps (sequential order), as train --carry-state.")
    var carryState = false

    @Flag(help: "Alternate steps of two runs in sequential order, one carrying its state (train --carry-state) and one not, and print their tokens/s ratio (one process, the same machine load for both).")
    var compareCarry = false

    @Flag(help: "Print one JSON object (for bench scaling).")
    var json = false

    func validate() throws {
        if alternate && noOverlap { throw ValidationError("--alternate and --no-overlap exclude each other") }
        if compareCarry && (carryState || alternate || json) { throw ValidationError("--compare-carry runs both ways itself (without --carry-state, --alternate or --json)") }
    }

    func run() throws {
        var o = RunOverrides()
        (o.context, o.batch, o.steps, o.saveEvery, o.carryState) = (context, batch, steps + 1, Int.max, carryState)
        let (cfg, options) = try RunConfig.load(URL(fileURLWithPath: inputs.config)).applying(o, to: TrainOptions(dataset: inputs.data))
        let world = World.shared
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-bench-train-\(world.rank == 0 ? getpid() : 0)")
        let runs = world.allGather(Data(run.path.utf8)).map { String(decoding: $0, as: UTF8.self) }
        let shared = URL(fileURLWithPath: runs[0])
        defer { if world.rank == 0 { try? FileManager.default.removeItem(at: shared) } }
        if compareCarry { return try compare(cfg, options, run: shared) }
        let trainer = try Trainer(config: cfg, options: options, run: shared, force: true)
        let flops = 3 * cfg.model.forwardFlopsPerToken(context: context)
        // One warm-up step, then one step per call, so that --alternate can switch between steps.
        trainer.overlapsAllreduce = !noOverlap
        try trainer.step()
        var measured: [(metrics: StepMetrics, overlapped: Bool)] = []
        while trainer.completedSteps < cfg.train.steps {
            if alternate { trainer.overlapsAllreduce = measured.count % 2 == 1 }
            measured.append((try trainer.step(), trainer.overlapsAllreduce))
        }
        // Rank 0's wait also holds the time it waits for a slower rank to finish backward. Per step the shortest wait
        // over ranks is that of the rank whose backward ended last: the sums alone, what overlap can hide.
        let waits = try world.allGather(JSONEncoder().encode(measured.map(\.metrics.allreduceSeconds))).map { try JSONDecoder().decode([Double].self, from: $0) }
        let lastWaits = measured.indices.map { i in waits.map { $0[i] }.min()! }
        guard world.rank == 0 else { return }
        func summary(overlapped: Bool?) -> [String: Double] {
            let steps = measured.indices.filter { overlapped == nil || measured[$0].overlapped == overlapped }
            let seconds = steps.map { Double(cfg.train.batch * context * world.size) / measured[$0].metrics.tokensPerSecond }
            let total = seconds.reduce(0, +), n = Double(steps.count)
            let tokensPerSecond = n * Double(cfg.train.batch * context * world.size) / total
            return ["ranks": Double(world.size), "steps": n, "tokens_per_s": tokensPerSecond, "step_s": total / n,
                    "allreduce_s": steps.map { measured[$0].metrics.allreduceSeconds }.reduce(0, +) / n,
                    "allreduce_last_s": steps.map { lastWaits[$0] }.reduce(0, +) / n,
                    "mfu": flops * tokensPerSecond / Double(world.size) / 1e9 / trainer.ceiling,
                    "loader_share": zip(steps, seconds).map { measured[$0].metrics.loaderShare * $1 }.reduce(0, +) / total]
        }
        let split = alternate && world.isDistributed
        let rows: [(String, [String: Double])] = split
            ? [("blocking", summary(overlapped: false)), ("overlapped", summary(overlapped: true))]
            : [(world.isDistributed ? (noOverlap ? "blocking" : "overlapped") : "alone", summary(overlapped: nil))]
        if json {
            let out = split ? Dictionary(uniqueKeysWithValues: rows) as [String: Any] : rows[0].1
            print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print("config \(cfg.model.name) (\(cfg.model.attention.rawValue)), context \(context), batch \(cfg.train.batch) x \(world.size) rank(s): \(Int(flops)) flops/token per step (forward+backward = 3 x forward)")
        print("flops/token forward = \(cfg.model.flopFormula(context: context))")
        print(String(format: "sgemm at the model's own GEMM shapes (projections, MLP, head; forward and backward): best %.1f GFLOP/s per rank, the MFU ceiling, this run",
                     trainer.ceiling))
        if world.isDistributed { print(BenchScaling.allreduceLegend) }
        // New columns go last: tools/bench_vs_torch.sh reads tokens/s as the sixth.
        print("\n| config | T | B x ranks | steps | s/step | tokens/s | GFLOP/s | MFU | loader share | allreduce s/step, rank 0 | last rank | gradient sums |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for (how, r) in rows {
            print(String(format: "| %@ | %d | %d x %d | %.0f | %.2f | %.0f | %.1f | %.1f%% | %.3f%% | %.3f | %.3f | %@ |", cfg.model.name, context, cfg.train.batch,
                         world.size, r["steps"]!, r["step_s"]!, r["tokens_per_s"]!, flops * r["tokens_per_s"]! / 1e9, 100 * r["mfu"]!, 100 * r["loader_share"]!,
                         r["allreduce_s"]!, r["allreduce_last_s"]!, how))
        }
    }
}

extension BenchTrain {
    /// `--compare-carry`: a carried and a plain run in sequential order, step for step in turn (each its own warm-up
    /// step first), so that both see the same load of a shared machine; tokens/s of each and their ratio.
    func compare(_ cfg: RunConfig, _ options: TrainOptions, run: URL) throws {
        let variants = [false, true].map { Variant(attention: cfg.model.attention, carries: $0) }
        var sequential = RunOverrides()
        sequential.order = .sequential
        let trainers = try variants.map { v in
            let (c, o) = try cfg.applying(v.overrides(sequential), to: options)
            return try Trainer(config: c, options: o, run: run.appendingPathComponent(v.name), force: true)
        }
        for t in trainers { try t.step() }
        var seconds = [[Double]](repeating: [], count: trainers.count)
        let tokens = Double(cfg.train.batch * cfg.train.context * World.shared.size)
        while trainers[0].completedSteps < cfg.train.steps {
            for (i, t) in trainers.enumerated() { seconds[i].append(tokens / (try t.step()).tokensPerSecond) }
        }
        guard World.shared.rank == 0 else { return }
        let rate = seconds.map { tokens * Double($0.count) / $0.reduce(0, +) }
        print("config \(cfg.model.name) (\(cfg.model.attention.rawValue)), context \(cfg.train.context), batch \(cfg.train.batch), sequential order, " +
              "\(seconds[0].count) steps each, alternated; carried state \(String(format: "%.2f", Double(trainers[1].carryBytes) / 1e6)) MB")
        print("\n| run | steps | s/step | tokens/s |\n| --- | ---: | ---: | ---: |")
        for (i, v) in variants.enumerated() {
            print(String(format: "| %@ | %d | %.4f | %.0f |", v.name, seconds[i].count, seconds[i].reduce(0, +) / Double(seconds[i].count), rate[i]))
        }
        print(String(format: "\ncarried / plain tokens/s: %.3f (same run)", rate[1] / rate[0]))
    }
}

/// `longcrawl bench scaling`: data-parallel efficiency on this machine, each rank bound to one core, and how much
/// of the allreduce the buckets overlapped with backward hide.
struct BenchScaling: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "Tokens/s with N ranks over N x tokens/s with 1 rank (mpirun --bind-to core), with the blocking allreduce and with buckets overlapped with backward, and the share of the allreduce hidden.",
        discussion: """
        One micro-batch per step (accum 1): the whole backward is the last micro-batch's, the case overlap is for. The N-rank \
        run alternates blocking and overlapped steps, so that the machine's load changes hit both alike.
        Example:
          longcrawl bench scaling --data out/dev --ranks 2
        """
    )

    static let allreduceLegend = """
        allreduce s/step: the wait from the end of backward until gradients and loss are summed over ranks: rank 0's (with any wait \
        for a slower rank to finish backward) and the last rank's (the one whose backward ended last: the sums alone)
        """

    @OptionGroup var inputs: TrainingBenchOptions

    @Option(help: "Context length.")
    var context: Int = 1024

    @Option(help: "Rows per batch and rank.")
    var batch: Int = 2

    @Option(help: "Measured steps (with N ranks half blocking, half overlapped).")
    var steps: Int = 8

    @Option(help: "Ranks to compare with one.")
    var ranks: Int = 2

    func run() throws {
        let (data, config) = (inputs.data, inputs.config)
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        func measure(_ n: Int) throws -> [String: Any] {
            let (status, bytes) = try capture(["mpirun", "--allow-run-as-root", "--bind-to", "core", "--map-by", "core", "-np", String(n), me, "bench", "train",
                                               "--data", data, "--config", config, "--context", String(context), "--batch", String(batch),
                                               "--steps", String(steps), "--json"] + (n > 1 ? ["--alternate"] : []))
            guard status == 0, let line = String(decoding: bytes, as: UTF8.self).split(separator: "\n").last,
                  let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw LongCrawlError("mpirun -np \(n) bench train failed (status \(status))")
            }
            return obj
        }
        guard let one = try measure(1) as? [String: Double], let many = try measure(ranks) as? [String: [String: Double]],
              let blocking = many["blocking"], let overlapped = many["overlapped"] else { throw LongCrawlError("bench train --json: unexpected output") }
        print("config \(config), context \(context), batch \(batch) per rank, accum 1, \(steps) steps, each rank bound to one core")
        print(Self.allreduceLegend)
        print("\n| ranks | gradient sums | tokens/s | s/step | allreduce s/step, rank 0 | last rank | allreduce share | MFU per rank | scaling efficiency |")
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for (r, how) in [(one, "-"), (blocking, "blocking, after backward"), (overlapped, "buckets overlapped with backward")] {
            let efficiency = r["tokens_per_s"]! / (r["ranks"]! * one["tokens_per_s"]!)
            print(String(format: "| %.0f | %@ | %.0f | %.2f | %.3f | %.3f | %.1f%% | %.1f%% | %.1f%% |", r["ranks"]!, how, r["tokens_per_s"]!, r["step_s"]!,
                         r["allreduce_s"]!, r["allreduce_last_s"]!, 100 * r["allreduce_s"]! / r["step_s"]!, 100 * r["mfu"]!, 100 * efficiency))
        }
        let hidden = { (key: String) in 1 - overlapped[key]! / blocking[key]! }
        print(String(format: "\nallreduce hidden behind backward: %.1f%% for the last rank (1 - exposed wait %.3f s / blocking allreduce %.3f s per step), %.1f%% for rank 0 (%.3f s / %.3f s)",
                     100 * hidden("allreduce_last_s"), overlapped["allreduce_last_s"]!, blocking["allreduce_last_s"]!,
                     100 * hidden("allreduce_s"), overlapped["allreduce_s"]!, blocking["allreduce_s"]!))
        print(String(format: "tokens/s: %.0f overlapped, %.0f blocking (%+.1f%%); scaling efficiency: tokens/s with %d ranks over %d x tokens/s with 1",
                     overlapped["tokens_per_s"]!, blocking["tokens_per_s"]!, 100 * (overlapped["tokens_per_s"]! / blocking["tokens_per_s"]! - 1), ranks, ranks))
    }
}
