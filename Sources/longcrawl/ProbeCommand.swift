import ArgumentParser
import Foundation
import Model
import Shards
import Support
import Training

/// `longcrawl probe`: what a model's state remembers, by the loss on a repeated span.
struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Recall probe: how much better a model predicts a span repeated after Δ tokens of other text.",
        discussion: """
        For each window and Δ: the window's first --span tokens, the Δ tokens that follow them, then the span \
        again; its control is the same with the first span taken from the next window. The copy gain is the mean \
        loss on the second copy in the control minus that in the probe (positions predicting the copy's tokens \
        2...span), paired per window, with its standard error across windows: a model that remembers nothing \
        across Δ has a gain of 0. Each sequence (2 span + Δ tokens) \
        runs as `eval` runs a row of that length: sympow models in one pass or with the state carried, softmax \
        models in independent segments of their training context (no gain beyond them). A Δ whose sequence is \
        longer than the windows is skipped. Writes OUT/probe.json and OUT/probe.csv; plot with \
        `python -m longcrawl.plot probe OUT... --out probe.png`.

        Example:
          longcrawl probe --checkpoint runs/tiny-p4 --windows out/eval-windows.h5 --out out/probe/tiny-p4
        """
    )

    @Option(help: "Checkpoint folder, or a run folder (its newest checkpoint).")
    var checkpoint: String

    @Option(help: "Evaluation windows (HDF5 from `longcrawl sample`).")
    var windows: String

    @Option(help: "Comma-separated distances Δ in tokens.")
    var deltas: String = Probe.defaultDeltas.map(String.init).joined(separator: ",")

    @Option(help: "Tokens in the repeated span.")
    var span: Int = Probe.defaultSpan

    @Option(help: "Result folder.")
    var out: String

    func run() throws {
        let ds = try deltas.split(separator: ",").map { s -> Int in
            guard let d = Int(s.trimmingCharacters(in: .whitespaces)), d >= 0 else { throw ValidationError("--deltas: '\(s)' is not a distance >= 0") }
            return d
        }
        guard span >= 2 else { throw ValidationError("--span must be at least 2, got \(span)") }
        let opened = try Checkpoint.open(URL(fileURLWithPath: checkpoint))
        let (ckpt, state) = (opened.url, opened.state)
        let file = try EvalWindowFile(contentsOf: URL(fileURLWithPath: windows))
        guard file.count >= 2 else { throw LongCrawlError("\(windows): \(file.count) window(s); the probe's control needs at least 2") }
        let model = try opened.model()
        let result = Probe.evaluate(model, trainedContext: state.config.train.context, file: file, windowsFile: windows, checkpoint: ckpt.path,
                                    deltas: ds, span: span, progress: ProgressReporter(label: "probe"))
        try result.write(to: URL(fileURLWithPath: out))
        print("probe \(ckpt.path) (\(state.config.model.name), \(state.config.model.attention.rawValue), trained at \(state.config.train.context)), span \(span), \(file.count) windows of \(file.length):")
        for d in result.distances {
            print("  Δ \(String(d.delta).padding(toLength: 6, withPad: " ", startingAt: 0)) control \(describe(d.control)), second \(describe(d.secondCopy)), gain \(describe(d.gain)) (\(d.form))")
        }
        if !result.skipped.isEmpty {
            print("  skipped Δ \(result.skipped.map(String.init).joined(separator: ", ")): 2 x \(span) + Δ exceeds the windows' \(file.length) tokens")
        }
        print("wrote \(out)/probe.json, probe.csv")
    }
}
