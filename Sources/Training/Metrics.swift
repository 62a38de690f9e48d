/// One line of `eval.jsonl`: the held-out loss during training.
struct HeldoutMetrics: Codable, Equatable, Sendable {
    public var step: Int
    public var loss: Estimate
    public var tokens: Int
}

/// One line of `metrics.jsonl`.
public struct StepMetrics: Codable, Equatable, Sendable {
    public var step: Int
    public var loss: Double
    public var lr: Double
    var gradNorm: Double
    public var tokensPerSecond: Double
    public var mfu: Double
    /// Seconds of training so far, over every resumed segment of the run.
    var elapsed: Double
    /// Share of the step spent waiting for the batch.
    public var loaderShare: Double
    /// Seconds from the end of the step's backward pass until the gradients and the loss are summed over ranks
    /// (0 alone): with the sums overlapped with backward (the default) the wait for what backward did not hide, the
    /// last bucket (wte, final only at the end) included; with `--no-overlap` the whole blocking allreduce.
    public var allreduceSeconds: Double
    /// The step's rows, every rank's in the global batch's order (row j of rank r is row j x ranks + r): window ids in
    /// the split and token offsets, so runs can be compared batch for batch, on any number of ranks.
    public var windows: [Int]?
    var offsets: [Int]?
    /// The segment's offset in its windows under `--carry-state` (every row of a step is at the same one).
    var offset: Int?
    /// Under `--context-schedule`, the step's T and its phase (from 1).
    public var context: Int?
    var phase: Int?

    enum CodingKeys: String, CodingKey {
        case step, loss, lr, mfu, elapsed, windows, offsets, offset, context, phase
        case gradNorm = "grad_norm", tokensPerSecond = "tokens_per_s", loaderShare = "loader_share", allreduceSeconds = "allreduce_s"
    }
}
