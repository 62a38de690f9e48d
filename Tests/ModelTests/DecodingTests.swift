import Foundation
@testable import Support
import XCTest
@testable import Model
@testable import Tensor

/// The recurrent form of the whole model (eval segments, generation): carrying each layer's attention state
/// across segments gives the hidden states of one forward over the whole sequence.
final class DecodingTests: XCTestCase {
    func model(_ kind: AttentionKind, power: Int = 2) -> Transformer<Float> {
        var config = ModelConfig(name: "test", layers: 2, dModel: 32, heads: 2, power: power, chunk: 8, attention: kind)
        config.vocabSize = 50_304
        let m = Transformer<Float>(config: config, seed: 5)
        // Non-zero gate and rotation-rate columns, so the carried G and rotary position are exercised.
        var rng = SplitMix64(seed: 6)
        for a in m.attention { for i in 0..<a.wQKVGR.count where a.wQKVGR[i] == 0 { a.wQKVGR[i] = Float(normal(&rng) * 0.3) } }
        return m
    }

    func testSegmentsWithCarriedStateEqualOneForward() {
        let t = 64
        let tokens = (0..<t).map { Int32(($0 * 7919 + 13) % 50_257) }
        let targets = Array(tokens.dropFirst()) + [0]
        var mask = [Float](repeating: 1, count: t); mask[t - 1] = 0
        for kind in AttentionKind.allCases where kind != .softmax {
            for power in [2, 4] {
                let m = model(kind, power: power)
                let whole = m.forward(tokens: tokens, targets: targets, mask: mask, batch: 1, length: t, training: false).perPosition
                // Segments of a whole chunk, of a ragged length, and one token at a time (the recurrent step).
                for segments in [[16, 16, 32], [5, 11, 3, 29, 16], [Int](repeating: 1, count: t)] {
                    let state = RecurrentState(m, batch: 1)
                    var losses: [Double] = []
                    var s = 0
                    for n in segments {
                        let h = m.hidden(tokens: Array(tokens[s..<(s + n)]), batch: 1, length: n, state: state)
                        losses += LanguageModelHead.lossAndGradient(h, wte: m.embedding.wte, dwte: nil, targets: Array(targets[s..<(s + n)]),
                                                                    mask: Array(mask[s..<(s + n)])).perPosition
                        s += n
                    }
                    if kind != .conformalSympow { XCTAssertEqual(state.positions(layer: 0).first, Double(t), "the fixed rotary position is the tokens seen") }
                    let worst = zip(whole, losses).map { abs($0 - $1) }.max()!
                    XCTAssertLessThan(worst, 1e-4, "\(kind) p \(power) segments \(segments.count): per-position losses differ by \(worst)")
                }
            }
        }
    }

    /// Softmax carries nothing: a segment's losses are those of the segment alone.
    func testSoftmaxSegmentsAreIndependent() {
        let m = model(.softmax)
        let tokens = (0..<32).map { Int32(($0 * 104_729 + 7) % 50_257) }
        let state = RecurrentState(m, batch: 1)
        _ = m.hidden(tokens: Array(tokens[0..<16]), batch: 1, length: 16, state: state)
        let second = m.hidden(tokens: Array(tokens[16..<32]), batch: 1, length: 16, state: state).array
        XCTAssertLessThan(maxRelativeError(second, m.hidden(tokens: Array(tokens[16..<32]), batch: 1, length: 16, state: RecurrentState(m, batch: 1)).array), 1e-5)
    }
}
