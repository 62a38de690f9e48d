import ArgumentParser
import Foundation
import Model
import Shards
import Training

/// `longcrawl eval`: mean loss by token position over sampled evaluation windows.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Mean loss by token position over evaluation windows (from `longcrawl sample`).",
        discussion: """
        Without --context each window runs through the chunked form in one pass; with --context T it runs \
        segment by segment in the recurrent form, each layer's attention state carried from one segment to the \
        next, so a model trained at context 4096 is evaluated out to 65536 (the paper's Figure 2). Softmax \
        models attend within each segment only (default: their training context). Writes RESULT/result.json, \
        RESULT/positions.csv and RESULT/buckets.csv (log-scale buckets).

        Examples:
          longcrawl eval --checkpoint runs/tiny --windows out/eval.h5 --out out/eval-tiny
          longcrawl eval --checkpoint runs/small/checkpoints/step-005000 --windows out/eval.h5 --context 4096 --out out/eval-small
        """
    )

    @Option(help: "Checkpoint folder, or a run folder (its newest checkpoint).")
    var checkpoint: String

    @Option(help: "Evaluation windows (HDF5 from `longcrawl sample`).")
    var windows: String

    @Option(help: "Segment length T for the recurrent form (divides the window length).")
    var context: Int?

    @Option(help: "Result folder.")
    var out: String

    func run() throws {
        let ckpt = try Checkpoint.resolve(URL(fileURLWithPath: checkpoint))
        let state = try Checkpoint.loadState(ckpt)
        let model = Transformer<Float>(config: state.config, seed: 0)
        try Checkpoint.loadModel(ckpt, into: model)
        let file = try EvalWindowFile(contentsOf: URL(fileURLWithPath: windows))
        let progress = ProgressReporter(label: "eval")
        let result = try Evaluator.evaluate(model, file: file, context: context, checkpoint: ckpt.path, windowsFile: windows, progress: progress)
        try result.write(to: URL(fileURLWithPath: out))
        print("eval \(ckpt.lastPathComponent) (\(state.config.name), trained at \(state.config.context)) on \(result.windows) windows of \(file.length), \(result.form):")
        print(String(format: "mean loss %.4f", result.meanLoss))
        for b in result.buckets { print(String(format: "  positions [%d, %d): %.4f", b.start, b.end, b.loss)) }
        print("wrote \(out)/result.json, positions.csv, buckets.csv")
    }
}
