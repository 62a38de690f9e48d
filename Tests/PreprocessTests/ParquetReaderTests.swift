import Foundation
@testable import Shards
@testable import Support
import TestSupport
import XCTest
@testable import Preprocess

final class ParquetReaderTests: XCTestCase {
    /// The fixtures of tools/make_parquet.py, written by pyarrow once for the class.
    nonisolated(unsafe) static var fixtures: URL?

    override class func tearDown() {
        if let fixtures { try? FileManager.default.removeItem(at: fixtures) }
    }

    func fixture(_ name: String) throws -> URL {
        if Self.fixtures == nil {
            guard try runProcess("/usr/bin/env", ["python3", "-c", "import pyarrow"]).status == 0 else { throw XCTSkip("pyarrow is not installed") }
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("longcrawl-parquet-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let script = packageRoot.appendingPathComponent("tools/make_parquet.py").path
            let run = try runProcess("/usr/bin/env", ["python3", script, dir.path])
            guard run.status == 0 else { throw XCTSkip("make_parquet.py failed: \(run.err)") }
            Self.fixtures = dir
        }
        return Self.fixtures!.appendingPathComponent(name)
    }

    /// All rows of a file, checking each group's count against the footer's.
    func readAll(_ reader: ParquetReader) throws -> [ParquetRow] {
        var rows: [ParquetRow] = []
        for g in 0..<reader.rowGroupCount {
            let group = try reader.readRowGroup(g)
            XCTAssertEqual(group.count, reader.rowCount(group: g))
            rows += group
        }
        XCTAssertEqual(rows.count, reader.rowCount)
        return rows
    }

    /// pyarrow's rows as (text bytes, id) pairs.
    func expectedRows() throws -> [(text: [UInt8]?, id: String?)] {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: try fixture("expected.json"))) as! [[Any]]
        return json.map { (($0[0] as? String).map { Array($0.utf8) }, $0[1] as? String) }
    }

    func assertRefused(_ url: URL, text: String = "text", id: String? = "id", mentions: [String], line: UInt = #line) {
        do {
            _ = try readAll(try ParquetReader(url: url, textColumn: text, idColumn: id))
            XCTFail("\(url.lastPathComponent) was read", line: line)
        } catch {
            let message = "\(error)"
            XCTAssertTrue(error is FileError, message, line: line)
            XCTAssertTrue(message.hasPrefix(url.path + ": "), message, line: line)
            XCTAssertFalse(message.contains("\n"), message, line: line)
            for word in mentions { XCTAssertTrue(message.contains(word), "'\(word)' not in: \(message)", line: line) }
        }
    }

    /// A file of 1,000 row groups (each a part of its own, read on two threads) gives pyarrow's rows in order and
    /// has its footer parsed once, not once a group.
    func testManyRowGroupsParseTheFooterOnce() throws {
        _ = try fixture("expected.json")
        let file = Self.fixtures!.appendingPathComponent("groups.parquet")
        let script = """
        import sys, pyarrow as pa, pyarrow.parquet as pq
        rows = 3000
        table = pa.table({"text": [f"row {i} " + "x" * (i % 50) for i in range(rows)], "id": [f"r{i}" for i in range(rows)]})
        pq.write_table(table, sys.argv[1], row_group_size=3)
        assert pq.ParquetFile(sys.argv[1]).metadata.num_row_groups == 1000
        """
        let r = try runProcess("/usr/bin/env", ["python3", "-c", script, file.path])
        XCTAssertEqual(r.status, 0, r.err)
        let reader = try CorpusReader(inputs: [file.path])
        XCTAssertEqual(reader.parts.count, 1000)
        let feed = DocumentFeed(reader: reader, stage: DocumentStage(rules: [], minTextBytes: 0),
                                tokenizing: Tokenizing(tokenizer: gpt2, rules: [], needed: 1, from: 0, hook: nil, encoding: .raw, dedup: nil), workers: 2)
        defer { feed.stop() }
        var ids: [String] = []
        while let piece = feed.next() {
            for case .document(let d) in piece.records {
                XCTAssertEqual(String(decoding: d.text, as: UTF8.self), "row \(ids.count) " + String(repeating: "x", count: ids.count % 50))
                ids.append(d.id)
            }
        }
        XCTAssertEqual(ids, (0..<3000).map { "r\($0)" })
        XCTAssertEqual(reader.settings.parquetFiles.opened, 1)
    }

    func testFineWebShapedFilesReadAsPyarrowWroteThem() throws {
        let expected = try expectedRows()
        XCTAssertEqual(expected.count, 300)
        XCTAssertTrue(expected.contains { ($0.text?.count ?? 0) > 100_000 } && expected.contains { $0.text == nil } && expected.contains { $0.id == nil })
        var files = 0
        for codec in ["none", "snappy", "zstd", "gzip"] {
            for pages in ["dict", "plain"] {
                for version in ["1", "2"] {
                    let url = try fixture("fineweb-\(codec)-\(pages)-v\(version).parquet")
                    let reader = try ParquetReader(url: url, textColumn: "text", idColumn: "id")
                    XCTAssertEqual(reader.rowGroupCount, 5)
                    let rows = try readAll(reader)
                    XCTAssertEqual(rows.count, expected.count, url.lastPathComponent)
                    for (i, (row, want)) in zip(rows, expected).enumerated() {
                        XCTAssertEqual(row.text, want.text, "\(url.lastPathComponent) row \(i) text")
                        XCTAssertEqual(row.id, want.id, "\(url.lastPathComponent) row \(i) id")
                    }
                    let size = try FileManager.default.attributesOfItem(atPath: url.path)[.size] as! Int
                    let chunks = (0..<reader.rowGroupCount).map { reader.byteSize(group: $0) }
                    XCTAssertTrue(chunks.allSatisfy { $0 > 0 } && chunks.reduce(0, +) < size)
                    files += 1
                }
            }
        }
        XCTAssertEqual(files, 16)
    }

    /// Short values are measured, not copied: every encoding, codec and page version gives each row's length, and
    /// exactly the values of at least `minTextBytes` bytes, equal to a full read's; ids are as in a full read.
    func testMinTextBytesKeepsOnlyLongValuesAndMeasuresTheRest() throws {
        let expected = try expectedRows()
        for codec in ["none", "snappy", "zstd", "gzip"] {
            for pages in ["dict", "plain"] {
                for version in ["1", "2"] {
                    let url = try fixture("fineweb-\(codec)-\(pages)-v\(version).parquet")
                    let reader = try ParquetReader(url: url, textColumn: "text", idColumn: "id")
                    for least in [0, 1, 20, 100_000, Int.max] {
                        let rows = try (0..<reader.rowGroupCount).flatMap { try reader.readRowGroup($0, minTextBytes: least) }
                        XCTAssertEqual(rows.count, expected.count)
                        for (i, (row, want)) in zip(rows, expected).enumerated() {
                            let name = "\(url.lastPathComponent) row \(i), minTextBytes \(least)"
                            XCTAssertEqual(row.textBytes, want.text?.count, name)
                            XCTAssertEqual(row.text, want.text.flatMap { $0.count >= least ? $0 : nil }, name)
                            XCTAssertEqual(row.id, want.id, name)
                        }
                    }
                }
            }
        }
        let ints = try ParquetReader(url: try fixture("int-id-v2.parquet"), textColumn: "text", idColumn: "id")
        let rows = try (0..<ints.rowGroupCount).flatMap { try ints.readRowGroup($0, minTextBytes: 6) }
        XCTAssertEqual(rows.map(\.text), (0..<50).map { $0 < 10 ? nil : Array("doc \($0)".utf8) })
        XCTAssertEqual(rows.map(\.textBytes), (0..<50).map { "doc \($0)".utf8.count })
    }

    func testNestedIdByDottedPath() throws {
        let reader = try ParquetReader(url: try fixture("nested.parquet"), textColumn: "text", idColumn: "metadata.id")
        let rows = try readAll(reader)
        let expected = try expectedRows().prefix(50)
        XCTAssertEqual(rows.map(\.id), expected.map(\.id))
        XCTAssertEqual(rows.map(\.text), expected.map(\.text))
    }

    func testIntegerIdsGiveDecimalStrings() throws {
        for version in ["1", "2"] {
            let url = try fixture("int-id-v\(version).parquet")
            let rows = try readAll(try ParquetReader(url: url, textColumn: "text", idColumn: "id"))
            let want: [String?] = (0..<50).map { (k: Int) -> String? in k == 3 ? nil : String(k * 1_000_000_007 - 5) }
            XCTAssertEqual(rows.map(\.id), want)
            XCTAssertEqual(rows[0].id, "-5")
            XCTAssertEqual(rows.map(\.text), (0..<50).map { Array("doc \($0)".utf8) })
            let int32 = try readAll(try ParquetReader(url: url, textColumn: "text", idColumn: "id32"))
            XCTAssertEqual(int32.map(\.id), (0..<50).map { String(-$0 * 40_000_000) })
        }
    }

    func testMissingIdColumnGivesNilIdsAndMissingTextColumnIsRefused() throws {
        let url = try fixture("small.parquet")
        let rows = try readAll(try ParquetReader(url: url, textColumn: "text", idColumn: "uid"))
        XCTAssertEqual(rows.count, 40)
        XCTAssertTrue(rows.allSatisfy { $0.id == nil })
        XCTAssertEqual(rows.map(\.text), try expectedRows().prefix(40).map(\.text))
        assertRefused(url, text: "body", mentions: ["'body'", "text, id, token_count"])
    }

    func testUnsupportedCodecsAreRefusedNamingColumnAndCodec() throws {
        assertRefused(try fixture("lz4.parquet"), mentions: ["column 'text'", "codec LZ4_RAW"])
        assertRefused(try fixture("brotli.parquet"), mentions: ["column 'text'", "codec BROTLI"])
    }

    func testNonStringTextColumnIsRefused() throws {
        assertRefused(try fixture("int-text.parquet"), mentions: ["column 'text'", "INT64", "BYTE_ARRAY"])
        assertRefused(try fixture("nested.parquet"), text: "metadata", mentions: ["no column 'metadata'", "metadata.id, metadata.n"])
    }

    func testNonParquetAndEncryptedFilesAreRefused() throws {
        let dir = try temporaryFolder(self)
        let text = dir.appendingPathComponent("notes.parquet")
        try Data("just some text, long enough to have a tail".utf8).write(to: text)
        assertRefused(text, mentions: ["not a parquet file"])
        let tiny = dir.appendingPathComponent("tiny.parquet")
        try Data("PAR1PAR1".utf8).write(to: tiny)
        assertRefused(tiny, mentions: ["not a parquet file"])
        let encrypted = dir.appendingPathComponent("encrypted.parquet")
        try Data(Array("PARE".utf8) + [UInt8](repeating: 7, count: 20) + [20, 0, 0, 0] + Array("PARE".utf8)).write(to: encrypted)
        assertRefused(encrypted, mentions: ["encrypted"])
    }

    /// Reads a damaged file: it must throw a one-line FileError naming it, or give rows; never crash or hang.
    func readDamaged(_ bytes: [UInt8], _ url: URL) throws -> [ParquetRow]? {
        try Data(bytes).write(to: url)
        do {
            let reader = try ParquetReader(url: url, textColumn: "text", idColumn: "id")
            return try (0..<reader.rowGroupCount).flatMap { try reader.readRowGroup($0) }
        } catch let error as FileError {
            XCTAssertTrue(error.path == url.path && !error.message.contains("\n"), "\(error)")
            return nil
        }
    }

    func testTruncatedFilesAreRefused() throws {
        let dir = try temporaryFolder(self)
        for name in ["small.parquet", "small-v1.parquet"] {
            let bytes = [UInt8](try Data(contentsOf: try fixture(name)))
            let whole = try XCTUnwrap(try readDamaged(bytes, dir.appendingPathComponent("whole.parquet")))
            let footer = bytes.count - 8 - Int(bytes[bytes.count - 8]) - Int(bytes[bytes.count - 7]) << 8
            let url = dir.appendingPathComponent(name)
            for cut in stride(from: 0, to: bytes.count, by: 7) {
                XCTAssertNil(try readDamaged(Array(bytes[..<cut]), url), "\(name) cut at \(cut) was read")
                // The data cut short but the footer kept: offsets now point past the data or into the footer.
                // Only a cut in a column not read (token_count, stored last) may leave the rows readable.
                if cut < footer, let rows = try readDamaged(Array(bytes[..<cut] + bytes[footer...]), url) {
                    XCTAssertTrue(rows.map(\.text) == whole.map(\.text) && rows.map(\.id) == whole.map(\.id), "\(name) cut at \(cut) read wrong rows")
                }
            }
        }
    }

    func testFlippedBytesNeverCrash() throws {
        let dir = try temporaryFolder(self)
        var rng = SplitMix64(seed: 42)
        var read = 0, refused = 0
        for name in ["small.parquet", "small-v1.parquet"] {
            let bytes = [UInt8](try Data(contentsOf: try fixture(name)))
            let footerLength = Int(bytes[bytes.count - 8]) | Int(bytes[bytes.count - 7]) << 8
            let url = dir.appendingPathComponent(name)
            // Half anywhere, half in the footer, where one byte changes how everything else is found.
            for k in 0..<300 {
                let at = k % 2 == 0 ? Int(rng.next() % UInt64(bytes.count)) : bytes.count - 8 - footerLength + Int(rng.next() % UInt64(footerLength))
                var damaged = bytes
                damaged[at] ^= UInt8(1 + rng.next() % 255)
                if try readDamaged(damaged, url) != nil { read += 1 } else { refused += 1 }
            }
        }
        // Both outcomes happen: flips in text bytes still read, flips in structure are caught.
        XCTAssertGreaterThan(read, 0)
        XCTAssertGreaterThan(refused, 100)
    }
}
