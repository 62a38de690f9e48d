import Foundation
import Model
import Shards
import Streaming
import Support
import Tensor

/// A mean over evaluation windows with its standard error: windows are the independent samples, so the error is
/// the windows' standard deviation (n - 1) over sqrt(n); undefined (nil, `null` in JSON) for a single window.
public struct Estimate: Codable, Equatable, Sendable {
    public var mean: Double
    public var se: Double?

    public init(_ samples: [Double]) {
        let n = Double(samples.count)
        mean = samples.reduce(0, +) / n
        let m = mean
        se = samples.count < 2 ? nil : (samples.reduce(0) { $0 + ($1 - m) * ($1 - m) } / (n - 1) / n).squareRoot()
    }

    /// Over the samples that count: a loss left out by `eval --mask-seam` is NaN.
    init(counted samples: [Double]) { self.init(samples.filter { !$0.isNaN }) }
}

/// The mean of the losses that count (a target masked by `eval --mask-seam` is NaN); NaN when none does.
func countedMean<C: Collection>(_ losses: C) -> Double where C.Element == Double {
    var sum = 0.0, n = 0
    for x in losses where !x.isNaN { sum += x; n += 1 }
    return n == 0 ? .nan : sum / Double(n)
}

/// The paper's summary of a contextwise loss curve for a model trained at context L. Ranges are of context
/// lengths n = position + 1 (tokens seen): `(a, b]` holds positions a ..< b.
public struct EvalSummary: Codable, Equatable, Sendable {
    public struct ContextRange: Codable, Equatable, Sendable {
        public var name: String
        /// Positions [start, end).
        public var start: Int, end: Int
        public var loss: Estimate
    }

    public var trainedContext: Int
    /// Mean loss over positions [0.9 L, L) (0.9 L rounded down): Manifest's best-context loss.
    public var bestContext: Estimate?
    /// (L/2, L], (L, 2L], (2L, 4L], (4L, 16L], (16L, 65535]: those the rows reach.
    public var ranges: [ContextRange]
    /// Mean over (L, 4L] minus mean over (L/2, L], per window, then over windows (a paired difference).
    public var extrapolationGap: Estimate?

    enum CodingKeys: String, CodingKey {
        case ranges
        case trainedContext = "trained_context", bestContext = "best_context", extrapolationGap = "extrapolation_gap"
    }

    /// From per-window per-position losses (every row the same length; NaN where a target does not count).
    public init(perWindow: [[Double]], trainedContext l: Int) {
        let positions = perWindow.first?.count ?? 0
        func means(_ r: Range<Int>) -> [Double] { perWindow.map { countedMean($0[r]) } }
        trainedContext = l
        let best = Int(0.9 * Double(l))..<l
        bestContext = l <= positions && !best.isEmpty ? Estimate(counted: means(best)) : nil
        let bounds: [(String, Int, Int)] = [("(L/2, L]", l / 2, l), ("(L, 2L]", l, 2 * l), ("(2L, 4L]", 2 * l, 4 * l),
                                            ("(4L, 16L]", 4 * l, 16 * l), ("(16L, 65535]", 16 * l, windowLength - 1)]
        ranges = bounds.compactMap { name, a, b in
            let end = min(b, positions)
            return a < end ? ContextRange(name: name, start: a, end: end, loss: Estimate(counted: means(a..<end))) : nil
        }
        if positions >= 4 * l {
            let near = means((l / 2)..<l), far = means(l..<(4 * l))
            extrapolationGap = Estimate(counted: zip(far, near).map { $0 - $1 })
        } else {
            extrapolationGap = nil
        }
    }
}

/// Mean loss by token position over evaluation windows, with standard errors: the paper's contextwise loss curve.
public struct EvalResult: Codable, Equatable, Sendable {
    public struct Bucket: Codable, Equatable, Sendable {
        /// Positions [start, end).
        public var start: Int, end: Int
        public var loss: Double
        public var se: Double?
    }

    var checkpoint: String
    var windowsFile: String
    public var config: String
    public var trainedContext: Int
    /// Segment length: the window length for one chunked pass, shorter for the recurrent form carried across segments.
    var segment: Int
    public var form: String
    public var windows: Int
    var meanLoss: Double
    /// Position i: mean loss of predicting token i + 1 from tokens 0...i.
    var perPosition: [Double]
    /// Standard error of each position's mean across windows (nil for one window; an entry is nil where fewer than
    /// two windows count, which only `--mask-seam` makes happen).
    var perPositionSE: [Double?]?
    /// [2^k - 1, 2^(k+1) - 1): a log-scale x axis.
    var buckets: [Bucket]
    /// Eight log-spaced bins per octave, each bin's mean per window then over windows: a readable curve with
    /// standard-error bands (65,536 single positions are noise).
    var curve: [Bucket]
    public var summary: EvalSummary
    public var tokensPerSecond: Double
    /// true when each row's seam target was left out (`eval --mask-seam`); absent otherwise.
    public var maskSeam: Bool?

    enum CodingKeys: String, CodingKey {
        case checkpoint, config, form, windows, buckets, curve, summary
        case segment = "context", windowsFile = "windows_file", trainedContext = "trained_context", meanLoss = "mean_loss", perPosition = "per_position"
        case perPositionSE = "per_position_se", tokensPerSecond = "tokens_per_s", maskSeam = "mask_seam"
    }

    /// The result of per-window per-position losses (NaN where a target does not count: every position needs one
    /// window whose target there counts).
    init(perWindow: [[Double]], checkpoint: String, windowsFile: String, config: String, trainedContext: Int, segment: Int, form: String,
         tokensPerSecond: Double) {
        let n = perWindow.count, positions = perWindow[0].count
        var per = [Double](repeating: 0, count: positions), se: [Double?]? = n > 1 ? per.map { $0 } : nil
        for i in 0..<positions {
            let e = Estimate(counted: perWindow.map { $0[i] })
            per[i] = e.mean
            se?[i] = e.se
        }
        func bins(_ next: (Int) -> Int) -> [Bucket] {
            var out: [Bucket] = []
            var start = 0
            while start < positions {
                let end = min(positions, max(start + 1, next(start)))
                let e = Estimate(counted: perWindow.map { countedMean($0[start..<end]) })
                out.append(Bucket(start: start, end: end, loss: e.mean, se: e.se))
                start = end
            }
            return out
        }
        self.init(checkpoint: checkpoint, windowsFile: windowsFile, config: config, trainedContext: trainedContext, segment: segment,
                  form: form, windows: n, meanLoss: per.reduce(0, +) / Double(positions), perPosition: per, perPositionSE: se,
                  buckets: bins { 2 * $0 + 1 }, curve: bins { Int((Double($0 + 1) * 0x1.0B5586CF9890Fp0).rounded()) - 1 },
                  summary: EvalSummary(perWindow: perWindow, trainedContext: trainedContext), tokensPerSecond: tokensPerSecond)
    }

    init(checkpoint: String, windowsFile: String, config: String, trainedContext: Int, segment: Int, form: String, windows: Int,
         meanLoss: Double, perPosition: [Double], perPositionSE: [Double?]?, buckets: [Bucket], curve: [Bucket], summary: EvalSummary,
         tokensPerSecond: Double) {
        self.checkpoint = checkpoint; self.windowsFile = windowsFile; self.config = config; self.trainedContext = trainedContext
        self.segment = segment; self.form = form; self.windows = windows; self.meanLoss = meanLoss; self.perPosition = perPosition
        self.perPositionSE = perPositionSE; self.buckets = buckets; self.curve = curve; self.summary = summary; self.tokensPerSecond = tokensPerSecond
    }

    /// `RESULT/result.json`, `RESULT/positions.csv` (position, loss, se) and `RESULT/buckets.csv` (start, end, loss, se);
    /// an undefined standard error is empty in the CSV files.
    public func write(to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try AtomicFile.writeJSON(self, to: folder.appendingPathComponent("result.json"))
        var csv = "position,loss,se\n"
        for (i, l) in perPosition.enumerated() { csv += "\(i),\(l),\((perPositionSE?[i]).map { String($0) } ?? "")\n" }
        try AtomicFile.write(Data(csv.utf8), to: folder.appendingPathComponent("positions.csv"))
        var b = "start,end,loss,se\n"
        for k in buckets { b += "\(k.start),\(k.end),\(k.loss),\(k.se.map { String($0) } ?? "")\n" }
        try AtomicFile.write(Data(b.utf8), to: folder.appendingPathComponent("buckets.csv"))
    }
}

public enum Evaluator {
    /// The form of one forward over a whole row of `inputs` tokens when `segment` covers it, by cost
    /// (`ModelConfig.attentionForm`); nil when the row runs segment by segment instead (a shorter segment,
    /// or a length the chunked form cannot take in one pass).
    static func onePassForm(_ config: ModelConfig, inputs l: Int, segment: Int) -> AttentionForm? {
        guard segment >= l else { return nil }
        let form = config.attentionForm(length: l)
        return form == .quadratic || l % config.chunk == 0 ? form : nil
    }

    /// How `losses` runs a row of `inputs` tokens in segments of `segment`, as `result.json` names it.
    static func formName(_ config: ModelConfig, inputs: Int, segment: Int) -> String {
        switch onePassForm(config, inputs: inputs, segment: segment) {
        case .quadratic?: return "attention"
        case .chunked?: return "chunked"
        case nil: return config.attention.carriesState ? "recurrent, state carried across segments" : "attention, independent segments"
        }
    }

    /// The segment `eval` uses for rows of `inputs` tokens: `context`, else the whole row (a kind without a state of
    /// fixed size: its training context `trainedContext`, since its attention form is quadratic in memory).
    static func segment(_ config: ModelConfig, inputs: Int, context: Int?, trainedContext: Int) -> Int {
        context ?? (config.attention.carriesState ? inputs : min(inputs, trainedContext))
    }

    /// The loss at each position of a row of tokens ([L] tokens -> [L - 1] losses), its inputs as a file without a
    /// recorded context has them (`EvalWindowFile.inferredContext`); with `seam` that target does not count.
    static func losses(_ model: Transformer<Float>, row: ArraySlice<UInt16>, segment: Int, seam: Int? = nil) -> [Double] {
        let cut = ModelRow(window: row, offset: 0, context: EvalWindowFile.inferredContext(length: row.count), roll: seam.map { $0 + 1 } ?? 0,
                           masksSeam: seam != nil)
        return losses(model, row: cut, segment: segment)
    }

    /// The loss at each of a row's `positions` (`ModelRow`). When `segment` covers the row, one forward in the form
    /// the cost model picks (the training code path) where that form takes the row's length; otherwise segment by
    /// segment with each layer's attention state carried across (a kind without a state attends within each segment
    /// only; the last segment may be shorter). A masked seam's loss is NaN: it does not count.
    static func losses(_ model: Transformer<Float>, row: ModelRow, segment: Int) -> [Double] {
        let l = row.inputs.count
        var out: [Double]
        if onePassForm(model.config, inputs: l, segment: segment) != nil {
            out = model.forward(tokens: row.inputs, targets: row.targets, mask: row.mask, batch: 1, length: l, training: false).perPosition
        } else {
            let state = RecurrentState(model, batch: 1)
            out = []
            out.reserveCapacity(l)
            var s = 0
            while s < l {
                let n = min(segment, l - s)
                out += model.forward(tokens: Array(row.inputs[s..<(s + n)]), targets: Array(row.targets[s..<(s + n)]), mask: Array(row.mask[s..<(s + n)]),
                                     batch: 1, length: n, training: false, state: state).perPosition
                s += n
            }
        }
        out.removeLast(l - row.positions)
        if let seam = row.seam, row.mask[seam] == 0 { out[seam] = .nan }
        return out
    }

    /// Evaluates every window of `file` for a model trained at `trainedContext` (its checkpoint's `train.context`);
    /// `context` nil means one pass over the whole window (`segment`). `masksSeam` leaves each row's seam target
    /// (`EvalWindowFile.seam`) out of every mean.
    public static func evaluate(_ model: Transformer<Float>, trainedContext: Int, file: EvalWindowFile, context: Int?, checkpoint: String,
                                windowsFile: String, masksSeam: Bool = false, progress: ProgressReporter? = nil) throws -> EvalResult {
        guard file.count > 0 else { throw LongCrawlError("\(windowsFile): no windows") }
        let seams = (0..<file.count).map { masksSeam ? file.seam($0) : nil }
        if masksSeam, let s = seams[0], seams.allSatisfy({ $0 == s }) {
            throw LongCrawlError("\(windowsFile): --mask-seam leaves position \(s) without a loss (it is the seam of every row); sample more windows")
        }
        let l = file.length, inputs = file.context
        let segment = Self.segment(model.config, inputs: inputs, context: context, trainedContext: trainedContext)
        guard segment >= 1, inputs % segment == 0 else { throw LongCrawlError("\(windowsFile): rows of \(l) tokens (\(inputs) inputs) do not split into segments of --context \(segment)") }
        var perWindow: [[Double]] = []
        let t0 = Date()
        for i in 0..<file.count {
            let losses = Self.losses(model, row: file.modelRow(i, masksSeam: masksSeam), segment: segment)
            guard losses.indices.allSatisfy({ losses[$0].isFinite || $0 == seams[i] }) else { throw LongCrawlError("\(windowsFile): window \(file.windows[i]) gives a non-finite loss") }
            perWindow.append(losses)
            if let progress, progress.due() {
                let rate = Double((i + 1) * l) / Date().timeIntervalSince(t0)
                progress.show(String(format: "window %d/%d, %.0f tokens/s, ETA %@", i + 1, file.count, rate,
                                     ProgressReporter.duration(Double((file.count - i - 1) * l) / rate)))
            }
        }
        progress?.end()
        let form = formName(model.config, inputs: inputs, segment: segment)
        var result = EvalResult(perWindow: perWindow, checkpoint: checkpoint, windowsFile: windowsFile, config: model.config.name,
                                trainedContext: trainedContext, segment: segment, form: form,
                                tokensPerSecond: Double(file.count * inputs) / Date().timeIntervalSince(t0))
        if masksSeam { result.maskSeam = true }
        return result
    }
}
