import Dispatch
import Foundation
import Support
import Tensor

/// The attention variants (docs/MODEL.md), one code path. What a kind can do is said here once, in the properties
/// below, and every decision elsewhere asks them: a new kind is a case here, its score in `AttentionForms.swift` if it
/// has a new one, and the PyTorch twin (docs/ARCHITECTURE.md, "A new attention kind").
public enum AttentionKind: String, Codable, Sendable, CaseIterable {
    /// exp(qr . kr / sqrt(d)), fixed RoPE, no gate.
    case softmax
    /// (qr . kr / sqrt(d))^p, fixed RoPE, no gate.
    case sympow
    /// sympow with the data-dependent gate.
    case sympowGating = "sympow+gating"
    /// sympow with the gate and learned (data-dependent) rotary.
    case conformalSympow = "conformal-sympow"

    /// A state of fixed size summarizes the past (sympow's phi_p state [D, d + 1]): the kind has the chunked form
    /// (linear in T), a segment can continue the previous one's state (`--carry-state`, segmented evaluation,
    /// generation). Softmax's state is its whole history: the quadratic form only, each segment on its own.
    public var carriesState: Bool {
        switch self {
        case .softmax: false
        case .sympow, .sympowGating, .conformalSympow: true
        }
    }

    /// The data-dependent gate: a cumulative log-gate G discounts the past.
    var gated: Bool {
        switch self {
        case .softmax, .sympow: false
        case .sympowGating, .conformalSympow: true
        }
    }

    /// Learned rotary: each token advances the rotary position by 1 + tanh(r) instead of 1.
    var learnedRotary: Bool {
        switch self {
        case .softmax, .sympow, .sympowGating: false
        case .conformalSympow: true
        }
    }

    /// How the quadratic form turns a score into a weight, for models of power `p`.
    func score(power p: Int) -> Score {
        switch self {
        case .softmax: .softmax
        case .sympow, .sympowGating, .conformalSympow: .power(p)
        }
    }

    /// The kinds' names, for help and error texts.
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// Which way attention is computed: the quadratic attention form, or the chunked form (kinds that carry a state only).
public enum AttentionForm: Sendable {
    /// The attention form: the whole T x T scores and weighted values, quadratic in T (`result.json` calls it "attention").
    case quadratic
    /// Chunks of `chunk` tokens with a state [D, d + 1] carried from one to the next, linear in T.
    case chunked

    /// The form of a forward over `length` tokens at once, by the cost per token and head of the code as written:
    /// our attention form computes the whole T x T square (scores and weighted values, ~4Td; docs/MODEL.md's
    /// ~2Td counts the causal half), the chunked form ~4cd + 4Dd (intra-chunk, state read and update) with
    /// D = C(d + p - 1, p), so the chunked form when T > D + c (always the attention form for a kind without a
    /// state of fixed size, and for T <= c). It also keeps the attention form's T x T caches small: `small`
    /// (D = 2,080) trains chunked at 4,096. The one place training, evaluation and the flop count choose: for p = 4,
    /// d = 16 (D = 3,876) the attention form up to T = 3,876 + c.
    static func choose(kind: AttentionKind, headDimension d: Int, power p: Int, chunk c: Int, length t: Int) -> AttentionForm {
        kind.carriesState && t > SymmetricPower.size(dimension: d, power: p) + c ? .chunked : .quadratic
    }

    /// Useful flops of one token's forward in one head of dimension `d` at context `t` (MFU's count, `Model/MFU.swift`):
    /// chunked, the intra-chunk scores and weighted values, the state read and update with D = dim phi_p, and phi_p
    /// itself; the attention form, the causal half of the scores and weighted values.
    func flopsPerToken(headDimension d: Int, power p: Int, chunk c: Int, length t: Int) -> Double {
        let d = Double(d), c = Double(c)
        switch self {
        case .chunked:
            let dd = Double(SymmetricPower.size(dimension: Int(d), power: p))
            return 2 * c * d + 2 * c * (d + 1) + 4 * dd * (d + 1) + 2 * dd * Double(p)
        case .quadratic:
            return 2 * Double(t) * d
        }
    }

    /// `flopsPerToken` as a formula, for benchmark output.
    var flopFormula: String {
        switch self {
        case .chunked: "(2cd + 2c(d+1) + 4D(d+1) + 2Dp)"
        case .quadratic: "2Td"
        }
    }
}

/// Causal multi-head attention with fused projections x -> [q | k | v | g | r] (one gate and one rotation-rate
/// pre-activation per head), gate, rotary, the attention core, and the output projection. No biases; the gate
/// bias is the constant 6.906768 (initial gate about 0.999).
public final class SympowAttention<S: TensorScalar> {
    static var gateBias: Double { 6.906768 }
    public let dModel: Int, heads: Int, headDim: Int, power: Int, chunk: Int
    let kind: AttentionKind
    /// N in the rotary rates 2 pi / N^(2m/d): fixed at 65,536 for training and evaluation alike.
    let maxDocumentLength: Int
    /// [C, 3C + 2H] and [C, C]; x @ W.
    let wQKVGR: Tensor<S>, wO: Tensor<S>
    let dwQKVGR: Tensor<S>, dwO: Tensor<S>
    /// Forced form (tests); nil chooses by cost (`AttentionForm.choose`).
    public var form: AttentionForm?
    let chunked: ChunkedAttention?

    /// projection [C, 3C + 2H], output [C, C].
    public init(projection: Parameter<S>, output: Parameter<S>, heads: Int, power: Int, chunk: Int, kind: AttentionKind,
                maxDocumentLength: Int = windowLength) {
        let dModel = output.value.shape[0]
        precondition(dModel % heads == 0 && (dModel / heads) % 2 == 0, "heads must divide d_model into even head dimensions")
        precondition(projection.value.shape == [dModel, 3 * dModel + 2 * heads] && output.value.shape == [dModel, dModel],
                     "attention weights \(projection.value.shape) and \(output.value.shape) do not fit d_model \(dModel), \(heads) heads")
        self.dModel = dModel; self.heads = heads; headDim = dModel / heads
        self.power = power; self.chunk = chunk; self.kind = kind; self.maxDocumentLength = maxDocumentLength
        let d = dModel / heads
        rates = (0..<(d / 2)).map { 2 * Double.pi / Foundation.pow(Double(maxDocumentLength), Double(2 * $0) / Double(d)) }
        wQKVGR = projection.value; dwQKVGR = projection.grad; wO = output.value; dwO = output.grad
        chunked = kind.carriesState ? ChunkedAttention(headDimension: dModel / heads, power: power, chunk: chunk) : nil
    }

    public convenience init(dModel: Int, heads: Int, power: Int, chunk: Int, kind: AttentionKind, maxDocumentLength: Int = windowLength) {
        let p = ParameterBlocks<S>([("w_qkvgr", [dModel, 3 * dModel + 2 * heads]), ("w_o", [dModel, dModel])])
        self.init(projection: p["w_qkvgr"], output: p["w_o"], heads: heads, power: power, chunk: chunk, kind: kind,
                  maxDocumentLength: maxDocumentLength)
    }

    /// Normal(0, std) projections, normal(0, residualStd) output projection, zero rotation-rate columns.
    public func initialize(std: Double, residualStd: Double, using rng: inout some RandomNumberGenerator) {
        let width = 3 * dModel + 2 * heads
        for i in 0..<dModel {
            for j in 0..<width { wQKVGR[i * width + j] = j >= 3 * dModel + heads ? 0 : S(normal(&rng) * std) }
            for j in 0..<dModel { wO[i * dModel + j] = S(normal(&rng) * residualStd) }
        }
    }

    struct HeadCache {
        var input: HeadInput<S>
        var y: [S]
        var quadratic: QuadraticAttention.Cache<S>?
        var chunked: ChunkedAttention.Cache<S>?
        /// Rotary position B_t - 1 of each token [T] (the angles are rebuilt from it in backward).
        var positions: [Double]
    }

    private var x: Tensor<S>?
    /// The gate and rotation-rate pre-activations [B*T, 2H] (the rest of the projection lives on in the caches).
    private var gateInputs: Tensor<S>?
    private var caches: [HeadCache] = []
    private var batch = 0, length = 0

    /// Rotary rate of pair m.
    let rates: [Double]

    /// cos and sin of every token's angles [T, d/2]: angle (B_t - 1) w_m.
    func rotation(_ positions: [Double]) -> (cos: [S], sin: [S]) {
        let half = headDim / 2
        var cs = [S](repeating: 0, count: positions.count * half), sn = cs
        for (r, position) in positions.enumerated() {
            for m in 0..<half {
                let a = position * rates[m]
                cs[r * half + m] = S(Foundation.cos(a)); sn[r * half + m] = S(Foundation.sin(a))
            }
        }
        return (cs, sn)
    }

    func resolvedForm(_ t: Int) -> AttentionForm {
        guard kind.carriesState else { return .quadratic }
        return form ?? AttentionForm.choose(kind: kind, headDimension: headDim, power: power, chunk: chunk, length: t)
    }

    /// What one head of one row carries from a segment to the next: the state of everything before the segment
    /// (its phi_p state and normalizer, discounted to the segment's start) and the rotary position reached.
    public struct Carry: Sendable, Equatable {
        /// The sympow state [D, d + 1] after the tokens seen so far (empty for a kind that carries no state).
        var state: [S]
        /// B summed over the tokens seen so far (their count for fixed RoPE): the next segment's rotary origin.
        var position: Double
    }

    /// The carry of a row at its window's start: an empty state at position 0.
    var emptyCarry: Carry { Carry(state: chunked?.initialState() ?? [], position: 0) }

    // forward: x [B*T, C] -> y [B*T, C]; each row starts at position 0 with an empty state
    @_specialize(where S == Float)
    public func forward(_ x: Tensor<S>, batch: Int, length t: Int) -> Tensor<S> {
        var none: [Carry] = []
        return forward(x, batch: batch, length: t, carries: &none)
    }

    /// The one forward of training and inference. With `carries` empty each row starts afresh, in the form
    /// `resolvedForm` picks. With one carry per (row, head), each continues its carry and ends with the carry
    /// after the segment: the chunked form for a kind that carries a state (any T; segment after segment
    /// equals one pass), the attention form within the segment otherwise (only the position is carried). Either way `backward` may
    /// follow; a carry is a constant for it.
    // Hot generic entry points carry @_specialize: whether a client module gets a Float specialization through
    // cross-module optimization changed with unrelated edits here (6x slower attention when it did not).
    // forward: x [B*T, C], carries [B*H] or [] -> y [B*T, C], carries after the segment
    @_specialize(where S == Float)
    public func forward(_ x: Tensor<S>, batch: Int, length t: Int, carries: inout [Carry]) -> Tensor<S> {
        let c = dModel, h = heads, width = 3 * c + 2 * h
        precondition(x.count == batch * t * c, "attention input is not [B*T, C]")
        precondition(carries.isEmpty || carries.count == batch * h, "carries are not [B*H]")
        self.x = x; self.batch = batch; length = t
        let p = Tensor<S>(uninitialized: [batch * t, width])
        gemm(false, false, batch * t, width, c, 1, x, wQKVGR, 0, p)
        let gates = Tensor<S>(uninitialized: [batch * t, 2 * h])
        for r in 0..<(batch * t) { (gates.data + r * 2 * h).update(from: p.data + r * width + 3 * c, count: 2 * h) }
        gateInputs = gates
        // Heads and batch rows are independent: one per core.
        var results = [HeadCache?](repeating: nil, count: batch * h)
        results.withUnsafeMutableBufferPointer { slots in carries.withUnsafeMutableBufferPointer { carried in
            let out = SendablePointer(slots.baseAddress!), carry = carried.isEmpty ? nil : SendablePointer(carried.baseAddress!)
            // Unchecked: the heads only read the layer's weights and settings, and each writes its own slot.
            nonisolated(unsafe) let layer = self
            withSingleThreadedBLAS {
                DispatchQueue.concurrentPerform(iterations: batch * h) { i in
                    out.pointer[i] = layer.headForward(p, b: i / h, head: i % h, t: t, carry: carry.map { $0.pointer + i })
                }
            }
        } }
        caches = results.map { $0! }
        let merged = merge(caches.map(\.y), batch: batch, length: t)
        let out = Tensor<S>(uninitialized: [batch * t, c])
        gemm(false, false, batch * t, c, c, 1, merged, wO, 0, out)
        return out
    }

    /// Gate, rotary and the head's slices of the projections for row b: the attention core's input, and the
    /// rotary positions. `start` is B summed over the tokens before this segment (0 at a document's start).
    private func headInput(_ p: Tensor<S>, b: Int, head: Int, t: Int, start: Double) -> (input: HeadInput<S>, positions: [Double], end: Double) {
        let c = dModel, h = heads, d = headDim, width = 3 * c + 2 * h
        var q = [S](repeating: 0, count: t * d), k = q, v = q
        var G = [Double](repeating: 0, count: t), positions = G
        var gSum = 0.0, bSum = start
        for r in 0..<t {
            let row = (b * t + r) * width
            for e in 0..<d {
                q[r * d + e] = p[row + head * d + e]
                k[r * d + e] = p[row + c + head * d + e]
                v[r * d + e] = p[row + 2 * c + head * d + e]
            }
            if kind.gated { gSum += logSigmoid(Double(p[row + 3 * c + head]) + Self.gateBias) }
            G[r] = gSum
            // Learned rotary: angle (B_t - 1) w_m with B_t = sum_{s<=t} (1 + tanh r_s); at zero init B_t - 1 = t exactly.
            bSum += kind.learnedRotary ? 1 + Foundation.tanh(Double(p[row + 3 * c + h + head])) : 1
            positions[r] = bSum - 1
        }
        let (cs, sn) = rotation(positions)
        return (HeadInput(t: t, d: d, qr: rotate(q, cs, sn, d), kr: rotate(k, cs, sn, d), v: v, G: G), positions, bSum)
    }

    /// One head of row b, from `carry` (updated to the carry after the segment) or afresh.
    private func headForward(_ p: Tensor<S>, b: Int, head: Int, t: Int, carry: UnsafeMutablePointer<Carry>?) -> HeadCache {
        let (input, positions, end) = headInput(p, b: b, head: head, t: t, start: carry?.pointee.position ?? 0)
        carry?.pointee.position = end
        if !kind.carriesState || (carry == nil && resolvedForm(t) == .quadratic) {
            let (y, cache) = QuadraticAttention.forward(input, score: kind.score(power: power))
            return HeadCache(input: input, y: y, quadratic: cache, chunked: nil, positions: positions)
        }
        let (y, cache, state) = chunked!.forward(input, from: carry?.pointee.state)
        carry?.pointee.state = state
        return HeadCache(input: input, y: y, quadratic: nil, chunked: cache, positions: positions)
    }

    /// Drops what backward needs (activation recomputation).
    func releaseActivations() { x = nil; gateInputs = nil; caches = [] }

    /// Heads' outputs ([T, d] per (row, head), row-major over rows then heads) side by side: [B*T, C].
    private func merge(_ ys: [[S]], batch: Int, length t: Int) -> Tensor<S> {
        let c = dModel, h = heads, d = headDim
        let merged = Tensor<S>(uninitialized: [batch * t, c])
        for (i, y) in ys.enumerated() {
            let b = i / h, head = i % h
            y.withUnsafeBufferPointer { src in
                for r in 0..<t { (merged.data + (b * t + r) * c + head * d).update(from: src.baseAddress! + r * d, count: d) }
            }
        }
        return merged
    }

    // backward: dy [B*T, C] -> dx [B*T, C]; accumulates dwQKVGR, dwO
    @_specialize(where S == Float)
    public func backward(_ dy: Tensor<S>) -> Tensor<S> {
        guard let x, let gateInputs else { preconditionFailure("backward before forward") }
        let c = dModel, h = heads, d = headDim, width = 3 * c + 2 * h, t = length, n = batch * t
        let merged = merge(caches.map(\.y), batch: batch, length: t)
        gemm(true, false, c, c, n, 1, merged, dy, 1, dwO)
        let dMerged = Tensor<S>(uninitialized: [n, c])
        gemm(false, true, n, c, c, 1, dy, wO, 0, dMerged)
        let dp = Tensor<S>([n, width])
        // Each (row, head) writes its own columns of dp: one per core.
        let caches = self.caches
        // Unchecked: each (row, head) reads the layer's weights and writes its own columns of dp.
        nonisolated(unsafe) let layer = self
        withSingleThreadedBLAS { DispatchQueue.concurrentPerform(iterations: caches.count) { i in
            let cache = caches[i]
            let b = i / h, head = i % h
            var dyh = [S](repeating: 0, count: t * d)
            for r in 0..<t { for e in 0..<d { dyh[r * d + e] = dMerged[(b * t + r) * c + head * d + e] } }
            let g: HeadGradient<S>
            if let q = cache.quadratic {
                g = QuadraticAttention.backward(cache.input, score: layer.kind.score(power: layer.power), y: cache.y, cache: q, dy: dyh)
            } else {
                g = layer.chunked!.backward(cache.input, y: cache.y, cache: cache.chunked!, dy: dyh)
            }
            // Rotary: dq = R^T dqr; d(angle) from both q and k.
            var dAngle = [Double](repeating: 0, count: t * d / 2)
            let (cs, sn) = layer.rotation(cache.positions)
            let dq = unrotate(g.dqr, cache.input.qr, cs, sn, d, &dAngle)
            let dk = unrotate(g.dkr, cache.input.kr, cs, sn, d, &dAngle)
            var gateAcc = 0.0, rateAcc = 0.0
            for r in stride(from: t - 1, through: 0, by: -1) {
                let row = (b * t + r) * width
                for e in 0..<d {
                    dp[row + head * d + e] = dq[r * d + e]
                    dp[row + c + head * d + e] = dk[r * d + e]
                    dp[row + 2 * c + head * d + e] = g.dv[r * d + e]
                }
                if layer.kind.gated {
                    // dgamma_t = sum_{i >= t} dG_i; d logsigmoid(z)/dz = 1 - sigmoid(z).
                    gateAcc += g.dG[r]
                    let z = Double(gateInputs[(b * t + r) * 2 * h + head]) + Self.gateBias
                    dp[row + 3 * c + head] = S(gateAcc * (1 - 1 / (1 + Foundation.exp(-z))))
                }
                if layer.kind.learnedRotary {
                    var dB = 0.0
                    for m in 0..<(d / 2) { dB += layer.rates[m] * dAngle[r * d / 2 + m] }
                    rateAcc += dB
                    let th = Foundation.tanh(Double(gateInputs[(b * t + r) * 2 * h + h + head]))
                    dp[row + 3 * c + h + head] = S(rateAcc * (1 - th * th))
                }
            }
        } }
        gemm(true, false, c, width, n, 1, x, dp, 1, dwQKVGR)
        let dx = Tensor<S>(uninitialized: [n, c])
        gemm(false, true, n, c, width, 1, dp, wQKVGR, 0, dx)
        return dx
    }
}

/// Rotates pairs (2m, 2m+1) of each row by its angles, given as cos and sin [T, d/2].
func rotate<S: TensorScalar>(_ x: [S], _ cs: [S], _ sn: [S], _ d: Int) -> [S] {
    var out = x
    let t = x.count / d, half = d / 2
    for r in 0..<t {
        for m in 0..<half {
            let c = cs[r * half + m], s = sn[r * half + m]
            let x0 = x[r * d + 2 * m], x1 = x[r * d + 2 * m + 1]
            out[r * d + 2 * m] = x0 * c - x1 * s
            out[r * d + 2 * m + 1] = x0 * s + x1 * c
        }
    }
    return out
}

/// The backward of `rotate`: returns R^T dxr and adds d(angle) = dxr1 * xr0 - dxr0 * xr1 into dAngle.
func unrotate<S: TensorScalar>(_ dxr: [S], _ xr: [S], _ cs: [S], _ sn: [S], _ d: Int, _ dAngle: inout [Double]) -> [S] {
    var out = dxr
    let t = dxr.count / d, half = d / 2
    for r in 0..<t {
        for m in 0..<half {
            let c = cs[r * half + m], s = sn[r * half + m]
            let g0 = dxr[r * d + 2 * m], g1 = dxr[r * d + 2 * m + 1]
            out[r * d + 2 * m] = g0 * c + g1 * s
            out[r * d + 2 * m + 1] = -g0 * s + g1 * c
            dAngle[r * half + m] += Double(g1 * xr[r * d + 2 * m] - g0 * xr[r * d + 2 * m + 1])
        }
    }
    return out
}

/// log(sigmoid(z)), stable for large |z|.
func logSigmoid(_ z: Double) -> Double { z >= 0 ? -Foundation.log1p(Foundation.exp(-z)) : z - Foundation.log1p(Foundation.exp(z)) }

/// A standard normal sample (Box-Muller).
func normal(_ rng: inout some RandomNumberGenerator) -> Double {
    let u1 = Double.random(in: Double.ulpOfOne..<1, using: &rng), u2 = Double.random(in: 0..<1, using: &rng)
    return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * .pi * u2)
}
