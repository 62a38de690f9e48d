import Foundation
@testable import Shards
@testable import Support
import TestSupport
import XCTest
@testable import Streaming

/// Token j of synthetic window w: distinct across windows, so a mixed-up window is caught.
func syntheticToken(window w: Int, position j: Int) -> UInt16 { UInt16((w &* 7919 &+ j &* 31 &+ (j >> 7)) % 50257) }

/// A complete dataset of `windows` train windows in shards of mixed formats (sizes 3, 4, 3, ...), plus 2 heldout;
/// window w stored as `numpy.roll(window, roll(w))`.
func makeDataset(_ test: XCTestCase, windows: Int, roll: (Int) -> Int = { _ in 0 }) throws -> URL {
    let dir = try temporaryFolder(test)
    var index = DatasetIndex(build: nil)
    var w = 0, shard = 0
    var tokens = [UInt16](repeating: 0, count: windowLength)
    func write(_ split: Split, _ n: Int, _ number: Int) throws {
        let format: ShardFormat = number % 2 == 0 ? .hdf5 : .zst
        let writer = try ShardWriter(directory: dir, file: format.fileName(split: split, number: number), format: format, split: split, level: 1)
        for _ in 0..<n {
            let k = roll(w)
            for j in 0..<windowLength { tokens[(j + k) % windowLength] = syntheticToken(window: w, position: j) }
            try tokens.withUnsafeBufferPointer { try writer.append($0, source: WindowSource(document: "doc\(w)", offset: 0, roll: k)) }
            w += 1
        }
        index.shards.append(try writer.finish())
    }
    while w < windows {
        try write(.train, min(shard % 2 == 0 ? 3 : 4, windows - w), shard)
        shard += 1
    }
    try write(.heldout, 2, 0)
    index.complete = true
    try index.write(to: dir)
    return dir
}

final class StreamingTests: XCTestCase {
    /// Whole windows one by one (B = 1, T = 65,536): every window once per epoch, in `epochOrder`.
    func testEveryWindowOncePerEpochAndOrdersDiffer() throws {
        let catalog = try WindowCatalog(directory: try makeDataset(self, windows: 10), split: .train)
        XCTAssertEqual(catalog.count, 10)
        let packer = try BatchPacker(catalog: catalog, batchSize: 1, context: windowLength, seed: 7)
        XCTAssertEqual(packer.batchesPerEpoch, 10)
        var epochs: [[Int]] = []
        for epoch in 0..<3 {
            var ids: [Int] = []
            for _ in 0..<10 {
                let b = try packer.next()
                let id = b.rows[0].window
                XCTAssertEqual(b.epoch, epoch)
                XCTAssertEqual(b.inputs[100], Int32(syntheticToken(window: id, position: 100)))
                XCTAssertEqual(b.inputs[windowLength - 1], Int32(syntheticToken(window: id, position: windowLength - 1)))
                ids.append(id)
            }
            XCTAssertEqual(ids.sorted(), Array(0..<10))
            epochs.append(ids)
        }
        XCTAssertNotEqual(epochs[0], epochs[1])
        XCTAssertNotEqual(epochs[1], epochs[2])
        XCTAssertEqual(packer.cursor.nextBatch, 3 * packer.batchesPerEpoch)
        XCTAssertEqual(epochOrder(count: 10, seed: 7, epoch: 1), epochs[1])
        XCTAssertNotEqual(epochOrder(count: 10, seed: 8, epoch: 0), epochs[0])
        XCTAssertEqual(try catalog.source(4), WindowSource(document: "doc4", offset: 0))
    }

    func testWholeWindowsResumeExactlyFromTheCursor() throws {
        let catalog = try WindowCatalog(directory: try makeDataset(self, windows: 9), split: .train)
        let reference = try BatchPacker(catalog: catalog, batchSize: 1, context: windowLength, seed: 3)
        let all = try (0..<30).map { _ in try reference.next().rows[0].window }
        var rng = SplitMix64(seed: 1)
        for _ in 0..<6 {
            let cut = Int(rng.next(below: 30))
            let first = try BatchPacker(catalog: catalog, batchSize: 1, context: windowLength, seed: 3, prefetch: 3)
            var got = try (0..<cut).map { _ in try first.next().rows[0].window }
            let saved = try JSONDecoder().decode(PackerCursor.self, from: JSONEncoder().encode(first.cursor))
            let second = try BatchPacker(catalog: catalog, cursor: saved, prefetch: 3)
            got += try (cut..<30).map { _ in try second.next().rows[0].window }
            XCTAssertEqual(got, all, "cut at \(cut)")
        }
    }

    func testRanksPartitionTheSplit() throws {
        let catalog = try WindowCatalog(directory: try makeDataset(self, windows: 11), split: .train)
        for world in [1, 2, 3, 4] {
            var union: [Int] = []
            for rank in 0..<world {
                let p = try BatchPacker(catalog: catalog, batchSize: 1, context: windowLength, seed: 5, rank: rank, world: world)
                XCTAssertEqual(p.batchesPerEpoch, 11 / world)
                union += try (0..<p.batchesPerEpoch).map { _ in try p.next().rows[0].window }
            }
            XCTAssertEqual(Set(union).count, union.count, "ranks overlap for world \(world)")
            XCTAssertEqual(union.count, world * (11 / world))
            XCTAssertTrue(Set(union).isSubset(of: Set(0..<11)))
        }
        XCTAssertThrowsError(try BatchPacker(catalog: catalog, batchSize: 1, context: windowLength, seed: 5, rank: 2, world: 2))
    }

    /// Targets are the inputs shifted by one inside the same window; only a window's last target is masked.
    func testPackingShiftsTargetsAndMasksWindowEnds() throws {
        let catalog = try WindowCatalog(directory: try makeDataset(self, windows: 6), split: .train)
        for context in [1, 64, 1024, 65536] {
            for order in BatchOrder.allCases {
                let slots = windowLength / context
                let groups = 6 / 2
                // First batches, and the batches at the last slot (jumped to through the cursor).
                let lastSlot = order == .longcrawl ? (slots - 1) * groups : slots - 1
                for start in Set([0, lastSlot]) {
                    let cursor = PackerCursor(seed: 9, rank: 0, world: 1, batchSize: 2, context: context, order: order, nextBatch: start)
                    let packer = try BatchPacker(catalog: catalog, cursor: cursor)
                    XCTAssertEqual(packer.batchesPerEpoch, groups * slots)
                    for _ in 0..<2 {
                        let b = try packer.next()
                        for r in 0..<2 {
                            let row = b.rows[r]
                            for i in 0..<context {
                                let pos = row.offset + i
                                XCTAssertEqual(b.inputs[r * context + i], Int32(syntheticToken(window: row.window, position: pos)))
                                if pos + 1 < windowLength {
                                    XCTAssertEqual(b.targets[r * context + i], Int32(syntheticToken(window: row.window, position: pos + 1)))
                                    XCTAssertEqual(b.mask[r * context + i], 1)
                                } else {
                                    XCTAssertEqual(b.mask[r * context + i], 0)
                                }
                            }
                        }
                        XCTAssertEqual(b.mask.filter { $0 == 0 }.count, b.rows[0].offset + context == windowLength ? 2 : 0)
                    }
                }
            }
        }
        XCTAssertThrowsError(try BatchPacker(catalog: catalog, batchSize: 2, context: 1000, seed: 1)) {
            XCTAssertTrue("\($0)".contains("1000 does not divide 65536"), "\($0)")
            XCTAssertTrue("\($0)".contains("1024"), "\($0)")
        }
    }

    /// LongCrawl order visits every group at a slot before the next slot; sequential walks one group's slots.
    func testOrdersWalkTheRectangleAsDocumented() throws {
        let catalog = try WindowCatalog(directory: try makeDataset(self, windows: 8), split: .train)
        let lc = try BatchPacker(catalog: catalog, batchSize: 2, context: 16384, order: .longcrawl, seed: 2)
        let seq = try BatchPacker(catalog: catalog, batchSize: 2, context: 16384, order: .sequential, seed: 2)
        let a = try (0..<16).map { _ in try lc.next() }, b = try (0..<16).map { _ in try seq.next() }
        XCTAssertEqual(a.map { $0.rows[0].offset / 16384 }, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])
        XCTAssertEqual(b.map { $0.rows[0].offset / 16384 }, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])
        XCTAssertEqual(Set(a.prefix(4).flatMap { $0.rows.map(\.window) }).count, 8)
        for i in 0..<16 {
            XCTAssertEqual(b[i].continues, i % 4 != 0)
            if i % 4 != 0 { XCTAssertEqual(b[i].rows.map(\.window), b[i - 1].rows.map(\.window)) }
        }
        XCTAssertEqual(Set(a.map { $0.rows.map(\.window) }), Set(b.map { $0.rows.map(\.window) }))
    }

    func testPackerResumesExactlyFromItsCursor() throws {
        let catalog = try WindowCatalog(directory: try makeDataset(self, windows: 7), split: .train)
        for order in BatchOrder.allCases {
            let reference = try BatchPacker(catalog: catalog, batchSize: 2, context: 8192, order: order, seed: 4)
            let total = reference.batchesPerEpoch + 10
            let all = try (0..<total).map { _ in try reference.next() }
            for cut in [1, 5, reference.batchesPerEpoch, total - 1] {
                let first = try BatchPacker(catalog: catalog, batchSize: 2, context: 8192, order: order, seed: 4)
                var got = try (0..<cut).map { _ in try first.next() }
                let saved = try JSONDecoder().decode(PackerCursor.self, from: JSONEncoder().encode(first.cursor))
                let second = try BatchPacker(catalog: catalog, cursor: saved)
                got += try (cut..<total).map { _ in try second.next() }
                XCTAssertEqual(got.map(\.inputs), all.map(\.inputs), "\(order) cut \(cut)")
                XCTAssertEqual(got.map(\.rows), all.map(\.rows), "\(order) cut \(cut)")
            }
        }
    }

    func testCorruptWindowAndMissingShardAreNamed() throws {
        let dir = try makeDataset(self, windows: 7)
        var index = try DatasetIndex.load(from: dir)
        for i in index.shards.indices where index.shards[i].split == .train {
            // Flip one byte in the middle of the shard: inside some window's compressed data.
            let url = dir.appendingPathComponent(index.shards[i].file)
            var data = try Data(contentsOf: url)
            data[data.count / 2] ^= 0x5A
            try data.write(to: url)
            index.shards[i].sha256 = sha256(data)
        }
        // Refused at the shard's first open, before any parsing, by its SHA-256 in index.json.
        XCTAssertThrowsError(try WindowCatalog(directory: dir, split: .train).read(0)) {
            XCTAssertTrue("\($0)".contains("SHA-256") && index.shards.contains { "\($0)".contains($0.file) }, "\($0)")
        }
        // Damage the hash cannot see (the file was damaged before it was hashed): each window's own checksum.
        try index.write(to: dir)
        let packer = try BatchPacker(catalog: try WindowCatalog(directory: dir, split: .train), batchSize: 1, context: windowLength, seed: 1)
        var failure: String?
        for _ in 0..<7 {
            do { _ = try packer.next() } catch { failure = "\(error)"; break }
        }
        let message = try XCTUnwrap(failure, "a corrupt shard streamed without error")
        XCTAssertTrue(index.shards.contains { message.contains($0.file) }, message)
        XCTAssertTrue(message.contains("window"), message)

        // An index that promises more windows than the shard holds: named when the shard is opened.
        var more = index
        more.shards[0].windows += 1
        try more.write(to: dir)
        XCTAssertThrowsError(try WindowCatalog(directory: dir, split: more.shards[0].split).read(0)) {
            XCTAssertTrue("\($0)".hasSuffix("\(more.shards[0].file): holds \(index.shards[0].windows) windows, index.json says \(more.shards[0].windows)"), "\($0)")
        }

        try FileManager.default.removeItem(at: dir.appendingPathComponent(index.shards[0].file))
        XCTAssertThrowsError(try WindowCatalog(directory: dir, split: index.shards[0].split)) {
            XCTAssertTrue("\($0)".contains(index.shards[0].file) && "\($0)".contains("missing"), "\($0)")
        }
    }
}

/// Rolls of the rolled test windows: none, the edges (1: the seam at a row's first position; 8192: at the last
/// position of a row of 8192; 65535: the window's last target) and a few inside.
let testRolls = [0, 1, 8192, 65535, 8193, 40000, 12345, 8191]

final class SeamTests: XCTestCase {
    /// Each row's seam is the position whose input is the document's last kept token and whose target its first;
    /// a masking packer gives the same batches with exactly those targets' masks 0.
    func testSeamIsWhereTheDocumentStartsAndMaskSeamMasksOnlyIt() throws {
        let catalog = try WindowCatalog(directory: try makeDataset(self, windows: 8) { testRolls[$0 % testRolls.count] }, split: .train)
        XCTAssertEqual(try (0..<8).map { try catalog.roll($0) }, testRolls)
        for t in [windowLength, 8192, 64] {
            let plain = try BatchPacker(catalog: catalog, batchSize: 2, context: t, seed: 5)
            let masked = try BatchPacker(catalog: catalog, batchSize: 2, context: t, seed: 5, masksSeam: true)
            var seams = 0
            for _ in 0..<plain.batchesPerEpoch {
                let a = try plain.next(), b = try masked.next()
                XCTAssertEqual(a.rows, b.rows)
                XCTAssertEqual(a.inputs, b.inputs)
                XCTAssertEqual(a.targets, b.targets)
                for (r, row) in a.rows.enumerated() {
                    let k = testRolls[row.window], i = k - 1 - row.offset, at = r * t
                    XCTAssertEqual(row.seam, k > 0 && i >= 0 && i < t ? i : nil, "T \(t) window \(row.window) offset \(row.offset)")
                    var expected = Array(a.mask[at..<(at + t)])
                    if let s = row.seam {
                        seams += 1
                        let first = Int32(syntheticToken(window: row.window, position: 0))
                        XCTAssertEqual(a.targets[at + s], first)
                        XCTAssertEqual(a.inputs[at + s], Int32(syntheticToken(window: row.window, position: windowLength - 1)))
                        if s + 1 < t { XCTAssertEqual(a.inputs[at + s + 1], first) }
                        XCTAssertEqual(a.mask[at + s], 1, "LongCrawl64 trains on the seam by default")
                        expected[s] = 0
                    }
                    XCTAssertEqual(Array(b.mask[at..<(at + t)]), expected, "T \(t) window \(row.window) offset \(row.offset)")
                }
            }
            XCTAssertEqual(seams, 7, "T \(t): each rolled window's seam once per epoch")
        }
        let unrolled = try BatchPacker(catalog: WindowCatalog(directory: try makeDataset(self, windows: 8), split: .train),
                                       batchSize: 2, context: 8192, seed: 5, masksSeam: true)
        for _ in 0..<unrolled.batchesPerEpoch { XCTAssertTrue(try unrolled.next().rows.allSatisfy { $0.seam == nil }) }
    }

    /// A sampled row keeps its seam, whole or cut at a random offset, through the file (its SHA-256 block valid); a
    /// file of unrolled windows has no roll member, as files written before rolls existed, and reads as roll 0.
    func testSampledRowsKeepTheirSeamThroughTheFile() throws {
        let dir = try makeDataset(self, windows: 8) { testRolls[$0 % testRolls.count] }
        let catalog = try WindowCatalog(directory: dir, split: .train)
        let url = dir.appendingPathComponent("eval.h5")
        var seams = 0
        for context in [nil, 32768] as [Int?] {
            let file = try EvalWindowSampler.sample(catalog, count: 8, seed: 3, context: context, dataset: dir.path)
            try file.write(to: url)
            let back = try EvalWindowFile(contentsOf: url)
            XCTAssertEqual(back, file)
            try checkChecksumBlock(url, tokens: file.tokens)
            XCTAssertEqual(try documentFields(url), ["document", "offset", "roll"])
            if context == nil { XCTAssertEqual(back.sources.map(\.roll), back.windows.map { testRolls[$0] }) }
            for i in 0..<back.count {
                let w = back.windows[i], start = back.sources[i].offset, row = Array(back.row(i))
                let column = testRolls[w] - start
                XCTAssertEqual(back.seam(i), column >= 1 && column < back.length ? column - 1 : nil, "row \(i) of window \(w) from \(start)")
                if let s = back.seam(i) {
                    seams += 1
                    XCTAssertEqual(row[s], syntheticToken(window: w, position: windowLength - 1))
                    XCTAssertEqual(row[s + 1], syntheticToken(window: w, position: 0))
                }
            }
        }
        XCTAssertGreaterThan(seams, 7)
        let plain = try makeDataset(self, windows: 8)
        let file = try EvalWindowSampler.sample(WindowCatalog(directory: plain, split: .train), count: 8, seed: 3, dataset: plain.path)
        try file.write(to: url)
        XCTAssertEqual(try documentFields(url), ["document", "offset"])
        XCTAssertEqual(try EvalWindowFile(contentsOf: url).sources.map(\.roll), [Int](repeating: 0, count: 8))
    }
}

/// The member names of `/documents` as h5py sees them.
private func documentFields(_ url: URL) throws -> [String] {
    let r = try runProcess("/usr/bin/env", ["python3", "-c", "import h5py, sys; print(' '.join(h5py.File(sys.argv[1], 'r')['documents'].dtype.names))", url.path])
    XCTAssertEqual(r.status, 0, r.err)
    return r.out.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
}

final class EvalWindowSamplerTests: XCTestCase {
    func testSampleIsSeededDistinctAndRoundTripsThroughHDF5() throws {
        let dir = try makeDataset(self, windows: 9)
        let catalog = try WindowCatalog(directory: dir, split: .train)
        let a = try EvalWindowSampler.sample(catalog, count: 5, seed: 11, dataset: dir.path)
        let b = try EvalWindowSampler.sample(catalog, count: 5, seed: 11, dataset: dir.path)
        let c = try EvalWindowSampler.sample(catalog, count: 5, seed: 12, dataset: dir.path)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a.windows, c.windows)
        XCTAssertEqual(Set(a.windows).count, 5)
        for (i, id) in a.windows.enumerated() { XCTAssertEqual(Array(a.row(i)), try catalog.read(id)) }

        let url = dir.appendingPathComponent("eval.h5")
        try a.write(to: url)
        XCTAssertEqual(try EvalWindowFile(contentsOf: url), a)
        try checkChecksumBlock(url, tokens: a.tokens)

        let short = try EvalWindowSampler.sample(catalog, count: 4, seed: 3, context: 1024, dataset: dir.path)
        XCTAssertEqual(short.length, 1025)
        for (i, id) in short.windows.enumerated() {
            let offset = short.sources[i].offset
            XCTAssertEqual(Array(short.row(i)), Array(try catalog.read(id)[offset..<(offset + 1025)]))
        }
        try short.write(to: url)
        XCTAssertEqual(try EvalWindowFile(contentsOf: url), short)

        XCTAssertThrowsError(try EvalWindowSampler.sample(catalog, count: 10, seed: 1, dataset: dir.path)) {
            XCTAssertTrue("\($0)".contains("has 9 windows, fewer than the 10 requested"), "\($0)")
        }
        // Files from before the checksum block (the same HDF5 without it) are refused with what to do.
        let stamped = try Data(contentsOf: url)
        try stamped[512...].write(to: url)
        XCTAssertThrowsError(try EvalWindowFile(contentsOf: url)) { XCTAssertTrue("\($0)".contains("eval.h5: written without a checksum"), "\($0)") }
        try Data("not hdf5".utf8).write(to: url)
        XCTAssertThrowsError(try EvalWindowFile(contentsOf: url)) { XCTAssertTrue("\($0)".contains("eval.h5: not an HDF5 file"), "\($0)") }
    }
}

/// h5py opens a file with the checksum block (libhdf5 skips user blocks) and reads the same tokens; any byte
/// changed, in the block or in the HDF5 metadata libhdf5 would parse first, is refused before libhdf5 sees it.
private func checkChecksumBlock(_ url: URL, tokens: [UInt16]) throws {
    let python = Process()
    python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    python.arguments = ["python3", "-c", "import h5py, hdf5plugin, sys; f = h5py.File(sys.argv[1], 'r'); "
                        + "print(f.userblock_size, int(f['tokens'][...].astype('int64').sum()))", url.path]
    let out = Pipe()
    python.standardOutput = out
    try python.run()
    python.waitUntilExit()
    XCTAssertEqual(python.terminationStatus, 0, "h5py could not open \(url.path)")
    let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    XCTAssertEqual(printed.split(separator: " ").map(String.init), ["512", "\(tokens.reduce(0) { $0 + Int($1) })\n"])

    let original = try Data(contentsOf: url)
    for offset in [40, 600, original.count / 2, original.count - 1] {
        var damaged = original
        damaged[offset] ^= 0x31
        try damaged.write(to: url)
        XCTAssertThrowsError(try EvalWindowFile(contentsOf: url)) {
            XCTAssertTrue("\($0)".contains("eval.h5: SHA-256 differs"), "byte \(offset): \($0)")
        }
    }
    try original.write(to: url)
}
