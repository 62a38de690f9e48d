import Foundation
import Model
import Shards
import Support
import Tensor

/// The recall probe: what a model's state remembers, measured by loss alone (no instruction following). For a
/// window and a distance Δ the probe sequence is a span of the window's first `span` tokens, the Δ tokens that
/// follow it in the window, then the span again; its control is the same sequence with the first span replaced by
/// the next window's span. The copy gain is the model's mean loss on the second copy in the control minus that in
/// the probe (over the positions predicting the copy's tokens 2...span), paired per window: the two sequences differ
/// only Δ tokens or more before the copy, so a model that remembers nothing across Δ has a gain of 0 whatever its
/// loss does with position (comparing with the first copy, at the start of the sequence, would credit context).
public struct ProbeResult: Codable, Equatable, Sendable {
    public struct Distance: Codable, Equatable, Sendable {
        public var delta: Int
        /// Tokens in each probe sequence: 2 span + Δ.
        public var length: Int
        /// How the sequence ran (`result.json`'s form names).
        public var form: String
        /// Loss on the second copy in the control sequence (whose first span is another window's).
        public var control: Estimate
        /// Loss on the second copy in the probe sequence.
        public var secondCopy: Estimate
        /// Control minus second copy, per window, then over windows (a paired difference).
        public var gain: Estimate

        enum CodingKeys: String, CodingKey {
            case delta, length, form, gain, control
            case secondCopy = "second_copy"
        }
    }

    var checkpoint: String
    var windowsFile: String
    public var config: String
    public var attention: String
    public var trainedContext: Int
    public var span: Int
    public var windows: Int
    /// Tokens in each window (a Δ whose sequence is longer is skipped).
    var windowTokens: Int
    public var distances: [Distance]
    /// Distances left out because 2 span + Δ exceeds the window's tokens.
    public var skipped: [Int]

    enum CodingKeys: String, CodingKey {
        case checkpoint, config, attention, span, windows, distances, skipped
        case windowsFile = "windows_file", trainedContext = "trained_context", windowTokens = "window_tokens"
    }

    init(checkpoint: String, windowsFile: String, config: String, attention: String, trainedContext: Int, span: Int, windows: Int,
                windowTokens: Int, distances: [Distance], skipped: [Int]) {
        self.checkpoint = checkpoint; self.windowsFile = windowsFile; self.config = config; self.attention = attention
        self.trainedContext = trainedContext; self.span = span; self.windows = windows; self.windowTokens = windowTokens
        self.distances = distances; self.skipped = skipped
    }

    /// `OUT/probe.json` and `OUT/probe.csv` (delta, length, control, control_se, second, second_se, gain, gain_se, form);
    /// an undefined standard error is empty.
    public func write(to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try AtomicFile.writeJSON(self, to: folder.appendingPathComponent("probe.json"))
        func cells(_ e: Estimate) -> String { "\(e.mean),\(e.se.map { String($0) } ?? "")" }
        var csv = "delta,length,control,control_se,second,second_se,gain,gain_se,form\n"
        for d in distances { csv += "\(d.delta),\(d.length),\(cells(d.control)),\(cells(d.secondCopy)),\(cells(d.gain)),\"\(d.form)\"\n" }
        try AtomicFile.write(Data(csv.utf8), to: folder.appendingPathComponent("probe.csv"))
    }
}

public enum Probe {
    /// The distances and span of the copy probe (docs/GUIDE.md, `probe`), used by `probe` and `experiment` unless told otherwise.
    public static let defaultDeltas = [64, 256, 1024, 4096, 16384, 60000]
    public static let defaultSpan = 64

    /// The probe sequence of a window: its first `span` tokens, the `delta` that follow, the first `span` again;
    /// with `firstSpan`, the control: the same with `firstSpan` in place of the first copy. Nil when 2 span + Δ
    /// exceeds the window.
    static func sequence(_ window: ArraySlice<UInt16>, delta: Int, span: Int, firstSpan: ArraySlice<UInt16>? = nil) -> [UInt16]? {
        guard 2 * span + delta <= window.count else { return nil }
        let start = window.startIndex, copy = window[start..<(start + span)]
        let first = firstSpan.map { $0.prefix(span) } ?? copy
        precondition(first.count == span, "the control's first span is shorter than \(span)")
        return Array(first) + window[(start + span)..<(start + span + delta)] + copy
    }

    /// Mean loss on the second copy: positions predicting its tokens 2...span, from losses by position (position i
    /// predicts token i + 1).
    static func secondCopyLoss(_ losses: [Double], delta: Int, span: Int) -> Double {
        let second = span + delta
        return losses[second..<(second + span - 1)].reduce(0, +) / Double(span - 1)
    }

    /// Copy gains of `model`, trained at `trainedContext`, over every row of an evaluation-window file, as the result
    /// `probe` and `experiment` write.
    public static func evaluate(_ model: Transformer<Float>, trainedContext: Int, file: EvalWindowFile, windowsFile: String, checkpoint: String,
                                deltas: [Int] = defaultDeltas, span: Int = defaultSpan, progress: ProgressReporter? = nil) -> ProbeResult {
        let (distances, skipped) = run(model, trainedContext: trainedContext, windows: (0..<file.count).map(file.row), deltas: deltas,
                                       span: span, progress: progress)
        return ProbeResult(checkpoint: checkpoint, windowsFile: windowsFile, config: model.config.name, attention: model.config.attention.rawValue,
                           trainedContext: trainedContext, span: span, windows: file.count, windowTokens: file.length,
                           distances: distances, skipped: skipped)
    }

    /// Copy gains over `windows` (at least 2: window i's control takes window i + 1's span, cyclically) at each Δ
    /// that fits, each sequence run as `eval` runs a row of its length (`Evaluator.losses`); returns the distances
    /// and the Δ skipped.
    public static func run(_ model: Transformer<Float>, trainedContext: Int, windows: [ArraySlice<UInt16>], deltas: [Int], span: Int,
                           progress: ProgressReporter? = nil) -> (distances: [ProbeResult.Distance], skipped: [Int]) {
        precondition(windows.count >= 2, "the probe's control needs at least 2 windows")
        var distances: [ProbeResult.Distance] = [], skipped: [Int] = []
        for delta in deltas {
            guard windows.allSatisfy({ 2 * span + delta <= $0.count }) else { skipped.append(delta); continue }
            let length = 2 * span + delta, inputs = EvalWindowFile.inferredContext(length: length)
            let segment = Evaluator.segment(model.config, inputs: inputs, context: nil, trainedContext: trainedContext)
            var control: [Double] = [], second: [Double] = []
            for (i, window) in windows.enumerated() {
                func loss(firstSpan: ArraySlice<UInt16>?) -> Double {
                    let seq = sequence(window, delta: delta, span: span, firstSpan: firstSpan)!
                    return secondCopyLoss(Evaluator.losses(model, row: seq[...], segment: segment), delta: delta, span: span)
                }
                control.append(loss(firstSpan: windows[(i + 1) % windows.count].prefix(span)))
                second.append(loss(firstSpan: nil))
                if let progress, progress.due() { progress.show("Δ \(delta): window \(i + 1)/\(windows.count)") }
            }
            distances.append(ProbeResult.Distance(delta: delta, length: length, form: Evaluator.formName(model.config, inputs: inputs, segment: segment),
                                                  control: Estimate(control), secondCopy: Estimate(second),
                                                  gain: Estimate(zip(control, second).map { $0 - $1 })))
        }
        progress?.end()
        return (distances, skipped)
    }
}
