import ArgumentParser
import Foundation
import Model
import Shards
import Support
import Training

/// `longcrawl eval`: mean loss by token position over sampled evaluation windows.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Mean loss by token position over evaluation windows (from `longcrawl sample`).",
        discussion: """
        Without --context each window runs in one pass, in the form the cost model picks (the chunked form once \
        T > D + c, D = C(d + p - 1, p)); with --context T it runs \
        segment by segment in the recurrent form, each layer's attention state carried from one segment to the \
        next, so a model trained at context 4096 is evaluated out to \(windowLength) (the paper's Figure 2). Softmax \
        models attend within each segment only (default: their training context). Writes RESULT/result.json, \
        RESULT/positions.csv and RESULT/buckets.csv (log-scale buckets).

        Examples:
          longcrawl eval --checkpoint runs/tiny --windows out/eval.h5 --out out/eval-tiny
          longcrawl eval --checkpoint runs/small/checkpoints/step-005000 --windows out/eval.h5 --context 4096 --out out/eval-small
        """
    )

    @Option(help: "Checkpoint folder, or a run folder (its newest checkpoint); repeat to evaluate several on the same windows.")
    var checkpoint: [String]

    @Option(help: "Evaluation windows (HDF5 from `longcrawl sample`).")
    var windows: String

    @Option(help: "Segment length T for the recurrent form (divides the window length).")
    var context: Int?

    @Flag(help: "Leave out each row's seam target (a rolled window's first document token, predicted from its last kept one) from every mean.")
    var maskSeam = false

    @Option(help: "Result folder; with several checkpoints, the folder of one result folder per checkpoint (named after its run).")
    var out: String

    func validate() throws {
        guard !checkpoint.isEmpty else { throw ValidationError("give at least one --checkpoint") }
    }

    func run() throws {
        // Every checkpoint is checked before the first evaluation starts.
        let checkpoints = try checkpoint.map { try Checkpoint.open(URL(fileURLWithPath: $0)) }
        let file = try EvalWindowFile(contentsOf: URL(fileURLWithPath: windows))
        let folders = resultFolders(checkpoint, out: URL(fileURLWithPath: out))
        for (opened, folder) in zip(checkpoints, folders) {
            let (ckpt, state, model) = (opened.url, opened.state, try opened.model())
            let result = try Evaluator.evaluate(model, trainedContext: state.config.train.context, file: file, context: context, checkpoint: ckpt.path,
                                                windowsFile: windows, masksSeam: maskSeam, progress: ProgressReporter(label: "eval"))
            try result.write(to: folder)
            print("eval \(ckpt.path) (\(state.config.model.name), \(state.config.model.attention.rawValue), trained at \(state.config.train.context)) on \(result.windows) windows of \(file.length), \(result.form), \(Int(result.tokensPerSecond)) tokens/s:")
            print(describe(result.summary))
            print("wrote \(folder.path)/result.json, positions.csv, buckets.csv")
        }
    }
}

/// One result folder per checkpoint: `out` itself for one, `out/RUN` for several (RUN-2, ... where runs share a name).
func resultFolders(_ checkpoints: [String], out: URL) -> [URL] {
    guard checkpoints.count > 1 else { return [out] }
    var seen: [String: Int] = [:]
    return checkpoints.map { path in
        var url = URL(fileURLWithPath: path).standardizedFileURL
        if url.deletingLastPathComponent().lastPathComponent == "checkpoints" { url = url.deletingLastPathComponent().deletingLastPathComponent() }
        let name = url.lastPathComponent
        seen[name, default: 0] += 1
        return out.appendingPathComponent(seen[name]! == 1 ? name : "\(name)-\(seen[name]!)")
    }
}

/// `1.2345 ± 0.0123`, or `1.2345 (SE undefined: one window)`.
func describe(_ e: Estimate) -> String {
    e.se.map { String(format: "%.4f ± %.4f", e.mean, $0) } ?? String(format: "%.4f (SE undefined: one window)", e.mean)
}

/// The summary's lines: best-context loss, range means, extrapolation gap, each with its standard error.
func describe(_ s: EvalSummary) -> String {
    var lines = ["  trained context L = \(s.trainedContext)"]
    if let b = s.bestContext { lines.append("  best-context loss [0.9L, L):  \(describe(b))") }
    for r in s.ranges { lines.append("  \(r.name.padding(toLength: 13, withPad: " ", startingAt: 0)) positions [\(r.start), \(r.end)): \(describe(r.loss))") }
    if let g = s.extrapolationGap { lines.append("  extrapolation gap (L, 4L] - (L/2, L]: \(describe(g))") }
    return lines.joined(separator: "\n")
}
