import Foundation
@testable import Support
import TestSupport
import XCTest
@testable import Shards

/// Zipf-like token ids from a seeded LCG, so compression behaves as on text.
func zipfWindow(seed: UInt64) -> [UInt16] {
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    return (0..<windowLength).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        let u = Double(state >> 11) / Double(1 << 53)
        return UInt16(min(50_256, Int(pow(50_257.0, u * u * u))))
    }
}

func shell(_ command: String) throws -> (status: Int32, out: Data) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = ["-c", command]
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, out)
}

let fsizeLimit = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)

final class ShardTests: XCTestCase {
    let windows = (0..<4).map { zipfWindow(seed: UInt64($0)) }
    let sources = (0..<4).map { WindowSource(document: "böök-\($0).txt", offset: $0 * windowLength) }

    func write(_ format: ShardFormat, in dir: URL, split: Split = .train) throws -> ShardEntry {
        let file = format.fileName(split: split, number: 0)
        let writer = try ShardWriter(directory: dir, file: file, format: format, split: split, level: 3)
        for (w, s) in zip(windows, sources) {
            try w.withUnsafeBufferPointer { try writer.append($0, source: s) }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path), "final name exists before finish")
        }
        return try writer.finish()
    }

    func testWriteThenReadBackBothFormats() throws {
        for format in ShardFormat.allCases {
            let dir = try temporaryFolder(self)
            let entry = try write(format, in: dir, split: .heldout)
            XCTAssertEqual(entry.windows, 4)
            XCTAssertEqual(entry.split, .heldout)
            let url = dir.appendingPathComponent(entry.file)
            XCTAssertEqual(entry.bytes, try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int)
            let sum = try shell("sha256sum '\(url.path)' | cut -d' ' -f1")
            XCTAssertEqual(String(decoding: sum.out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), entry.sha256)
            XCTAssertLessThan(entry.bytes, 4 * windowLength * 2, "not compressed")
            let reader = try ShardReader(url: url)
            XCTAssertEqual(reader.windowCount, 4)
            XCTAssertEqual(reader.split, .heldout)
            XCTAssertEqual(reader.sources, sources)
            var buffer = [UInt16](repeating: 0, count: windowLength)
            for k in [2, 0, 3, 1] {
                try buffer.withUnsafeMutableBufferPointer { try reader.readWindow(k, into: $0) }
                XCTAssertEqual(buffer, windows[k], "\(format) window \(k)")
            }
            XCTAssertEqual(verifyShard(entry, in: dir), [])
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [entry.file], "temporary file left behind")
        }
    }

    func testSameWindowsGiveSameBytes() throws {
        for format in ShardFormat.allCases {
            let a = try write(format, in: try temporaryFolder(self)), b = try write(format, in: try temporaryFolder(self))
            XCTAssertEqual(a.sha256, b.sha256, "\(format) output is not deterministic")
        }
    }

    func testAbandonLeavesNothing() throws {
        let dir = try temporaryFolder(self)
        for format in ShardFormat.allCases {
            let writer = try ShardWriter(directory: dir, file: format.fileName(split: .train, number: 0), format: format, split: .train, level: 1)
            try windows[0].withUnsafeBufferPointer { try writer.append($0, source: sources[0]) }
            writer.abandon()
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
        let writer = try ShardWriter(directory: dir, file: "x.tokens.zst", format: .zst, split: .train, level: 1)
        XCTAssertThrowsError(try [UInt16](repeating: 0, count: 10).withUnsafeBufferPointer { try writer.append($0, source: sources[0]) })
    }

    /// h5py with hdf5plugin reads the same ids, documents and attributes.
    func testH5pyReadsTheShard() throws {
        let dir = try temporaryFolder(self)
        let entry = try write(.hdf5, in: dir)
        let r = try shell("python3 '\(packageRoot.path)/tools/check_h5.py' '\(dir.appendingPathComponent(entry.file).path)'")
        XCTAssertEqual(r.status, 0, "h5py failed")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: r.out) as? [String: Any])
        XCTAssertEqual(json["shape"] as? [Int], [4, windowLength])
        XCTAssertEqual(json["dtype"] as? String, "uint16")
        XCTAssertEqual(json["sum"] as? Int, windows.joined().reduce(0) { $0 + Int($1) })
        XCTAssertEqual(json["first"] as? [Int], windows.map { Int($0.first!) })
        XCTAssertEqual(json["last"] as? [Int], windows.map { Int($0.last!) })
        let docs = try XCTUnwrap(json["documents"] as? [[Any]])
        XCTAssertEqual(docs.map { $0[0] as? String }, sources.map(\.document))
        XCTAssertEqual(docs.map { $0[1] as? Int }, sources.map(\.offset))
        let attrs = try XCTUnwrap(json["attrs"] as? [String: Any])
        XCTAssertEqual(attrs["format"] as? String, "longcrawl-shard")
        XCTAssertEqual(attrs["window"] as? Int, windowLength)
        XCTAssertEqual(attrs["vocab_size"] as? Int, 50_257)
        XCTAssertEqual(attrs["split"] as? String, "train")
        XCTAssertEqual(json["filters"] as? [String], ["32015", "fletcher32"])
    }

    /// Rolls read back from both formats; a shard of unrolled windows has no roll field at all, so it keeps the bytes
    /// of shards written before rolls existed.
    func testRollsRoundTripAndUnrolledShardsHaveNoRollField() throws {
        let rolled = sources.enumerated().map { WindowSource(document: $1.document, offset: $1.offset, roll: [0, 1, 40000, 65535][$0]) }
        for format in ShardFormat.allCases {
            for withRolls in [true, false] {
                let dir = try temporaryFolder(self)
                let writer = try ShardWriter(directory: dir, file: format.fileName(split: .train, number: 0), format: format, split: .train, level: 1)
                for (w, s) in zip(windows, withRolls ? rolled : sources) { try w.withUnsafeBufferPointer { try writer.append($0, source: s) } }
                let url = dir.appendingPathComponent(try writer.finish().file)
                XCTAssertEqual(try ShardReader(url: url).sources, withRolls ? rolled : sources, "\(format)")
                switch format {
                case .hdf5:
                    let r = try runProcess("/usr/bin/env", ["python3", "-c", "import h5py, sys; print(h5py.File(sys.argv[1], 'r')['documents'].dtype.names)", url.path])
                    XCTAssertEqual(r.out, withRolls ? "('document', 'offset', 'roll')\n" : "('document', 'offset')\n", r.err)
                case .zst:
                    let json = String(decoding: try Data(contentsOf: url).filter { $0 >= 0x20 && $0 < 0x7F }, as: UTF8.self)
                    XCTAssertEqual(json.contains("\"roll\":40000") && json.contains("\"roll\":65535"), withRolls, json.suffix(400).description)
                    XCTAssertEqual(json.components(separatedBy: "\"roll\"").count - 1, withRolls ? 3 : 0, "roll 0 is left out")
                }
            }
        }
    }

    /// A shard written before rolls existed (h5py here, `/documents` without the member; zst metadata without the
    /// key) reads as roll 0; a roll outside the window is a fault naming the file.
    func testShardsWithoutRollsReadAsRollZero() throws {
        let dir = try temporaryFolder(self)
        let old = dir.appendingPathComponent("old.h5"), bad = dir.appendingPathComponent("bad.h5")
        let script = """
            import h5py, hdf5plugin, numpy as np, sys
            for path, fields in ((sys.argv[1], []), (sys.argv[2], [("roll", "<i8")])):
                with h5py.File(path, "w") as f:
                    tokens = (np.arange(2 * 65536) % 50257).astype("<u2").reshape(2, 65536)
                    f.create_dataset("tokens", data=tokens, chunks=(1, 65536), compression=hdf5plugin.Zstd(), fletcher32=True)
                    rows = np.array([("a.txt", 0) + (70000,) * len(fields), ("b.txt", 65536) + (0,) * len(fields)],
                                    dtype=[("document", h5py.string_dtype()), ("offset", "<i8")] + fields)
                    f.create_dataset("documents", data=rows)
                    for k, v in dict(format="longcrawl-shard", tokenizer="gpt2", split="train").items():
                        f.attrs[k] = v
                    for k, v in dict(version=1, vocab_size=50257, window=65536).items():
                        f.attrs[k] = np.int64(v)
            """
        let r = try runProcess("/usr/bin/env", ["python3", "-c", script, old.path, bad.path])
        XCTAssertEqual(r.status, 0, r.err)
        let reader = try ShardReader(url: old)
        XCTAssertEqual(reader.sources, [WindowSource(document: "a.txt", offset: 0), WindowSource(document: "b.txt", offset: windowLength)])
        var buffer = [UInt16](repeating: 0, count: windowLength)
        try buffer.withUnsafeMutableBufferPointer { try reader.readWindow(1, into: $0) }
        XCTAssertEqual(buffer, (windowLength..<(2 * windowLength)).map { UInt16($0 % 50257) })
        XCTAssertThrowsError(try ShardReader(url: bad)) {
            XCTAssertEqual("\($0)", "\(bad.path): window 0: roll 70000 is not in 0..<65536 (corrupt)")
        }
        let meta = try JSONDecoder().decode(ZstdShardMetadata.self, from: Data(#"{"attributes": {"format": "longcrawl-shard", "version": 1, "tokenizer": "gpt2", "vocab_size": 50257, "window": 65536, "split": "train"}, "sources": [{"document": "a", "offset": 0}, {"document": "b", "offset": 65536, "roll": 7}]}"#.utf8))
        XCTAssertEqual(meta.sources, [WindowSource(document: "a", offset: 0), WindowSource(document: "b", offset: windowLength, roll: 7)])
    }

    /// `zstd -d` turns a seekable shard into the raw little-endian uint16 stream of its windows.
    func testZstdCLIDecompressesToRawTokens() throws {
        let dir = try temporaryFolder(self)
        let entry = try write(.zst, in: dir)
        let r = try shell("zstd -q -d -c '\(dir.appendingPathComponent(entry.file).path)'")
        XCTAssertEqual(r.status, 0)
        let expected = windows.joined().flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        XCTAssertEqual([UInt8](r.out), expected)
    }

    /// A flipped byte inside any window's data is caught by the reader, naming file and window, and by verify (its SHA-256).
    func testFlippedByteInAnyWindowIsCaught() throws {
        for format in ShardFormat.allCases {
            let dir = try temporaryFolder(self)
            let entry = try write(format, in: dir)
            let url = dir.appendingPathComponent(entry.file)
            let original = try Data(contentsOf: url)
            // Locate each window's compressed bytes by content: read them back through a clean reader.
            var caught = 0
            for k in 0..<4 {
                var data = original
                let position = try compressedPosition(of: k, format: format, file: url)
                data[position] ^= 0x01
                try data.write(to: url)
                let reader = try ShardReader(url: url, format: format)
                var buffer = [UInt16](repeating: 0, count: windowLength)
                XCTAssertThrowsError(try buffer.withUnsafeMutableBufferPointer { try reader.readWindow(k, into: $0) }) { error in
                    XCTAssertTrue("\(error)".contains(entry.file) && "\(error)".contains("window \(k)"), "\(error)")
                }
                for other in 0..<4 where other != k {
                    try buffer.withUnsafeMutableBufferPointer { try reader.readWindow(other, into: $0) }
                    XCTAssertEqual(buffer, windows[other])
                }
                // verify stops at the SHA-256: a damaged file is not parsed (libhdf5 can crash on it).
                let faults = verifyShard(entry, in: dir)
                XCTAssertEqual(faults.count, 1, "\(faults)")
                XCTAssertTrue(faults.allSatisfy { $0.hasPrefix(url.path + ": SHA-256 ") && $0.hasSuffix("the file is damaged") }, "\(faults)")
                XCTAssertThrowsError(try ShardReader(entry: entry, in: dir, checkDigest: true)) { XCTAssertEqual("\($0)", faults[0]) }
                caught += 1
            }
            XCTAssertEqual(caught, 4)
            try original.write(to: url)
            XCTAssertEqual(verifyShard(entry, in: dir), [])
        }
    }

    /// The byte in the middle of window k's compressed data.
    func compressedPosition(of k: Int, format: ShardFormat, file: URL) throws -> Int {
        switch format {
        case .zst:
            // Frames are laid end to end from offset 0: walk their sizes with zstd's frame header parser via the CLI-free path.
            let data = try Data(contentsOf: file)
            let frames = Int(data.suffix(9).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
            let table = data.count - 9 - frames * 12
            var offset = 0
            for i in 0...k {
                let size = Int(data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: table + 12 * i, as: UInt32.self) })
                if i == k { return offset + size / 2 }
                offset += size
            }
            fatalError()
        case .hdf5:
            let r = try shell("python3 -c \"import h5py,hdf5plugin,sys; d=h5py.File(sys.argv[1],'r')['tokens']; i=d.id.get_chunk_info(\(k)); print(i.byte_offset, i.size)\" '\(file.path)'")
            let parts = String(decoding: r.out, as: UTF8.self).split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            XCTAssertEqual(parts.count, 2, "cannot locate chunk \(k)")
            return parts[0] + parts[1] / 2
        }
    }

    func testTruncatedEmptyAndGarbageFilesAreFaultsNotCrashes() throws {
        for format in ShardFormat.allCases {
            let dir = try temporaryFolder(self)
            let entry = try write(format, in: dir)
            let url = dir.appendingPathComponent(entry.file)
            let original = try Data(contentsOf: url)
            for broken in [original.prefix(original.count * 2 / 3), Data(), Data((0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 31) })] {
                try broken.write(to: url)
                let faults = verifyShard(entry, in: dir)
                XCTAssertFalse(faults.isEmpty)
                XCTAssertTrue(faults.allSatisfy { $0.hasPrefix(url.path + ":") }, "\(faults)")
                XCTAssertThrowsError(try ShardReader(url: url, format: format)) { XCTAssertTrue("\($0)".contains(entry.file), "\($0)") }
            }
            try FileManager.default.removeItem(at: url)
            XCTAssertEqual(verifyShard(entry, in: dir), ["\(url.path): missing"])
        }
    }

    /// A file size limit (what a full disk looks like to the writer) fails with an error naming the shard, and
    /// leaves no file under the final name.
    func testFullDiskFailsNamingTheFile() throws {
        for format in ShardFormat.allCases {
            let dir = try temporaryFolder(self)
            var old = rlimit()
            getrlimit(fsizeLimit, &old)
            let oldHandler = signal(SIGXFSZ, SIG_IGN)
            var capped = rlimit(rlim_cur: 150_000, rlim_max: old.rlim_max)
            setrlimit(fsizeLimit, &capped)
            defer { setrlimit(fsizeLimit, &old); signal(SIGXFSZ, oldHandler) }
            let file = format.fileName(split: .train, number: 0)
            var failure: Error?
            do {
                let writer = try ShardWriter(directory: dir, file: file, format: format, split: .train, level: 1)
                for (w, s) in zip(windows, sources) { try w.withUnsafeBufferPointer { try writer.append($0, source: s) } }
                _ = try writer.finish()
            } catch { failure = error }
            setrlimit(fsizeLimit, &old)
            let error = try XCTUnwrap(failure, "\(format): writing past the size limit did not fail")
            XCTAssertTrue("\(error)".contains(file), "\(error)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path))
        }
    }
}

/// An `index.json` names files: none may reach outside the dataset folder.
final class ContainedPathTests: XCTestCase {
    func testShardEntriesThatLeaveTheFolderAreRefused() throws {
        let root = try temporaryFolder(self)
        let data = root.appendingPathComponent("data"), elsewhere = root.appendingPathComponent("elsewhere")
        for dir in [data, elsewhere, data.appendingPathComponent("sub")] { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) }
        try Data("x".utf8).write(to: elsewhere.appendingPathComponent("x.h5"))
        try FileManager.default.createSymbolicLink(at: data.appendingPathComponent("link.h5"), withDestinationURL: elsewhere.appendingPathComponent("x.h5"))
        try FileManager.default.createSymbolicLink(at: data.appendingPathComponent("out"), withDestinationURL: elsewhere)
        try FileManager.default.createSymbolicLink(at: data.appendingPathComponent("inner.h5"), withDestinationURL: data.appendingPathComponent("sub/y.h5"))
        for bad in ["../elsewhere/x.h5", "../../x.h5", elsewhere.appendingPathComponent("x.h5").path, "link.h5", "out/x.h5", "out/new.h5", "sub/../../elsewhere/x.h5", ""] {
            var index = DatasetIndex(build: nil)
            index.shards = [ShardEntry(file: bad, format: .hdf5, split: .train, windows: 1, bytes: 1, sha256: "")]
            try index.write(to: data)
            XCTAssertThrowsError(try DatasetIndex.load(from: data), bad) { error in
                XCTAssertEqual("\(error)", "\(data.appendingPathComponent("index.json").path): shard entry '\(bad)' leaves the dataset folder (an absolute path, '..', or a symlink out)")
            }
        }
        // Inside, through a symlink that stays inside, or not created yet: accepted.
        for good in ["train-000000.h5", "sub/y.h5", "inner.h5"] {
            var index = DatasetIndex(build: nil)
            index.shards = [ShardEntry(file: good, format: .hdf5, split: .train, windows: 1, bytes: 1, sha256: "")]
            try index.write(to: data)
            XCTAssertNoThrow(try DatasetIndex.load(from: data), good)
        }
    }
}
