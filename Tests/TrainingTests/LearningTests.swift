import Foundation
import TestSupport
import XCTest
@testable import Model
@testable import Shards
@testable import Streaming
@testable import Tensor
@testable import Tokenizer
@testable import Training

/// A tiny model learns.
final class LearningTests: XCTestCase {
    func tinyConfig() throws -> RunConfig { try RunConfig.load(packageRoot.appendingPathComponent("data/configs/tiny.json")) }

    /// Tokens of the bundled sample's first book, for batches without a dataset folder.
    func sampleTokens() throws -> [Int32] {
        let tok = try GPT2Tokenizer(directory: packageRoot.appendingPathComponent("data/gpt2"))
        let text = try Data(contentsOf: packageRoot.appendingPathComponent("data/sample/frankenstein.txt"))
        return [UInt8](text).withUnsafeBufferPointer { tok.encode(bytes: $0) }.map(Int32.init)
    }

    func testOverfitsOneBatch() throws {
        let model = Transformer<Float>(config: try tinyConfig().model, seed: 1)
        let tokens = Array(try sampleTokens()[1000..<1065])
        let inputs = Array(tokens[0..<64]), targets = Array(tokens[1...64]), mask = [Float](repeating: 1, count: 64)
        let params = model.parameters
        let opt = AdamW(parameters: params, weightDecay: 0)
        var first = 0.0, last = 0.0
        for step in 0..<150 {
            model.zeroGradients()
            let (loss, _) = model.forward(tokens: inputs, targets: targets, mask: mask, batch: 1, length: 64)
            model.backward()
            clipGradients(params.gradients, maxNorm: 1)
            opt.update(params, lr: 3e-3)
            if step == 0 { first = loss }
            last = loss
        }
        XCTAssertEqual(first, log(50_304), accuracy: 0.3, "initial loss should be about ln(vocabulary)")
        XCTAssertLessThan(last, 0.1, "a tiny model should memorize one 64-token batch")
    }

    /// The whole path: `data/sample` preprocessed, streamed by the packer, trained by `Trainer` with the config's
    /// schedule: the loss falls from ln(50304) to under 7 within 120 steps.
    func testLossFallsOnSampleText() throws {
        var config = try tinyConfig()
        config.train.context = 128; config.train.batch = 4; config.train.steps = 120; config.train.warmupSteps = 10
        var options = TrainOptions(dataset: try sampleDataset(self).path)
        options.saveEvery = 1000
        let run = try temporaryFolder(self).appendingPathComponent("run")
        let taken = try Trainer(config: config, options: options, run: run).train().map(\.loss)
        XCTAssertEqual(taken.count, 120)
        let start = taken.prefix(5).reduce(0, +) / 5, end = taken.suffix(10).reduce(0, +) / 10
        XCTAssertGreaterThan(start, 10)
        XCTAssertLessThan(end, 7.0, "loss \(start) -> \(end)")
        XCTAssertEqual(try losses(run), taken, "metrics.jsonl holds every step's loss")
    }

    func testScheduleAndClipping() {
        XCTAssertEqual(learningRate(step: 0, peak: 1, floor: 0.1, warmup: 10, total: 100), 0.1, accuracy: 1e-12)
        XCTAssertEqual(learningRate(step: 9, peak: 1, floor: 0.1, warmup: 10, total: 100), 1, accuracy: 1e-12)
        XCTAssertEqual(learningRate(step: 55, peak: 1, floor: 0.1, warmup: 10, total: 100), 0.55, accuracy: 1e-12)
        XCTAssertEqual(learningRate(step: 100, peak: 1, floor: 0.1, warmup: 10, total: 100), 0.1, accuracy: 1e-12)
        let gradients = Tensor<Double>([4], [3, 4, 0, 0])
        XCTAssertEqual(clipGradients(gradients, maxNorm: 1), 5, accuracy: 1e-12)
        for (g, want) in zip(gradients.array, [0.6, 0.8, 0, 0]) { XCTAssertEqual(g, want, accuracy: 1e-12) }
    }
}
