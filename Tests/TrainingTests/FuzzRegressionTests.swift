import Foundation
@testable import Model
import TestSupport
@testable import Training
import XCTest

/// Inputs that crashed a fuzz target (Fuzz/), replayed through the same parser: each may parse or throw a
/// one-line error naming the file, never crash.
final class TrainingFuzzRegressionTests: XCTestCase {
    func testTrainState() throws {
        for input in fuzzRegressions("TrainingTests", "FuzzTrainState") {
            let url = try temporaryFolder(self).appendingPathComponent(Checkpoint.stateFile)
            try FileManager.default.copyItem(at: input, to: url)
            replay(input, naming: url) { _ = try Checkpoint.loadState(url.deletingLastPathComponent()) }
        }
    }

    func testTransformerConfig() {
        for input in fuzzRegressions("TrainingTests", "FuzzTransformerConfig") {
            replay(input, naming: input) {
                let config = try RunConfig.load(input)
                _ = (config.model.headDim, config.model.hidden)
            }
        }
    }

    func testSafetensors() {
        for input in fuzzRegressions("TrainingTests", "FuzzSafetensors") {
            replay(input, naming: input) { _ = try SafetensorsFile(contentsOf: input) }
        }
    }
}
