import Foundation
@testable import Support
import XCTest
@testable import Model
@testable import Tensor

final class ModelPropertyTests: XCTestCase {
    /// At the layer: every variant, chunk sizes 1, 2, 16, T, and a T that is a multiple but not a
    /// power of two; chunked form == attention form in Float32.
    func testChunkedLayerEqualsAttentionLayerForEveryVariant() {
        for kind in AttentionKind.allCases where kind != .softmax {
            for (t, chunks) in [(32, [1, 2, 16, 32]), (48, [3, 16, 48])] {
                let reference = SympowAttention<Float>(dModel: 16, heads: 2, power: 2, chunk: 4, kind: kind)
                var rng = SplitMix64(seed: 11)
                reference.initialize(std: 0.3, residualStd: 0.3, using: &rng)
                for i in 0..<reference.wQKVGR.count where reference.wQKVGR[i] == 0 { reference.wQKVGR[i] = Float.random(in: -0.5...0.5, using: &rng) }
                reference.form = .quadratic
                var g = Gaussian(seed: 12)
                let x = Tensor<Float>([2 * t, 16], g.array(2 * t * 16))
                let want = reference.forward(x, batch: 2, length: t).array
                for c in chunks {
                    let layer = SympowAttention<Float>(dModel: 16, heads: 2, power: 2, chunk: c, kind: kind)
                    layer.wQKVGR.data.update(from: reference.wQKVGR.data, count: layer.wQKVGR.count)
                    layer.wO.data.update(from: reference.wO.data, count: layer.wO.count)
                    layer.form = .chunked
                    XCTAssertLessThan(maxRelativeError(layer.forward(x, batch: 2, length: t).array, want), 1e-4, "\(kind) T \(t) chunk \(c)")
                }
            }
        }
    }

    /// Scores depend only on angle differences.
    func testRotaryShiftInvariance() {
        let x: HeadInput<Double> = randomHead(t: 12, d: 8, seed: 21)
        let angles: [Double] = (0..<48).map { (i: Int) -> Double in 0.37 * Double(i / 4) + 0.11 * Double(i % 4) }
        var a = x, b = x
        func turn(_ v: [Double], _ angles: [Double]) -> [Double] { rotate(v, angles.map { cos($0) }, angles.map { sin($0) }, 8) }
        a.qr = turn(x.qr, angles); a.kr = turn(x.kr, angles)
        let shifted = angles.map { $0 + 1.234 }
        b.qr = turn(x.qr, shifted); b.kr = turn(x.kr, shifted)
        for score in [Score.power(2), .power(4), .softmax] {
            XCTAssertLessThan(maxRelativeError(QuadraticAttention.forward(a, score: score).y, QuadraticAttention.forward(b, score: score).y), 1e-12)
        }
    }

    /// Learned rotary with a zero rotation projection is fixed RoPE, bit for bit.
    func testZeroInitializedLearnedRotaryIsFixedRoPE() {
        let learned = SympowAttention<Float>(dModel: 16, heads: 2, power: 2, chunk: 8, kind: .conformalSympow)
        let fixed = SympowAttention<Float>(dModel: 16, heads: 2, power: 2, chunk: 8, kind: .sympowGating)
        var rng = SplitMix64(seed: 31)
        learned.initialize(std: 0.3, residualStd: 0.3, using: &rng)
        fixed.wQKVGR.data.update(from: learned.wQKVGR.data, count: learned.wQKVGR.count)
        fixed.wO.data.update(from: learned.wO.data, count: learned.wO.count)
        var g = Gaussian(seed: 32)
        let x = Tensor<Float>([64, 16], g.array(64 * 16))
        for form in [AttentionForm.quadratic, .chunked] {
            learned.form = form; fixed.form = form
            XCTAssertEqual(learned.forward(x, batch: 1, length: 64).array, fixed.forward(x, batch: 1, length: 64).array, "\(form)")
        }
    }

    /// Saturated gates, large scores and T = 65,536 give finite outputs and gradients.
    func testExtremeInputsStayFinite() {
        func check(_ layer: SympowAttention<Float>, _ x: Tensor<Float>, _ t: Int, _ what: String) {
            let y = layer.forward(x, batch: 1, length: t)
            XCTAssertTrue(y.array.allSatisfy(\.isFinite), "\(what): output not finite")
            let dx = layer.backward(y)
            XCTAssertTrue(dx.array.allSatisfy(\.isFinite), "\(what): input gradient not finite")
            XCTAssertTrue(layer.dwQKVGR.array.allSatisfy(\.isFinite) && layer.dwO.array.allSatisfy(\.isFinite), "\(what): weight gradient not finite")
        }
        var g = Gaussian(seed: 41)
        // Gates near 0: a huge negative gate pre-activation on every token.
        for form in [AttentionForm.quadratic, .chunked] {
            let layer = SympowAttention<Float>(dModel: 16, heads: 2, power: 4, chunk: 8, kind: .conformalSympow)
            var rng = SplitMix64(seed: 42)
            layer.initialize(std: 0.3, residualStd: 0.3, using: &rng)
            for r in 0..<16 { layer.wQKVGR[r * 52 + 48] = -200; layer.wQKVGR[r * 52 + 49] = -200 }
            layer.form = form
            check(layer, Tensor<Float>([64, 16], g.array(64 * 16).map { abs($0) + 0.1 }), 64, "closed gates \(form)")
        }
        // Large scores: |u| in the hundreds (u^4 ~ 1e10 per weight).
        for form in [AttentionForm.quadratic, .chunked] {
            let layer = SympowAttention<Float>(dModel: 16, heads: 2, power: 4, chunk: 8, kind: .sympowGating)
            var rng = SplitMix64(seed: 43)
            layer.initialize(std: 3, residualStd: 0.3, using: &rng)
            layer.form = form
            check(layer, Tensor<Float>([64, 16], g.array(64 * 16, scale: 3)), 64, "large scores \(form)")
        }
        // A whole window: T = 65,536 with the tiny config's attention shape, chunked.
        let config = try! shippedModelConfig("tiny")
        let layer = SympowAttention<Float>(dModel: config.dModel, heads: config.heads, power: config.power, chunk: config.chunk, kind: config.attention)
        var rng = SplitMix64(seed: 44)
        layer.initialize(std: 0.02, residualStd: 0.02, using: &rng)
        check(layer, Tensor<Float>([65_536, config.dModel], g.array(65_536 * config.dModel)), 65_536, "T = 65536")
    }

    /// `backward(onGradientsReady:)`, what overlapped allreduces rely on: the ranges cover the gradient block exactly
    /// once, in the order the layers finish (ln_f, the last layer to the first, then wte and embed_norm), and no
    /// range changes after it is handed out, on the second micro-batch of an accumulation and with recompute too.
    func testGradientRangesAreFinalWhenReported() {
        var config = ModelConfig(name: "ready", layers: 3, dModel: 8, heads: 2, power: 2, chunk: 4, attention: .conformalSympow)
        config.vocabSize = 13
        let model = Transformer<Float>(config: config, seed: 1)
        let p = model.parameters, gradients = p.gradients
        let layer = { (l: Int) in p["blocks.\(l).ln1.weight"].offset..<p["blocks.\(l).mlp.w2"].range.upperBound }
        let expected = [p["ln_f.weight"].range] + (0..<3).reversed().map(layer) + [0..<p["blocks.0.ln1.weight"].offset]
        let tokens: [Int32] = (0..<16).map { Int32(($0 * 5 + 3) % 13) }, targets: [Int32] = (0..<16).map { Int32(($0 * 7 + 1) % 13) }
        let mask = [Float](repeating: 1, count: 16)
        for recompute in [false, true] {
            model.zeroGradients()
            var reported: [(range: Range<Int>, values: [Float])] = []
            for micro in 0..<2 {
                _ = model.forward(tokens: tokens, targets: targets, mask: mask, batch: 2, length: 8, recompute: recompute)
                model.backward(onGradientsReady: micro == 0 ? nil : { reported.append(($0, Array(gradients.buffer[$0]))) })
            }
            XCTAssertEqual(reported.map(\.range), expected, "recompute \(recompute)")
            var covered = [Int](repeating: 0, count: gradients.count)
            for (range, values) in reported {
                for i in range { covered[i] += 1 }
                XCTAssertTrue(Array(gradients.buffer[range]) == values, "recompute \(recompute): \(range) changed after it was reported final")
                XCTAssertTrue(values.contains { $0 != 0 }, "\(range) holds no gradient")
            }
            XCTAssertEqual(covered, [Int](repeating: 1, count: gradients.count), "recompute \(recompute): the ranges must cover the block once")
        }
    }
}

/// The `model` section of `data/configs/NAME.json` (config files are read by `RunConfig`, in Training).
func shippedModelConfig(_ name: String) throws -> ModelConfig {
    struct File: Decodable { var model: ModelConfig }
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("data/configs/\(name).json")
    return try JSONDecoder().decode(File.self, from: Data(contentsOf: url)).model
}
