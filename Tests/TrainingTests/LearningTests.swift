import Foundation
import TestSupport
import XCTest
import Model
import Shards
import Streaming
import Tensor
import Tokenizer
@testable import Training

/// MODEL.md test 7: a tiny model learns.
final class LearningTests: XCTestCase {
    func tinyConfig() throws -> TransformerConfig { try TransformerConfig.load(packageRoot.appendingPathComponent("data/configs/tiny.json")) }

    /// Tokens of the bundled sample's first book, for batches without a dataset folder.
    func sampleTokens() throws -> [Int32] {
        let tok = try GPT2Tokenizer(directory: packageRoot.appendingPathComponent("data/gpt2"))
        let text = try Data(contentsOf: packageRoot.appendingPathComponent("data/sample/frankenstein.txt"))
        return [UInt8](text).withUnsafeBufferPointer { tok.encode(bytes: $0) }.map(Int32.init)
    }

    func testOverfitsOneBatch() throws {
        let model = Transformer<Float>(config: try tinyConfig(), seed: 1)
        let tokens = Array(try sampleTokens()[1000..<1065])
        let inputs = Array(tokens[0..<64]), targets = Array(tokens[1...64]), mask = [Float](repeating: 1, count: 64)
        let params = model.parameters
        let opt = AdamW(parameters: params, weightDecay: 0)
        var first = 0.0, last = 0.0
        for step in 0..<150 {
            model.zeroGradients()
            let (loss, _) = model.forward(tokens: inputs, targets: targets, mask: mask, batch: 1, length: 64)
            model.backward()
            clipGradients(params, maxNorm: 1)
            opt.update(params, lr: 3e-3)
            if step == 0 { first = loss }
            last = loss
        }
        XCTAssertEqual(first, log(50_304), accuracy: 0.3, "initial loss should be about ln(vocabulary)")
        XCTAssertLessThan(last, 0.1, "a tiny model should memorize one 64-token batch")
    }

    func testLossFallsOnSampleText() throws {
        let config = try tinyConfig()
        let model = Transformer<Float>(config: config, seed: 2)
        let tokens = try sampleTokens()
        let params = model.parameters
        let opt = AdamW(parameters: params, weightDecay: config.weightDecay)
        let b = 4, t = 128
        var losses: [Double] = []
        var rng = SplitMix64(seed: 3)
        for step in 0..<120 {
            var inputs: [Int32] = [], targets: [Int32] = []
            for _ in 0..<b {
                let s = Int(rng.next(below: UInt64(tokens.count - t - 1)))
                inputs += tokens[s..<(s + t)]; targets += tokens[(s + 1)..<(s + t + 1)]
            }
            model.zeroGradients()
            let (loss, _) = model.forward(tokens: inputs, targets: targets, mask: [Float](repeating: 1, count: b * t), batch: b, length: t)
            model.backward()
            clipGradients(params, maxNorm: config.gradClip)
            opt.update(params, lr: learningRate(step: step, peak: config.learningRate, floor: config.minLearningRate, warmup: 10, total: 120))
            losses.append(loss)
        }
        let start = losses.prefix(5).reduce(0, +) / 5, end = losses.suffix(10).reduce(0, +) / 10
        XCTAssertGreaterThan(start, 10)
        XCTAssertLessThan(end, 7.0, "loss \(start) -> \(end)")
    }

    func testScheduleAndClipping() {
        XCTAssertEqual(learningRate(step: 0, peak: 1, floor: 0.1, warmup: 10, total: 100), 0.1, accuracy: 1e-12)
        XCTAssertEqual(learningRate(step: 9, peak: 1, floor: 0.1, warmup: 10, total: 100), 1, accuracy: 1e-12)
        XCTAssertEqual(learningRate(step: 55, peak: 1, floor: 0.1, warmup: 10, total: 100), 0.55, accuracy: 1e-12)
        XCTAssertEqual(learningRate(step: 100, peak: 1, floor: 0.1, warmup: 10, total: 100), 0.1, accuracy: 1e-12)
        let p = Parameter(name: "w", value: Tensor<Double>([2, 2]), grad: Tensor<Double>([2, 2], [3, 4, 0, 0]))
        XCTAssertEqual(clipGradients([p], maxNorm: 1), 5, accuracy: 1e-12)
        for (g, want) in zip(p.grad.array, [0.6, 0.8, 0, 0]) { XCTAssertEqual(g, want, accuracy: 1e-12) }
    }
}
