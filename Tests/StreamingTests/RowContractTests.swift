import Foundation
@testable import Shards
@testable import Streaming
@testable import Support
import TestSupport
import XCTest

/// The packer, evaluation (a sampled row as `eval` and the trainer's held-out evaluation cut it) and the sampler
/// give the rows one numpy reference gives, for every combination of context, offset, roll and seam masking.
final class RowContractTests: XCTestCase {
    /// The rule written once more, in numpy, independent of `ModelRow`: per (T, offset, roll, masks seam) the SHA-256
    /// of the row's inputs and targets (int32) and mask (float32), little-endian, and the seam.
    static let reference = """
    import hashlib, json, sys
    import numpy as np
    w = np.fromfile(sys.argv[1], dtype="<u2")
    out = []
    for t, o, k, m in json.load(open(sys.argv[2])):
        successors = w[o + 1:o + t + 1].astype("<i4")
        targets = np.zeros(t, "<i4"); targets[:len(successors)] = successors
        mask = np.zeros(t, "<f4"); mask[:len(successors)] = 1
        i = k - 1 - o
        seam = i if k > 0 and 0 <= i < t else None
        if m and seam is not None:
            mask[seam] = 0
        out.append([hashlib.sha256(w[o:o + t].astype("<i4").tobytes() + targets.tobytes() + mask.tobytes()).hexdigest(), seam])
    print(json.dumps(out))
    """

    func testPackerEvaluatorAndSamplerAgreeWithNumpy() throws {
        var rng = SplitMix64(seed: 31)
        let window = (0..<windowLength).map { _ in UInt16(rng.next(below: 50_257)) }
        var combos: [(t: Int, offset: Int, roll: Int, masks: Bool)] = []
        for t in [1, 4, 256, windowLength] {
            let offsets = Set([0, t, 3 * t, windowLength - t, 7].filter { $0 + t <= windowLength })
            for o in offsets.sorted() {
                let rolls = Set([0, 1, o, o + 1, o + t - 1, o + t, o + t + 1, windowLength - 1].filter { (0..<windowLength).contains($0) })
                for k in rolls.sorted() { for m in [false, true] { combos.append((t, o, k, m)) } }
            }
        }
        let folder = try temporaryFolder(self)
        let windowFile = folder.appendingPathComponent("window.u16"), comboFile = folder.appendingPathComponent("combos.json")
        try window.withUnsafeBytes { try Data($0).write(to: windowFile) }
        try JSONSerialization.data(withJSONObject: combos.map { [$0.t, $0.offset, $0.roll, $0.masks] as [Any] }).write(to: comboFile)
        let r = try runProcess("/usr/bin/env", ["python3", "-c", Self.reference, windowFile.path, comboFile.path])
        try XCTSkipUnless(r.status == 0 || !r.err.contains("No module named 'numpy'"), "numpy is missing")
        XCTAssertEqual(r.status, 0, r.err)
        let expected = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[Any]])
        XCTAssertEqual(expected.count, combos.count)
        func digest(_ inputs: [Int32], _ targets: [Int32], _ mask: [Float]) -> String {
            Batch(batchSize: 1, context: inputs.count, epoch: 0, inputs: inputs, targets: targets, mask: mask, rows: [], continues: false).digest
        }
        var checked = (packer: 0, sampler: 0)
        for (c, e) in zip(combos, expected) {
            let what = "T \(c.t) offset \(c.offset) roll \(c.roll) masks seam \(c.masks)"
            let sha = e[0] as! String, seam = e[1] as? Int
            // The contract itself, on the whole window.
            let row = ModelRow(window: window[...], offset: c.offset, context: c.t, roll: c.roll, masksSeam: c.masks)
            XCTAssertEqual(digest(row.inputs, row.targets, row.mask), sha, what)
            XCTAssertEqual(row.seam, seam, what)
            // The packer cuts rows at multiples of T.
            if c.offset % c.t == 0 {
                let b = BatchPacker.cut(windows: [window], ids: [0], rolls: [c.roll], slot: c.offset / c.t, context: c.t, epoch: 0,
                                        continues: false, masksSeam: c.masks)
                XCTAssertEqual(b.digest, sha, "packer, " + what)
                XCTAssertEqual(b.rows[0].seam, seam, "packer, " + what)
                checked.packer += 1
            }
            // The sampler takes T + 1 tokens (or the whole window) at any offset; evaluation cuts the sampled row.
            let whole = c.t == windowLength
            if whole ? c.offset == 0 : c.offset + c.t + 1 <= windowLength {
                let (tokens, source) = EvalWindowSampler.row(window, source: WindowSource(document: "d", offset: 0, roll: c.roll), offset: c.offset,
                                                             context: whole ? nil : c.t)
                let file = EvalWindowFile(split: .heldout, seed: 0, dataset: "-", length: tokens.count, context: c.t, tokens: Array(tokens),
                                          windows: [0], sources: [source])
                let evaluated = file.modelRow(0, masksSeam: c.masks)
                XCTAssertEqual(digest(evaluated.inputs, evaluated.targets, evaluated.mask), sha, "sampler and evaluation, " + what)
                XCTAssertEqual(evaluated.seam, seam, "sampler and evaluation, " + what)
                XCTAssertEqual(file.seam(0), seam, what)
                checked.sampler += 1
            }
        }
        XCTAssertGreaterThan(checked.packer, 100)
        XCTAssertGreaterThan(checked.sampler, 100)
    }

    /// A sampled file records its context; a file that does not (written before it was recorded) opens with the
    /// context its row length implies.
    func testEvalFilesRecordTheirContext() throws {
        let folder = try temporaryFolder(self)
        for (length, context) in [(1001, 1000), (257, 256), (windowLength, windowLength)] {
            let file = EvalWindowFile(split: .heldout, seed: 1, dataset: "-", length: length, context: context,
                                      tokens: [UInt16](repeating: 7, count: length), windows: [0], sources: [WindowSource(document: "d", offset: 0)])
            let url = folder.appendingPathComponent("w\(length).h5")
            try file.write(to: url)
            XCTAssertEqual(try EvalWindowFile(contentsOf: url).context, context)
        }
        XCTAssertEqual(EvalWindowFile.inferredContext(length: 257), 256)
        XCTAssertEqual(EvalWindowFile.inferredContext(length: 1001), 1001, "a length no older sample could have: fed whole")
    }
}

extension RowContractTests {
    /// A file written before the context was recorded (the attribute deleted and the checksum block written again)
    /// still opens, with the context its row length implies.
    func testAnOlderEvalFileWithoutContextOpens() throws {
        let r = try runProcess("/usr/bin/env", ["python3", "-c", "import h5py"])
        try XCTSkipUnless(r.status == 0, "h5py is missing")
        let url = try temporaryFolder(self).appendingPathComponent("old.h5")
        try EvalWindowFile(split: .heldout, seed: 1, dataset: "-", length: 257, context: 256, tokens: [UInt16](repeating: 7, count: 257),
                           windows: [0], sources: [WindowSource(document: "d", offset: 0)]).write(to: url)
        let strip = """
        import hashlib, sys, h5py
        with h5py.File(sys.argv[1], "r+") as f:
            del f.attrs["context"]
        data = open(sys.argv[1], "rb").read()
        head = ("longcrawl-eval-windows sha256 " + hashlib.sha256(data[512:]).hexdigest() + "\\n").encode()
        open(sys.argv[1], "wb").write(head + bytes(512 - len(head)) + data[512:])
        """
        let s = try runProcess("/usr/bin/env", ["python3", "-c", strip, url.path])
        XCTAssertEqual(s.status, 0, s.err)
        let old = try EvalWindowFile(contentsOf: url)
        XCTAssertEqual(old.context, 256)
    }
}
