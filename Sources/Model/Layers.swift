import Foundation
import Support
import Tensor

/// Token embedding, tied with the output head: wte [V, C].
public final class Embedding<S: TensorScalar> {
    public let wte: Tensor<S>, dwte: Tensor<S>
    private var tokens: [Int32] = []

    init(wte: Parameter<S>) { self.wte = wte.value; dwte = wte.grad }

    // forward: tokens [N] -> x [N, C]
    @_specialize(where S == Float)
    public func forward(_ tokens: [Int32]) -> Tensor<S> {
        self.tokens = tokens
        let c = wte.shape[1], v = wte.shape[0]
        let x = Tensor<S>(uninitialized: [tokens.count, c])
        for (n, tok) in tokens.enumerated() {
            precondition(tok >= 0 && Int(tok) < v, "token \(tok) outside the vocabulary of \(v)")
            (x.data + n * c).update(from: wte.data + Int(tok) * c, count: c)
        }
        return x
    }

    // backward: dx [N, C] -> dwte rows (accumulated)
    @_specialize(where S == Float)
    public func backward(_ dx: Tensor<S>) {
        let c = wte.shape[1]
        for (n, tok) in tokens.enumerated() {
            let row = dwte.data + Int(tok) * c, g = dx.data + n * c
            for e in 0..<c { row[e] += g[e] }
        }
    }
}

/// LayerNorm without bias: y = (x - mean) / sqrt(var + 1e-5) * w.
final class LayerNorm<S: TensorScalar> {
    let weight: Tensor<S>, dweight: Tensor<S>
    private var normalized: Tensor<S>?, inverseStd: Tensor<S>?

    /// Sets the weight to 1.
    init(weight: Parameter<S>) {
        self.weight = weight.value; dweight = weight.grad
        self.weight.data.update(repeating: 1, count: self.weight.count)
    }

    convenience init(dModel: Int) { self.init(weight: ParameterBlocks([("weight", [dModel])])["weight"]) }

    // forward: x [N, C] -> y [N, C]
    @_specialize(where S == Float)
    public func forward(_ x: Tensor<S>) -> Tensor<S> {
        let c = weight.count, n = x.count / c
        let xhat = Tensor<S>(uninitialized: [n, c]), y = Tensor<S>(uninitialized: [n, c]), inv = Tensor<S>(uninitialized: [n])
        let weight = self.weight
        // Rows are independent: a slice of rows per core.
        parallelSlices(n, cost: c) { rows in
            let w = weight.data
            for r in rows {
                let row = x.data + r * c, xh = xhat.data + r * c, out = y.data + r * c
                var mean = S(0)
                for e in 0..<c { mean += row[e] }
                mean /= S(c)
                var variance = S(0)
                for e in 0..<c { let z = row[e] - mean; variance += z * z }
                variance /= S(c)
                let s = 1 / (variance + S(1e-5)).squareRoot()
                inv[r] = s
                for e in 0..<c {
                    let h = (row[e] - mean) * s
                    xh[e] = h
                    out[e] = h * w[e]
                }
            }
        }
        normalized = xhat; inverseStd = inv
        return y
    }

    /// Drops what backward needs (activation recomputation).
    func releaseActivations() { normalized = nil; inverseStd = nil }

    // backward: dy [N, C] -> dx [N, C]; accumulates dweight
    @_specialize(where S == Float)
    public func backward(_ dy: Tensor<S>) -> Tensor<S> {
        guard let xhat = normalized, let inv = inverseStd else { preconditionFailure("backward before forward") }
        let c = weight.count, n = dy.count / c
        let dx = Tensor<S>(uninitialized: [n, c])
        let weight = self.weight, dweight = self.dweight
        parallelSlices(n, cost: c) { rows in
            let w = weight.data
            for r in rows {
                let g = dy.data + r * c, xh = xhat.data + r * c, out = dx.data + r * c
                var meanG = S(0), meanGX = S(0)
                for e in 0..<c {
                    let gw = g[e] * w[e]
                    meanG += gw
                    meanGX += gw * xh[e]
                }
                meanG /= S(c); meanGX /= S(c)
                for e in 0..<c { out[e] = inv[r] * (g[e] * w[e] - meanG - xh[e] * meanGX) }
            }
        }
        // dweight sums over rows in row order, a slice of columns per core.
        parallelSlices(c, cost: n) { columns in
            let dw = dweight.data
            for r in 0..<n {
                let g = dy.data + r * c, xh = xhat.data + r * c
                for e in columns { dw[e] += g[e] * xh[e] }
            }
        }
        return dx
    }
}

/// The MLP: x @ W1 -> GELU (tanh approximation) -> @ W2. No biases. Keeps its input and the pre-activation;
/// the backward rebuilds GELU's output in the same pass that takes its derivative (one tanh per element).
public final class MLP<S: TensorScalar> {
    let w1: Tensor<S>, w2: Tensor<S>, dw1: Tensor<S>, dw2: Tensor<S>
    private var input: Tensor<S>?, hidden: Tensor<S>?

    /// w1 [C, F], w2 [F, C].
    public init(w1: Parameter<S>, w2: Parameter<S>) {
        precondition(w1.value.shape == Array(w2.value.shape.reversed()), "MLP weights \(w1.value.shape) and \(w2.value.shape) do not match")
        self.w1 = w1.value; dw1 = w1.grad; self.w2 = w2.value; dw2 = w2.grad
    }

    public convenience init(dModel: Int, hidden: Int) {
        let p = ParameterBlocks<S>([("w1", [dModel, hidden]), ("w2", [hidden, dModel])])
        self.init(w1: p["w1"], w2: p["w2"])
    }

    // forward: x [N, C] -> y [N, C]
    @_specialize(where S == Float)
    public func forward(_ x: Tensor<S>) -> Tensor<S> {
        let c = w1.shape[0], f = w1.shape[1], n = x.count / c
        let h = Tensor<S>(uninitialized: [n, f]), a = Tensor<S>(uninitialized: [n, f]), y = Tensor<S>(uninitialized: [n, c])
        gemm(false, false, n, f, c, 1, x, w1, 0, h)
        parallelSlices(n * f) { S.gelu(h.data + $0.lowerBound, a.data + $0.lowerBound, $0.count) }
        gemm(false, false, n, c, f, 1, a, w2, 0, y)
        input = x; hidden = h
        return y
    }

    /// Drops what backward needs (activation recomputation).
    func releaseActivations() { input = nil; hidden = nil }

    // backward: dy [N, C] -> dx [N, C]; accumulates dw1, dw2
    @_specialize(where S == Float)
    public func backward(_ dy: Tensor<S>) -> Tensor<S> {
        guard let x = input, let h = hidden else { preconditionFailure("backward before forward") }
        let c = w1.shape[0], f = w1.shape[1], n = dy.count / c
        let da = Tensor<S>(uninitialized: [n, f]), a = Tensor<S>(uninitialized: [n, f])
        gemm(false, true, n, f, c, 1, dy, w2, 0, da)
        parallelSlices(n * f) { S.geluBackward(h.data + $0.lowerBound, a.data + $0.lowerBound, da.data + $0.lowerBound, $0.count) }
        gemm(true, false, f, c, n, 1, a, dy, 1, dw2)
        gemm(true, false, c, f, n, 1, x, da, 1, dw1)
        let dx = Tensor<S>(uninitialized: [n, c])
        gemm(false, true, n, c, f, 1, da, w1, 0, dx)
        return dx
    }
}

/// The tied output head and masked cross-entropy, fused: logits = x @ wte^T are built a block of rows at a time,
/// so memory stays at block x V instead of N x V.
enum LanguageModelHead {
    /// Rows of logits computed at once: [512, V] floats of scratch (103 MB at V = 50,304) instead of [N, V]. Each
    /// block's GEMMs repack all of wte; 512 rows against 256 gave `bench train` (small, T 4,096) 3.6% more
    /// tokens/s, 5 of 6 alternated runs.
    static let rowsPerBlock = 512

    /// Mean loss over unmasked positions and the loss at every position; with `dwte` (training) also accumulates
    /// dwte and returns dx (scaled by `1 / count`), without it dx is left zero.
    // forward+backward: x [N, C], wte [V, C], targets [N], mask [N] -> loss, dx [N, C]
    @_specialize(where S == Float)
    static func lossAndGradient<S: TensorScalar>(_ x: Tensor<S>, wte: Tensor<S>, dwte: Tensor<S>?, targets: [Int32], mask: [Float],
                                                        block: Int = rowsPerBlock) -> (loss: Double, dx: Tensor<S>, perPosition: [Double]) {
        let c = wte.shape[1], v = wte.shape[0], n = targets.count
        let count = max(1.0, mask.reduce(0.0) { $0 + Double($1) })
        let dx = Tensor<S>([n, c])
        var total = 0.0
        var perPosition = [Double](repeating: 0, count: n)
        // Overwritten block by block by the gemm below: no need to zero it.
        let logits = UnsafeMutablePointer<S>.allocate(capacity: min(block, n) * v)
        defer { logits.deallocate() }
        // The rows' softmaxes are independent and cost as much as the GEMMs (V exps a row): spread over the cores,
        // each row computed alike whichever thread takes it, and the total summed in row order.
        let lanes = blasThreads
        var r0 = 0
        while r0 < n {
            let rows = min(block, n - r0)
            gemm(false, true, rows, v, c, 1, x, wte, 0, logits, offsets: (r0 * c, 0, 0))
            perPosition.withUnsafeMutableBufferPointer { buffer in
                let losses = SendablePointer(buffer.baseAddress!), block = SendablePointer(logits), r0 = r0
                DispatchQueue.concurrentPerform(iterations: min(lanes, rows)) { lane in
                    for r in stride(from: lane, to: rows, by: min(lanes, rows)) {
                        let row = block.pointer + r * v
                        let m = S.maximum(row, v)
                        let target = Int(targets[r0 + r])
                        let targetLogit = Double(row[target])
                        // Exponentiate once, in place; the sum in Float64.
                        let sum = S.expShiftedSum(row, v, shift: m)
                        losses.pointer[r0 + r] = Double(m) + Foundation.log(sum) - targetLogit
                        guard dwte != nil else { continue }
                        // dlogits = (softmax - onehot) * mask / count, written over the logits.
                        let weight = Double(mask[r0 + r])
                        let scale = S(weight / count / sum)
                        for j in 0..<v { row[j] *= scale }
                        row[target] -= S(weight / count)
                    }
                }
            }
            for r in r0..<(r0 + rows) { total += Double(mask[r]) * perPosition[r] }
            if let dwte {
                gemm(false, false, rows, c, v, 1, logits, wte, 0, dx, offsets: (0, 0, r0 * c))
                gemm(true, false, v, c, rows, 1, logits, x, 1, dwte, offsets: (0, r0 * c, 0))
            }
            r0 += rows
        }
        return (total / count, dx, perPosition)
    }
}
