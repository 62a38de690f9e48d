import Tensor

// Model flops utilization, in one file as llm.c keeps mfu.h: the useful flops of a token (the model's GEMMs and the
// attention in the form that runs, `AttentionForm.flopsPerToken`), the ceiling they are divided by (sgemm's best rate
// at the model's own GEMM shapes, measured in the same process because this machine is shared), and when that
// ceiling is measured (`MFUMeter`).

extension ModelConfig {
    /// The formula behind `forwardFlopsPerToken(context:)`, for benchmark output.
    public func flopFormula(context: Int) -> String {
        "L * [2C(3C+2H) + 2C^2 + 4C*F + H * \(attentionForm(length: context).flopFormula)] + 2CV"
    }

    /// The GEMMs of one training step over `rows` = B x T tokens as (m, n, k), C[m, n] = A[m, k] B[k, n]: per layer
    /// the qkvgr and output projections and the MLP, each forward (y = x W) and both backward products
    /// (dx = dy W^T, dW = x^T dy), and the tied head in the blocks `LanguageModelHead` runs. The MFU ceiling is
    /// sgemm's best rate over these shapes.
    public func gemmShapes(rows: Int) -> [(m: Int, n: Int, k: Int)] {
        var shapes: [(m: Int, n: Int, k: Int)] = []
        for (k, n) in [(dModel, 3 * dModel + 2 * heads), (dModel, dModel), (dModel, hidden), (hidden, dModel)] {
            shapes += [(rows, n, k), (rows, k, n), (k, n, rows)]
        }
        let block = min(rows, LanguageModelHead.rowsPerBlock)
        return shapes + [(block, vocabSize, dModel), (block, dModel, vocabSize), (vocabSize, dModel, block)]
    }

    /// Useful flops of one token's forward pass at training context `context` (a backward counts as twice this):
    /// projections, MLP, per head the attention in the form training uses (`AttentionForm.flopsPerToken`), and the
    /// tied head.
    public func forwardFlopsPerToken(context: Int) -> Double {
        let c = Double(dModel), h = Double(heads), f = Double(hidden)
        let projections = 2 * c * (3 * c + 2 * h) + 2 * c * c + 4 * c * f
        let attentionPerHead = attentionForm(length: context).flopsPerToken(headDimension: headDim, power: power, chunk: chunk, length: context)
        return Double(layers) * (projections + h * attentionPerHead) + 2 * c * Double(vocabSize)
    }
}

/// The MFU of training steps: each step's useful flops over its seconds and the ceiling, sgemm's best GFLOP/s at
/// the model's GEMM shapes. The ceiling is measured before the first step, every `every` steps (at a step count,
/// not a time, so that every MPI rank measures at the same step), and after any step that ran faster than it (a
/// ceiling measured while something else held the cores understates sgemm, and such a step proves so); all outside
/// the steps' time, and the highest kept, because a shared machine only ever makes a measurement lower.
public struct MFUMeter: Sendable {
    public var ceiling = 0.0
    static let every = 200
    let shapes: [(m: Int, n: Int, k: Int)]

    /// A meter for steps of `rows` = B x T tokens of `config`.
    public init(_ config: ModelConfig, rows: Int) { shapes = config.gemmShapes(rows: rows) }

    /// Before step `step` (0-based).
    public mutating func beforeStep(_ step: Int) {
        if ceiling == 0 || step % Self.every == 0 { measure() }
    }

    /// After a step of `flops` in `seconds`: its MFU.
    public mutating func afterStep(flops: Double, seconds: Double) -> Double {
        if flops / seconds / 1e9 > ceiling { measure() }
        return flops / seconds / 1e9 / ceiling
    }

    private mutating func measure() { ceiling = max(ceiling, sgemmCeiling(shapes: shapes)) }
}

/// sgemm's best rate in GFLOP/s over `shapes` (m, n, k), each dimension capped at `cap` to keep the measurement
/// short (past a few thousand a dimension no longer raises the rate): the ceiling a model's FLOP rate is divided by
/// for MFU. The model's GEMMs run at these shapes or slower, and everything else it does is extra time, so an MFU
/// against the best of them stays below 100%, which one sgemm at an arbitrary shape does not ensure.
public func sgemmCeiling(shapes: [(m: Int, n: Int, k: Int)], cap: Int = 4096, runs: Int = 3) -> Double {
    var seen = Set<[Int]>()
    var best = 0.0
    for s in shapes {
        let m = min(s.m, cap), n = min(s.n, cap), k = min(s.k, cap)
        guard seen.insert([m, n, k]).inserted else { continue }
        best = max(best, sgemmGFLOPs(m: m, n: n, k: k, runs: runs))
    }
    return best
}

/// OpenBLAS sgemm throughput in GFLOP/s on [m, k] x [k, n], best of `runs`.
func sgemmGFLOPs(m: Int, n: Int, k: Int, runs: Int) -> Double {
    let a = Tensor<Float>([m, k]), b = Tensor<Float>([k, n]), c = Tensor<Float>([m, n])
    for i in 0..<a.count { a[i] = Float(i % 7) * 0.1 }
    for i in 0..<b.count { b[i] = Float(i % 5) * 0.1 }
    var best = Double.infinity
    for _ in 0..<runs {
        let t0 = now()
        Float.gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a.data, lda: k, b: b.data, ldb: n, beta: 0, c: c.data, ldc: n)
        best = min(best, now() - t0)
    }
    return 2 * Double(m * n * k) / best / 1e9
}
