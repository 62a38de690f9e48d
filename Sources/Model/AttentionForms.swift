import Foundation
import Tensor

/// How a score u = qr . kr / sqrt(d) becomes an un-normalized weight.
public enum Score: Sendable, Equatable {
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
        x.qr.withUnsafeBufferPointer { q in x.kr.withUnsafeBufferPointer { k in u.withUnsafeMutableBufferPointer { o in
            gemm(false, true, t, t, d, x.scale, q.baseAddress!, k.baseAddress!, 0, o.baseAddress!)
        } } }
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
        w.withUnsafeBufferPointer { p in x.v.withUnsafeBufferPointer { v in y.withUnsafeMutableBufferPointer { o in
            gemm(false, false, t, d, t, 1, p.baseAddress!, v.baseAddress!, 0, o.baseAddress!)
        } } }
        for i in 0..<t { for c in 0..<d { y[i * d + c] /= norm[i] } }
        return (y, Cache(u: u, weights: w, norm: norm))
    }

    // backward: dy [T, d] -> dqr, dkr, dv [T, d], dG [T]
    static func backward<S>(_ x: HeadInput<S>, score: Score, y: [S], cache: Cache<S>, dy: [S]) -> HeadGradient<S> {
        let t = x.t, d = x.d
        var g = HeadGradient<S>(t: t, d: d)
        var dyv = [S](repeating: 0, count: t * t)
        dy.withUnsafeBufferPointer { a in x.v.withUnsafeBufferPointer { b in dyv.withUnsafeMutableBufferPointer { o in
            gemm(false, true, t, t, d, 1, a.baseAddress!, b.baseAddress!, 0, o.baseAddress!)
        } } }
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
        du.withUnsafeBufferPointer { du in
            x.kr.withUnsafeBufferPointer { k in g.dqr.withUnsafeMutableBufferPointer { o in
                gemm(false, false, t, d, t, 1, du.baseAddress!, k.baseAddress!, 0, o.baseAddress!)
            } }
            x.qr.withUnsafeBufferPointer { q in g.dkr.withUnsafeMutableBufferPointer { o in
                gemm(true, false, t, d, t, 1, du.baseAddress!, q.baseAddress!, 0, o.baseAddress!)
            } }
        }
        pn.withUnsafeBufferPointer { p in dy.withUnsafeBufferPointer { dy in g.dv.withUnsafeMutableBufferPointer { o in
            gemm(true, false, t, d, t, 1, p.baseAddress!, dy.baseAddress!, 0, o.baseAddress!)
        } } }
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

    /// Folded queries and keys of chunk [t0, t0 + c): s * qr_i * exp((G_i - G_prev)/p) and kr_j * exp((G_end - G_j)/p),
    /// with the factors themselves (for the backward).
    private func fold<S>(_ x: HeadInput<S>, _ t0: Int, _ c: Int) -> (q: [S], k: [S], fq: [S], fk: [S], decay: Double) {
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
        return (q, k, fq, fk, Foundation.exp(gEnd - gPrev))
    }

    /// [c, d + 1]: the chunk's values with a column of ones.
    private func valuesWithOnes<S>(_ x: HeadInput<S>, _ t0: Int, _ c: Int) -> [S] {
        let d = x.d
        var out = [S](repeating: 1, count: c * (d + 1))
        for i in 0..<c { for e in 0..<d { out[i * (d + 1) + e] = x.v[(t0 + i) * d + e] } }
        return out
    }

    /// Intra-chunk weights a_ij = exp(G_i - G_j) u_ij^p (j <= i) and scores u: [c, c] each.
    private func intraWeights<S>(_ x: HeadInput<S>, _ t0: Int, _ c: Int) -> (a: [S], u: [S]) {
        let d = x.d
        var u = [S](repeating: 0, count: c * c)
        x.qr.withUnsafeBufferPointer { q in x.kr.withUnsafeBufferPointer { k in u.withUnsafeMutableBufferPointer { o in
            gemm(false, true, c, c, d, x.scale, q.baseAddress! + t0 * d, k.baseAddress! + t0 * d, 0, o.baseAddress!)
        } } }
        var a = [S](repeating: 0, count: c * c)
        for i in 0..<c {
            for j in 0...i {
                var w = S(1)
                let uij = u[i * c + j]
                for _ in 0..<power { w *= uij }
                a[i * c + j] = w * S(Foundation.exp(x.G[t0 + i] - x.G[t0 + j]))
            }
        }
        return (a, u)
    }

    /// State after chunk [t0, t0 + c) from the state before it: S <- exp(G_end - G_prev) S + phi(k~)^T [v, 1].
    private func advance<S>(_ state: inout [S], _ x: HeadInput<S>, _ t0: Int, _ c: Int) {
        let f = fold(x, t0, c)
        let dd = phi.size, w = x.d + 1
        var phiK = [S](repeating: 0, count: c * dd)
        f.k.withUnsafeBufferPointer { k in phiK.withUnsafeMutableBufferPointer { phi.forward(k.baseAddress!, rows: c, into: $0.baseAddress!) } }
        let v1 = valuesWithOnes(x, t0, c)
        phiK.withUnsafeBufferPointer { pk in v1.withUnsafeBufferPointer { v in state.withUnsafeMutableBufferPointer { s in
            gemm(true, false, dd, w, c, 1, pk.baseAddress!, v.baseAddress!, S(f.decay), s.baseAddress!)
        } } }
    }

    /// Outputs of chunk [t0, t0 + c) from the state before it, into y and norm.
    private func chunkOutput<S>(_ x: HeadInput<S>, _ t0: Int, _ c: Int, _ state: [S], _ y: inout [S], _ norm: inout [S]) {
        let d = x.d, dd = phi.size, w = d + 1
        let (a, _) = intraWeights(x, t0, c)
        let f = fold(x, t0, c)
        var phiQ = [S](repeating: 0, count: c * dd), inter = [S](repeating: 0, count: c * w)
        f.q.withUnsafeBufferPointer { q in phiQ.withUnsafeMutableBufferPointer { phi.forward(q.baseAddress!, rows: c, into: $0.baseAddress!) } }
        // inter = phi(q~) S_prev: numerator in the first d columns, normalizer in the last.
        phiQ.withUnsafeBufferPointer { pq in state.withUnsafeBufferPointer { s in inter.withUnsafeMutableBufferPointer { o in
            gemm(false, false, c, w, dd, 1, pq.baseAddress!, s.baseAddress!, 0, o.baseAddress!)
        } } }
        let v1 = valuesWithOnes(x, t0, c)
        // intra: A [v, 1], added to the inter part.
        a.withUnsafeBufferPointer { a in v1.withUnsafeBufferPointer { v in inter.withUnsafeMutableBufferPointer { o in
            gemm(false, false, c, w, c, 1, a.baseAddress!, v.baseAddress!, 1, o.baseAddress!)
        } } }
        for i in 0..<c {
            let l = inter[i * w + d] + S(attentionEpsilon)
            norm[t0 + i] = l
            for e in 0..<d { y[(t0 + i) * d + e] = inter[i * w + e] / l }
        }
    }

    /// A fresh state [D, d + 1]: nothing seen yet.
    func initialState<S: TensorScalar>() -> [S] { [S](repeating: 0, count: phi.size * (phi.dimension + 1)) }

    // forward: qr, kr, v [T, d], G [T] -> y [T, d]; T must be a multiple of the chunk size
    func forward<S>(_ x: HeadInput<S>) -> (y: [S], cache: Cache<S>) {
        let t = x.t, d = x.d, c = chunk
        precondition(t % c == 0, "sequence length \(t) is not a multiple of the chunk \(c)")
        let chunks = t / c
        let stride = max(1, Int(Double(chunks).squareRoot().rounded(.up)))
        var state: [S] = initialState()
        var checkpoints: [[S]] = []
        var y = [S](repeating: 0, count: t * d)
        var norm = [S](repeating: 0, count: t)
        for n in 0..<chunks {
            if n % stride == 0 { checkpoints.append(state) }
            chunkOutput(x, n * c, c, state, &y, &norm)
            advance(&state, x, n * c, c)
        }
        return (y, Cache(norm: norm, checkpoints: checkpoints, stride: stride))
    }

    /// Inference continuing from `state` (the state after everything before this segment, at its last
    /// position; G restarts at 0 here): any T, a shorter last chunk allowed. `state` ends after the segment,
    /// so segment after segment gives the outputs of one pass over the whole sequence.
    // forward: qr, kr, v [T, d], G [T], state [D, d + 1] -> y [T, d]
    func forward<S>(_ x: HeadInput<S>, continuing state: inout [S]) -> [S] {
        var y = [S](repeating: 0, count: x.t * x.d), norm = [S](repeating: 0, count: x.t)
        var t0 = 0
        while t0 < x.t {
            let c = min(chunk, x.t - t0)
            chunkOutput(x, t0, c, state, &y, &norm)
            advance(&state, x, t0, c)
            t0 += c
        }
        return y
    }

    // backward: dy [T, d] -> dqr, dkr, dv [T, d], dG [T]
    func backward<S>(_ x: HeadInput<S>, y: [S], cache: Cache<S>, dy: [S]) -> HeadGradient<S> {
        let t = x.t, d = x.d, c = chunk, dd = phi.size, w = d + 1, p = Double(power)
        let chunks = t / c
        var g = HeadGradient<S>(t: t, d: d)
        var dState = [S](repeating: 0, count: dd * w)
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
                    if m + 1 < min(b + cache.stride, chunks) { advance(&s, x, m * c, c) }
                }
            }
            let prev = blockStates[n - b]
            let t0 = n * c
            let f = fold(x, t0, c)
            let v1 = valuesWithOnes(x, t0, c)
            // dN' = [dn, dl]: dn = dy / l, dl = -(dy . y) / l.
            var dN = [S](repeating: 0, count: c * w)
            for i in 0..<c {
                let l = cache.norm[t0 + i]
                var dyy = S(0)
                for e in 0..<d {
                    let gy = dy[(t0 + i) * d + e]
                    dN[i * w + e] = gy / l
                    dyy += gy * y[(t0 + i) * d + e]
                }
                dN[i * w + d] = -dyy / l
            }
            var phiQ = [S](repeating: 0, count: c * dd), phiK = phiQ
            f.q.withUnsafeBufferPointer { q in phiQ.withUnsafeMutableBufferPointer { phi.forward(q.baseAddress!, rows: c, into: $0.baseAddress!) } }
            f.k.withUnsafeBufferPointer { k in phiK.withUnsafeMutableBufferPointer { phi.forward(k.baseAddress!, rows: c, into: $0.baseAddress!) } }

            // State update S_next = decay S_prev + phi(k~)^T V': gradients from dS (= dS_next).
            var sdot = S(0)
            for i in 0..<(dd * w) { sdot += dState[i] * prev[i] }
            let dDecay = Double(sdot) * f.decay
            var dPhiK = [S](repeating: 0, count: c * dd)
            var dV1 = [S](repeating: 0, count: c * w)
            v1.withUnsafeBufferPointer { v in dState.withUnsafeBufferPointer { ds in
                dPhiK.withUnsafeMutableBufferPointer { o in gemm(false, true, c, dd, w, 1, v.baseAddress!, ds.baseAddress!, 0, o.baseAddress!) }
                phiK.withUnsafeBufferPointer { pk in dV1.withUnsafeMutableBufferPointer { o in
                    gemm(false, false, c, w, dd, 1, pk.baseAddress!, ds.baseAddress!, 0, o.baseAddress!)
                } }
            } }
            // Inter part: dphi(q~) = dN' S_prev^T; dS_prev = decay dS_next + phi(q~)^T dN'.
            var dPhiQ = [S](repeating: 0, count: c * dd)
            dN.withUnsafeBufferPointer { dn in prev.withUnsafeBufferPointer { s in dPhiQ.withUnsafeMutableBufferPointer { o in
                gemm(false, true, c, dd, w, 1, dn.baseAddress!, s.baseAddress!, 0, o.baseAddress!)
            } } }
            phiQ.withUnsafeBufferPointer { pq in dN.withUnsafeBufferPointer { dn in dState.withUnsafeMutableBufferPointer { o in
                gemm(true, false, dd, w, c, 1, pq.baseAddress!, dn.baseAddress!, S(f.decay), o.baseAddress!)
            } } }
            if t0 > 0 { g.dG[t0 - 1] -= dDecay }
            g.dG[t0 + c - 1] += dDecay

            // Pull back through phi and the folds.
            var dq = [S](repeating: 0, count: c * d), dk = dq
            f.q.withUnsafeBufferPointer { q in dPhiQ.withUnsafeBufferPointer { dp in dq.withUnsafeMutableBufferPointer {
                phi.backward(q.baseAddress!, dp.baseAddress!, rows: c, into: $0.baseAddress!)
            } } }
            f.k.withUnsafeBufferPointer { k in dPhiK.withUnsafeBufferPointer { dp in dk.withUnsafeMutableBufferPointer {
                phi.backward(k.baseAddress!, dp.baseAddress!, rows: c, into: $0.baseAddress!)
            } } }
            for i in 0..<c {
                var gq = S(0), gk = S(0)
                for e in 0..<d {
                    g.dqr[(t0 + i) * d + e] += dq[i * d + e] * x.scale * f.fq[i]
                    g.dkr[(t0 + i) * d + e] += dk[i * d + e] * f.fk[i]
                    gq += dq[i * d + e] * f.q[i * d + e]
                    gk += dk[i * d + e] * f.k[i * d + e]
                    g.dv[(t0 + i) * d + e] += dV1[i * w + e]
                }
                // q~ carries exp((G_i - G_prev)/p), k~ carries exp((G_end - G_j)/p).
                let dq = Double(gq) / p, dk = Double(gk) / p
                g.dG[t0 + i] += dq - dk
                if t0 > 0 { g.dG[t0 - 1] -= dq }
                g.dG[t0 + c - 1] += dk
            }

            // Intra part: the attention form on the chunk with un-normalized weights.
            let (a, u) = intraWeights(x, t0, c)
            var dA = [S](repeating: 0, count: c * c)
            dN.withUnsafeBufferPointer { dn in v1.withUnsafeBufferPointer { v in dA.withUnsafeMutableBufferPointer { o in
                gemm(false, true, c, c, w, 1, dn.baseAddress!, v.baseAddress!, 0, o.baseAddress!)
            } } }
            var dU = [S](repeating: 0, count: c * c)
            for i in 0..<c {
                for j in 0...i {
                    let wij = a[i * c + j] * dA[i * c + j]
                    g.dG[t0 + i] += Double(wij); g.dG[t0 + j] -= Double(wij)
                    let uij = u[i * c + j]
                    dU[i * c + j] = uij == 0 ? 0 : x.scale * S(power) * wij / uij
                }
            }
            dU.withUnsafeBufferPointer { du in
                x.kr.withUnsafeBufferPointer { k in g.dqr.withUnsafeMutableBufferPointer { o in
                    gemm(false, false, c, d, c, 1, du.baseAddress!, k.baseAddress! + t0 * d, 1, o.baseAddress! + t0 * d)
                } }
                x.qr.withUnsafeBufferPointer { q in g.dkr.withUnsafeMutableBufferPointer { o in
                    gemm(true, false, c, d, c, 1, du.baseAddress!, q.baseAddress! + t0 * d, 1, o.baseAddress! + t0 * d)
                } }
            }
            // dv += A^T dn (the ones column of V' carries no parameter).
            var dvc = [S](repeating: 0, count: c * w)
            a.withUnsafeBufferPointer { a in dN.withUnsafeBufferPointer { dn in dvc.withUnsafeMutableBufferPointer { o in
                gemm(true, false, c, w, c, 1, a.baseAddress!, dn.baseAddress!, 0, o.baseAddress!)
            } } }
            for i in 0..<c { for e in 0..<d { g.dv[(t0 + i) * d + e] += dvc[i * w + e] } }
        }
        return g
    }
}

/// The recurrent form: one token at a time with state S [D, d + 1] (generation, streaming evaluation). The state
/// is kept in Float64: it sums a whole document's decayed keys, and in Float32 that sum loses the small recent terms.
struct RecurrentAttention<S: TensorScalar> {
    let phi: SymmetricPower
    var state: [Double]

    init(headDimension d: Int, power p: Int) {
        phi = SymmetricPower(dimension: d, power: p)
        state = [Double](repeating: 0, count: phi.size * (d + 1))
    }

    // step: qr, kr, v [d], gamma (log-gate of this token) -> y [d]
    mutating func step(qr: [S], kr: [S], v: [S], gamma: Double) -> [S] {
        let d = qr.count, dd = phi.size, w = d + 1
        let decay = Foundation.exp(gamma)
        let s = 1 / Double(d).squareRoot()
        var pk = [Double](repeating: 0, count: dd), pq = pk
        phi.forward(kr.map(Double.init), rows: 1, into: &pk)
        phi.forward(qr.map { Double($0) * s }, rows: 1, into: &pq)
        for m in 0..<dd {
            for e in 0..<d { state[m * w + e] = decay * state[m * w + e] + pk[m] * Double(v[e]) }
            state[m * w + d] = decay * state[m * w + d] + pk[m]
        }
        var out = [Double](repeating: 0, count: w)
        pq.withUnsafeBufferPointer { q in state.withUnsafeBufferPointer { st in out.withUnsafeMutableBufferPointer { o in
            gemm(false, false, 1, w, dd, 1.0, q.baseAddress!, st.baseAddress!, 0, o.baseAddress!)
        } } }
        let l = out[d] + attentionEpsilon
        return (0..<d).map { S(out[$0] / l) }
    }
}
