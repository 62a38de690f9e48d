import ArgumentParser
import Cluster
import Foundation
import Model
import Training

/// `longcrawl bench train`: whole training steps (data loading included) of a config, MFU against sgemm.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Tokens/s and MFU of full training steps (streamed data, forward, backward, AdamW), the loader's share of step time, and under mpirun the allreduce time.",
        discussion: """
        Example (dev corpus):
          longcrawl preprocess ../shared/data/corpus-dev --out out/dev --windows-per-doc all
          longcrawl bench train --data out/dev --config data/configs/small.json --context 4096
          mpirun -np 2 --bind-to core longcrawl bench train --data out/dev --context 1024 --batch 2
        """
    )

    @Option(help: "Dataset folder.")
    var data: String

    @Option(help: "Config (model and training).")
    var config: String = "data/configs/small.json"

    @Option(help: "Context length.")
    var context: Int = 4096

    @Option(help: "Rows per batch and rank (default: the config's).")
    var batch: Int?

    @Option(help: "Measured steps (after one warm-up step).")
    var steps: Int = 8

    @Flag(help: "Print one JSON object (for bench scaling).")
    var json = false

    func run() throws {
        var cfg = try RunConfig.load(URL(fileURLWithPath: config))
        cfg.train.context = context
        if let batch { cfg.train.batch = batch }
        cfg.train.steps = steps + 1
        let world = World.shared
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-bench-train-\(world.rank == 0 ? getpid() : 0)")
        let runs = world.allGather(Data(run.path.utf8)).map { String(decoding: $0, as: UTF8.self) }
        let shared = URL(fileURLWithPath: runs[0])
        defer { if world.rank == 0 { try? FileManager.default.removeItem(at: shared) } }
        var options = TrainOptions(data: data)
        options.saveEvery = Int.max
        let trainer = try Trainer(config: cfg, options: options, run: shared, force: true)
        let flops = 3 * cfg.model.forwardFlopsPerToken(context: context)
        let measured = Array(try trainer.train().dropFirst())
        guard world.rank == 0 else { return }
        let seconds = measured.map { Double(cfg.train.batch * context * world.size) / $0.tokensPerSecond }
        let total = seconds.reduce(0, +)
        let tokensPerSecond = Double(measured.count * cfg.train.batch * context * world.size) / total
        let loader = zip(measured, seconds).map { $0.loaderShare * $1 }.reduce(0, +) / total
        let allreduce = measured.map(\.allreduceSeconds).reduce(0, +) / Double(measured.count)
        let mfu = flops * tokensPerSecond / Double(world.size) / 1e9 / trainer.ceiling
        if json {
            let out: [String: Double] = ["ranks": Double(world.size), "tokens_per_s": tokensPerSecond, "step_s": total / Double(measured.count),
                                         "allreduce_s": allreduce, "mfu": mfu, "loader_share": loader]
            print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print("config \(cfg.model.name) (\(cfg.model.attention.rawValue)), context \(context), batch \(cfg.train.batch) x \(world.size) rank(s): \(Int(flops)) flops/token per step (forward+backward = 3 x forward)")
        print("flops/token forward = \(cfg.model.flopFormula(context: context))")
        print(String(format: "sgemm at the model's own GEMM shapes (projections, MLP, head; forward and backward): best %.1f GFLOP/s per rank, the MFU ceiling, this run",
                     trainer.ceiling))
        print("\n| config | T | B x ranks | steps | s/step | tokens/s | GFLOP/s | MFU | loader share | allreduce s/step |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        print(String(format: "| %@ | %d | %d x %d | %d | %.2f | %.0f | %.1f | %.1f%% | %.3f%% | %.3f |", cfg.model.name, context, cfg.train.batch, world.size,
                     measured.count, total / Double(measured.count), tokensPerSecond, flops * tokensPerSecond / 1e9, 100 * mfu, 100 * loader, allreduce))
    }
}

/// `longcrawl bench scaling`: data-parallel efficiency on this machine, each rank bound to one core.
struct BenchScaling: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "Tokens/s with N ranks over N x tokens/s with 1 rank (mpirun --bind-to core), and allreduce time per step.",
        discussion: """
        Example:
          longcrawl bench scaling --data out/dev --ranks 2
        """
    )

    @Option(help: "Dataset folder.")
    var data: String

    @Option(help: "Config (model and training).")
    var config: String = "data/configs/small.json"

    @Option(help: "Context length.")
    var context: Int = 1024

    @Option(help: "Rows per batch and rank.")
    var batch: Int = 2

    @Option(help: "Measured steps.")
    var steps: Int = 3

    @Option(help: "Ranks to compare with one.")
    var ranks: Int = 2

    func run() throws {
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        func measure(_ n: Int) throws -> [String: Double] {
            let (status, bytes) = try capture(["mpirun", "--allow-run-as-root", "--bind-to", "core", "--map-by", "core", "-np", String(n), me, "bench", "train",
                                               "--data", data, "--config", config, "--context", String(context), "--batch", String(batch),
                                               "--steps", String(steps), "--json"])
            guard status == 0, let line = String(decoding: bytes, as: UTF8.self).split(separator: "\n").last,
                  let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Double] else {
                throw TrainingError("mpirun -np \(n) bench train failed (status \(status))")
            }
            return obj
        }
        let one = try measure(1), many = try measure(ranks)
        let efficiency = many["tokens_per_s"]! / (Double(ranks) * one["tokens_per_s"]!)
        print("config \(config), context \(context), batch \(batch) per rank, \(steps) steps, each rank bound to one core")
        print("\n| ranks | tokens/s | s/step | allreduce s/step | allreduce share | MFU per rank |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in [one, many] {
            print(String(format: "| %.0f | %.0f | %.2f | %.3f | %.1f%% | %.1f%% |", r["ranks"]!, r["tokens_per_s"]!, r["step_s"]!, r["allreduce_s"]!,
                         100 * r["allreduce_s"]! / r["step_s"]!, 100 * r["mfu"]!))
        }
        print(String(format: "\nscaling efficiency: %.1f%% (tokens/s with %d ranks over %d x tokens/s with 1)", 100 * efficiency, ranks, ranks))
    }
}
