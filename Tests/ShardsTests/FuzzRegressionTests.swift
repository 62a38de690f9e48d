import Foundation
@testable import Shards
@testable import Support
import TestSupport
import XCTest

/// Inputs that crashed a fuzz target (Fuzz/), replayed through the same parser: each may parse or throw a
/// one-line error naming the file, never crash.
final class ShardsFuzzRegressionTests: XCTestCase {
    func testDatasetIndex() throws {
        for input in fuzzRegressions("ShardsTests", "FuzzDatasetIndex") {
            let url = try temporaryFolder(self).appendingPathComponent(DatasetIndex.fileName)
            try FileManager.default.copyItem(at: input, to: url)
            replay(input, naming: url) {
                let index = try DatasetIndex.load(from: url.deletingLastPathComponent())
                for split in Set(index.shards.map(\.split)) { _ = index.windows(split: split) }
            }
        }
    }

    func testSeekableZstdShard() {
        for input in fuzzRegressions("ShardsTests", "FuzzSeekableZstd") {
            replay(input, naming: input) { try readAll(ShardReader(url: input, format: .zst)) }
        }
    }

    func testHDF5Shard() {
        for input in fuzzRegressions("ShardsTests", "FuzzHDF5Shard") {
            replay(input, naming: input) { try readAll(ShardReader(url: input, format: .hdf5)) }
        }
    }

    func testEvalWindowFile() {
        for input in fuzzRegressions("ShardsTests", "FuzzEvalWindows") {
            replay(input, naming: input) {
                let file = try EvalWindowFile(contentsOf: input)
                for i in 0..<file.count { _ = file.row(i).first }
            }
        }
    }

    /// Every window, as the fuzz target reads them; a window's own error is part of the replay.
    private func readAll(_ reader: ShardReader) throws {
        var window = [UInt16](repeating: 0, count: windowLength)
        for k in 0..<reader.windowCount { try window.withUnsafeMutableBufferPointer { try reader.readWindow(k, into: $0) } }
    }
}
