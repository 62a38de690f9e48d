import Foundation
@testable import Support
import XCTest
@testable import Model
@testable import Tensor

/// Fourth-order central-difference gradient of `loss` with respect to every entry of `tensor`: error O(h^4) plus
/// rounding of about eps * |loss| / h, small enough to check gradients that are 1e-4 of the loss to 1e-6.
func numericGradient(_ tensor: Tensor<Double>, h: Double = 1e-4, _ loss: () -> Double) -> [Double] {
    (0..<tensor.count).map { i in
        let keep = tensor[i]
        func at(_ delta: Double) -> Double { tensor[i] = keep + delta; return loss() }
        let g = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
        tensor[i] = keep
        return g
    }
}

func randomTensor(_ shape: [Int], seed: UInt64, scale: Double = 1) -> Tensor<Double> {
    var g = Gaussian(seed: seed)
    return Tensor(shape, g.array(shape.reduce(1, *), scale: scale))
}

/// L = sum(y * w): its gradient with respect to y is w.
func dot(_ y: Tensor<Double>, _ w: Tensor<Double>) -> Double { (0..<y.count).reduce(0) { $0 + y[$1] * w[$1] } }

final class LayerGradientTests: XCTestCase {
    func assertClose(_ got: [Double], _ want: [Double], _ what: String, tolerance: Double = 1e-6) {
        XCTAssertEqual(got.count, want.count, what)
        XCTAssertLessThan(maxRelativeError(got, want), tolerance, what)
    }

    /// Attention layer: every variant, both forms, input and weight gradients.
    func testAttentionLayerGradients() {
        let b = 2, t = 8, c = 8
        for kind in AttentionKind.allCases {
            for form in [AttentionForm.quadratic, .chunked] where !(kind == .softmax && form == .chunked) {
                let layer = SympowAttention<Double>(dModel: c, heads: 2, power: 2, chunk: 4, kind: kind)
                layer.form = form
                var rng = SplitMix64(seed: 5)
                layer.initialize(std: 0.5, residualStd: 0.5, using: &rng)
                // Non-zero gate and rotation-rate columns, so their gradients are exercised.
                for i in 0..<layer.wQKVGR.count where layer.wQKVGR[i] == 0 { layer.wQKVGR[i] = Double.random(in: -0.5...0.5, using: &rng) }
                let x = randomTensor([b * t, c], seed: 6), w = randomTensor([b * t, c], seed: 7)
                let loss = { dot(layer.forward(x, batch: b, length: t), w) }
                _ = layer.forward(x, batch: b, length: t)
                layer.dwQKVGR.zero(); layer.dwO.zero()
                let dx = layer.backward(w)
                assertClose(dx.array, numericGradient(x, loss), "\(kind) \(form) dx")
                assertClose(layer.dwQKVGR.array, numericGradient(layer.wQKVGR, loss), "\(kind) \(form) dwQKVGR")
                assertClose(layer.dwO.array, numericGradient(layer.wO, loss), "\(kind) \(form) dwO")
            }
        }
    }

    func testLayerNormMLPAndHeadGradients() {
        let n = 6, c = 8
        let ln = LayerNorm<Double>(dModel: c)
        for i in 0..<c { ln.weight[i] = 1 + 0.1 * Double(i) }
        let x = randomTensor([n, c], seed: 1), w = randomTensor([n, c], seed: 2)
        _ = ln.forward(x)
        let dx = ln.backward(w)
        assertClose(dx.array, numericGradient(x) { dot(ln.forward(x), w) }, "layernorm dx")
        assertClose(ln.dweight.array, numericGradient(ln.weight) { dot(ln.forward(x), w) }, "layernorm dweight")

        let mlp = MLP<Double>(dModel: c, hidden: 16)
        var g = Gaussian(seed: 3)
        for i in 0..<mlp.w1.count { mlp.w1[i] = g.next() * 0.5 }
        for i in 0..<mlp.w2.count { mlp.w2[i] = g.next() * 0.5 }
        _ = mlp.forward(x)
        let mdx = mlp.backward(w)
        assertClose(mdx.array, numericGradient(x) { dot(mlp.forward(x), w) }, "mlp dx")
        assertClose(mlp.dw1.array, numericGradient(mlp.w1) { dot(mlp.forward(x), w) }, "mlp dw1")
        assertClose(mlp.dw2.array, numericGradient(mlp.w2) { dot(mlp.forward(x), w) }, "mlp dw2")

        let wte = randomTensor([11, c], seed: 4), dwte = Tensor<Double>([11, c])
        let targets: [Int32] = [3, 0, 10, 5, 5, 7], mask: [Float] = [1, 1, 0, 1, 1, 1]
        let (_, hdx, _) = LanguageModelHead.lossAndGradient(x, wte: wte, dwte: dwte, targets: targets, mask: mask, block: 4)
        let loss = { LanguageModelHead.lossAndGradient(x, wte: wte, dwte: nil, targets: targets, mask: mask, block: 4).loss }
        assertClose(hdx.array, numericGradient(x, loss), "head dx")
        assertClose(dwte.array, numericGradient(wte, loss), "head dwte")
    }

    /// Whole model: the loss against central differences for every parameter of a tiny model.
    func testWholeModelGradient() {
        for kind in [AttentionKind.conformalSympow, .softmax] {
            var config = ModelConfig(name: "fd", layers: 2, dModel: 8, heads: 2, power: 2, chunk: 4, attention: kind)
            config.vocabSize = 13
            let model = Transformer<Double>(config: config, seed: 1)
            var rng = SplitMix64(seed: 2)
            for p in model.parameters { for i in 0..<p.value.count where p.value[i] == 0 { p.value[i] = Double.random(in: -0.3...0.3, using: &rng) } }
            let tokens: [Int32] = (0..<16).map { Int32(($0 * 5 + 3) % 13) }
            let targets: [Int32] = (0..<16).map { Int32(($0 * 7 + 1) % 13) }
            var mask = [Float](repeating: 1, count: 16); mask[7] = 0
            let loss = { model.forward(tokens: tokens, targets: targets, mask: mask, batch: 2, length: 8, training: false).loss }
            model.zeroGradients()
            _ = model.forward(tokens: tokens, targets: targets, mask: mask, batch: 2, length: 8)
            model.backward()
            for p in model.parameters { assertClose(p.grad.array, numericGradient(p.value, loss), "\(kind) \(p.name)") }
            // Recomputing each block in backward gives the very same gradients.
            let stored = model.parameters.map(\.grad.array)
            model.zeroGradients()
            _ = model.forward(tokens: tokens, targets: targets, mask: mask, batch: 2, length: 8, recompute: true)
            model.backward()
            XCTAssertEqual(model.parameters.map(\.grad.array), stored, "\(kind): recompute changed the gradients")
        }
    }
}
