import Foundation
@testable import Support
import XCTest
@testable import Model
@testable import Tensor

/// Training with the attention state carried across segments (`train --carry-state`): the training forward from a
/// carried state equals one pass over the whole sequence, and its gradient stops at the segment's start.
final class CarriedStateTests: XCTestCase {
    /// A small model with non-zero gate and rotation-rate columns (so the carried discounts and rotary positions
    /// matter), weights at a scale where the state changes the outputs.
    func model<S: TensorScalar>(_ kind: AttentionKind, chunk: Int, dModel: Int = 32, vocab: Int = 97, as: S.Type = S.self) -> Transformer<S> {
        var config = ModelConfig(name: "carry", layers: 2, dModel: dModel, heads: 2, power: 2, chunk: chunk, attention: kind)
        config.vocabSize = vocab
        let m = Transformer<S>(config: config, seed: 3)
        var rng = SplitMix64(seed: 4)
        for a in m.attention {
            for i in 0..<a.wQKVGR.count { a.wQKVGR[i] = a.wQKVGR[i] == 0 ? S(normal(&rng) * 0.3) : a.wQKVGR[i] * 10 }
        }
        return m
    }

    /// Rows of `length` pseudo-random tokens, their next tokens, and a mask that is 1 everywhere.
    func rows(_ b: Int, _ length: Int, vocab: Int) -> (tokens: [[Int32]], targets: [[Int32]]) {
        let all = (0..<b).map { r in (0...length).map { Int32(($0 * 7919 + r * 104_729 + 13) % vocab) } }
        return (all.map { Array($0.dropLast()) }, all.map { Array($0.dropFirst()) })
    }

    /// Segment k of every row, flattened [B, T].
    func segment(_ rows: [[Int32]], _ k: Int, _ t: Int) -> [Int32] { rows.flatMap { $0[(k * t)..<((k + 1) * t)] } }

    /// Per-position losses [B, K T] of K carried training forwards of T tokens, and of one chunked pass.
    func carriedAndOnePass<S: TensorScalar>(_ m: Transformer<S>, b: Int, t: Int, k: Int) -> (carried: [Double], whole: [Double]) {
        let (tokens, targets) = rows(b, k * t, vocab: m.config.vocabSize)
        let state = RecurrentState(m, batch: b)
        var perSegment: [[Double]] = []
        for s in 0..<k {
            m.zeroGradients()
            perSegment.append(m.forward(tokens: segment(tokens, s, t), targets: segment(targets, s, t), mask: [Float](repeating: 1, count: b * t),
                                        batch: b, length: t, state: state).perPosition)
            m.backward()
        }
        // Row-major [B, K T] from K segments of [B, T].
        let carried = (0..<b).flatMap { r in perSegment.flatMap { $0[(r * t)..<((r + 1) * t)] } }
        for a in m.attention { a.form = .chunked }
        let whole = m.forward(tokens: tokens.flatMap { $0 }, targets: targets.flatMap { $0 }, mask: [Float](repeating: 1, count: b * k * t),
                              batch: b, length: k * t, training: false).perPosition
        for a in m.attention { a.form = nil }
        return (carried, whole)
    }

    /// Carried training over K = 3 segments equals one chunked pass over 3 T, for every sympow variant (fixed and
    /// learned rotary), T = chunk and T a multiple of it that is not a power of two. The two compute the same
    /// operations on the same chunks; what differs is G (restarted at 0 in each segment, so fold factors
    /// exp((G_i - G_prev)/p) are taken from differences of other Float64 sums, a few ulps of Float64) and the row
    /// count of the projection GEMMs (B T rows instead of B K T: OpenBLAS may block the sums differently, a few
    /// Float32 ulps per dot product). Losses near log(97) = 4.6 through two layers then move by a few ulps of
    /// Float32 each, about 1e-6 relative: bounded by 1e-5. In Float64 the same ulps are 2^-52: 1e-12.
    func testCarriedTrainingForwardEqualsOnePass() {
        for kind in AttentionKind.allCases where kind != .softmax {
            for (chunk, t) in [(8, 8), (8, 24)] {
                let (c32, w32) = carriedAndOnePass(model(kind, chunk: chunk, as: Float.self), b: 2, t: t, k: 3)
                let e32 = zip(c32, w32).map { abs($0 - $1) / abs($1) }.max()!
                XCTAssertLessThan(e32, 1e-5, "\(kind) chunk \(chunk) T \(t) Float32")
                let (c64, w64) = carriedAndOnePass(model(kind, chunk: chunk, as: Double.self), b: 2, t: t, k: 3)
                let e64 = zip(c64, w64).map { abs($0 - $1) / abs($1) }.max()!
                XCTAssertLessThan(e64, 1e-12, "\(kind) chunk \(chunk) T \(t) Float64")
                print("carried vs one pass, \(kind) chunk \(chunk) T \(t): Float32 \(e32), Float64 \(e64)")
            }
        }
    }

    /// A copy of `state`: a carried state held constant while the parameters move.
    func copy<S>(_ state: RecurrentState<S>, _ m: Transformer<S>) -> RecurrentState<S> {
        let out = RecurrentState(m, batch: state.batch)
        for l in 0..<state.layers { out.restore(layer: l, states: state.states(layer: l), positions: state.positions(layer: l)) }
        return out
    }

    /// The gradient of segment 2's loss from segment 1's carried state equals Float64 central differences with that
    /// state held constant (truncated backpropagation through time), and differs both from full backpropagation
    /// through segments 1 and 2 and from segment 2 alone without the state.
    func testGradientStopsAtTheSegmentStart() {
        let b = 2, t = 8
        for kind in AttentionKind.allCases where kind != .softmax {
            let m: Transformer<Double> = model(kind, chunk: 4, dModel: 8, vocab: 13)
            let (tokens, targets) = rows(b, 2 * t, vocab: 13)
            let mask = [Float](repeating: 1, count: b * t)
            let (x1, y1, x2, y2) = (segment(tokens, 0, t), segment(targets, 0, t), segment(tokens, 1, t), segment(targets, 1, t))
            let start = RecurrentState(m, batch: b)
            _ = m.forward(tokens: x1, targets: y1, mask: mask, batch: b, length: t, training: false, state: start)
            func gradient(_ state: RecurrentState<Double>?) -> [Double] {
                m.zeroGradients()
                _ = m.forward(tokens: x2, targets: y2, mask: mask, batch: b, length: t, state: state)
                m.backward()
                return m.parameters.gradients.array
            }
            let before = (0..<start.layers).map(start.states(layer:))
            let carried = gradient(copy(start, m))
            XCTAssertEqual((0..<start.layers).map(start.states(layer:)), before, "\(kind): backward changed the carried state")
            let fd = numericGradient(m.parameters.values) {
                m.forward(tokens: x2, targets: y2, mask: mask, batch: b, length: t, training: false, state: copy(start, m)).loss
            }
            XCTAssertLessThan(maxRelativeError(carried, fd), 1e-6, "\(kind): carried gradient vs finite differences")
            // Full backpropagation: one pass over both segments, segment 1's positions masked out of the loss.
            m.zeroGradients()
            _ = m.forward(tokens: tokens.flatMap { $0 }, targets: targets.flatMap { $0 }, mask: (0..<(2 * b * t)).map { $0 % (2 * t) < t ? 0 : 1 },
                          batch: b, length: 2 * t)
            m.backward()
            let full = m.parameters.gradients.array
            let fresh = gradient(nil)
            let (toFull, toFresh) = (maxRelativeError(carried, full), maxRelativeError(carried, fresh))
            print("gradient of segment 2, \(kind): vs finite differences \(maxRelativeError(carried, fd)), vs full BPTT \(toFull), vs no carry \(toFresh)")
            XCTAssertGreaterThan(toFull, 1e-3, "\(kind): the gradient must not reach segment 1")
            XCTAssertGreaterThan(toFresh, 1e-3, "\(kind): the carried state must change the gradient")
        }
    }
}
