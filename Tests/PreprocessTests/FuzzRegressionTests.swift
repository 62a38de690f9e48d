import Foundation
@testable import Shards
@testable import Support
import TestSupport
import XCTest
@testable import Preprocess

/// Inputs that crashed a fuzz target (Fuzz/), replayed through the same parser, each pinned to its outcome: it
/// reads, or it throws one line naming the file and the fault.
final class PreprocessFuzzRegressionTests: XCTestCase {
    /// A corpus file read to its end: a broken one ends in a dropped record, never an error or a crash.
    func testJSONL() {
        let expected: [String: FuzzOutcome] = [
            "warc-content-length-int-max.warc": .reads,
        ]
        for (input, outcome) in fuzzRegressions("PreprocessTests", "FuzzJSONL", expected: expected) {
            replay(input, naming: input, expected: outcome) {
                let reader = try CorpusReader(inputs: [input.path])
                while let record = reader.next() { _ = record.ordinal }
            }
        }
    }

    func testZarray() throws {
        let expected: [String: FuzzOutcome] = [
            "chunk-size-overflows.zarray": .error("chunks [4611686018427387904, 4611686018427387904] exceed 1073741815 tokens, the most one blosc buffer holds"),
            "row-chunk-count-overflows.zarray": .error("shape [9223372036854775807, 65536]: too many rows"),
            "stripe-size-overflows.zarray": .error("shape [1000000000000000, 65536]: too many rows"),
        ]
        for (input, outcome) in fuzzRegressions("PreprocessTests", "FuzzZarray", expected: expected) {
            let folder = try temporaryFolder(self).appendingPathComponent("train.zarr")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let url = folder.appendingPathComponent(".zarray")
            try FileManager.default.copyItem(at: input, to: url)
            replay(input, naming: url, expected: outcome) {
                let array = try ZarrArray(path: folder.path)
                _ = (array.chunkBytes, array.stripeTokens)
                for r in Set([0, array.rowChunks - 1]) where r >= 0 {
                    _ = array.rowRange(ofRowChunk: r)
                    _ = array.missingChunks(ofRowChunk: r)
                }
            }
        }
    }

    /// Parquet inputs (`Fuzz/craft-parquet.py` wrote them), read as FuzzParquet reads them: each is pinned to an
    /// error, one line naming the file, with the words given. Each made the reader allocate 1 GiB or more before.
    func testParquet() {
        let expected = [
            "null-runs-2p30-rows.parquet": "a row group of 1073741824 rows: more than 4194304",
            "snappy-declares-1gib.parquet": "column 'text': corrupt page: SNAPPY data does not hold the 1073741824 bytes",
            "zstd-declares-1gib.parquet": "column 'text': corrupt page: ZSTD data does not hold the 1073741824 bytes",
            "zstd-unknown-size-1gib.parquet": "column 'text': corrupt page: ZSTD data does not hold the 1073741824 bytes",
        ]
        let inputs = fuzzRegressions("PreprocessTests", "FuzzParquet", expected: expected.mapValues { FuzzOutcome.error($0) }).map(\.0)
        for input in inputs {
            for least in [0, 16] {
                do {
                    let reader = try ParquetReader(url: input, textColumn: "text", idColumn: "id")
                    for g in 0..<reader.rowGroupCount { _ = try reader.readRowGroup(g, minTextBytes: least) }
                    XCTFail("\(input.lastPathComponent) was read")
                } catch {
                    let want = expected[input.lastPathComponent] ?? "?"
                    XCTAssertTrue(error is FileError && "\(error)".hasPrefix("\(input.path): \(want)"), "\(error)")
                    XCTAssertFalse("\(error)".contains("\n"), "\(error)")
                }
            }
        }
    }

    /// A regression's first byte picks the layout (`Fuzz/Sources/FuzzBloscChunk`), the rest is chunk file `0.0`.
    func testBloscChunk() throws {
        let layouts: [(compressor: String, chunkRows: Int)] = [
            (#"{"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}"#, 1),
            (#"{"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 0, "blocksize": 0}"#, 2),
            (#"{"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 2, "blocksize": 0}"#, 1),
            (#"{"id": "blosc", "cname": "blosclz", "clevel": 5, "shuffle": 1, "blocksize": 0}"#, 1),
            (#"{"id": "zstd", "level": 3}"#, 1),
            ("null", 1),
        ]
        for (input, outcome) in fuzzRegressions("PreprocessTests", "FuzzBloscChunk", expected: [:]) {
            let bytes = try Data(contentsOf: input)
            guard let selector = bytes.first else { continue }
            let layout = layouts[Int(selector) % layouts.count]
            let folder = try temporaryFolder(self).appendingPathComponent("train.zarr")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data("""
                {"zarr_format": 2, "shape": [1, 65536], "chunks": [\(layout.chunkRows), 65536], "dtype": "<u2", "order": "C",
                 "compressor": \(layout.compressor), "fill_value": 0, "filters": null}
                """.utf8).write(to: folder.appendingPathComponent(".zarray"))
            let chunk = folder.appendingPathComponent("0.0")
            try bytes.dropFirst().write(to: chunk)
            let array = try ZarrArray(path: folder.path)
            var stripe = [UInt16](repeating: 0, count: array.stripeTokens)
            replay(input, naming: chunk, expected: outcome) { try stripe.withUnsafeMutableBufferPointer { try array.readStripe(0, into: $0, workers: 1) } }
        }
    }
}
