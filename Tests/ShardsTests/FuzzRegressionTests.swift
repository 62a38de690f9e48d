import Foundation
@testable import Shards
@testable import Support
import TestSupport
import XCTest

/// Inputs that crashed a fuzz target (Fuzz/), replayed through the same parser, each pinned to its outcome: it
/// reads, or it throws one line naming the file and the fault.
final class ShardsFuzzRegressionTests: XCTestCase {
    func testDatasetIndex() throws {
        let expected: [String: FuzzOutcome] = [
            "empty-file-leak.json": .error("not a LongCrawl dataset index (DecodingError.dataCorrupted"),
            "window-sum-overflows.json": .error("shard entry 'train-000000.h5': 9223372036854775807 windows, 97480 bytes (negative or too many)"),
        ]
        for (input, outcome) in fuzzRegressions("ShardsTests", "FuzzDatasetIndex", expected: expected) {
            let url = try temporaryFolder(self).appendingPathComponent(DatasetIndex.fileName)
            try FileManager.default.copyItem(at: input, to: url)
            replay(input, naming: url, expected: outcome) {
                let index = try DatasetIndex.load(from: url.deletingLastPathComponent())
                for split in Set(index.shards.map(\.split)) { _ = index.windows(split: split) }
            }
        }
    }

    func testSeekableZstdShard() {
        for (input, outcome) in fuzzRegressions("ShardsTests", "FuzzSeekableZstd", expected: [:]) {
            replay(input, naming: input, expected: outcome) { try readAll(ShardReader(url: input, format: .zst)) }
        }
    }

    func testHDF5Shard() {
        let expected: [String: FuzzOutcome] = [
            "documents-string-length-2gib.h5": .error("/documents row 0 claims a string of 2147483652 bytes, more than the file holds (corrupt)"),
            "int-attribute-of-64-values.h5": .error("attribute version holds 64 values, expected one"),
            "more-documents-than-windows.h5": .error("/documents has 1000 rows, /tokens 1"),
            "string-attribute-of-64-values.h5": .error("attribute format holds 64 values, expected one"),
            "tokens-rank-5.h5": .error("/tokens has shape [1, 2, 2, 2, 65536], expected [windows, 65536]"),
        ]
        for (input, outcome) in fuzzRegressions("ShardsTests", "FuzzHDF5Shard", expected: expected) {
            replay(input, naming: input, expected: outcome) { try readAll(ShardReader(url: input, format: .hdf5)) }
        }
    }

    /// These three predate the eval-window checksum: each now stops at the check, before libhdf5 parses it.
    func testEvalWindowFile() {
        let unchecksummed = "written without a checksum by an earlier LongCrawl; run `longcrawl sample` again"
        let expected: [String: FuzzOutcome] = [
            "h5c-protect-huge-allocation.h5": .error(unchecksummed),
            "h5o-attr-open-heap-overflow.h5": .error(unchecksummed),
            "source-longer-than-tokens.h5": .error(unchecksummed),
        ]
        for (input, outcome) in fuzzRegressions("ShardsTests", "FuzzEvalWindows", expected: expected) {
            replay(input, naming: input, expected: outcome) {
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
