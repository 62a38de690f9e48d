import ArgumentParser
import Foundation
import Model
import Training

/// `longcrawl bench train`: whole training steps (data loading included) of a config, MFU against sgemm.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Tokens/s and MFU of full training steps (streamed data, forward, backward, AdamW), and the loader's share of step time.",
        discussion: """
        Example (dev corpus):
          longcrawl preprocess ../shared/data/corpus-dev --out out/dev --windows-per-doc all
          longcrawl bench train --data out/dev --config data/configs/small.json --context 4096
        """
    )

    @Option(help: "Dataset folder.")
    var data: String

    @Option(help: "Model config.")
    var config: String = "data/configs/small.json"

    @Option(help: "Context length.")
    var context: Int = 4096

    @Option(help: "Rows per batch (default: the config's).")
    var batch: Int?

    @Option(help: "Measured steps (after one warm-up step).")
    var steps: Int = 8

    func run() throws {
        var cfg = try TransformerConfig.load(URL(fileURLWithPath: config))
        cfg.context = context
        if let batch { cfg.batch = batch }
        cfg.steps = steps + 1
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-bench-train-\(getpid())")
        defer { try? FileManager.default.removeItem(at: run) }
        var options = TrainOptions(data: data)
        options.saveEvery = Int.max
        let trainer = try Trainer(config: cfg, options: options, run: run, force: true)
        let flops = 3 * cfg.forwardFlopsPerToken
        print("config \(cfg.name) (\(cfg.attention.rawValue)), context \(cfg.context), batch \(cfg.batch): \(Int(flops)) flops/token per step (forward+backward = 3 x forward)")
        print("flops/token forward = \(TransformerConfig.flopFormula)")
        print(String(format: "sgemm [4096 x %d] x [%d x %d]: %.1f GFLOP/s (the MFU baseline, this run)", cfg.dModel, cfg.dModel, 4 * cfg.dModel, trainer.sgemmPeak))
        let measured = Array(try trainer.train().dropFirst())
        let seconds = measured.map { Double(cfg.batch * cfg.context) / $0.tokensPerSecond }
        let total = seconds.reduce(0, +)
        let tokensPerSecond = Double(measured.count * cfg.batch * cfg.context) / total
        let loaderSeconds = zip(measured, seconds).map { $0.loaderShare * $1 }.reduce(0, +)
        print("\n| config | T | B | steps | s/step | tokens/s | GFLOP/s | MFU vs sgemm | loader share of step |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        print(String(format: "| %@ | %d | %d | %d | %.2f | %.0f | %.1f | %.1f%% | %.3f%% |", cfg.name, cfg.context, cfg.batch, measured.count,
                     total / Double(measured.count), tokensPerSecond, flops * tokensPerSecond / 1e9,
                     100 * flops * tokensPerSecond / 1e9 / trainer.sgemmPeak, 100 * loaderSeconds / total))
    }
}
