import Foundation
import Model
import Shards
import Streaming
import Tensor

/// Mean loss by token position over evaluation windows: the paper's Figure 2.
public struct EvalResult: Codable, Equatable, Sendable {
    public struct Bucket: Codable, Equatable, Sendable {
        /// Positions [start, end).
        public var start: Int, end: Int
        public var loss: Double
    }

    public var checkpoint: String
    public var windowsFile: String
    public var config: String
    public var trainedContext: Int
    /// Segment length: the window length for one chunked pass, shorter for the recurrent form carried across segments.
    public var context: Int
    public var form: String
    public var windows: Int
    public var meanLoss: Double
    /// Position i: mean loss of predicting token i + 1 from tokens 0...i.
    public var perPosition: [Double]
    /// [2^k - 1, 2^(k+1) - 1): a log-scale x axis.
    public var buckets: [Bucket]

    enum CodingKeys: String, CodingKey {
        case checkpoint, config, context, form, windows, buckets
        case windowsFile = "windows_file", trainedContext = "trained_context", meanLoss = "mean_loss", perPosition = "per_position"
    }

    static func buckets(_ losses: [Double]) -> [Bucket] {
        var out: [Bucket] = []
        var start = 0
        while start < losses.count {
            let end = min(losses.count, 2 * start + 1)
            out.append(Bucket(start: start, end: end, loss: losses[start..<end].reduce(0, +) / Double(end - start)))
            start = end
        }
        return out
    }

    /// `RESULT/result.json`, `RESULT/positions.csv` (position, loss) and `RESULT/buckets.csv` (start, end, loss).
    public func write(to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try AtomicFile.writeJSON(self, to: folder.appendingPathComponent("result.json"))
        var csv = "position,loss\n"
        for (i, l) in perPosition.enumerated() { csv += "\(i),\(l)\n" }
        try AtomicFile.write(Data(csv.utf8), to: folder.appendingPathComponent("positions.csv"))
        var b = "start,end,loss\n"
        for k in buckets { b += "\(k.start),\(k.end),\(k.loss)\n" }
        try AtomicFile.write(Data(b.utf8), to: folder.appendingPathComponent("buckets.csv"))
    }
}

public enum Evaluator {
    /// Tokens fed to the model for a row of `length`: a whole window (65,536) is fed whole with its last
    /// target masked, a row of T + 1 tokens (`sample --context T`) as T inputs and T targets.
    public static func inputLength(_ length: Int) -> Int { length > 1 && windowLength % (length - 1) == 0 ? length - 1 : length }

    /// The loss at each position of one row ([L] tokens -> [L - 1] losses). With `segment` equal to the input
    /// length, one forward of the chunked form (the training code path); shorter, the row runs segment by
    /// segment with each layer's attention state carried across (softmax attends within each segment only).
    public static func losses(_ model: Transformer<Float>, row: ArraySlice<UInt16>, segment: Int) -> [Double] {
        let l = inputLength(row.count)
        let all = row.map { Int32($0) }
        let tokens = Array(all[0..<l])
        var targets = Array(all[1...]), mask = [Float](repeating: 1, count: l)
        if targets.count < l { targets.append(0); mask[l - 1] = 0 }
        if segment >= l && model.config.attention != .softmax && (l % model.config.chunk == 0 || l <= model.config.chunk) {
            return Array(model.forward(tokens: tokens, targets: targets, mask: mask, batch: 1, length: l, training: false).perPosition.prefix(row.count - 1))
        }
        var state = model.startDecoding(batch: 1)
        var out: [Double] = []
        out.reserveCapacity(l)
        var s = 0
        while s < l {
            let n = min(segment, l - s)
            let h = model.forward(tokens: Array(tokens[s..<(s + n)]), length: n, continuing: &state)
            out += LanguageModelHead.lossAndGradient(h, wte: model.embedding.wte, dwte: nil, targets: Array(targets[s..<(s + n)]),
                                                     mask: Array(mask[s..<(s + n)])).perPosition
            s += n
        }
        return Array(out.prefix(row.count - 1))
    }

    /// Evaluates every window of `file`; `context` nil means one pass over the whole window (softmax: its
    /// training context, since its attention form is quadratic in memory).
    public static func evaluate(_ model: Transformer<Float>, file: EvalWindowFile, context: Int?, checkpoint: String, windowsFile: String,
                                progress: ProgressReporter? = nil) throws -> EvalResult {
        guard file.count > 0 else { throw TrainingError("\(windowsFile): no windows") }
        let l = file.length, inputs = inputLength(l)
        let segment = context ?? (model.config.attention == .softmax ? min(inputs, model.config.context) : inputs)
        guard segment >= 1, inputs % segment == 0 else { throw TrainingError("\(windowsFile): rows of \(l) tokens (\(inputs) inputs) do not split into segments of --context \(segment)") }
        var sum = [Double](repeating: 0, count: l - 1)
        let t0 = Date()
        for i in 0..<file.count {
            let losses = Self.losses(model, row: file.row(i), segment: segment)
            guard losses.allSatisfy(\.isFinite) else { throw TrainingError("\(windowsFile): window \(file.windows[i]) gives a non-finite loss") }
            for j in 0..<(l - 1) { sum[j] += losses[j] }
            if let progress, progress.due() {
                let rate = Double((i + 1) * l) / Date().timeIntervalSince(t0)
                progress.show(String(format: "window %d/%d, %.0f tokens/s, ETA %@", i + 1, file.count, rate,
                                     ProgressReporter.duration(Double((file.count - i - 1) * l) / rate)))
            }
        }
        progress?.end()
        let mean = sum.map { $0 / Double(file.count) }
        let form = model.config.attention == .softmax ? (segment >= inputs ? "attention" : "attention, independent segments")
            : (segment >= inputs ? "chunked" : "recurrent, state carried across segments")
        return EvalResult(checkpoint: checkpoint, windowsFile: windowsFile, config: model.config.name, trainedContext: model.config.context,
                          context: segment, form: form, windows: file.count, meanLoss: mean.reduce(0, +) / Double(mean.count),
                          perPosition: mean, buckets: EvalResult.buckets(mean))
    }
}

/// Samples text from a model with the recurrent form: the prompt in one segment, then one token at a time,
/// each step O(1) in the tokens so far.
public enum Generator {
    /// `count` token ids following `prompt`. `temperature` 0 is greedy; `topK` 0 keeps the whole vocabulary.
    public static func generate(_ model: Transformer<Float>, prompt: [Int32], count: Int, temperature: Double, topK: Int, seed: UInt64) -> [Int32] {
        precondition(!prompt.isEmpty, "an empty prompt")
        let c = model.config.dModel, v = model.config.vocabSize
        var state = model.startDecoding(batch: 1)
        var rng = SplitMix64(seed: seed)
        var h = model.forward(tokens: prompt, length: prompt.count, continuing: &state)
        var last = prompt.count - 1
        var out: [Int32] = []
        var logits = [Float](repeating: 0, count: v)
        for _ in 0..<count {
            // logits = h_last wte^T, over GPT-2's 50,257 real tokens only (the rest is padding).
            logits.withUnsafeMutableBufferPointer { o in
                Float.gemm(transA: false, transB: true, m: 1, n: v, k: c, alpha: 1, a: h.data + last * c, lda: c,
                           b: model.embedding.wte.data, ldb: c, beta: 0, c: o.baseAddress!, ldc: v)
            }
            let next = Int32(sample(Array(logits[0..<50_257]), temperature: temperature, topK: topK, rng: &rng))
            out.append(next)
            if out.count == count { break }
            h = model.forward(tokens: [next], length: 1, continuing: &state)
            last = 0
        }
        return out
    }

    static func sample(_ logits: [Float], temperature: Double, topK: Int, rng: inout SplitMix64) -> Int {
        if temperature <= 0 { return logits.indices.max { logits[$0] < logits[$1] }! }
        var ids = Array(logits.indices)
        if topK > 0 && topK < ids.count { ids = Array(ids.sorted { logits[$0] > logits[$1] }.prefix(topK)) }
        let m = ids.map { Double(logits[$0]) }.max()!
        let weights = ids.map { Foundation.exp((Double(logits[$0]) - m) / temperature) }
        var u = Double(rng.next() >> 11) / Double(1 << 53) * weights.reduce(0, +)
        for (k, w) in weights.enumerated() { u -= w; if u < 0 { return ids[k] } }
        return ids.last!
    }
}
