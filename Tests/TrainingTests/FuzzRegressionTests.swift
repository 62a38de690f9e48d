import Foundation
@testable import Model
import TestSupport
@testable import Training
import XCTest

/// Inputs that crashed a fuzz target (Fuzz/), replayed through the same parser, each pinned to its outcome: it
/// reads, or it throws one line naming the file and the fault.
final class TrainingFuzzRegressionTests: XCTestCase {
    func testTrainState() throws {
        let expected: [String: FuzzOutcome] = [
            "empty-file-leak.json": .error("not a checkpoint state (DecodingError.dataCorrupted"),
        ]
        for (input, outcome) in fuzzRegressions("TrainingTests", "FuzzTrainState", expected: expected) {
            let url = try temporaryFolder(self).appendingPathComponent(Checkpoint.stateFile)
            try FileManager.default.copyItem(at: input, to: url)
            replay(input, naming: url, expected: outcome) { _ = try Checkpoint.loadState(url.deletingLastPathComponent()) }
        }
    }

    func testTransformerConfig() {
        let expected: [String: FuzzOutcome] = [
            "mlp-ratio-overflows-hidden.json": .error("config 'tiny': mlp_ratio must be positive and d_model x mlp_ratio a size"),
        ]
        for (input, outcome) in fuzzRegressions("TrainingTests", "FuzzTransformerConfig", expected: expected) {
            replay(input, naming: input, expected: outcome) {
                let config = try RunConfig.load(input)
                _ = (config.model.headDim, config.model.hidden)
            }
        }
    }

    func testSafetensors() {
        let expected: [String: FuzzOutcome] = [
            "empty-file-leak": .error("truncated: 0 bytes, shorter than the 8-byte header length"),
            "negative-shape.safetensors": .error("tensor w: shape [-1] is negative or too large"),
            "offset-difference-overflows.safetensors": .error("tensor w: byte range [1, -9223372036854775808] does not hold shape [1] of F32"),
            "offset-sum-overflows.safetensors": .error("truncated: tensor w ends at byte 9223372036854775807 of the data, which holds 0"),
            "shape-product-overflows.safetensors": .error("tensor w: shape [4611686018427387904, 4] is negative or too large"),
        ]
        for (input, outcome) in fuzzRegressions("TrainingTests", "FuzzSafetensors", expected: expected) {
            replay(input, naming: input, expected: outcome) { _ = try SafetensorsFile(contentsOf: input) }
        }
    }
}
