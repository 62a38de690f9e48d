import Foundation
import Tensor

/// How a score u = qr . kr / sqrt(d) becomes an un-normalized weight.
enum Score: Sendable, Equatable {
    /// exp(u): standard causal attention.
    case softmax
    /// exp(G_i - G_j) * u^p, p even: symmetric power attention (G = 0 without the gate).
    case power(Int)
}

/// Added to every normalizer: y = n / (l + eps), as the reference implementation does.
let attentionEpsilon = 1e-6

/// One head over one sequence after gating and rotary embedding: the input of every attention form.
/// qr, kr, v: [T, d]; G: [T] cumulative log-gate (all 0 without the gate), kept in Float64.
struct HeadInput<S: TensorScalar> {
    var t: Int
    var d: Int
    var qr: [S]
    var kr: [S]
    var v: [S]
    var G: [Double]
    var scale: S { S(1 / Double(d).squareRoot()) }
}

/// Gradients of a head's attention with respect to its inputs.
struct HeadGradient<S: TensorScalar> {
    var dqr: [S]
    var dkr: [S]
    var dv: [S]
    var dG: [Double]

    init(t: Int, d: Int) {
        dqr = [S](repeating: 0, count: t * d); dkr = dqr; dv = dqr
        dG = [Double](repeating: 0, count: t)
    }
}

/// The attention form: quadratic in T, the reference every other form is tested against. Scores are taken in
/// log space and each row is scaled by its maximum, so large |u| and tiny gates stay finite.
enum QuadraticAttention {
    struct Cache<S: TensorScalar> {
        /// [T, T] scores u (lower triangle).
        var u: [S]
        /// [T, T] scaled weights a_ij * exp(-m_i) (lower triangle, 0 above).
        var weights: [S]
        /// [T] scaled normalizer l_i * exp(-m_i) + eps * exp(-m_i).
        var norm: [S]
    }

    // forward: qr, kr, v [T, d], G [T] -> y [T, d]
    static func forward<S>(_ x: HeadInput<S>, score: Score) -> (y: [S], cache: Cache<S>) {
        let t = x.t, d = x.d
        var u = [S](repeating: 0, count: t * t)
        gemm(false, true, t, t, d, x.scale, x.qr, x.kr, 0, &u)
        var w = [S](repeating: 0, count: t * t)
        var norm = [S](repeating: 0, count: t)
        var logits = [Double](repeating: 0, count: t)
        for i in 0..<t {
            var m = -Double.infinity
            for j in 0...i {
                let uij = Double(u[i * t + j])
                let s: Double
                switch score {
                case .softmax: s = uij
                case .power(let p): s = uij == 0 ? -.infinity : Double(p) * Foundation.log(abs(uij)) + (x.G[i] - x.G[j])
                }
                logits[j] = s
                m = max(m, s)
            }
            if m == -.infinity { m = 0 }
            var l = 0.0
            for j in 0...i {
                let a = Foundation.exp(logits[j] - m)
                w[i * t + j] = S(a)
                l += a
            }
            norm[i] = S(l + attentionEpsilon * Foundation.exp(-m))
        }
        var y = [S](repeating: 0, count: t * d)
        gemm(false, false, t, d, t, 1, w, x.v, 0, &y)
        for i in 0..<t { for c in 0..<d { y[i * d + c] /= norm[i] } }
        return (y, Cache(u: u, weights: w, norm: norm))
    }

    // backward: dy [T, d] -> dqr, dkr, dv [T, d], dG [T]
    static func backward<S>(_ x: HeadInput<S>, score: Score, y: [S], cache: Cache<S>, dy: [S]) -> HeadGradient<S> {
        let t = x.t, d = x.d
        var g = HeadGradient<S>(t: t, d: d)
        var dyv = [S](repeating: 0, count: t * t)
        gemm(false, true, t, t, d, 1, dy, x.v, 0, &dyv)
        var du = [S](repeating: 0, count: t * t)
        var pn = [S](repeating: 0, count: t * t)
        for i in 0..<t {
            var dyy = S(0)
            for c in 0..<d { dyy += dy[i * d + c] * y[i * d + c] }
            let inv = 1 / cache.norm[i]
            for j in 0...i {
                let a = cache.weights[i * t + j]
                pn[i * t + j] = a * inv
                let w = a * (dyv[i * t + j] - dyy) * inv
                g.dG[i] += Double(w); g.dG[j] -= Double(w)
                let uij = cache.u[i * t + j]
                switch score {
                case .softmax: du[i * t + j] = x.scale * w
                case .power(let p): du[i * t + j] = uij == 0 ? 0 : x.scale * S(p) * w / uij
                }
            }
        }
        gemm(false, false, t, d, t, 1, du, x.kr, 0, &g.dqr)
        gemm(true, false, t, d, t, 1, du, x.qr, 0, &g.dkr)
        gemm(true, false, t, d, t, 1, pn, dy, 0, &g.dv)
        return g
    }
}

/// The chunked form of symmetric power attention (training): linear in T. Within a chunk of c positions the
/// attention form; across chunks a state S = sum_j exp(G_end - G_j) phi(kr_j) [v_j, 1]^T of shape [D, d + 1]
/// (the extra column is the normalizer z). Gate discounts are folded into the keys and queries,
/// kr_j * exp((G_end - G_j) / p) and s * qr_i * exp((G_i - G_prev) / p), because (a x . y)^p = a^p (x . y)^p,
/// so every cross-chunk step is a matrix product on BLAS. The backward recomputes states from checkpoints kept
/// every sqrt(T / c) chunks instead of storing all of them.
struct ChunkedAttention {
    let phi: SymmetricPower
    let chunk: Int
    var power: Int { phi.power }

    init(headDimension d: Int, power p: Int, chunk: Int) {
        phi = SymmetricPower(dimension: d, power: p)
        self.chunk = chunk
    }

    struct Cache<S: TensorScalar> {
        /// [T] normalizers l_i + eps.
        var norm: [S]
        /// States before chunks 0, stride, 2 * stride, ...
        var checkpoints: [[S]]
        var stride: Int
    }

    /// A chunk's folded queries s * qr_i * exp((G_i - G_prev)/p) and keys kr_j * exp((G_end - G_j)/p) [c, d], the
    /// factors themselves [c] and the state's decay exp(G_end - G_prev) across the chunk.
    struct Fold<S: TensorScalar> {
        var q: [S], k: [S], fq: [S], fk: [S]
        var decay: Double
    }

    // fold: qr, kr [c, d], G [c] of chunk [t0, t0 + c) -> q~, k~ [c, d], decay
    private func fold<S>(_ x: HeadInput<S>, _ t0: Int, _ c: Int) -> Fold<S> {
        let d = x.d, p = Double(power)
        let gPrev = t0 > 0 ? x.G[t0 - 1] : 0, gEnd = x.G[t0 + c - 1]
        var q = [S](repeating: 0, count: c * d), k = q
        var fq = [S](repeating: 0, count: c), fk = fq
        for i in 0..<c {
            fq[i] = S(Foundation.exp((x.G[t0 + i] - gPrev) / p))
            fk[i] = S(Foundation.exp((gEnd - x.G[t0 + i]) / p))
            for e in 0..<d {
                q[i * d + e] = x.scale * x.qr[(t0 + i) * d + e] * fq[i]
                k[i * d + e] = x.kr[(t0 + i) * d + e] * fk[i]
            }
        }
        return Fold(q: q, k: k, fq: fq, fk: fk, decay: Foundation.exp(gEnd - gPrev))
    }

    // foldBackward: dq~, dk~ [c, d], dDecay -> dqr, dkr [c, d], dG (accumulated)
    private func foldBackward<S>(_ x: HeadInput<S>, _ t0: Int, _ c: Int, _ f: Fold<S>, dq: [S], dk: [S], dDecay: Double,
                                 _ g: inout HeadGradient<S>) {
        let d = x.d, p = Double(power)
        if t0 > 0 { g.dG[t0 - 1] -= dDecay }
        g.dG[t0 + c - 1] += dDecay
        for i in 0..<c {
            var gq = S(0), gk = S(0)
            for e in 0..<d {
                g.dqr[(t0 + i) * d + e] += dq[i * d + e] * x.scale * f.fq[i]
                g.dkr[(t0 + i) * d + e] += dk[i * d + e] * f.fk[i]
                gq += dq[i * d + e] * f.q[i * d + e]
                gk += dk[i * d + e] * f.k[i * d + e]
            }
            // q~ carries exp((G_i - G_prev)/p), k~ carries exp((G_end - G_j)/p).
            let dq = Double(gq) / p, dk = Double(gk) / p
            g.dG[t0 + i] += dq - dk
            if t0 > 0 { g.dG[t0 - 1] -= dq }
            g.dG[t0 + c - 1] += dk
        }
    }

    /// [c, d + 1]: the chunk's values with a column of ones.
    private func valuesWithOnes<S>(_ x: HeadInput<S>, _ t0: Int, _ c: Int) -> [S] {
        let d = x.d
        var out = [S](repeating: 1, count: c * (d + 1))
        for i in 0..<c { for e in 0..<d { out[i * (d + 1) + e] = x.v[(t0 + i) * d + e] } }
        return out
    }

    // intraWeights: qr, kr [c, d], G [c] -> a [c, c] (a_ij = exp(G_i - G_j) u_ij^p for j <= i, else 0), scores u [c, c]
    private func intraWeights<S>(_ x: HeadInput<S>, _ t0: Int, _ c: Int) -> (a: [S], u: [S]) {
        let d = x.d
        var u = [S](repeating: 0, count: c * c)
        gemm(false, true, c, c, d, x.scale, x.qr, x.kr, 0, &u, offsets: (t0 * d, t0 * d, 0))
        var a = [S](repeating: 0, count: c * c)
        a.withUnsafeMutableBufferPointer { a in
            for i in 0..<c {
                // The gate's discounts exp(G_i - G_j) a row at a time on the vector exp; the differences taken in Float64.
                let row = a.baseAddress! + i * c
                for j in 0...i { row[j] = S(x.G[t0 + i] - x.G[t0 + j]) }
                _ = S.expShiftedSum(row, i + 1, shift: 0)
                for j in 0...i {
                    var w = S(1)
                    let uij = u[i * c + j]
                    for _ in 0..<power { w *= uij }
                    row[j] *= w
                }
            }
        }
        return (a, u)
    }

    // intraWeightsBackward: da [c, c] -> dqr, dkr [c, d], dG (accumulated)
    private func intraWeightsBackward<S>(_ x: HeadInput<S>, _ t0: Int, _ c: Int, a: [S], u: [S], da: [S], _ g: inout HeadGradient<S>) {
        let d = x.d
        var du = [S](repeating: 0, count: c * c)
        for i in 0..<c {
            for j in 0...i {
                let wij = a[i * c + j] * da[i * c + j]
                g.dG[t0 + i] += Double(wij); g.dG[t0 + j] -= Double(wij)
                let uij = u[i * c + j]
                du[i * c + j] = uij == 0 ? 0 : x.scale * S(power) * wij / uij
            }
        }
        gemm(false, false, c, d, c, 1, du, x.kr, 1, &g.dqr, offsets: (0, t0 * d, t0 * d))
        gemm(true, false, c, d, c, 1, du, x.qr, 1, &g.dkr, offsets: (0, t0 * d, t0 * d))
    }

    // advance: S [D, d + 1], k~ [c, d], v' [c, d + 1] -> S <- decay S + phi(k~)^T v'
    private func advance<S>(_ state: inout [S], _ f: Fold<S>, _ v1: [S], _ c: Int) {
        let dd = phi.size, w = phi.dimension + 1
        var phiK = [S](repeating: 0, count: c * dd)
        phi.forward(f.k, rows: c, into: &phiK)
        gemm(true, false, dd, w, c, 1, phiK, v1, S(f.decay), &state)
    }

    // advanceBackward: dS after the chunk [D, d + 1] -> dk~ [c, d], dDecay; dv += dv' (its share of dS before is chunkOutputBackward's beta)
    private func advanceBackward<S>(_ dState: [S], _ f: Fold<S>, _ v1: [S], prev: [S], _ t0: Int, _ c: Int,
                                    _ g: inout HeadGradient<S>) -> (dk: [S], dDecay: Double) {
        let d = phi.dimension, dd = phi.size, w = d + 1
        let sdot = S.dot(dState, prev, dd * w)
        var phiK = [S](repeating: 0, count: c * dd), dPhiK = phiK, dV1 = [S](repeating: 0, count: c * w)
        phi.forward(f.k, rows: c, into: &phiK)
        gemm(false, true, c, dd, w, 1, v1, dState, 0, &dPhiK)
        gemm(false, false, c, w, dd, 1, phiK, dState, 0, &dV1)
        for i in 0..<c { for e in 0..<d { g.dv[(t0 + i) * d + e] += dV1[i * w + e] } }
        var dk = [S](repeating: 0, count: c * d)
        phi.backward(f.k, dPhiK, rows: c, into: &dk)
        return (dk, Double(sdot) * f.decay)
    }

    // chunkOutput: q~ [c, d], a [c, c], v' [c, d + 1], S before the chunk [D, d + 1] -> y [c, d], norm [c] at rows t0 ..< t0 + c
    private func chunkOutput<S>(_ f: Fold<S>, _ a: [S], _ v1: [S], _ state: [S], _ t0: Int, _ c: Int, _ y: inout [S], _ norm: inout [S]) {
        let d = phi.dimension, dd = phi.size, w = d + 1
        var phiQ = [S](repeating: 0, count: c * dd), inter = [S](repeating: 0, count: c * w)
        phi.forward(f.q, rows: c, into: &phiQ)
        // inter = phi(q~) S_prev: numerator in the first d columns, normalizer in the last; then + A [v, 1] (intra).
        gemm(false, false, c, w, dd, 1, phiQ, state, 0, &inter)
        gemm(false, false, c, w, c, 1, a, v1, 1, &inter)
        for i in 0..<c {
            let l = inter[i * w + d] + S(attentionEpsilon)
            norm[t0 + i] = l
            for e in 0..<d { y[(t0 + i) * d + e] = inter[i * w + e] / l }
        }
    }

    // chunkOutputBackward: dy [c, d] -> dq~ [c, d], da [c, c]; dv += dv'; dS <- decay dS + phi(q~)^T dN (dS before the chunk)
    private func chunkOutputBackward<S>(_ dState: inout [S], _ f: Fold<S>, _ a: [S], _ v1: [S], prev: [S], y: [S], norm: [S], dy: [S],
                                        _ t0: Int, _ c: Int, _ g: inout HeadGradient<S>) -> (dq: [S], da: [S]) {
        let d = phi.dimension, dd = phi.size, w = d + 1
        // dN = [dn, dl] [c, d + 1] of the numerator and normalizer: dn = dy / l, dl = -(dy . y) / l.
        var dN = [S](repeating: 0, count: c * w)
        for i in 0..<c {
            let l = norm[t0 + i]
            var dyy = S(0)
            for e in 0..<d {
                let gy = dy[(t0 + i) * d + e]
                dN[i * w + e] = gy / l
                dyy += gy * y[(t0 + i) * d + e]
            }
            dN[i * w + d] = -dyy / l
        }
        // Inter part: dphi(q~) = dN S_prev^T; dS_prev = decay dS_next + phi(q~)^T dN, advance's share as the product's beta
        // (scaling dS on its own changes the last bits on OpenBLAS's small-matrix path).
        var phiQ = [S](repeating: 0, count: c * dd), dPhiQ = phiQ
        phi.forward(f.q, rows: c, into: &phiQ)
        gemm(false, true, c, dd, w, 1, dN, prev, 0, &dPhiQ)
        gemm(true, false, dd, w, c, 1, phiQ, dN, S(f.decay), &dState)
        var dq = [S](repeating: 0, count: c * d)
        phi.backward(f.q, dPhiQ, rows: c, into: &dq)
        // Intra part: dA = dN [v, 1]^T; dv += A^T dn (the ones column of v' carries no parameter).
        var da = [S](repeating: 0, count: c * c), dvc = [S](repeating: 0, count: c * w)
        gemm(false, true, c, c, w, 1, dN, v1, 0, &da)
        gemm(true, false, c, w, c, 1, a, dN, 0, &dvc)
        for i in 0..<c { for e in 0..<d { g.dv[(t0 + i) * d + e] += dvc[i * w + e] } }
        return (dq, da)
    }

    /// One chunk [t0, t0 + c) from the state before it: its outputs into y and norm, and the state after it.
    private func chunkForward<S>(_ x: HeadInput<S>, _ t0: Int, _ c: Int, _ state: inout [S], _ y: inout [S], _ norm: inout [S]) {
        let f = fold(x, t0, c), v1 = valuesWithOnes(x, t0, c)
        chunkOutput(f, intraWeights(x, t0, c).a, v1, state, t0, c, &y, &norm)
        advance(&state, f, v1, c)
    }

    /// The backward of `chunkForward`, its steps in reverse (fold and intraWeights are independent of each other);
    /// `dState` holds dS after the chunk on entry, before it on return.
    private func chunkBackward<S>(_ x: HeadInput<S>, _ t0: Int, _ c: Int, prev: [S], y: [S], norm: [S], dy: [S], _ dState: inout [S],
                                  _ g: inout HeadGradient<S>) {
        let f = fold(x, t0, c), v1 = valuesWithOnes(x, t0, c), (a, u) = intraWeights(x, t0, c)
        let (dk, dDecay) = advanceBackward(dState, f, v1, prev: prev, t0, c, &g)
        let (dq, da) = chunkOutputBackward(&dState, f, a, v1, prev: prev, y: y, norm: norm, dy: dy, t0, c, &g)
        foldBackward(x, t0, c, f, dq: dq, dk: dk, dDecay: dDecay, &g)
        intraWeightsBackward(x, t0, c, a: a, u: u, da: da, &g)
    }

    /// A fresh state [D, d + 1]: nothing seen yet.
    func initialState<S: TensorScalar>() -> [S] { [S](repeating: 0, count: phi.size * (phi.dimension + 1)) }

    // forward: qr, kr, v [T, d], G [T], S before the segment [D, d + 1] (nil: empty) -> y [T, d], S after it
    /// Any T: the last chunk may be shorter. G restarts at 0 in each segment: `state` is already discounted to its
    /// last position, so segment after segment gives the outputs of one pass over the whole sequence. The starting
    /// state is a constant for `backward` (truncated backpropagation through time).
    func forward<S>(_ x: HeadInput<S>, from start: [S]? = nil) -> (y: [S], cache: Cache<S>, state: [S]) {
        let t = x.t, d = x.d, c = chunk
        let chunks = (t + c - 1) / c
        let stride = max(1, Int(Double(chunks).squareRoot().rounded(.up)))
        var state: [S] = start ?? initialState()
        var checkpoints: [[S]] = []
        var y = [S](repeating: 0, count: t * d)
        var norm = [S](repeating: 0, count: t)
        for n in 0..<chunks {
            if n % stride == 0 { checkpoints.append(state) }
            chunkForward(x, n * c, min(c, t - n * c), &state, &y, &norm)
        }
        return (y, Cache(norm: norm, checkpoints: checkpoints, stride: stride), state)
    }

    // backward: dy [T, d] -> dqr, dkr, dv [T, d], dG [T]; nothing flows into the starting state
    func backward<S>(_ x: HeadInput<S>, y: [S], cache: Cache<S>, dy: [S]) -> HeadGradient<S> {
        let t = x.t, c = chunk, chunks = (t + c - 1) / c
        var g = HeadGradient<S>(t: t, d: x.d)
        var dState: [S] = initialState()
        var blockStates: [[S]] = []
        var blockStart = -1
        for n in stride(from: chunks - 1, through: 0, by: -1) {
            // States before each chunk of this checkpoint block, recomputed once per block.
            let b = n / cache.stride * cache.stride
            if b != blockStart {
                blockStart = b
                var s = cache.checkpoints[b / cache.stride]
                blockStates = []
                for m in b..<min(b + cache.stride, chunks) {
                    blockStates.append(s)
                    let cm = min(c, t - m * c)
                    if m + 1 < min(b + cache.stride, chunks) { advance(&s, fold(x, m * c, cm), valuesWithOnes(x, m * c, cm), cm) }
                }
            }
            chunkBackward(x, n * c, min(c, t - n * c), prev: blockStates[n - b], y: y, norm: cache.norm, dy: dy, &dState, &g)
        }
        return g
    }
}
