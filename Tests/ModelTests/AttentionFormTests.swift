import Foundation
@testable import Support
import XCTest
@testable import Model
@testable import Tensor

/// Seeded normal samples (Box-Muller over SplitMix64).
struct Gaussian {
    var bits: SplitMix64
    init(seed: UInt64) { bits = SplitMix64(seed: seed &+ 0x9E37_79B9_7F4A_7C15) }
    mutating func uniform() -> Double { (Double(bits.next() >> 11) + 0.5) / Double(1 << 53) }
    mutating func next() -> Double { (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform()) }
    mutating func array<S: TensorScalar>(_ n: Int, scale: Double = 1) -> [S] { (0..<n).map { _ in S(next() * scale) } }
}

/// A head input with gates that vary strongly (some near 0, some near 1), so a wrong discount index shows.
func randomHead<S: TensorScalar>(t: Int, d: Int, seed: UInt64, gated: Bool = true, scale: Double = 1) -> HeadInput<S> {
    var g = Gaussian(seed: seed)
    var G = [Double](repeating: 0, count: t)
    var acc = 0.0
    for i in 0..<t {
        if gated { acc += -Foundation.log(1 + Foundation.exp(-(g.next() * 3 + 1))) }
        G[i] = acc
    }
    return HeadInput(t: t, d: d, qr: g.array(t * d, scale: scale), kr: g.array(t * d, scale: scale), v: g.array(t * d), G: G)
}

func maxRelativeError<S: TensorScalar>(_ a: [S], _ b: [S]) -> Double {
    let scale = max(b.map { abs(Double($0)) }.max() ?? 0, 1e-30)
    return zip(a, b).map { abs(Double($0) - Double($1)) }.max().map { $0 / scale } ?? 0
}

final class AttentionFormTests: XCTestCase {
    /// phi_p(q) . phi_p(k) == (q . k)^p.
    func testSymmetricPowerInnerProduct() {
        var g = Gaussian(seed: 1)
        for (d, p, size) in [(8, 2, 36), (19, 2, 190), (64, 2, 2080), (8, 4, 330), (6, 6, 462), (16, 4, 3876)] {
            let phi = SymmetricPower(dimension: d, power: p)
            XCTAssertEqual(phi.size, size)
            for _ in 0..<5 {
                let q: [Double] = g.array(d), k: [Double] = g.array(d)
                var pq = [Double](repeating: 0, count: phi.size), pk = pq
                phi.forward(q, rows: 1, into: &pq); phi.forward(k, rows: 1, into: &pk)
                let dot = zip(q, k).map(*).reduce(0, +)
                let want = Foundation.pow(dot, Double(p))
                // Error relative to the size of the summed terms, (|q| |k|)^p: (q . k)^p itself may be far smaller.
                let norm = Foundation.pow((q.map { $0 * $0 }.reduce(0, +) * k.map { $0 * $0 }.reduce(0, +)).squareRoot(), Double(p))
                XCTAssertEqual(zip(pq, pk).map(*).reduce(0, +), want, accuracy: 1e-13 * norm)
                let qf = q.map(Float.init), kf = k.map(Float.init)
                var pqf = [Float](repeating: 0, count: phi.size), pkf = pqf
                phi.forward(qf, rows: 1, into: &pqf); phi.forward(kf, rows: 1, into: &pkf)
                XCTAssertEqual(Double(zip(pqf, pkf).map(*).reduce(0, +)), want, accuracy: 1e-5 * norm)
            }
        }
    }

    /// phi_p's backward against finite differences of <w, phi_p(x)>, at widths that use the eight-lane loops of p = 2
    /// (19: lanes and a tail; 64: the model's head dimension) and the general loop (p = 4), over several rows.
    func testSymmetricPowerBackwardMatchesFiniteDifferences() {
        var g = Gaussian(seed: 5)
        for (d, p) in [(19, 2), (64, 2), (9, 4)] {
            let phi = SymmetricPower(dimension: d, power: p), rows = 3
            let x: [Double] = g.array(rows * d), w: [Double] = g.array(rows * phi.size)
            var dx = [Double](repeating: 0.5, count: rows * d)
            phi.backward(x, w, rows: rows, into: &dx)
            func loss(_ x: [Double]) -> Double {
                var out = [Double](repeating: 0, count: rows * phi.size)
                phi.forward(x, rows: rows, into: &out)
                return zip(out, w).map(*).reduce(0, +)
            }
            for i in 0..<(rows * d) {
                var hi = x, lo = x
                hi[i] += 1e-5; lo[i] -= 1e-5
                // dx is accumulated onto its 0.5 start.
                XCTAssertEqual(dx[i] - 0.5, (loss(hi) - loss(lo)) / 2e-5, accuracy: 1e-6 * (1 + abs(dx[i])), "d \(d) p \(p) element \(i)")
            }
            // Float takes the same loops: within Float rounding of the Float64 result.
            var dxf = [Float](repeating: 0.5, count: rows * d)
            phi.backward(x.map(Float.init), w.map(Float.init), rows: rows, into: &dxf)
            XCTAssertLessThan(maxRelativeError(dxf.map { Double($0) }, dx), 1e-5, "Float d \(d) p \(p)")
        }
    }

    /// Attention form == chunked form == recurrent form, with and without gates.
    func testAttentionChunkedAndRecurrentFormsAgree() {
        for (p, gated) in [(2, true), (2, false), (4, true)] {
            for (t, chunks) in [(16, [1, 2, 16, 4]), (24, [3, 8, 24])] {
                let x: HeadInput<Float> = randomHead(t: t, d: 4, seed: UInt64(t * 10 + p), gated: gated)
                let reference = QuadraticAttention.forward(x, score: .power(p)).y
                for c in chunks {
                    let y = ChunkedAttention(headDimension: 4, power: p, chunk: c).forward(x).y
                    XCTAssertLessThan(maxRelativeError(y, reference), 1e-4, "p \(p) gated \(gated) T \(t) chunk \(c)")
                }
                func recurrent<S: TensorScalar>(_ x: HeadInput<S>) -> [S] {
                    var rec = RecurrentAttention<S>(headDimension: 4, power: p)
                    var y: [S] = []
                    for i in 0..<t {
                        let gamma = x.G[i] - (i > 0 ? x.G[i - 1] : 0)
                        y += rec.step(qr: Array(x.qr[(i * 4)..<(i * 4 + 4)]), kr: Array(x.kr[(i * 4)..<(i * 4 + 4)]), v: Array(x.v[(i * 4)..<(i * 4 + 4)]), gamma: gamma)
                    }
                    return y
                }
                let xd: HeadInput<Double> = randomHead(t: t, d: 4, seed: UInt64(t * 10 + p), gated: gated)
                XCTAssertLessThan(maxRelativeError(recurrent(xd), QuadraticAttention.forward(xd, score: .power(p)).y), 1e-10, "recurrent f64 p \(p) gated \(gated) T \(t)")
                XCTAssertLessThan(maxRelativeError(recurrent(x), reference), 1e-4, "recurrent f32 p \(p) gated \(gated) T \(t)")
            }
        }
    }

    /// Central finite differences of L = sum(y * w) with respect to qr, kr, v and G.
    func finiteDifferences(_ x: HeadInput<Double>, weights: [Double], forward: (HeadInput<Double>) -> [Double]) -> HeadGradient<Double> {
        var g = HeadGradient<Double>(t: x.t, d: x.d)
        let h = 1e-6
        func loss(_ x: HeadInput<Double>) -> Double { zip(forward(x), weights).map(*).reduce(0, +) }
        for i in 0..<(x.t * x.d) {
            for which in 0..<3 {
                var a = x, b = x
                switch which {
                case 0: a.qr[i] += h; b.qr[i] -= h
                case 1: a.kr[i] += h; b.kr[i] -= h
                default: a.v[i] += h; b.v[i] -= h
                }
                let dv = (loss(a) - loss(b)) / (2 * h)
                switch which { case 0: g.dqr[i] = dv; case 1: g.dkr[i] = dv; default: g.dv[i] = dv }
            }
        }
        for i in 0..<x.t {
            var a = x, b = x
            a.G[i] += h; b.G[i] -= h
            g.dG[i] = (loss(a) - loss(b)) / (2 * h)
        }
        return g
    }

    func assertGradientsClose(_ got: HeadGradient<Double>, _ want: HeadGradient<Double>, tolerance: Double, _ what: String) {
        XCTAssertLessThan(maxRelativeError(got.dqr, want.dqr), tolerance, "\(what) dqr")
        XCTAssertLessThan(maxRelativeError(got.dkr, want.dkr), tolerance, "\(what) dkr")
        XCTAssertLessThan(maxRelativeError(got.dv, want.dv), tolerance, "\(what) dv")
        XCTAssertLessThan(maxRelativeError(got.dG, want.dG), tolerance, "\(what) dG")
    }

    /// Both backwards against central differences in Float64, strongly varying gates.
    func testBackwardsMatchFiniteDifferences() {
        for (score, p) in [(Score.power(2), 2), (.power(4), 4), (.softmax, 2)] {
            let x: HeadInput<Double> = randomHead(t: 8, d: 4, seed: 7, gated: score != .softmax)
            var gen = Gaussian(seed: 99)
            let weights: [Double] = gen.array(8 * 4)
            let (y, cache) = QuadraticAttention.forward(x, score: score)
            let attention = QuadraticAttention.backward(x, score: score, y: y, cache: cache, dy: weights)
            var fd = finiteDifferences(x, weights: weights) { QuadraticAttention.forward($0, score: score).y }
            if score == .softmax { fd.dG = attention.dG.map { _ in 0 }; var a = attention; a.dG = fd.dG; assertGradientsClose(a, fd, tolerance: 1e-6, "softmax"); continue }
            assertGradientsClose(attention, fd, tolerance: 1e-6, "attention p \(p)")
            for c in [1, 2, 4, 8] {
                let chunked = ChunkedAttention(headDimension: 4, power: p, chunk: c)
                let (yc, cc, _) = chunked.forward(x)
                let g = chunked.backward(x, y: yc, cache: cc, dy: weights)
                fd = finiteDifferences(x, weights: weights) { chunked.forward($0).y }
                assertGradientsClose(g, fd, tolerance: 1e-6, "chunked p \(p) c \(c)")
            }
        }
    }

    /// Chunked backward == attention-form backward in Float32.
    func testChunkedBackwardEqualsAttentionBackward() {
        let x: HeadInput<Float> = randomHead(t: 64, d: 8, seed: 3)
        var gen = Gaussian(seed: 4)
        let dy: [Float] = gen.array(64 * 8)
        let (y, cache) = QuadraticAttention.forward(x, score: .power(2))
        let want = QuadraticAttention.backward(x, score: .power(2), y: y, cache: cache, dy: dy)
        for c in [4, 16, 64] {
            let chunked = ChunkedAttention(headDimension: 8, power: 2, chunk: c)
            let (yc, cc, _) = chunked.forward(x)
            let got = chunked.backward(x, y: yc, cache: cc, dy: dy)
            XCTAssertLessThan(maxRelativeError(got.dqr, want.dqr), 1e-4, "c \(c)")
            XCTAssertLessThan(maxRelativeError(got.dkr, want.dkr), 1e-4, "c \(c)")
            XCTAssertLessThan(maxRelativeError(got.dv, want.dv), 1e-4, "c \(c)")
            XCTAssertLessThan(maxRelativeError(got.dG, want.dG), 1e-4, "c \(c)")
        }
    }
}
